// Settling tasks: coalesced acknowledgements, and retry and dead-letter scripts retried until
// Redis has taken them or the lease has run out.
#include "settler.hpp"

#include <sagaflow/engine/log.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <limits>

namespace sagaflow::tasks {

using std::chrono::milliseconds;

bool is_closed(const std::exception& e) {
  auto* se = dynamic_cast<const boost::system::system_error*>(&e);
  return se && se->code() == transport::error::closed;
}

namespace {
// Sorts `items` by their stream ids, ascending, parsing each id once (settle.lua bisects them).
template <typename T, typename IdOf>
void sort_by_stream_id(std::vector<T>& items, IdOf id_of) {
  if (items.size() < 2) return;
  using key = std::pair<std::uint64_t, std::uint64_t>;
  std::vector<std::pair<key, std::size_t>> order;
  order.reserve(items.size());
  bool sorted = true;
  for (std::size_t i = 0; i < items.size(); ++i) {
    auto id = transport::parse_stream_id(id_of(items[i])).value_or(key{});
    if (i > 0 && id < order.back().first) sorted = false;
    order.emplace_back(id, i);
  }
  if (sorted) return;
  std::sort(order.begin(), order.end());
  std::vector<T> out;
  out.reserve(items.size());
  for (auto& [id, i] : order) out.push_back(std::move(items[i]));
  items.swap(out);
}
}  // namespace

void settler::complete(queue_state& q, const fetched& item, const envelope& task,
                       const std::optional<boost::json::value>& result) {
  auto& mine = queued_[&q];
  std::string json = result ? boost::json::serialize(*result) : std::string();
  if (!task.headers.empty()) {  // the usual task has none: no reply to build
    std::vector<std::pair<std::string, std::string>> outcome{{"result", json}};
    if (auto r = reply_for(task, "completed", std::move(outcome))) mine.replies.push_back(std::move(*r));
  }
  if (result) mine.results.emplace_back(task.id, std::move(json));
  mine.acks[item.stream].push_back(item.entry.id);
  start_flush();
}

void settler::schedule(queue_state& q, const fetched& item, const envelope& task, milliseconds delay, bool hand_back) {
  std::int64_t due = unix_now_ms() + 1 + delay.count();  // +1: the clock is truncated to ms; never early
  queued_[&q].retries[item.stream].push_back({item.entry.id, due, task.to_delayed_member(), hand_back});
  start_flush();
}

std::optional<settler::reply> settler::reply_for(const envelope& task, std::string_view status,
                                                 std::vector<std::pair<std::string, std::string>> more) {
  auto to = task.headers.find(std::string(reply_to_header));
  if (to == task.headers.end() || to->second.empty()) return std::nullopt;
  reply r{to->second, {{"task", task.id}, {"status", std::string(status)}}};
  if (auto key = task.headers.find(std::string(reply_key_header)); key != task.headers.end())
    r.fields.emplace_back("key", key->second);
  for (auto it = task.headers.lower_bound(std::string(reply_field_prefix));
       it != task.headers.end() && it->first.starts_with(reply_field_prefix); ++it)
    if (it->first.size() > reply_field_prefix.size())
      r.fields.emplace_back(it->first.substr(reply_field_prefix.size()), it->second);
  for (auto& f : more) r.fields.push_back(std::move(f));
  return r;
}

void settler::start_flush() {
  if (flushing_) return;
  flushing_ = true;
  boost::asio::co_spawn(state_.strand, flush_loop(), boost::asio::detached);
}

awaitable<void> settler::flush() {
  if (!flushing_) {
    flushing_ = true;
    co_await flush_loop();
  }
  while (flushing_) co_await flushed_.wait();
}

// One round trip per round: the results, then one settle.lua call per stream for its completed
// and failed entries. A failed round is tried again with backoff (it is idempotent: the script
// acknowledges first and moves nothing no longer pending, and removing an entry twice changes
// nothing); after a lease's worth of failures its entries are let go to recovery, which runs
// them again (at least once).
awaitable<void> settler::flush_loop() {
  milliseconds delay{0};
  std::uint32_t failures = 0;
  bool scripts_loaded = false;
  steady_clock::time_point failing_since;
  for (;;) {
    round now;
    now.swap(queued_);
    if (now.empty()) break;
    transport::request req;
    std::vector<std::size_t> settle_replies;  // index of each settle call's reply, in round order
    std::size_t entries = 0;
    // Results and replies before the settlement: a task whose settlement is lost runs again and
    // replies again, rather than settling without having replied.
    for (auto& [q, mine] : now) {
      for (auto& [id, json] : mine.results) broker::add_result(req, q->keys, id, json, state_.options.result_ttl);
      for (auto& r : mine.replies) {
        std::vector<transport::field_view> fields;
        for (auto& [k, v] : r.fields) fields.push_back({k, v});
        transport::add_xadd(req, r.stream, fields);
      }
    }
    std::vector<broker::retry_item> items;
    for (auto& [q, mine] : now)
      for (std::size_t p = 0; p < priority_count; ++p) {
        auto& acks = mine.acks[p];
        auto& retries = mine.retries[p];
        if (acks.empty() && retries.empty()) continue;
        sort_by_stream_id(acks, [](const std::string& id) -> const std::string& { return id; });
        sort_by_stream_id(retries, [](const scheduled& r) -> const std::string& { return r.entry_id; });
        items.clear();
        for (auto& r : retries) items.push_back({r.entry_id, r.due_ms, r.member});
        settle_replies.push_back(req.size());
        broker::add_settle(req, q->keys, p, acks, items);
        entries += acks.size() + retries.size();
      }
    std::string failure;
    bool closed = false;
    try {
      auto replies = co_await state_.broker->connection().exec(std::move(req));
      if (broker::needs_scripts(replies) && !scripts_loaded) {
        scripts_loaded = true;  // once per failing stretch: a second NOSCRIPT in a row is a failure
        co_await state_.broker->load_scripts();
        put_back(now);
        continue;
      }
      for (auto& r : replies)
        if (r.is_error() && failure.empty()) failure = r.text;
      if (failure.empty()) count_moved(now, replies, settle_replies);
    } catch (const std::exception& e) {
      closed = is_closed(e);
      failure = log::error_text(e);
      if (failure.empty()) failure = "unknown error";
    }
    auto let_go = [&] {
      for (auto& [q, mine] : now)
        for (std::size_t p = 0; p < priority_count; ++p) {
          for (auto& id : mine.acks[p]) q->owned[p].erase(id);
          for (auto& r : mine.retries[p]) q->owned[p].erase(r.entry_id);
        }
    };
    if (failure.empty()) {
      failures = 0;
      scripts_loaded = false;  // a later restart of Redis forgets them again
      delay = milliseconds(0);
      let_go();
      continue;
    }
    if (failures++ == 0) failing_since = steady_clock::now();
    delay = settle_backoff.delay(failures, state_.random, delay);
    if (closed || steady_clock::now() + delay >= failing_since + state_.options.lease) {
      state_.stats.failed_to_settle += entries;
      let_go();
      log::error("worker", "settling tasks (acknowledgements, retries) failed: ", failure,
                 "; they stay pending and are recovered after the lease");
      failures = 0;
      continue;
    }
    ++state_.stats.settle_retries;
    if (failures == 1) log::warn("worker", "settling tasks (acknowledgements, retries) failed: ", failure, "; retrying");
    put_back(now);
    co_await sleep_for(delay);
  }
  flushing_ = false;
  flushed_.notify_all();
}

// A round Redis has taken: count what each settle call moved and wake the promoters.
void settler::count_moved(round& r, const transport::response& replies, const std::vector<std::size_t>& settle_replies) {
  std::size_t next = 0;
  for (auto& [q, mine] : r)
    for (std::size_t p = 0; p < priority_count; ++p) {
      auto& retries = mine.retries[p];
      if (mine.acks[p].empty() && retries.empty()) continue;
      auto answer = broker::settle_reply(replies.at(settle_replies.at(next++)), retries.size());
      auto earliest = std::numeric_limits<std::int64_t>::max();
      for (std::size_t i = 0; i < retries.size(); ++i) {
        if (!answer.moved[i]) continue;
        auto& done = retries[i];
        ++(done.hand_back ? state_.stats.handed_back : state_.stats.retried);
        earliest = std::min(earliest, done.due_ms);
      }
      if (earliest != std::numeric_limits<std::int64_t>::max())
        q->wake_promoter(steady_clock::now() + milliseconds(std::max<std::int64_t>(0, earliest - unix_now_ms())));
    }
}

// Puts a round back in front of what was queued meanwhile, to be sent again.
void settler::put_back(round& r) {
  for (auto& [q, mine] : r) {
    auto& now = queued_[q];
    now.results.insert(now.results.begin(), std::make_move_iterator(mine.results.begin()),
                       std::make_move_iterator(mine.results.end()));
    now.replies.insert(now.replies.begin(), std::make_move_iterator(mine.replies.begin()),
                       std::make_move_iterator(mine.replies.end()));
    for (std::size_t p = 0; p < priority_count; ++p) {
      now.acks[p].insert(now.acks[p].begin(), mine.acks[p].begin(), mine.acks[p].end());
      now.retries[p].insert(now.retries[p].begin(), mine.retries[p].begin(), mine.retries[p].end());
    }
  }
}

awaitable<void> settler::bury(queue_state& q, const fetched& item, const envelope* task, std::string_view reason,
                              const std::string& error) {
  std::string packed;
  std::vector<transport::field_view> fields;
  if (task) {
    packed = task->encode();
    fields.push_back({entry_field, packed});
  } else {
    for (auto& [k, v] : item.entry.fields) fields.push_back({k, v});
  }
  burial why{.reason = reason, .error = error, .attempts = task ? task->attempt : 0, .worker = state_.options.consumer};
  auto step = [&]() { return state_.broker->dead_letter(q.keys, item.stream, item.entry.id, fields, why); };
  std::string what = "dead-lettering entry " + item.entry.id;
  auto moved = co_await settle(q, item, step, what);
  if (moved.value_or(false)) {
    ++state_.stats.dead;
    std::vector<std::pair<std::string, std::string>> why_dead{{"reason", std::string(reason)}, {"error", error}};
    if (auto r = task ? reply_for(*task, "dead", std::move(why_dead)) : std::nullopt) {
      std::vector<transport::field_view> fields;
      for (auto& [k, v] : r->fields) fields.push_back({k, v});
      try {
        co_await transport::xadd(state_.broker->connection(), r->stream, fields);
      } catch (const std::exception& e) {
        log::error("worker", "the reply to dead task ", task->id, " was lost: ", log::error_text(e));
      }
    }
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
  milliseconds delay{0};
  std::optional<bool> answer;
  for (std::uint32_t attempt = 1;; ++attempt) {
    try {
      answer = co_await step();
      break;
    } catch (const std::exception& e) {
      delay = settle_backoff.delay(attempt, state_.random, delay);
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
