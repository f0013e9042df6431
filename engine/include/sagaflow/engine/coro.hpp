// Coroutine helpers used across sagaflow: spawning with error reporting, timeouts and deadlines.
#pragma once

#include <sagaflow/engine/log.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace sagaflow {

template <typename T = void>
using awaitable = boost::asio::awaitable<T>;
using steady_clock = std::chrono::steady_clock;

// Exceptions that escaped a spawned coroutine since the process started (each one is logged).
std::uint64_t unhandled_exception_count() noexcept;
void count_unhandled_exception() noexcept;

// Logs and counts the exception that ended the coroutine `name`; cancellation
// (operation_aborted) is the normal way a loop ends and is not reported.
void report_coroutine_failure(std::exception_ptr e, std::string_view name);

// co_spawn that never loses an exception: it is logged with the coroutine's name and counted.
template <typename Executor>
void spawn(const Executor& ex, awaitable<void> op, std::string name) {
  boost::asio::co_spawn(ex, std::move(op), [name = std::move(name)](std::exception_ptr e) {
    if (e) report_coroutine_failure(e, name);
  });
}

// Runs `op` until it completes or the deadline passes; at the deadline `op` is cancelled
// (Asio per-operation cancellation) and system_error(asio::error::timed_out) is thrown. An
// exception from `op` before the deadline propagates as it is. (Asio's `||` operator would wait
// for one *success*, turning an early failure into a timeout.)
template <typename T>
awaitable<T> with_deadline(awaitable<T> op, steady_clock::time_point deadline) {
  namespace asio = boost::asio;
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex, deadline);
  auto group = asio::experimental::make_parallel_group(asio::co_spawn(ex, std::move(op), asio::deferred),
                                                       timer.async_wait(asio::deferred));
  if constexpr (std::is_void_v<T>) {
    auto [order, error, timer_ec] = co_await group.async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    (void)timer_ec;
    if (order[0] == 1) throw boost::system::system_error(asio::error::timed_out, "deadline exceeded");
    if (error) std::rethrow_exception(error);
  } else {
    auto [order, error, value, timer_ec] =
        co_await group.async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    (void)timer_ec;
    if (order[0] == 1) throw boost::system::system_error(asio::error::timed_out, "deadline exceeded");
    if (error) std::rethrow_exception(error);
    co_return std::move(value);
  }
}

template <typename T>
awaitable<T> with_timeout(awaitable<T> op, steady_clock::duration timeout) {
  co_return co_await with_deadline(std::move(op), steady_clock::now() + timeout);
}

// Suspends the calling coroutine for `d` on its own executor.
awaitable<void> sleep_for(steady_clock::duration d);

}  // namespace sagaflow
