// The task queue's Redis access: each method is one command, one pipeline or one script call.
#include "scripts.hpp"

#include <sagaflow/tasks/broker.hpp>

#include <charconv>

namespace sagaflow::tasks {

awaitable<std::string> broker::enqueue(const queue_keys& q, const envelope& task, std::optional<std::int64_t> due_ms,
                                       std::string_view idempotency_key, std::chrono::milliseconds idempotency_ttl) {
  auto& stream = q.streams[static_cast<std::size_t>(task.priority)];
  std::string packed;
  if (!due_ms) packed = task.encode();  // a delayed task travels as its member only
  if (!due_ms && idempotency_key.empty()) {
    transport::field_view fields[] = {{entry_field, packed}};
    co_await transport::xadd(*connection_, stream, fields);
    co_return task.id;
  }
  std::string uniq = q.uniq(idempotency_key);
  std::string ttl = idempotency_key.empty() ? "0" : std::to_string(std::max<std::int64_t>(1, idempotency_ttl.count()));
  std::string due_text = std::to_string(due_ms.value_or(0));
  std::string member = due_ms ? task.to_delayed_member() : std::string();
  std::vector<std::string_view> args{due_ms ? "delay" : "now", due_text, ttl, task.id, member};
  if (!due_ms) {
    args.push_back(entry_field);
    args.push_back(packed);
  }
  std::string_view keys[] = {stream, q.delayed, uniq};
  auto reply = co_await transport::evalsha(*connection_, scripts::enqueue(), keys, args);
  if (reply.elements.size() != 2) throw boost::system::system_error(transport::error::unexpected_reply, "enqueue script");
  co_return std::move(reply.elements[1].text);
}

void broker::add_enqueue(transport::request& req, const queue_keys& q, const envelope& task) {
  auto packed = task.encode();
  transport::field_view fields[] = {{entry_field, packed}};
  transport::add_xadd(req, q.streams[static_cast<std::size_t>(task.priority)], fields);
}

awaitable<void> broker::create_groups(const queue_keys& q) {
  for (auto& stream : q.streams) co_await transport::xgroup_create(*connection_, stream, consumer_group, "0");
}

awaitable<std::vector<transport::stream_batch>> broker::fetch(const queue_keys& q, std::span<const std::size_t> order,
                                                              std::string_view consumer, std::size_t count) {
  fetch_plan plan;
  co_return co_await fetch(q, order, consumer, count, plan);
}

static void add_backlog(transport::request& req, const queue_keys& q) {
  auto& script = scripts::backlog();
  req.begin(3 + priority_count + 1).arg("EVALSHA").arg(script.sha1()).arg(priority_count);
  for (auto& stream : q.streams) req.arg(stream);
  req.arg(consumer_group);
}

static broker::fetch_plan plan_of(const transport::resp::value& reply) {
  if (reply.is_error()) throw transport::server_error("EVALSHA backlog", reply.text);
  if (reply.elements.size() != priority_count)
    throw boost::system::system_error(transport::error::unexpected_reply, "backlog script");
  broker::fetch_plan plan;
  for (std::size_t p = 0; p < priority_count; ++p) plan.lags[p] = transport::as_integer(reply.elements[p], "backlog script");
  plan.known = true;
  return plan;
}

awaitable<broker::fetch_plan> broker::backlog(const queue_keys& q) {
  std::string_view keys[priority_count];
  for (std::size_t p = 0; p < priority_count; ++p) keys[p] = q.streams[p];
  std::string_view args[] = {consumer_group};
  auto reply = co_await transport::evalsha(*connection_, scripts::backlog(), keys, args);
  co_return plan_of(reply);
}

awaitable<std::vector<transport::stream_batch>> broker::fetch(const queue_keys& q, std::span<const std::size_t> order,
                                                              std::string_view consumer, std::size_t count,
                                                              fetch_plan& plan) {
  // A plan asked for just now is as fresh as a read's own view: its empty streams are skipped.
  bool fresh = !plan.known;
  if (fresh) plan = co_await backlog(q);
  transport::request req;
  std::array<std::size_t, priority_count> read_from{};  // the stream of each read, in order
  std::size_t reads = 0;
  std::size_t uncovered = count;  // what the planned lags of the streams read so far leave
  for (auto p : order) {
    auto lag = plan.lags.at(p);
    if (fresh && lag == 0) continue;
    transport::stream_offset from[] = {{q.streams.at(p), ">"}};
    transport::add_xreadgroup(req, consumer_group, consumer, from, {.count = uncovered});
    read_from.at(reads++) = p;
    if (lag < 0 || static_cast<std::size_t>(lag) >= uncovered) break;
    uncovered -= static_cast<std::size_t>(lag);
  }
  std::vector<transport::stream_batch> out;
  if (reads == 0) co_return out;  // a fresh plan saw nothing new: no round trip
  add_backlog(req, q);
  auto replies = co_await connection_->exec(std::move(req));
  // The plan first: a read that fails still leaves a usable one (or none, asked for next time).
  try {
    plan = plan_of(replies.at(reads));
  } catch (const std::exception&) {
    plan.known = false;  // e.g. NOSCRIPT after a restart: evalsha() in backlog() loads it
  }
  std::size_t kept = 0;
  std::array<std::vector<std::string>, priority_count> excess;
  for (std::size_t i = 0; i < reads; ++i) {
    auto& reply = replies[i];
    if (reply.is_error()) throw transport::server_error("XREADGROUP", reply.text);
    for (auto& batch : transport::decode_stream_batches(std::move(reply))) {
      if (batch.entries.empty()) continue;
      auto p = read_from[i];
      auto room = count - kept;
      if (batch.entries.size() > room) {
        for (std::size_t k = room; k < batch.entries.size(); ++k) excess[p].push_back(std::move(batch.entries[k].id));
        batch.entries.resize(room);
      }
      kept += batch.entries.size();
      if (!batch.entries.empty()) out.push_back(std::move(batch));
    }
  }
  for (std::size_t p = 0; p < priority_count; ++p) {
    if (excess[p].empty()) continue;
    try {
      auto released = co_await release(q, p, excess[p]);
      if (plan.known && plan.lags[p] >= 0) plan.lags[p] += released;  // the plan was answered before
    } catch (const std::exception&) {
      // They stay pending for `consumer`, unowned: recovery takes them over after the lease.
    }
  }
  co_return out;
}

awaitable<std::vector<transport::stream_batch>> broker::wait_for_tasks(transport::connection& blocking,
                                                                      const queue_keys& q, std::string_view consumer,
                                                                      std::chrono::milliseconds block) {
  transport::stream_offset from[priority_count];
  for (std::size_t p = 0; p < priority_count; ++p) from[p] = {q.streams[p], ">"};
  transport::xreadgroup_options options{.count = 1, .block = block};
  co_return co_await transport::xreadgroup(blocking, consumer_group, consumer, from, options);
}

void broker::add_result(transport::request& req, const queue_keys& q, std::string_view task_id, std::string_view json,
                        std::chrono::milliseconds ttl) {
  req.push("SET", q.result(task_id), json, "PX", std::to_string(ttl.count()));
}

void broker::add_settle(transport::request& req, const queue_keys& q, std::size_t p,
                        std::span<const std::string> completed, std::span<const retry_item> retries) {
  auto& script = scripts::settle();
  req.begin(7 + completed.size() + 3 * retries.size()).arg("EVALSHA").arg(script.sha1()).arg(2);
  req.arg(q.streams[p]).arg(q.delayed).arg(consumer_group).arg(completed.size());
  for (auto& id : completed) req.arg(id);
  for (auto& item : retries) req.arg(item.entry_id).arg(item.due_ms).arg(item.member);
}

broker::settled broker::settle_reply(const transport::resp::value& reply, std::size_t retries) {
  if (reply.is_error()) throw transport::server_error("EVALSHA settle", reply.text);
  if (reply.elements.size() != 1 + retries)
    throw boost::system::system_error(transport::error::unexpected_reply, "settle script");
  settled out;
  out.acknowledged = transport::as_integer(reply.elements[0], "settle script");
  out.moved.reserve(retries);
  for (std::size_t i = 1; i < reply.elements.size(); ++i)
    out.moved.push_back(transport::as_integer(reply.elements[i], "settle script") == 1);
  return out;
}

awaitable<std::vector<bool>> broker::retry(const queue_keys& q, std::size_t p, std::span<const retry_item> items) {
  for (int round = 0;; ++round) {
    transport::request req;
    add_settle(req, q, p, {}, items);
    auto replies = co_await connection_->exec(std::move(req));
    if (round == 0 && needs_scripts(replies)) {
      co_await load_scripts();
      continue;
    }
    co_return settle_reply(replies.at(0), items.size()).moved;
  }
}

bool broker::needs_scripts(const transport::response& replies) {
  for (auto& r : replies)
    if (r.is_error() && r.text.starts_with("NOSCRIPT")) return true;
  return false;
}

awaitable<void> broker::load_scripts() {
  transport::request req;
  for (auto* s : {&scripts::enqueue(), &scripts::backlog(), &scripts::settle(), &scripts::dead(), &scripts::promote(),
                  &scripts::renew(), &scripts::release(), &scripts::requeue_dead()})
    req.push("SCRIPT", "LOAD", s->source());
  auto replies = co_await connection_->exec(std::move(req));
  for (auto& r : replies)
    if (r.is_error()) throw transport::server_error("SCRIPT LOAD", r.text);
}

awaitable<bool> broker::dead_letter(const queue_keys& q, std::size_t p, std::string_view entry_id,
                                    std::span<const transport::field_view> fields, const burial& why) {
  std::string attempts = std::to_string(why.attempts);
  std::string at = std::to_string(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  std::vector<std::string_view> args{consumer_group, entry_id};
  args.reserve(2 + 2 * fields.size() + 12);
  for (auto& f : fields) {
    args.push_back(f.name);
    args.push_back(f.value);
  }
  for (std::string_view s : {dead_field::reason, why.reason, dead_field::error, why.error, dead_field::attempts,
                             std::string_view(attempts), dead_field::at, std::string_view(at), dead_field::worker,
                             why.worker, dead_field::entry, entry_id})
    args.push_back(s);
  std::string_view keys[] = {q.streams[p], q.dead};
  auto reply = co_await transport::evalsha(*connection_, scripts::dead(), keys, args);
  co_return transport::as_integer(reply, "dead-letter script") == 1;
}

awaitable<promotion> broker::promote(const queue_keys& q, std::int64_t now_ms, std::size_t limit) {
  std::string_view keys[] = {q.delayed, q.streams[0], q.streams[1], q.streams[2], q.streams[3], q.dead};
  std::string now = std::to_string(now_ms);
  std::string limit_text = std::to_string(limit);
  std::string_view args[] = {now, limit_text};
  auto reply = co_await transport::evalsha(*connection_, scripts::promote(), keys, args);
  if (reply.elements.size() != 2) throw boost::system::system_error(transport::error::unexpected_reply, "promote script");
  promotion out;
  out.moved = transport::as_integer(reply.elements[0], "promote script: moved");
  auto& next = reply.elements[1].text;
  std::int64_t next_ms = -1;
  auto [ptr, ec] = std::from_chars(next.data(), next.data() + next.size(), next_ms);
  if (ec != std::errc{}) throw boost::system::system_error(transport::error::unexpected_reply, "promote script: next due");
  if (next_ms >= 0) out.next_due_ms = next_ms;
  co_return out;
}

awaitable<std::vector<std::string>> broker::renew(const queue_keys& q, std::size_t p, std::string_view consumer,
                                                  std::span<const std::string> entry_ids) {
  std::vector<std::string_view> args{consumer_group, consumer};
  args.insert(args.end(), entry_ids.begin(), entry_ids.end());
  std::string_view keys[] = {q.streams[p]};
  auto reply = co_await transport::evalsha(*connection_, scripts::renew(), keys, args);
  std::vector<std::string> renewed;
  renewed.reserve(reply.elements.size());
  for (auto& e : reply.elements) renewed.push_back(std::move(e.text));
  co_return renewed;
}

awaitable<std::int64_t> broker::release(const queue_keys& q, std::size_t p, std::span<const std::string> entry_ids) {
  std::vector<std::string_view> args{consumer_group};
  args.insert(args.end(), entry_ids.begin(), entry_ids.end());
  std::string_view keys[] = {q.streams[p]};
  auto reply = co_await transport::evalsha(*connection_, scripts::release(), keys, args);
  co_return transport::as_integer(reply, "release script");
}

awaitable<std::vector<transport::pending_entry>> broker::pending(const queue_keys& q, std::size_t p, std::size_t count,
                                                                 std::chrono::milliseconds min_idle,
                                                                 std::string_view consumer) {
  transport::pending_range range{.count = count, .consumer = consumer};
  if (min_idle.count() > 0) range.min_idle = min_idle;
  co_return co_await transport::xpending(*connection_, q.streams[p], consumer_group, range);
}

awaitable<std::vector<transport::stream_entry>> broker::claim(const queue_keys& q, std::size_t p,
                                                              std::string_view consumer,
                                                              std::chrono::milliseconds min_idle,
                                                              std::span<const std::string> entry_ids) {
  co_return co_await transport::xclaim(*connection_, q.streams[p], consumer_group, consumer, min_idle, entry_ids);
}

awaitable<std::optional<std::string>> broker::result(const queue_keys& q, std::string_view task_id) {
  auto key = q.result(task_id);
  auto reply = co_await connection_->call("GET", key);
  if (reply.is_null()) co_return std::nullopt;
  co_return std::move(reply.text);
}

awaitable<std::vector<transport::stream_entry>> broker::dead_letters(const queue_keys& q, std::string_view first,
                                                                     std::string_view last, std::size_t count) {
  auto reply = co_await connection_->call("XRANGE", q.dead, first, last, "COUNT", count);
  if (reply.is_error()) throw transport::server_error("XRANGE", reply.text);
  std::vector<transport::stream_entry> out;
  out.reserve(reply.elements.size());
  for (auto& raw : reply.elements) {
    transport::stream_entry entry;
    entry.id = std::move(raw.elements.at(0).text);
    auto& f = raw.elements.at(1).elements;
    for (std::size_t i = 0; i + 1 < f.size(); i += 2) entry.fields.emplace_back(std::move(f[i].text), std::move(f[i + 1].text));
    out.push_back(std::move(entry));
  }
  co_return out;
}

awaitable<std::size_t> broker::requeue_dead(const queue_keys& q, std::span<const requeue_item> items) {
  std::string_view keys[] = {q.dead, q.streams[0], q.streams[1], q.streams[2], q.streams[3]};
  static constexpr std::string_view digits[] = {"0", "1", "2", "3"};
  constexpr std::size_t per_call = 100;
  std::size_t moved = 0;
  std::vector<std::string_view> args;
  for (std::size_t first = 0; first < items.size(); first += per_call) {
    args.clear();
    for (auto& item : items.subspan(first, std::min(per_call, items.size() - first))) {
      args.push_back(item.dead_entry_id);
      args.push_back(digits[static_cast<std::size_t>(item.priority) % priority_count]);
      args.push_back(item.packed);
    }
    auto reply = co_await transport::evalsha(*connection_, scripts::requeue_dead(), keys, args);
    moved += static_cast<std::size_t>(transport::as_integer(reply, "requeue_dead script"));
  }
  co_return moved;
}

}  // namespace sagaflow::tasks
