// stop_source: a flag plus the timers of the coroutines sleeping on it, woken on request_stop().
#include <sagaflow/engine/stop.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>

#include <mutex>
#include <unordered_set>

namespace sagaflow {

struct stop_source::state {
  std::atomic<bool> stopped{false};
  std::mutex mutex;
  std::unordered_set<boost::asio::steady_timer*> sleepers;
};

stop_source::stop_source() : state_(std::make_shared<state>()) {}

bool stop_source::stop_requested() const noexcept { return state_->stopped.load(std::memory_order_acquire); }

void stop_source::request_stop() {
  std::lock_guard lock(state_->mutex);
  if (state_->stopped.exchange(true, std::memory_order_acq_rel)) return;
  for (auto* timer : state_->sleepers) {
    // A timer is touched only on its own executor, and only while its sleeper is registered:
    // the sleeper deregisters (under the mutex) before its frame destroys the timer.
    boost::asio::post(timer->get_executor(), [st = state_, timer] {
      std::lock_guard inner(st->mutex);
      if (st->sleepers.contains(timer)) timer->cancel();
    });
  }
}

awaitable<bool> stop_source::sleep_until(steady_clock::time_point t) const {
  auto st = state_;
  if (st->stopped.load(std::memory_order_acquire)) co_return false;
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, t);
  {
    std::lock_guard lock(st->mutex);
    if (st->stopped.load(std::memory_order_acquire)) co_return false;
    st->sleepers.insert(&timer);
  }
  boost::system::error_code ec;
  co_await timer.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  {
    std::lock_guard lock(st->mutex);
    st->sleepers.erase(&timer);
  }
  if (st->stopped.load(std::memory_order_acquire)) co_return false;
  // Not our stop: the caller's own cancellation (e.g. a timeout around us) must propagate.
  if (ec) throw boost::system::system_error(ec);
  co_return true;
}

awaitable<bool> stop_source::sleep_for(steady_clock::duration d) const {
  return sleep_until(steady_clock::now() + d);
}

awaitable<void> stop_source::wait() const {
  for (;;) {
    // Not `while (co_await ...)`: GCC 12 miscompiles a co_await in a loop condition (SIGILL).
    bool slept = co_await sleep_until(steady_clock::time_point::max());
    if (!slept) co_return;
  }
}

awaitable<void> stop_on_signals(stop_source stop, std::vector<int> signals) {
  // By value: the coroutine starts later, after a braced list at the call site is gone.
  boost::asio::signal_set set(co_await boost::asio::this_coro::executor);
  for (int s : signals) set.add(s);
  auto first = co_await until_stopped(set.async_wait(boost::asio::use_awaitable), stop);
  if (!first) co_return;  // stopped by someone else
  log::info("engine", "signal ", *first, " received: stopping gracefully (send it again to exit at once)");
  stop.request_stop();
  // `set` is destroyed here, which gives the signals their default action back.
}

}  // namespace sagaflow
