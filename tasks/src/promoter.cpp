// Promoting due tasks, in batches, sleeping until the next one is due.
#include "promoter.hpp"

#include <sagaflow/engine/log.hpp>

namespace sagaflow::tasks {

using std::chrono::milliseconds;

awaitable<void> promoter::run() {
  while (!stopped_) {
    auto planned = steady_clock::now() + state_.options.promoter_interval;
    try {
      auto now = unix_now_ms();
      auto done = co_await state_.broker->promote(q_.keys, now, batch);
      if (done.moved == static_cast<std::int64_t>(batch)) continue;  // more are due
      if (done.next_due_ms) {
        auto in = milliseconds(std::max<std::int64_t>(0, *done.next_due_ms - unix_now_ms()));
        planned = std::min(planned, steady_clock::now() + in);
      }
    } catch (const std::exception& e) {
      log::warn("worker", "promoter of queue ", q_.config.name, ": ", log::error_text(e));
    }
    q_.promoter_next = planned;
    while (!stopped_ && steady_clock::now() < q_.promoter_next) co_await q_.promoter_wake.sleep_until(q_.promoter_next);
    q_.promoter_next = steady_clock::time_point::max();
  }
}

}  // namespace sagaflow::tasks
