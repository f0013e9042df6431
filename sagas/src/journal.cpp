// Journal entries, fenced appends, and the replay of a journal into a run.
#include "journal.hpp"

#include "scripts.hpp"

#include <charconv>

namespace sagaflow::sagas {

std::int64_t unix_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

namespace {
std::int64_t to_int(const std::string* s, std::int64_t fallback) {
  if (!s) return fallback;
  std::int64_t v = fallback;
  auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc{} || end != s->data() + s->size()) return fallback;
  return v;
}
}  // namespace

journal_entry decode_entry(const transport::stream_entry& e) {
  journal_entry j;
  j.id = e.id;
  if (auto* v = e.find("e")) j.event = *v;
  j.step = to_int(e.find("k"), -1);
  if (auto* v = e.find("n")) j.name = *v;
  j.attempt = static_cast<std::uint32_t>(to_int(e.find("a"), 0));
  if (auto* v = e.find("v")) j.value = *v;
  if (auto* v = e.find("c")) j.correlation_id = *v;
  j.at_ms = to_int(e.find("t"), 0);
  return j;
}

std::vector<journal_entry> decode_journal(transport::resp::value& xrange) {
  std::vector<journal_entry> history;
  history.reserve(xrange.elements.size());
  for (auto& raw : xrange.elements) {
    if (raw.elements.size() != 2) continue;
    transport::stream_entry e;
    e.id = std::move(raw.elements[0].text);
    auto& f = raw.elements[1].elements;
    for (std::size_t i = 0; i + 1 < f.size(); i += 2) e.fields.emplace_back(std::move(f[i].text), std::move(f[i + 1].text));
    history.push_back(decode_entry(e));
  }
  return history;
}

awaitable<std::vector<journal_entry>> read_journal(transport::connection& c, const saga_keys& keys) {
  auto reply = co_await c.call("XRANGE", keys.log, "-", "+");
  co_return decode_journal(reply);
}

awaitable<std::optional<bool>> append(transport::connection& c, const saga_keys& keys, std::int64_t epoch,
                                      const std::vector<fields>& entries, const fields& snapshot,
                                      std::chrono::milliseconds ttl) {
  std::string epoch_text = std::to_string(epoch), ttl_text = std::to_string(ttl.count());
  std::vector<std::string> counts;
  counts.reserve(entries.size() + 1);
  counts.push_back(std::to_string(entries.size()));
  for (auto& e : entries) counts.push_back(std::to_string(e.size() * 2));
  std::vector<std::string_view> args{epoch_text, counts[0]};
  std::size_t n = 3 + 2 * snapshot.size();
  for (auto& e : entries) n += 1 + 2 * e.size();
  args.reserve(n);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    args.push_back(counts[i + 1]);
    for (auto& [k, v] : entries[i]) {
      args.push_back(k);
      args.push_back(v);
    }
  }
  for (auto& [k, v] : snapshot) {
    args.push_back(k);
    args.push_back(v);
  }
  args.push_back(ttl_text);
  std::string_view script_keys[] = {keys.snapshot, keys.log};
  auto reply = co_await transport::evalsha(c, scripts::append(), script_keys, args);
  if (reply.elements.size() != 2) co_return std::nullopt;  // false (nil): fenced
  co_return reply.elements[1].integer == 1;
}

namespace detail {

remote_reply decode_reply(const transport::stream_entry& e) {
  remote_reply r;
  auto* state = e.find("status");
  r.completed = state && *state == "completed";
  if (r.completed) {
    auto* result = e.find("result");
    boost::system::error_code ec;
    if (result && !result->empty()) r.result = boost::json::parse(*result, ec);
    if (ec) {
      r.completed = false;
      r.error = "the task's result is not JSON";
    }
  } else {
    auto* reason = e.find("reason");
    auto* error = e.find("error");
    r.error = (reason ? *reason : std::string("failed")) + (error ? ": " + *error : std::string());
  }
  return r;
}

void run::replay(const std::vector<journal_entry>& history) {
  auto at = [&](std::int64_t k) -> step_record& {
    if (k < 0 || k > 100'000) throw unreplayable("journal entry with step index " + std::to_string(k));
    if (steps_.size() <= static_cast<std::size_t>(k)) steps_.resize(static_cast<std::size_t>(k) + 1);
    return steps_[static_cast<std::size_t>(k)];
  };
  for (auto& e : history) {
    if (e.event == "step_started") {
      auto& s = at(e.step);
      s.name = e.name;
      if (!s.started) s.started_ms = e.at_ms;
      s.started = true;
    } else if (e.event == "step_completed") {
      auto& s = at(e.step);
      s.name = e.name;
      s.completed = true;
      boost::system::error_code ec;
      s.result = boost::json::parse(e.value, ec);
      if (ec) throw unreplayable("step " + e.name + ": recorded result is not JSON");
    } else if (e.event == "step_failed") {
      auto& s = at(e.step);
      s.name = e.name;
      s.failures = std::max(s.failures, e.attempt);
      if (e.step >= 0 && e.value.starts_with("!")) {  // "!" marks the last attempt
        s.failed = true;
        s.error = e.value.substr(1);
      }
    } else if (e.event == "value") {
      values_.push_back(e.value);
    } else if (e.event == "compensation_started") {
      compensation_begun_.insert(e.step);
    } else if (e.event == "compensation_completed" || e.event == "compensation_skipped") {
      compensated_.insert(e.step);
    } else if (e.event == "compensation_failed") {
      auto& n = compensation_failures_[e.step];
      n = std::max(n, e.attempt);
      if (e.value.starts_with("!")) stuck_ = e.step;
    } else if (e.event == "resumed") {  // client::retry_compensation / skip_compensation
      ++resumes_;
      compensation_failures_.clear();  // the policy starts over
      compensation_begun_.clear();     // a remote compensation is dispatched again (new key)
      skip_ = e.value == "skip" ? stuck_ : -1;
    }
  }
}

void run::defer(std::string event, fields more) {
  fields entry;
  entry.reserve(more.size() + 3);
  entry.emplace_back("e", std::move(event));
  entry.emplace_back("c", correlation_id);
  entry.emplace_back("t", std::to_string(unix_now_ms()));
  for (auto& f : more) entry.push_back(std::move(f));
  deferred_.push_back(std::move(entry));
}

awaitable<void> run::write(std::string event, fields more, fields snapshot, bool final) {
  defer(std::move(event), std::move(more));
  std::vector<fields> entries;
  entries.swap(deferred_);
  if (co_await services_.write(std::move(entries), std::move(snapshot), final)) cancel_requested = true;
}

awaitable<void> run::flush() {
  if (deferred_.empty()) co_return;
  std::vector<fields> entries;
  entries.swap(deferred_);
  if (co_await services_.write(std::move(entries), {}, false)) cancel_requested = true;
}

awaitable<std::string> run::value(std::string fresh) {
  if (next_value_ < values_.size()) co_return values_[next_value_++];
  fields more{{"v", fresh}};
  co_await write("value", std::move(more));
  values_.push_back(fresh);
  ++next_value_;
  co_return fresh;
}

awaitable<void> run::finish(status s, const std::string& result_json, const std::string& failed_step,
                            const std::string& error) {
  fields more{{"n", std::string(to_string(s))}, {"v", s == status::completed ? result_json : error}};
  if (!failed_step.empty()) more.emplace_back("f", failed_step);
  fields snapshot{{"status", std::string(to_string(s))}, {"result", result_json}, {"failed_step", failed_step},
                  {"error", error}};
  co_await write("finished", std::move(more), std::move(snapshot), true);
}

}  // namespace detail
}  // namespace sagaflow::sagas
