// What a saga body calls: steps (run, or replayed from the journal), recorded values, and the
// compensation of completed steps in reverse order.
#include "journal.hpp"

#include <sagaflow/engine/wait_group.hpp>
#include <sagaflow/tasks/task.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <charconv>

namespace sagaflow::sagas {

step_failed::step_failed(std::string step, std::string error)
    : std::runtime_error("step '" + step + "' failed: " + error), step_(std::move(step)), error_(std::move(error)) {}

std::string_view to_string(status s) noexcept {
  switch (s) {
    case status::running: return "running";
    case status::completed: return "completed";
    case status::compensated: return "compensated";
    case status::compensation_failed: return "compensation_failed";
    case status::parked: return "parked";
    case status::cancelled: return "cancelled";
  }
  return "running";
}

std::optional<status> status_from_string(std::string_view s) noexcept {
  for (auto v : {status::running, status::completed, status::compensated, status::compensation_failed, status::parked,
                 status::cancelled})
    if (to_string(v) == s) return v;
  return std::nullopt;
}

const std::string& context::saga_id() const noexcept { return run_.saga_id; }
const std::string& context::correlation_id() const noexcept { return run_.correlation_id; }
const json& context::input() const noexcept { return run_.input; }

awaitable<json> context::step(std::string name, action act, compensation undo, json input, step_options options) {
  co_return co_await run_.step(std::move(name), std::move(act), std::move(undo), std::move(input), options);
}

awaitable<json> context::remote(std::string name, remote_step where, json input, step_options options) {
  if (where.queue.empty() || where.task.empty())
    throw std::invalid_argument("sagas: remote step '" + name + "' needs a queue and a task name");
  co_return co_await run_.remote(std::move(name), std::string(where.queue), std::string(where.task),
                                 std::string(where.undo_task), std::move(input), options);
}

awaitable<std::vector<json>> context::all(std::vector<step_call> calls) {
  for (auto& c : calls) {
    if (c.name.empty()) throw std::invalid_argument("sagas: a step of ctx.all needs a name");
    if (c.queue.empty() ? !c.act : c.task.empty())
      throw std::invalid_argument("sagas: step '" + c.name + "' of ctx.all needs an action, or a queue and a task");
  }
  co_return co_await run_.all(std::move(calls));
}

awaitable<void> context::sleep(std::chrono::milliseconds d) { co_await run_.sleep(d); }

step_call local_call(std::string name, action act, compensation undo, json input, step_options options) {
  step_call c;
  c.name = std::move(name);
  c.act = std::move(act);
  c.undo = std::move(undo);
  c.input = std::move(input);
  c.options = options;
  return c;
}

step_call remote_call(std::string name, remote_step where, json input, step_options options) {
  step_call c;
  c.name = std::move(name);
  c.queue = where.queue;
  c.task = where.task;
  c.undo_task = where.undo_task;
  c.input = std::move(input);
  c.options = options;
  return c;
}

awaitable<std::int64_t> context::now_ms() {
  auto text = co_await run_.value(std::to_string(unix_now_ms()));
  std::int64_t v = 0;
  std::from_chars(text.data(), text.data() + text.size(), v);
  co_return v;
}

awaitable<std::uint64_t> context::random() {
  auto text = co_await run_.value(std::to_string(random_source::from_entropy().next()));
  std::uint64_t v = 0;
  std::from_chars(text.data(), text.data() + text.size(), v);
  co_return v;
}

definition sequence(std::string name, std::vector<declared_step> steps, std::uint32_t version) {
  if (steps.empty()) throw std::invalid_argument("sagas::sequence '" + name + "': no steps");
  for (auto& s : steps)
    if (s.name.empty() || !s.act) throw std::invalid_argument("sagas::sequence '" + name + "': a step needs a name and an action");
  definition d;
  d.name = std::move(name);
  d.version = version;
  d.run = [steps = std::move(steps)](context& ctx) -> awaitable<json> {
    json value = ctx.input();
    for (auto& s : steps) value = co_await ctx.step(s.name, s.act, s.undo, value, s.options);
    co_return value;
  };
  return d;
}

namespace detail {

namespace {
// Runs one attempt of `op` under `timeout`: nothing when it succeeded, else the error, with
// `permanent` set for tasks::permanent_error. Fencing and the crash hook pass through: they end
// the run.
template <typename Op>
awaitable<std::optional<std::string>> attempt(Op op, std::chrono::milliseconds timeout, bool& permanent) {
  std::optional<std::string> error;
  try {
    co_await with_timeout(op(), timeout);
  } catch (const fenced&) {
    throw;
  } catch (const crash_hook&) {
    throw;
  } catch (const tasks::permanent_error& e) {
    error = e.what();
    permanent = true;
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "unknown exception";
  }
  if (error && error->empty()) error = "failed without a message";
  co_return error;
}
// How long a saga waits for a remote step's reply (unix ms): every attempt's timeout and backoff.
std::int64_t reply_deadline(std::int64_t started_ms, const step_options& o) {
  auto budget = (o.timeout + o.backoff.cap) * std::max<std::uint32_t>(1, o.max_attempts);
  return started_ms + std::chrono::duration_cast<std::chrono::milliseconds>(budget).count();
}
}  // namespace

awaitable<json> run::step(std::string name, action act, compensation undo, json in, step_options options) {
  auto k = next_step_++;
  co_return co_await local_at(k, std::move(name), std::move(act), std::move(undo), std::move(in), options, nullptr);
}

awaitable<json> run::local_at(std::int64_t k, std::string name, action act, compensation undo, json in,
                              step_options options, const bool* abandon) {
  std::uint32_t failures = 0;
  if (auto* rec = recorded(k, name)) {
    if (rec->completed) {
      done_.push_back({k, name, std::move(undo), std::move(in), rec->result, options, {}, {}});
      co_return rec->result;
    }
    if (rec->failed) throw step_failed(name, rec->error);
    failures = rec->failures;
  }
  if (cancel_requested) throw saga_cancelled();
  auto k_text = std::to_string(k);
  auto input_json = boost::json::serialize(in);
  for (std::uint32_t n = failures + 1;; ++n) {
    if (abandon && *abandon) throw sibling_failed{};
    fields started{{"k", k_text}, {"n", name}, {"a", std::to_string(n)}, {"v", input_json}};
    fields current{{"step", name}};
    co_await write("step_started", std::move(started), std::move(current));
    if (cancel_requested) throw saga_cancelled();  // learnt with this append: the action does not run
    json result;
    bool permanent = false;
    auto call = [&]() -> awaitable<void> { result = co_await act(in); };
    auto error = co_await attempt(call, options.timeout, permanent);
    if (!error) {
      fields completed{{"k", k_text}, {"n", name}, {"a", std::to_string(n)}, {"v", boost::json::serialize(result)}};
      defer("step_completed", std::move(completed));
      done_.push_back({k, name, std::move(undo), std::move(in), result, options, {}, {}});
      co_return result;
    }
    bool last = permanent || n >= options.max_attempts;
    fields failed{{"k", k_text}, {"n", name}, {"a", std::to_string(n)}, {"v", (last ? "!" : "") + *error}};
    co_await write("step_failed", std::move(failed));
    if (last) throw step_failed(name, *error);
    // Not journaled: a saga resumed elsewhere retries at once, which the policy allows.
    co_await sleep_for(options.backoff.delay(n, random_));
  }
}

awaitable<std::vector<json>> run::all(std::vector<step_call> calls) {
  // Indices are taken here, in order, before any step runs: a replay matches the same ones.
  auto first = next_step_;
  next_step_ += static_cast<std::int64_t>(calls.size());
  struct slot {
    json value;
    std::exception_ptr error;
  };
  std::vector<slot> slots(calls.size());
  auto abandon = std::make_shared<bool>(false);
  auto strand = co_await boost::asio::this_coro::executor;
  wait_group branches(strand);
  ++parallel_;
  for (std::size_t i = 0; i < calls.size(); ++i) {
    auto branch = [](run& self, std::int64_t k, step_call& c, slot& out, std::shared_ptr<bool> abandon) -> awaitable<void> {
      try {
        if (c.queue.empty())
          out.value = co_await self.local_at(k, c.name, c.act, c.undo, c.input, c.options, abandon.get());
        else
          out.value = co_await self.remote_at(k, c.name, c.queue, c.task, c.undo_task, c.input, c.options);
      } catch (const sibling_failed&) {
        out.error = std::current_exception();
      } catch (...) {
        out.error = std::current_exception();
        *abandon = true;
      }
    };
    auto op = branch(*this, first + static_cast<std::int64_t>(i), calls[i], slots[i], abandon);
    branches.spawn(std::move(op), "saga " + saga_id + " step " + calls[i].name);
  }
  co_await branches.wait();
  --parallel_;
  // What ends the run (fencing, the crash hook) first; then the first failure in order.
  std::exception_ptr failure;
  for (auto& s : slots) {
    if (!s.error) continue;
    try {
      std::rethrow_exception(s.error);
    } catch (const fenced&) {
      throw;
    } catch (const crash_hook&) {
      throw;
    } catch (const engine_failure&) {
      throw;
    } catch (const sibling_failed&) {
    } catch (...) {
      if (!failure) failure = s.error;
    }
  }
  if (failure) std::rethrow_exception(failure);
  std::vector<json> results;
  results.reserve(slots.size());
  for (auto& s : slots) results.push_back(std::move(s.value));
  co_return results;
}

awaitable<void> run::sleep(std::chrono::milliseconds d) {
  // The wake-up time is recorded: a replay sleeps until the same time, not `d` again.
  auto due_text = co_await value(std::to_string(unix_now_ms() + d.count()));
  std::int64_t due = 0;
  std::from_chars(due_text.data(), due_text.data() + due_text.size(), due);
  if (due > unix_now_ms()) {
    co_await flush();
    co_await services_.await_until(due, parallel_ == 0);
  }
}

step_record* run::recorded(std::int64_t k, const std::string& name) {
  if (static_cast<std::size_t>(k) >= steps_.size()) return nullptr;
  auto& rec = steps_[static_cast<std::size_t>(k)];
  if (!rec.name.empty() && rec.name != name)
    throw unreplayable("step " + std::to_string(k) + " is '" + name + "' in this code but '" + rec.name +
                       "' in the journal");
  return &rec;
}

// A remote step is one task on `queue`, retried by its workers under `options` (its attempts are
// the task's); the saga journals its dispatch and its outcome, and the reply comes back to the
// dispatching orchestrator's inbox (tasks' reply_to). The reply key is the step index, the idempotency
// key the saga id and that index: a resumed saga dispatches again, which enqueues nothing while
// the first task is known, and not at all when the reply is already there.
awaitable<json> run::remote(std::string name, std::string queue, std::string task, std::string undo_task, json in,
                            step_options options) {
  auto k = next_step_++;
  co_return co_await remote_at(k, std::move(name), std::move(queue), std::move(task), std::move(undo_task),
                               std::move(in), options);
}

awaitable<json> run::remote_at(std::int64_t k, std::string name, std::string queue, std::string task,
                               std::string undo_task, json in, step_options options) {
  std::int64_t started_ms = 0;
  if (auto* rec = recorded(k, name)) {
    if (rec->completed) {
      done_.push_back({k, name, {}, std::move(in), rec->result, options, queue, undo_task});
      co_return rec->result;
    }
    if (rec->failed) throw step_failed(name, rec->error);
    if (rec->started) started_ms = rec->started_ms;
  }
  if (!started_ms && cancel_requested) throw saga_cancelled();
  auto k_text = std::to_string(k);
  if (!started_ms) {
    started_ms = unix_now_ms();
    fields dispatched{{"k", k_text}, {"n", name}, {"a", "1"}, {"v", boost::json::serialize(in)}, {"q", queue}, {"x", task}};
    fields current{{"step", name}};
    co_await write("step_started", std::move(dispatched), std::move(current));
    if (cancel_requested) throw saga_cancelled();  // learnt with this append: nothing is dispatched
  }
  if (!services_.has_reply(k_text)) co_await services_.dispatch(queue, task, in, k_text, options);
  co_await flush();  // a sibling's completion (ctx.all), before this one waits
  auto reply = co_await services_.await_reply(k_text, reply_deadline(started_ms, options), parallel_ == 0);
  if (reply && reply->completed) {
    fields completed{{"k", k_text}, {"n", name}, {"a", "1"}, {"v", boost::json::serialize(reply->result)}};
    defer("step_completed", std::move(completed));
    done_.push_back({k, name, {}, std::move(in), reply->result, options, queue, undo_task});
    co_return reply->result;
  }
  std::string error = reply ? reply->error : "no reply from queue '" + queue + "' in time";
  fields failed{{"k", k_text}, {"n", name}, {"a", "1"}, {"v", "!" + error}};
  co_await write("step_failed", std::move(failed));
  throw step_failed(name, error);
}

// A remote compensation's reply key: a resumed compensation_failed saga dispatches anew.
std::string run::undo_key(std::int64_t k) const {
  return std::to_string(k) + ".undo" + (resumes_ ? "." + std::to_string(resumes_) : std::string());
}

// The compensation task of remote step `d`, given {"input", "result"}: nothing when it
// completed, else why not.
awaitable<std::optional<std::string>> run::undo_remote(const done_step& d) {
  auto key = undo_key(d.index);
  if (!services_.has_reply(key)) {
    json args = {{"input", d.input}, {"result", d.result}};
    co_await services_.dispatch(d.undo_queue, d.undo_task, args, key, d.options);
  }
  co_await flush();
  auto reply = co_await services_.await_reply(key, reply_deadline(unix_now_ms(), d.options), parallel_ == 0);
  if (reply && reply->completed) co_return std::nullopt;
  co_return reply ? reply->error : "no reply from queue '" + d.undo_queue + "' in time";
}

awaitable<std::optional<std::pair<std::string, std::string>>> run::compensate() {
  // Last completed first; steps of one ctx.all completed in any order, so by index.
  std::stable_sort(done_.begin(), done_.end(), [](const done_step& a, const done_step& b) { return a.index < b.index; });
  for (auto it = done_.rbegin(); it != done_.rend(); ++it) {
    auto& d = *it;
    if ((!d.undo && d.undo_task.empty()) || compensated_.contains(d.index)) continue;
    auto k_text = std::to_string(d.index);
    if (d.index == skip_) {  // client::skip_compensation
      fields skipped{{"k", k_text}, {"n", d.name}, {"a", "0"}};
      co_await write("compensation_skipped", std::move(skipped));
      compensated_.insert(d.index);
      continue;
    }
    if (!d.undo_task.empty()) {  // remote: the task's own attempts are the policy
      if (!compensation_begun_.contains(d.index)) {
        fields started{{"k", k_text}, {"n", d.name}, {"a", "1"}};
        co_await write("compensation_started", std::move(started));
        compensation_begun_.insert(d.index);
      }
      auto error = co_await undo_remote(d);
      if (!error) {
        fields completed{{"k", k_text}, {"n", d.name}, {"a", "1"}};
        co_await write("compensation_completed", std::move(completed));
        compensated_.insert(d.index);
        continue;
      }
      fields failed{{"k", k_text}, {"n", d.name}, {"a", "1"}, {"v", "!" + *error}};
      co_await write("compensation_failed", std::move(failed));
      std::pair<std::string, std::string> stuck(d.name, *error);
      co_return stuck;
    }
    for (std::uint32_t n = compensation_failures_[d.index] + 1;; ++n) {
      fields started{{"k", k_text}, {"n", d.name}, {"a", std::to_string(n)}};
      co_await write("compensation_started", std::move(started));
      bool permanent = false;
      auto call = [&]() -> awaitable<void> { co_await d.undo(d.input, d.result); };
      auto error = co_await attempt(call, d.options.timeout, permanent);
      if (!error) {
        fields completed{{"k", k_text}, {"n", d.name}, {"a", std::to_string(n)}};
        co_await write("compensation_completed", std::move(completed));
        compensated_.insert(d.index);
        break;
      }
      bool last = permanent || n >= d.options.max_attempts;
      fields failed{{"k", k_text}, {"n", d.name}, {"a", std::to_string(n)}, {"v", (last ? "!" : "") + *error}};
      co_await write("compensation_failed", std::move(failed));
      if (last) {
        std::pair<std::string, std::string> stuck(d.name, *error);
        co_return stuck;
      }
      co_await sleep_for(d.options.backoff.delay(n, random_));
    }
  }
  co_return std::nullopt;
}

}  // namespace detail
}  // namespace sagaflow::sagas
