// The lease renewer keeps the tasks this worker holds (buffered, running, settling) from being
// taken over: every lease/3 it resets their idle time in Redis. A worker that stops renewing
// (killed, paused, partitioned) loses its tasks to another worker's recoverer after the lease.
#pragma once

#include "worker_state.hpp"

namespace sagaflow::tasks {

class lease_renewer {
 public:
  explicit lease_renewer(worker_state& state) : state_(state), pause_(state.strand) {}
  awaitable<void> run();
  void stop() {
    stopped_ = true;
    pause_.wake();
  }

 private:
  worker_state& state_;
  wakeup pause_;
  bool stopped_ = false;
};

}  // namespace sagaflow::tasks
