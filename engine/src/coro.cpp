// Out-of-line parts of the coroutine helpers.
#include <sagaflow/engine/coro.hpp>

namespace sagaflow {

namespace {
std::atomic<std::uint64_t> unhandled_exceptions{0};
}

std::uint64_t unhandled_exception_count() noexcept { return unhandled_exceptions.load(); }
void count_unhandled_exception() noexcept { unhandled_exceptions.fetch_add(1); }

awaitable<void> sleep_for(steady_clock::duration d) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, d);
  co_await timer.async_wait(boost::asio::use_awaitable);
}

}  // namespace sagaflow
