// Recovery: XPENDING for entries idle past the lease, XCLAIM of as many as this worker can start.
// (Not XAUTOCLAIM: it does not tell how often an entry was delivered, which the delivery budget
// needs, and it cannot leave alone the entries this worker holds.)
#include "recoverer.hpp"

#include <sagaflow/engine/log.hpp>

namespace sagaflow::tasks {

awaitable<void> recoverer::run() {
  while (!stopped_) {
    for (auto& q : state_.queues)
      for (std::size_t p = 0; p < priority_count && !stopped_; ++p) {
        try {
          co_await recover(*q, p);
        } catch (const std::exception& e) {
          log::warn("worker", "recovering ", q->keys.streams[p], ": ", log::error_text(e));
        }
      }
    if (stopped_) break;
    co_await pause_.sleep_until(steady_clock::now() + state_.options.recover_interval);
  }
}

awaitable<void> recoverer::recover(queue_state& q, std::size_t p) {
  auto& options = state_.options;
  auto stale = co_await state_.broker->pending(q.keys, p, 100, options.lease);
  // Take over no more than this worker can start now: a recovered task waiting in the local
  // buffer would hold back a more urgent task that the fetcher cannot read while the buffer
  // fills the free slots. What is left is taken on a later pass, here or by another worker.
  std::size_t can_start = q.free_slots();
  std::vector<std::string> take, poison;
  for (auto& e : stale) {
    if (q.owned[p].contains(e.id)) continue;
    if (e.deliveries >= static_cast<std::int64_t>(options.delivery_budget))
      poison.push_back(e.id);
    else if (take.size() < can_start)
      take.push_back(e.id);
  }
  if (!take.empty()) {
    auto claimed = co_await state_.broker->claim(q.keys, p, options.consumer, options.lease, take);
    if (!claimed.empty()) {
      state_.stats.recovered += claimed.size();
      log::info("worker", "took over ", claimed.size(), " task(s) of a silent worker from ", q.keys.streams[p]);
      std::vector<transport::stream_batch> batch{{q.keys.streams[p], std::move(claimed)}};
      processor_.accept(q, std::move(batch));
    }
  }
  if (!poison.empty()) {
    auto claimed = co_await state_.broker->claim(q.keys, p, options.consumer, options.lease, poison);
    std::string why = "delivered " + std::to_string(options.delivery_budget) + " times without being settled";
    for (auto& e : claimed) {
      fetched item{p, std::move(e)};
      q.owned[p].insert(item.entry.id);
      std::optional<envelope> task;
      try {
        task = envelope::from_fields(item.entry.fields);
      } catch (const std::invalid_argument&) {
      }
      co_await settler_.bury(q, item, task ? &*task : nullptr, "delivery limit", why);
    }
  }
}

}  // namespace sagaflow::tasks
