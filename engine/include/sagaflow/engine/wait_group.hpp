// Coroutines started together and awaited together: a component starts its background loops
// in a wait_group and, to stop, asks them to end and awaits wait() instead of polling.
#pragma once

#include <sagaflow/engine/notifier.hpp>

#include <string>

namespace sagaflow {

class wait_group {
 public:
  // `strand`: every spawn() and wait() of this group runs on it.
  explicit wait_group(const boost::asio::any_io_executor& strand) : strand_(strand), done_(strand) {}

  // Starts `op` on the strand; an exception that ends it is logged with `name` and counted
  // (report_coroutine_failure, as spawn() does). The group must outlive `op`.
  void spawn(awaitable<void> op, std::string name) {
    ++running_;
    boost::asio::co_spawn(strand_, std::move(op), [this, name = std::move(name)](std::exception_ptr e) {
      if (e) report_coroutine_failure(e, name);
      if (--running_ == 0) done_.notify_all();
    });
  }

  // Completes once every coroutine spawned so far has ended.
  awaitable<void> wait() {
    while (running_ > 0) co_await done_.wait();
  }

  std::size_t running() const noexcept { return running_; }

 private:
  boost::asio::any_io_executor strand_;
  notifier done_;
  std::size_t running_ = 0;
};

}  // namespace sagaflow
