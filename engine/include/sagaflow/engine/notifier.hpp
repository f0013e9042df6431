// A condition variable for coroutines that share one strand: waiters re-check their condition
// after every wake-up, so a notification needs no payload and no lock.
#pragma once

#include <sagaflow/engine/coro.hpp>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>

namespace sagaflow {

class notifier {
 public:
  explicit notifier(const boost::asio::any_io_executor& ex) : timer_(ex, steady_clock::time_point::max()) {}

  // Wakes every coroutine suspended in wait() now. Not sticky: a later wait() waits again.
  void notify_all() { timer_.cancel(); }

  // Suspends until the next notify_all(). Call it only from the strand that notifies.
  awaitable<void> wait() {
    boost::system::error_code ec;
    co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  }

 private:
  boost::asio::steady_timer timer_;  // never expires: only cancel() completes its waits
};

// One coroutine's sleep that another can cut short: a background loop waits for its next
// round, and wake() (new work, or stop) starts the round now.
class wakeup {
 public:
  explicit wakeup(const boost::asio::any_io_executor& ex) : timer_(ex) {}

  void wake() { timer_.cancel(); }

  // Returns at `t` or at wake(), whichever is first. One sleeper at a time.
  awaitable<void> sleep_until(steady_clock::time_point t) {
    timer_.expires_at(t);
    boost::system::error_code ec;
    co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  }

 private:
  boost::asio::steady_timer timer_;
};

}  // namespace sagaflow
