// Renewing leases: one renew script call per stream with entries held here.
#include "lease_renewer.hpp"

#include <sagaflow/engine/log.hpp>

namespace sagaflow::tasks {

awaitable<void> lease_renewer::run() {
  while (!stopped_) {
    co_await pause_.sleep_until(steady_clock::now() + state_.options.lease / 3);
    if (stopped_) break;
    for (auto& q : state_.queues)
      for (std::size_t p = 0; p < priority_count; ++p) {
        if (q->owned[p].empty()) continue;
        std::vector<std::string> ids(q->owned[p].begin(), q->owned[p].end());
        try {
          co_await state_.broker->renew(q->keys, p, state_.options.consumer, ids);
        } catch (const std::exception& e) {
          log::warn("worker", "renewing leases: ", log::error_text(e));
        }
      }
  }
}

}  // namespace sagaflow::tasks
