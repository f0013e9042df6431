// The settler ends a task's stay in its stream: completed (acknowledged and removed) or moved
// to the delayed set (a retry, or a task no handler here knows), both by one settle.lua call per
// stream per round trip, results written first in the same pipeline; or buried in the dead
// letters (one script call each: rare). A failed settlement is retried with backoff across
// reconnects, because each step changes nothing once the entry is no longer pending; after a
// lease's worth of failures the entry is let go, so that recovery takes it over: a task is never
// orphaned by its owner.
#pragma once

#include "worker_state.hpp"

#include <optional>

namespace sagaflow::tasks {

class settler {
 public:
  explicit settler(worker_state& state) : state_(state), flushed_(state.strand) {}

  // Queues the acknowledgement (and the handler's result); returns at once.
  void complete(queue_state& q, const fetched& item, const envelope& task, const std::optional<boost::json::value>& result);
  // Queues the move of the entry to the delayed set as `task`, due after `delay`: a retry, or
  // (`hand_back`) a task no handler here knows; returns at once.
  void schedule(queue_state& q, const fetched& item, const envelope& task, std::chrono::milliseconds delay,
                bool hand_back = false);
  // Dead-letters the entry: `task`'s fields, or the entry's raw fields when it is not a task.
  awaitable<void> bury(queue_state& q, const fetched& item, const envelope* task, std::string_view reason,
                       const std::string& error);

  // Sends what is queued and completes when nothing is left (for the stop).
  awaitable<void> flush();

 private:
  struct scheduled {
    std::string entry_id;
    std::int64_t due_ms;
    std::string member;
    bool hand_back;
  };
  // What one queue has to settle, by priority stream, sent together in one round trip.
  // A reply to a task's reply_to stream (see reply_to_header): the stream and its fields.
  struct reply {
    std::string stream;
    std::vector<std::pair<std::string, std::string>> fields;
  };
  struct queued {
    std::array<std::vector<std::string>, priority_count> acks;
    std::array<std::vector<scheduled>, priority_count> retries;
    std::vector<std::pair<std::string, std::string>> results;  // task id, JSON
    std::vector<reply> replies;
  };
  static std::optional<reply> reply_for(const envelope& task, std::string_view status,
                                        std::vector<std::pair<std::string, std::string>> more);
  using round = std::unordered_map<queue_state*, queued>;

  void start_flush();
  awaitable<void> flush_loop();
  void count_moved(round& r, const transport::response& replies, const std::vector<std::size_t>& settle_replies);
  void put_back(round& r);
  template <typename Step>
  awaitable<std::optional<bool>> settle(queue_state& q, const fetched& item, Step step, const std::string& what);
  void release(queue_state& q, const fetched& item) { q.owned[item.stream].erase(item.entry.id); }

  worker_state& state_;
  round queued_;
  bool flushing_ = false;
  notifier flushed_;
};

// Settlement retries: quick at first (a dropped connection is back in milliseconds), then patient
// (a restarted Redis loading its data).
inline constexpr backoff_policy settle_backoff{.base = std::chrono::milliseconds(50), .multiplier = 2.0,
                                               .cap = std::chrono::milliseconds(2000), .jitter = jitter::equal};

bool is_closed(const std::exception& e);

}  // namespace sagaflow::tasks
