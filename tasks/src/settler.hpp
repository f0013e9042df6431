// The settler ends a task's stay in its stream, by one of three atomic steps: completed (XACK +
// XDEL, coalesced into one pipeline per round trip, results written first), moved to the delayed
// set (a retry, or a task no handler here knows), or buried in the dead letters. A failed
// settlement is retried with backoff across reconnects, because each step changes nothing once
// the entry is no longer pending; after a lease's worth of failures the entry is let go, so that
// recovery takes it over: a task is never orphaned by its owner.
#pragma once

#include "worker_state.hpp"

#include <optional>

namespace sagaflow::tasks {

class settler {
 public:
  explicit settler(worker_state& state) : state_(state), flushed_(state.strand) {}

  // Queues the acknowledgement (and the handler's result) and returns at once.
  void complete(queue_state& q, const fetched& item, const envelope& task, const std::optional<boost::json::value>& result);
  // Moves the entry to the delayed set as `task`, due after `delay`; true when this worker did it.
  awaitable<bool> schedule(queue_state& q, const fetched& item, const envelope& task, std::chrono::milliseconds delay);
  // Dead-letters the entry: `task`'s fields, or the entry's raw fields when it is not a task.
  awaitable<void> bury(queue_state& q, const fetched& item, const envelope* task, std::string_view reason,
                       const std::string& error);

  // Sends what is queued and completes when nothing is left (for the stop).
  awaitable<void> flush();

 private:
  awaitable<void> flush_loop();
  template <typename Step>
  awaitable<std::optional<bool>> settle(queue_state& q, const fetched& item, Step step, const std::string& what);
  void release(queue_state& q, const fetched& item) { q.owned[item.stream].erase(item.entry.id); }

  struct pending_acks {
    std::array<std::vector<std::string>, priority_count> ids;
    std::vector<std::pair<std::string, std::string>> results;  // task id, JSON
  };

  worker_state& state_;
  std::unordered_map<queue_state*, pending_acks> queued_;
  bool flushing_ = false;
  notifier flushed_;
};

// Settlement retries: quick at first (a dropped connection is back in milliseconds), then patient
// (a restarted Redis loading its data).
inline constexpr backoff_policy settle_backoff{.base = std::chrono::milliseconds(50), .multiplier = 2.0,
                                               .cap = std::chrono::milliseconds(2000), .jitter = jitter::equal};

bool is_closed(const std::exception& e);

}  // namespace sagaflow::tasks
