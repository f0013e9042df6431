// Sagas as C++20 coroutines. A saga's body co_awaits its steps through a `context`; each step's
// action runs per attempt under its retry policy and timeout, and when a step finally fails the
// completed steps are compensated in reverse order. Every state change is appended to the saga's
// journal, fenced by the holder's epoch, before the engine acts on it: an orchestrator that takes
// a saga over (after a crash, or a pause past the lease) replays the journal, and completed steps
// return their recorded results instead of running again. The body must therefore be
// deterministic apart from what `context` gives it (step results, now_ms(), random()).
#pragma once

#include <sagaflow/engine/backoff.hpp>
#include <sagaflow/engine/coro.hpp>
#include <sagaflow/engine/stop.hpp>
#include <sagaflow/transport/connection.hpp>

#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace sagaflow::sagas {

using json = boost::json::value;

struct step_options {
  std::uint32_t max_attempts = 3;
  backoff_policy backoff{.base = std::chrono::milliseconds(100), .multiplier = 2.0,
                         .cap = std::chrono::milliseconds(10'000), .jitter = jitter::full};
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};  // per attempt
};
static_assert(std::is_trivially_destructible_v<step_options>);  // a safe default argument of a coroutine

// A local step's action: runs in the orchestrating process, once per attempt.
using action = std::function<awaitable<json>(const json& input)>;
// Undoes a completed step, given the step's input and result. Empty: nothing to undo.
using compensation = std::function<awaitable<void>(const json& input, const json& result)>;

// A step failed for good (attempts exhausted, or tasks::permanent_error): thrown into the body.
// Uncaught, it ends the body and the saga compensates.
class step_failed : public std::runtime_error {
 public:
  step_failed(std::string step, std::string error);
  const std::string& step() const noexcept { return step_; }
  const std::string& error() const noexcept { return error_; }

 private:
  std::string step_, error_;
};

// Where a remote step runs: a task on the queue of the service that owns it, handled by any of
// its workers (a tasks::worker; the handler's set_result() is the step's result). The task's own
// retries are the step's attempts (step_options' max_attempts, backoff and timeout); its dead
// letter is the step's failure. Views: trivially destructible, safe in a co_await expression.
struct remote_step {
  std::string_view queue;
  std::string_view task;
  std::string_view undo_task;  // compensates it, given {"input": ..., "result": ...}; empty: none
};
static_assert(std::is_trivially_destructible_v<remote_step>);

// One step of ctx.all: local (an action) or remote (a queue and a task); build it with
// local_call or remote_call.
struct step_call {
  std::string name;
  action act;
  compensation undo;
  std::string queue, task, undo_task;  // a remote step when `queue` is set
  json input;
  step_options options{};
};
step_call local_call(std::string name, action act, compensation undo, json input, step_options options = {});
step_call remote_call(std::string name, remote_step where, json input, step_options options = {});

namespace detail {
class run;
}

class context {
 public:
  explicit context(detail::run& r) noexcept : run_(r) {}
  const std::string& saga_id() const noexcept;
  const std::string& correlation_id() const noexcept;
  const json& input() const noexcept;

  // Runs step `name` with `input` and returns its result; on replay, a completed step returns
  // its recorded result at once. Steps are matched to the journal by their order and name.
  awaitable<json> step(std::string name, action act, compensation undo, json input, step_options options = {});
  // Runs step `name` as a task on another service's queue and returns its result, which comes
  // back through the saga's inbox (no polling). Dispatched once: a resumed saga finds the task
  // or its reply instead of enqueueing it again.
  awaitable<json> remote(std::string name, remote_step where, json input, step_options options = {});
  // Runs the steps concurrently; their results, in order. When one fails for good, the others
  // are awaited (a local one starts no new attempt, a remote one's reply is awaited), the body
  // gets step_failed for the first failed step in order, and every completed step is
  // compensated. Steps are matched to the journal by position, as sequential ones are. Name the
  // vector before the co_await (GCC 12: no owning temporaries in a co_await expression).
  awaitable<std::vector<json>> all(std::vector<step_call> calls);
  // A durable sleep: a resumed saga sleeps only what is left. A saga that sleeps longer than
  // the lease leaves its orchestrator, and a timer brings it back to any orchestrator.
  awaitable<void> sleep(std::chrono::milliseconds d);
  // The time (ms since the epoch) and a random value, journaled: a replay gets the same ones.
  awaitable<std::int64_t> now_ms();
  awaitable<std::uint64_t> random();

