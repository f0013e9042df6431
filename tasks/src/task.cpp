// Envelope encoding: a task as stream entry fields, and as a delayed-set member.
#include <sagaflow/tasks/task.hpp>

#include <boost/json.hpp>

#include <charconv>

namespace sagaflow::tasks {

std::string_view to_string(priority p) noexcept {
  switch (p) {
    case priority::critical: return "critical";
    case priority::high: return "high";
    case priority::normal: return "normal";
    case priority::low: return "low";
  }
  return "unknown";
}

payload::payload(const boost::json::value& v) : kind(encoding::json), data(boost::json::serialize(v)) {}

payload payload::bytes(std::string raw) {
  payload p;
  p.kind = encoding::bytes;
  p.data = std::move(raw);
  return p;
}

namespace {

template <typename Int>
Int number(std::string_view field, std::string_view text) {
  Int v{};
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size())
    throw std::invalid_argument("task field '" + std::string(field) + "' is not a number: '" + std::string(text) + "'");
  return v;
}

std::string backoff_text(const backoff_policy& b) {
  return std::to_string(b.base.count()) + "," + std::to_string(b.multiplier) + "," + std::to_string(b.cap.count()) +
         "," + std::string(to_string(b.jitter));
}

backoff_policy parse_backoff(std::string_view text) {
  backoff_policy b;
  std::string_view parts[4];
  for (int i = 0; i < 4; ++i) {
    auto comma = text.find(',');
    if ((comma == std::string_view::npos) != (i == 3)) throw std::invalid_argument("task field 'backoff' is malformed");
    parts[i] = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
  }
  b.base = std::chrono::milliseconds(number<std::int64_t>("backoff", parts[0]));
  try {
    b.multiplier = std::stod(std::string(parts[1]));
  } catch (const std::exception&) {
    throw std::invalid_argument("task field 'backoff' has a bad multiplier");
  }
  b.cap = std::chrono::milliseconds(number<std::int64_t>("backoff", parts[2]));
  b.jitter = parse_jitter(parts[3]);
  b.validate();
  return b;
}

}  // namespace

std::vector<std::string> envelope::to_fields() const {
  std::vector<std::string> f{
      "id", id,
      "name", name,
      "queue", queue,
      "priority", std::to_string(static_cast<int>(priority)),
      "enc", payload.kind == payload::encoding::json ? "json" : "bytes",
      "payload", payload.data,
      "attempt", std::to_string(attempt),
      "max_attempts", std::to_string(retry.max_attempts),
      "backoff", backoff_text(retry.backoff),
      "timeout_ms", std::to_string(timeout.count()),
      "corr", correlation_id,
      "enqueued_ms", std::to_string(enqueued_ms)};
  if (previous_delay.count()) {
    f.push_back("prev_delay_ms");
    f.push_back(std::to_string(previous_delay.count()));
  }
  if (!last_error.empty()) {
    f.push_back("last_error");
    f.push_back(last_error);
  }
  if (unknown_since_ms) {
    f.push_back("unknown_since_ms");
    f.push_back(std::to_string(unknown_since_ms));
  }
  for (auto& [k, v] : headers) {
    f.push_back("h." + k);
    f.push_back(v);
  }
  return f;
}

envelope envelope::from_fields(const std::vector<std::pair<std::string, std::string>>& fields) {
  envelope e;
  bool has_id = false, has_name = false, has_payload = false;
  for (auto& [k, v] : fields) {
    if (k == "id") { e.id = v; has_id = true; }
    else if (k == "name") { e.name = v; has_name = true; }
    else if (k == "queue") e.queue = v;
    else if (k == "priority") {
      auto p = number<int>(k, v);
      if (p < 0 || p > 3) throw std::invalid_argument("task field 'priority' must be 0..3");
      e.priority = static_cast<tasks::priority>(p);
    }
    else if (k == "enc") {
      if (v != "json" && v != "bytes") throw std::invalid_argument("task field 'enc' must be json or bytes");
      e.payload.kind = v == "json" ? payload::encoding::json : payload::encoding::bytes;
    }
    else if (k == "payload") { e.payload.data = v; has_payload = true; }
    else if (k == "attempt") e.attempt = number<std::uint32_t>(k, v);
    else if (k == "max_attempts") e.retry.max_attempts = number<std::uint32_t>(k, v);
    else if (k == "backoff") e.retry.backoff = parse_backoff(v);
    else if (k == "timeout_ms") e.timeout = std::chrono::milliseconds(number<std::int64_t>(k, v));
    else if (k == "prev_delay_ms") e.previous_delay = std::chrono::milliseconds(number<std::int64_t>(k, v));
    else if (k == "corr") e.correlation_id = v;
    else if (k == "enqueued_ms") e.enqueued_ms = number<std::int64_t>(k, v);
    else if (k == "last_error") e.last_error = v;
    else if (k == "unknown_since_ms") e.unknown_since_ms = number<std::int64_t>(k, v);
    else if (k.starts_with("h.")) e.headers.emplace(k.substr(2), v);
  }
  if (!has_id || !has_name || !has_payload)
    throw std::invalid_argument(std::string("task entry lacks the field '") + (!has_id ? "id" : !has_name ? "name" : "payload") + "'");
  if (e.attempt == 0 || e.retry.max_attempts == 0) throw std::invalid_argument("task attempt counts must be >= 1");
  return e;
}

std::string envelope::to_delayed_member() const {
  boost::json::array f;
  for (auto& s : to_fields()) f.emplace_back(s);
  boost::json::object o;
  o["p"] = static_cast<int>(priority);
  o["f"] = std::move(f);
  return boost::json::serialize(o);
}

}  // namespace sagaflow::tasks
