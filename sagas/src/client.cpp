// Starting sagas, waiting for their outcome on the journal, reading their state.
#include "journal.hpp"
#include "scripts.hpp"

#include <sagaflow/engine/id.hpp>

#include <boost/json/serialize.hpp>

#include <algorithm>

namespace sagaflow::sagas {

namespace {
outcome outcome_of(const std::vector<std::pair<std::string, std::string>>& snapshot) {
  outcome o;
  for (auto& [k, v] : snapshot) {
    if (k == "status") o.state = status_from_string(v).value_or(status::running);
    else if (k == "failed_step") o.failed_step = v;
    else if (k == "error") o.error = v;
    else if (k == "result" && !v.empty()) {
      boost::system::error_code ec;
      auto parsed = boost::json::parse(v, ec);
      if (!ec) o.result = std::move(parsed);
    }
  }
  return o;
}
}  // namespace

client::client(std::shared_ptr<transport::connection> commands, transport::config redis, std::string prefix)
    : commands_(std::move(commands)), redis_(std::move(redis)), prefix_(std::move(prefix)) {}

awaitable<std::string> client::start(std::string_view name, const json& input, const start_options& options) {
  if (name.empty()) throw std::invalid_argument("sagas::client::start: a saga name is required");
  std::string id = options.saga_id.empty() ? make_id() : std::string(options.saga_id);
  std::string correlation = options.correlation_id.empty() ? make_id() : std::string(options.correlation_id);
  saga_keys keys(prefix_, id);
  std::string input_json = boost::json::serialize(input), now = std::to_string(unix_now_ms());
  std::string_view script_keys[] = {keys.snapshot, keys.log};
  std::string_view args[] = {name, "0", correlation, input_json, now};  // version 0: bound by the first orchestrator
  auto created = co_await transport::evalsha(*commands_, scripts::start(), script_keys, args);
  if (created.integer != 1) {
    // Started before: run it again only if no orchestrator ever took it (a start that failed
    // between its two writes); otherwise it is running or done.
    auto snapshot = co_await transport::hgetall(*commands_, keys.snapshot);
    bool taken = false;
    for (auto& [k, v] : snapshot)
      if (k == "owner" && !v.empty()) taken = true;
    if (taken) co_return id;
  }
  // The run entry (the saga runs from here on) and the correlation index, in one pipeline.
  transport::request req;
  transport::field_view entry[] = {{run_field, id}};
  transport::add_xadd(req, run_stream(prefix_), entry);
  auto corr = correlation_key(prefix_, correlation);
  req.push("SADD", corr, id);
  req.push("PEXPIRE", corr, std::to_string(retention_.count()));
  auto replies = co_await commands_->exec(std::move(req));
  for (auto& r : replies)
    if (r.is_error()) throw transport::server_error("starting a saga", r.text);
  co_return id;
}

awaitable<std::optional<saga_status>> client::status(std::string_view saga_id) {
  saga_keys keys(prefix_, saga_id);
  auto snapshot = co_await transport::hgetall(*commands_, keys.snapshot);
  if (snapshot.empty()) co_return std::nullopt;
  saga_status s;
  s.id = std::string(saga_id);
  for (auto& [k, v] : snapshot) {
    if (k == "name") s.name = v;
    else if (k == "correlation_id") s.correlation_id = v;
    else if (k == "version") s.version = static_cast<std::uint32_t>(std::strtoul(v.c_str(), nullptr, 10));
  }
  s.current = outcome_of(snapshot);
  s.history = co_await read_journal(*commands_, keys);
  co_return s;
}

awaitable<bool> client::cancel(std::string_view saga_id) {
  saga_keys keys(prefix_, saga_id);
  std::string_view script_keys[] = {keys.snapshot};
  auto reply = co_await transport::evalsha(*commands_, scripts::cancel(), script_keys, {});
  co_return reply.integer == 1;
}

namespace {
awaitable<bool> resume(transport::connection& c, const std::string& prefix, std::string_view saga_id,
                       std::string_view mode) {
  saga_keys keys(prefix, saga_id);
  std::string_view script_keys[] = {keys.snapshot, keys.log};
  std::string now = std::to_string(unix_now_ms());
  std::string_view args[] = {mode, now};
  auto reply = co_await transport::evalsha(c, scripts::resume(), script_keys, args);
  if (reply.integer != 1) co_return false;
  transport::field_view entry[] = {{run_field, saga_id}};
  co_await transport::xadd(c, run_stream(prefix), entry);
  co_return true;
}
}  // namespace

awaitable<bool> client::retry_compensation(std::string_view saga_id) {
  co_return co_await resume(*commands_, prefix_, saga_id, "retry");
}

awaitable<bool> client::skip_compensation(std::string_view saga_id) {
  co_return co_await resume(*commands_, prefix_, saga_id, "skip");
}

awaitable<std::vector<std::string>> client::find(std::string_view correlation_id) {
  auto reply = co_await commands_->call("SMEMBERS", correlation_key(prefix_, correlation_id));
  std::vector<std::string> ids;
  for (auto& e : reply.elements) ids.push_back(std::move(e.text));
  std::sort(ids.begin(), ids.end());
  co_return ids;
}

awaitable<std::optional<outcome>> client::wait(std::string_view saga_id, std::chrono::milliseconds timeout) {
  auto deadline = steady_clock::now() + timeout;
  saga_keys keys(prefix_, saga_id);
  auto blocking = transport::connection::create(co_await boost::asio::this_coro::executor, redis_);
  co_await blocking->connect();
  std::optional<outcome> out;
  std::string last = "0";
  for (;;) {
    // Each read returns what was appended after `last`, so a finish between two reads is seen.
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_clock::now());
    if (left.count() <= 0) break;
    transport::request req;
    req.push("XREAD", "COUNT", "1000", "BLOCK", std::to_string(left.count()), "STREAMS", keys.log, last);
    req.block_time = left;
    auto replies = co_await blocking->exec(std::move(req));
    if (replies.empty() || replies[0].is_error()) break;
    bool finished = false;
    for (auto& batch : transport::decode_stream_batches(std::move(replies[0])))
      for (auto& e : batch.entries) {
        last = e.id;
        if (auto* ev = e.find("e"); ev && *ev == "finished") finished = true;
      }
    if (finished) {
      // A saga resumed after compensation_failed has an earlier finished entry: still running.
      auto now = outcome_of(co_await transport::hgetall(*commands_, keys.snapshot));
      if (now.state != status::running) {
        out = std::move(now);
        break;
      }
    }
  }
  blocking->close();
  co_return out;
}

}  // namespace sagaflow::sagas
