// The promoter of one queue moves tasks whose time has come (retries, delayed and scheduled
// tasks) from the delayed set back to their priority stream. It looks when the earliest one is
// due, when the settler schedules one earlier than that, and at least every promoter_interval
// (other workers schedule tasks too).
#pragma once

#include "worker_state.hpp"

namespace sagaflow::tasks {

class promoter {
 public:
  promoter(worker_state& state, queue_state& q) : state_(state), q_(q) {}
  awaitable<void> run();
  void stop() {
    stopped_ = true;
    q_.promoter_wake.wake();
  }

 private:
  static constexpr std::size_t batch = 500;
  worker_state& state_;
  queue_state& q_;
  bool stopped_ = false;
};

}  // namespace sagaflow::tasks
