// Graceful stop: one stop_source per process (or per worker) that every background loop observes.
// A loop either checks stop_requested() between steps or sleeps with sleep_for(), which returns
// early when stop is requested, so that no loop needs its own cancellation plumbing.
#pragma once

#include <sagaflow/engine/coro.hpp>

#include <boost/asio/experimental/parallel_group.hpp>

#include <memory>
#include <optional>
#include <vector>

namespace sagaflow {

class stop_source {
 public:
  stop_source();

  // Thread-safe; wakes every coroutine waiting in wait() or sleep_for(). Idempotent.
  void request_stop();
  bool stop_requested() const noexcept;

  // Completes when stop is requested (at once if it already was).
  awaitable<void> wait() const;
  // Sleeps for `d` unless stop is requested first; true when the whole time elapsed.
  awaitable<bool> sleep_for(steady_clock::duration d) const;
  awaitable<bool> sleep_until(steady_clock::time_point t) const;

  struct state;

 private:
  std::shared_ptr<state> state_;  // copies share one state: a loop can hold its own copy
};

// Runs `op` until it completes or `stop` is requested, whichever comes first. When stop wins, `op`
// is cancelled (Asio per-operation cancellation), its outcome is dropped and the result is empty
// (false for a void `op`); otherwise `op`'s value or exception.
template <typename T>
awaitable<std::conditional_t<std::is_void_v<T>, bool, std::optional<T>>> until_stopped(awaitable<T> op,
                                                                                       stop_source stop) {
  namespace asio = boost::asio;
  auto ex = co_await asio::this_coro::executor;
  auto group = asio::experimental::make_parallel_group(asio::co_spawn(ex, std::move(op), asio::deferred),
                                                       asio::co_spawn(ex, stop.wait(), asio::deferred));
  if constexpr (std::is_void_v<T>) {
    auto [order, error, stop_error] = co_await group.async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    (void)stop_error;
    if (order[0] == 1) co_return false;
    if (error) std::rethrow_exception(error);
    co_return true;
  } else {
    auto [order, error, value, stop_error] =
        co_await group.async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    (void)stop_error;
    if (order[0] == 1) co_return std::nullopt;
    if (error) std::rethrow_exception(error);
    co_return std::optional<T>(std::move(value));
  }
}

// Requests stop when the first of `signals` arrives, and completes; it also completes, without
// waiting for a signal, as soon as stop is requested some other way (so that it never keeps an
// io_context busy). Once it completes the signals have their default action again: a second
// SIGTERM or SIGINT during a graceful stop ends the process at once.
awaitable<void> stop_on_signals(stop_source stop, std::vector<int> signals);

}  // namespace sagaflow