 private:
  detail::run& run_;
};

using body = std::function<awaitable<json>(context&)>;

struct definition {
  std::string name;
  std::uint32_t version = 1;
  // Journals written by these versions are replayed too; any other version parks the saga.
  std::vector<std::uint32_t> compatible_versions;
  body run;
};

// The declarative form, a thin layer over the coroutine one: a saga declared as an ordered list
// of steps, each given the previous one's result (the first, the saga's input); the saga's result
// is the last step's.
struct declared_step {
  std::string name;
  action act;
  compensation undo;  // may be empty
  step_options options{};
};
definition sequence(std::string name, std::vector<declared_step> steps, std::uint32_t version = 1);

enum class status { running, completed, compensated, compensation_failed, parked, cancelled };
std::string_view to_string(status s) noexcept;
std::optional<status> status_from_string(std::string_view s) noexcept;

struct outcome {
  status state = status::running;
  json result;              // completed: what the body returned
  std::string failed_step;  // compensated, compensation_failed: the step that failed
  std::string error;        // compensated, compensation_failed, parked, cancelled: why
};

struct journal_entry {
  std::string id;
  std::string event;  // started, step_started, step_completed, step_failed, value,
                      // compensation_started, compensation_completed, compensation_failed,
                      // compensation_skipped, finished, resumed
  std::int64_t step = -1;
  std::string name;
  std::uint32_t attempt = 0;
  std::string value;  // JSON: a result, an error text, a recorded value; resumed: retry or skip
  std::string correlation_id;
  std::int64_t at_ms = 0;
};

struct saga_status {
  std::string id, name, correlation_id;
  std::uint32_t version = 0;
  outcome current;
  std::vector<journal_entry> history;
};

// Views, trivially destructible: GCC 12 destroys an owning options temporary in a co_await
// expression twice (see transport::safe_coroutine_options).
struct start_options {
  std::string_view correlation_id;  // generated when empty
  std::string_view saga_id;         // generated when empty; starting the same id twice starts it once
};
static_assert(std::is_trivially_destructible_v<start_options>);

// Starts sagas and reads their state; any process may hold one.
class client {
 public:
  client(std::shared_ptr<transport::connection> commands, transport::config redis, std::string prefix = "sf");
  // Returns the saga id once the saga is durable (journal and run entry written).
  awaitable<std::string> start(std::string_view name, const json& input, const start_options& options = {});
  // The outcome once the saga has finished or parked; nothing after `timeout`. It blocks on the
  // saga's journal (XREAD BLOCK on a connection of its own): no polling.
  awaitable<std::optional<outcome>> wait(std::string_view saga_id, std::chrono::milliseconds timeout);
  // State and journal; nothing for an unknown (or expired) saga.
  awaitable<std::optional<saga_status>> status(std::string_view saga_id);
  // Asks a running saga to stop: the step that runs ends, no later step starts, and the
  // completed steps are compensated; the outcome is `cancelled` (or compensation_failed).
  // False when the saga is not running (unknown, or finished).
  awaitable<bool> cancel(std::string_view saga_id);
  // A saga parked as compensation_failed runs again: its failed compensation is retried under
  // its policy (retry_compensation) or marked skipped (skip_compensation), then the remaining
  // completed steps are compensated. False when the saga is not compensation_failed.
  awaitable<bool> retry_compensation(std::string_view saga_id);
  awaitable<bool> skip_compensation(std::string_view saga_id);
  // The ids of the sagas started under `correlation_id` (kept as long as a finished saga is).
  awaitable<std::vector<std::string>> find(std::string_view correlation_id);

 private:
  std::shared_ptr<transport::connection> commands_;
  transport::config redis_;
  std::string prefix_;
  std::chrono::milliseconds retention_{std::chrono::hours(24 * 7)};
};

struct orchestrator_options {
  std::string prefix = "sf";
  std::string consumer;             // default: host-pid-random
  std::size_t concurrency = 1024;   // sagas executing at once (a saga waiting for a reply or a timer does not count)
  // Sagas kept in memory while they wait for a remote step's reply or a sleep (~12 KB each).
  // Past it, a saga that waits leaves the orchestrator (its run entry acknowledged) and resumes
  // from its journal when the reply, or its timer, adds a run entry: memory stays bounded
  // however many sagas wait, at the cost of a replay for those that left.
  std::size_t max_waiting = 4096;
  std::chrono::milliseconds lease{std::chrono::seconds(30)};  // a silent orchestrator's sagas are taken over after this
  std::chrono::milliseconds block{std::chrono::seconds(1)};
  std::chrono::milliseconds retention{std::chrono::hours(24 * 7)};  // of a finished saga's journal and snapshot
  std::chrono::milliseconds grace{std::chrono::seconds(30)};        // for running sagas at shutdown
  // For crash tests: after this many journal writes the orchestrator freezes as a killed one
  // would (writes, acknowledges and renews nothing more). 0: never.
  std::size_t crash_after_writes = 0;
};

struct orchestrator_stats {
  // started: sagas taken to run here (a run entry for a finished saga counts nothing)
  std::uint64_t started = 0, completed = 0, compensated = 0, compensation_failed = 0, parked = 0, cancelled = 0;
  std::uint64_t fenced = 0;  // sagas dropped because another orchestrator took them
  std::uint64_t writes = 0;  // journal appends
  std::uint64_t left = 0;    // times a waiting saga left the orchestrator (resumed later by reply or timer)
};

// Pulls saga runs from the run stream's consumer group and runs them; any number of processes.
class orchestrator {
 public:
  orchestrator(boost::asio::any_io_executor ex, transport::config redis, orchestrator_options options = {});
  ~orchestrator();
  orchestrator(const orchestrator&) = delete;
  orchestrator& operator=(const orchestrator&) = delete;

  void add(definition d);
  // Runs until `stop`; then waits up to the grace for running sagas (the rest are taken over
  // by other orchestrators after the lease).
  awaitable<void> run(stop_source stop);
  const orchestrator_stats& stats() const noexcept;
  bool crashed() const noexcept;  // crash_after_writes was reached

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace sagaflow::sagas
