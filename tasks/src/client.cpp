// The producer side over the broker: enqueue (plain XADD when it can, the enqueue script for
// delays and idempotency keys), results, and dead letter management.
#include "scripts.hpp"

#include <boost/json.hpp>

#include <sagaflow/engine/id.hpp>
#include <sagaflow/tasks/client.hpp>

namespace sagaflow::tasks {

namespace {

std::int64_t unix_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// When the task is due, or nothing if it is due now.
std::optional<std::int64_t> due_ms(const enqueue_options& o) {
  if (o.run_at) {
    auto at = unix_ms(*o.run_at);
    if (at > unix_ms(std::chrono::system_clock::now())) return at;
    return std::nullopt;
  }
  if (o.delay.count() > 0) return unix_ms(std::chrono::system_clock::now()) + 1 + o.delay.count();  // never early
  return std::nullopt;
}

}  // namespace

void validate_queue_name(std::string_view queue) {
  if (queue.empty() || queue.size() > 128)
    throw std::invalid_argument("queue name must be 1 to 128 bytes, not " + std::to_string(queue.size()));
  for (char c : queue)
    if (c == '{' || c == '}' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r')
      throw std::invalid_argument("queue name '" + std::string(queue) + "' may not contain braces, colons or whitespace");
}

client::client(std::shared_ptr<transport::connection> connection, client_options options)
    : connection_(connection), broker_(std::move(connection)), options_(std::move(options)) {}

envelope client::make_envelope(std::string name, tasks::payload payload, const enqueue_options& o) const {
  if (name.empty()) throw std::invalid_argument("task name is empty");
  validate_queue_name(o.queue);
  if (payload.data.size() > options_.max_payload_bytes)
    throw std::invalid_argument("payload of task '" + name + "' is " + std::to_string(payload.data.size()) +
                                " bytes, over the limit of " + std::to_string(options_.max_payload_bytes));
  if (o.retry.max_attempts == 0) throw std::invalid_argument("retry.max_attempts must be at least 1");
  o.retry.backoff.validate();
  if (o.timeout.count() <= 0) throw std::invalid_argument("timeout must be positive");
  if (static_cast<unsigned>(o.priority) >= priority_count) throw std::invalid_argument("unknown priority");
  envelope e;
  e.id = make_id();
  e.name = std::move(name);
  e.queue = std::string(o.queue);
  e.priority = o.priority;
  e.payload = std::move(payload);
  e.retry = o.retry;
  e.timeout = o.timeout;
  e.correlation_id = o.correlation_id.empty() ? e.id : std::string(o.correlation_id);
  e.enqueued_ms = unix_ms(std::chrono::system_clock::now());
  if (o.headers) e.headers = *o.headers;
  return e;
}

awaitable<std::string> client::enqueue(std::string name, tasks::payload payload, enqueue_options options) {
  auto e = make_envelope(std::move(name), std::move(payload), options);
  queue_keys keys(options_.prefix, e.queue);
  auto due = due_ms(options);
  co_return co_await broker_.enqueue(keys, e, due, options.idempotency_key, options.idempotency_ttl);
}

awaitable<std::vector<std::string>> client::enqueue_bulk(std::vector<task_spec> tasks) {
  // Build every envelope first: bad input anywhere refuses the whole batch before any write.
  std::vector<envelope> envelopes;
  envelopes.reserve(tasks.size());
  for (auto& t : tasks) {
    if (due_ms(t.options) || !t.options.idempotency_key.empty())
      throw std::invalid_argument("enqueue_bulk takes tasks due now without idempotency keys; use enqueue() for task '" + t.name + "'");
    envelopes.push_back(make_envelope(std::move(t.name), std::move(t.payload), t.options));
  }
  transport::request req;
  std::vector<std::string> ids;
  ids.reserve(envelopes.size());
  std::optional<queue_keys> keys;  // built once per run of tasks of one queue
  for (auto& e : envelopes) {
    if (!keys || keys->name() != e.queue) keys.emplace(options_.prefix, e.queue);
    broker::add_enqueue(req, *keys, e);
    ids.push_back(e.id);
  }
  auto replies = co_await connection_->exec(std::move(req));
  for (std::size_t i = 0; i < replies.size(); ++i)
    if (replies[i].is_error()) throw transport::server_error("XADD", replies[i].text);
  co_return ids;
}

awaitable<std::optional<boost::json::value>> client::result(std::string queue, std::string id) {
  validate_queue_name(queue);
  queue_keys keys(options_.prefix, queue);
  auto text = co_await broker_.result(keys, id);
  if (!text) co_return std::nullopt;
  boost::system::error_code ec;
  auto v = boost::json::parse(*text, ec);
  if (ec) throw std::runtime_error("result of task " + id + " is not JSON: " + ec.message());
  co_return v;
}

awaitable<std::vector<dead_letter>> client::list_dead(std::string queue, std::size_t count) {
  validate_queue_name(queue);
  queue_keys keys(options_.prefix, queue);
  auto reply = co_await connection_->call("XRANGE", keys.dead, "-", "+", "COUNT", count);
  std::vector<dead_letter> out;
  for (auto& raw : reply.elements) {
    transport::stream_entry entry;
    entry.id = raw.elements.at(0).text;
    auto& f = raw.elements.at(1).elements;
    for (std::size_t i = 0; i + 1 < f.size(); i += 2) entry.fields.emplace_back(f[i].text, f[i + 1].text);
    dead_letter d;
    d.entry_id = entry.id;
    for (auto& [k, v] : entry.fields) {
      if (k == "dead.reason") d.reason = v;
      else if (k == "dead.error") d.error = v;
      else if (k == "dead.worker") d.worker = v;
      else if (k == "dead.at") d.at_ms = std::atoll(v.c_str());
      else if (k == "dead.entry") d.stream_entry_id = v;
      else if (k == "dead.attempts") d.attempts = static_cast<std::uint32_t>(std::strtoul(v.c_str(), nullptr, 10));
    }
    try {
      d.task = envelope::from_fields(entry.fields);
    } catch (const std::invalid_argument&) {
      // An undecodable entry is listed as it is: its raw fields stay in the dead-letter stream.
    }
    out.push_back(std::move(d));
  }
  co_return out;
}

awaitable<std::size_t> client::requeue_dead(std::string queue, std::string entry_id, std::size_t count) {
  validate_queue_name(queue);
  queue_keys keys(options_.prefix, queue);
  std::string_view script_keys[] = {keys.dead, keys.streams[0], keys.streams[1], keys.streams[2], keys.streams[3]};
  std::string n = std::to_string(count);
  std::string_view args[] = {entry_id, n};
  auto reply = co_await transport::evalsha(*connection_, scripts::requeue_dead(), script_keys, args);
  co_return static_cast<std::size_t>(reply.integer);
}

}  // namespace sagaflow::tasks
