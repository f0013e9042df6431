// The recoverer takes over the tasks of workers that went silent: entries pending for longer
// than the lease (their owner no longer renews them). Such a redelivery is not a failed attempt;
// it counts against the delivery budget instead, and an entry delivered that often is
// dead-lettered ("delivery limit"): it keeps killing workers.
#pragma once

#include "processor.hpp"

namespace sagaflow::tasks {

class recoverer {
 public:
  recoverer(worker_state& state, processor& proc, settler& settle)
      : state_(state), processor_(proc), settler_(settle), pause_(state.strand) {}
  awaitable<void> run();
  void stop() {
    stopped_ = true;
    pause_.wake();
  }

 private:
  awaitable<void> recover(queue_state& q, std::size_t p);

  worker_state& state_;
  processor& processor_;
  settler& settler_;
  wakeup pause_;
  bool stopped_ = false;
};

}  // namespace sagaflow::tasks
