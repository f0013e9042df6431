// Out-of-line parts of the coroutine helpers.
#include <sagaflow/engine/coro.hpp>

namespace sagaflow {

namespace {
std::atomic<std::uint64_t> unhandled_exceptions{0};
}

std::uint64_t unhandled_exception_count() noexcept { return unhandled_exceptions.load(); }
void count_unhandled_exception() noexcept { unhandled_exceptions.fetch_add(1); }

void report_coroutine_failure(std::exception_ptr e, std::string_view name) {
  try {
    std::rethrow_exception(e);
  } catch (const boost::system::system_error& se) {
    if (se.code() == boost::asio::error::operation_aborted) return;
    count_unhandled_exception();
    log::error("engine", name, " failed: ", log::error_text(se));
  } catch (const std::exception& ex) {
    count_unhandled_exception();
    log::error("engine", name, " failed: ", log::error_text(ex));
  } catch (...) {
    count_unhandled_exception();
    log::error("engine", name, " failed with a non-standard exception");
  }
}

awaitable<void> sleep_for(steady_clock::duration d) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, d);
  co_await timer.async_wait(boost::asio::use_awaitable);
}

}  // namespace sagaflow
