// Settling tasks: coalesced acknowledgements, and retry and dead-letter scripts retried until
// Redis has taken them or the lease has run out.
#include "settler.hpp"

#include <sagaflow/engine/log.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json/serialize.hpp>

namespace sagaflow::tasks {

using std::chrono::milliseconds;

bool is_closed(const std::exception& e) {
  auto* se = dynamic_cast<const boost::system::system_error*>(&e);
  return se && se->code() == transport::error::closed;
}

void settler::complete(queue_state& q, const fetched& item, const envelope& task,
                       const std::optional<boost::json::value>& result) {
  auto& acks = queued_[&q];
  if (result) acks.results.emplace_back(task.id, boost::json::serialize(*result));
  acks.ids[item.stream].push_back(item.entry.id);
  if (!flushing_) {
    flushing_ = true;
    boost::asio::co_spawn(state_.strand, flush_loop(), boost::asio::detached);
  }
}

awaitable<void> settler::flush() {
  if (!flushing_) {
    flushing_ = true;
    co_await flush_loop();
  }
  while (flushing_) co_await flushed_.wait();
}

// One pipelined XACK+XDEL per stream per round, results first (an acknowledged task's result is
// already readable). A failed round is tried again with backoff (XACK and XDEL are idempotent);
// after a lease's worth of failures its entries are let go to recovery, which runs them again
// (at least once).
awaitable<void> settler::flush_loop() {
  auto random = random_source::from_entropy();
  milliseconds delay{0};
  std::uint32_t failures = 0;
  steady_clock::time_point failing_since;
  for (;;) {
    std::unordered_map<queue_state*, pending_acks> round;
    round.swap(queued_);
    transport::request req;
    for (auto& [q, acks] : round)
      for (auto& [id, json] : acks.results) broker::add_result(req, q->keys, id, json, state_.options.result_ttl);
    std::size_t entries = 0;
    for (auto& [q, acks] : round)
      for (std::size_t p = 0; p < priority_count; ++p)
        if (!acks.ids[p].empty()) {
          broker::add_complete(req, q->keys, p, acks.ids[p]);
          entries += acks.ids[p].size();
        }
    if (round.empty()) break;
    std::string failure;
    bool closed = false;
    try {
      auto replies = co_await state_.broker->connection().exec(std::move(req));
      for (auto& r : replies)
        if (r.is_error() && failure.empty()) failure = r.text;
    } catch (const std::exception& e) {
      closed = is_closed(e);
      failure = log::error_text(e);
      if (failure.empty()) failure = "unknown error";
    }
    auto let_go = [&] {
      for (auto& [q, acks] : round)
        for (std::size_t p = 0; p < priority_count; ++p)
          for (auto& id : acks.ids[p]) q->owned[p].erase(id);
    };
    if (failure.empty()) {
      failures = 0;
      delay = milliseconds(0);
      let_go();
      continue;
    }
    if (failures++ == 0) failing_since = steady_clock::now();
    delay = settle_backoff.delay(failures, random, delay);
    if (closed || steady_clock::now() + delay >= failing_since + state_.options.lease) {
      state_.stats.failed_to_settle += entries;
      let_go();
      log::error("worker", "acknowledging completed tasks failed: ", failure, "; they are redelivered after the lease");
      failures = 0;
      continue;
    }
    ++state_.stats.settle_retries;
    if (failures == 1) log::warn("worker", "acknowledging completed tasks failed: ", failure, "; retrying");
    // Put the round back in front of what completed meanwhile, and try again after the delay.
    for (auto& [q, acks] : round) {
      auto& now = queued_[q];
      now.results.insert(now.results.begin(), acks.results.begin(), acks.results.end());
      for (std::size_t p = 0; p < priority_count; ++p) now.ids[p].insert(now.ids[p].begin(), acks.ids[p].begin(), acks.ids[p].end());
    }
    co_await sleep_for(delay);
  }
  flushing_ = false;
  flushed_.notify_all();
}

awaitable<bool> settler::schedule(queue_state& q, const fetched& item, const envelope& task, milliseconds delay) {
  std::int64_t due = unix_now_ms() + 1 + delay.count();  // +1: the clock is truncated to ms; never early
  std::string member = task.to_delayed_member();
  auto step = [&]() { return state_.broker->retry(q.keys, item.stream, item.entry.id, due, member); };
  std::string what = "scheduling the retry of task " + task.id;  // named: GCC 12 and temporaries in co_await
  auto moved = co_await settle(q, item, step, what);
  if (moved.value_or(false)) q.wake_promoter(steady_clock::now() + delay);
  co_return moved.value_or(false);
}

awaitable<void> settler::bury(queue_state& q, const fetched& item, const envelope* task, std::string_view reason,
                              const std::string& error) {
  std::vector<std::string> task_fields;
  std::vector<transport::field_view> fields;
  if (task) {
    task_fields = task->to_fields();
    for (std::size_t i = 0; i + 1 < task_fields.size(); i += 2) fields.push_back({task_fields[i], task_fields[i + 1]});
  } else {
    for (auto& [k, v] : item.entry.fields) fields.push_back({k, v});
  }
  burial why{.reason = reason, .error = error, .attempts = task ? task->attempt : 0, .worker = state_.options.consumer};
  auto step = [&]() { return state_.broker->dead_letter(q.keys, item.stream, item.entry.id, fields, why); };
  std::string what = "dead-lettering entry " + item.entry.id;
  auto moved = co_await settle(q, item, step, what);
  if (moved.value_or(false)) {
    ++state_.stats.dead;
    log::warn("worker", "dead letter: task ", task ? task->id : item.entry.id, " (", task ? task->name : std::string("?"),
              ") in queue ", q.config.name, ": ", reason, ": ", error);
  }
}

// Runs `step` (a settlement script call) until Redis has taken it. Each script first XACKs and
// changes nothing when the entry is no longer pending, so running it again after a lost reply is
// harmless. Returns the script's answer, or nothing when the entry was let go.
template <typename Step>
awaitable<std::optional<bool>> settler::settle(queue_state& q, const fetched& item, Step step, const std::string& what) {
  auto give_up = steady_clock::now() + state_.options.lease;
  auto random = random_source::from_entropy();
  milliseconds delay{0};
  std::optional<bool> answer;
  for (std::uint32_t attempt = 1;; ++attempt) {
    try {
      answer = co_await step();
      break;
    } catch (const std::exception& e) {
      delay = settle_backoff.delay(attempt, random, delay);
      if (is_closed(e) || steady_clock::now() + delay >= give_up) {
        ++state_.stats.failed_to_settle;
        log::error("worker", what, " failed: ", log::error_text(e), "; it stays pending and is recovered after the lease");
        break;
      }
      ++state_.stats.settle_retries;
      if (attempt == 1) log::warn("worker", what, " failed: ", log::error_text(e), "; retrying");
    }
    co_await sleep_for(delay);
  }
  release(q, item);
  co_return answer;
}

}  // namespace sagaflow::tasks
