// The saga journal: keys, entries, fenced appends, and a run: what one orchestrator knows of one
// saga while it executes it (the journal replayed, the steps completed so far).
#pragma once

#include <sagaflow/sagas/saga.hpp>
#include <sagaflow/transport/commands.hpp>

#include <map>
#include <set>
#include <utility>

namespace sagaflow::sagas {

// Snapshot hash and journal stream share the saga's hash tag, so one script touches both.
struct saga_keys {
  saga_keys(std::string_view prefix, std::string_view id)
      : snapshot(std::string(prefix) + ":{saga:" + std::string(id) + "}"), log(snapshot + ":log") {}
  std::string snapshot, log;
};

// Run entries: a saga to start or resume (field `saga`); a remote step's reply (tasks'
// reply_to is this stream: fields `saga`, `key`, `status`, ...); a due timer (`timer`).
inline std::string run_stream(std::string_view prefix) { return std::string(prefix) + ":{sagas}:run"; }
// Timers of the sagas that left their orchestrator while waiting: saga id -> due unix ms. In the
// run stream's slot, so that due.lua moves a due one into the stream atomically.
inline std::string timers_key(std::string_view prefix) { return std::string(prefix) + ":{sagas}:timers"; }
// An orchestrator's inbox: the replies of the remote steps it dispatched (read with the run
// stream, in the same group). The registry (orchestrator -> last heartbeat ms) tells the others
// when it went silent, so that they adopt its inbox.
inline std::string inbox_key(std::string_view prefix, std::string_view orchestrator) {
  return std::string(prefix) + ":{sagas}:inbox:" + std::string(orchestrator);
}
inline std::string registry_key(std::string_view prefix) { return std::string(prefix) + ":{sagas}:orchestrators"; }
// The ids of the sagas started under a correlation id: a set in a slot of its own.
inline std::string correlation_key(std::string_view prefix, std::string_view correlation) {
  return std::string(prefix) + ":corr:{" + std::string(correlation) + "}";
}
inline constexpr std::string_view run_group = "orchestrators";
inline constexpr std::string_view run_field = "saga";

// Another orchestrator holds the saga now (its epoch is newer): this one must write nothing more.
class fenced : public std::runtime_error {
 public:
  fenced() : std::runtime_error("another orchestrator holds this saga") {}
};
// The crash hook fired: the orchestrator behaves as a killed one from here on.
class crash_hook : public std::runtime_error {
 public:
  crash_hook() : std::runtime_error("orchestrator crashed (crash_after_writes)") {}
};
// client::cancel asked the saga to stop: no new step starts, the completed ones are undone.
class saga_cancelled : public std::runtime_error {
 public:
  saga_cancelled() : std::runtime_error("cancelled") {}
};
// The saga leaves this orchestrator while it waits: it is resumed by its run entries (a reply,
// or its timer at `due_ms`) by whichever orchestrator reads them.
class saga_left : public std::runtime_error {
 public:
  explicit saga_left(std::int64_t due) : std::runtime_error("the saga left the orchestrator while waiting"), due_ms(due) {}
  std::int64_t due_ms;
};
// The engine's own Redis work for the saga failed (a journal append, a dispatch): not a failure
// of the saga. It is dropped here and taken over after the lease, never compensated for it.
class engine_failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// The journal cannot be replayed by this definition: the saga is parked with the reason.
class unreplayable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::int64_t unix_now_ms();
journal_entry decode_entry(const transport::stream_entry& e);
// The saga's journal, oldest entry first (XRANGE - +).
awaitable<std::vector<journal_entry>> read_journal(transport::connection& c, const saga_keys& keys);
std::vector<journal_entry> decode_journal(transport::resp::value& xrange);

using fields = std::vector<std::pair<std::string, std::string>>;

// append.lua: the entries and the snapshot fields, if `epoch` still holds the saga. Returns
// nothing when it does not (fenced), else whether a cancel was asked for.
awaitable<std::optional<bool>> append(transport::connection& c, const saga_keys& keys, std::int64_t epoch,
                                      const std::vector<fields>& entries, const fields& snapshot,
                                      std::chrono::milliseconds ttl);

namespace detail {

struct step_record {
  std::string name;
  bool started = false;
  std::int64_t started_ms = 0;  // the first attempt's step_started
  std::uint32_t failures = 0;
  bool completed = false;
  json result;
  bool failed = false;  // for good
  std::string error;
};

struct done_step {
  std::int64_t index;
  std::string name;
  compensation undo;
  json input;
  json result;
  step_options options;
  std::string undo_queue, undo_task;  // a remote compensation
};

// Appends journal entries (and snapshot fields) atomically; throws fenced or crash_hook.
// Returns whether a cancel was asked for.
using writer = std::function<awaitable<bool>(std::vector<fields> entries, fields snapshot, bool final)>;

// What a remote step's task answered: its result, or why it died.
struct remote_reply {
  bool completed = false;
  json result;
  std::string error;
};
// A reply run entry (fields key, status, result / reason, error) decoded.
remote_reply decode_reply(const transport::stream_entry& e);

// Enqueues a remote step's task (queue, task name, input, reply key, options); the same reply
// key again enqueues nothing (idempotency key), so a resumed saga never dispatches twice.
using dispatcher = std::function<awaitable<void>(std::string queue, std::string task, json input, std::string key,
                                                 step_options options)>;
// The reply with `key`, waiting for it until `deadline_ms` (unix); nothing past it. With
// `may_leave`, the orchestrator may end the wait with saga_left (it keeps too many waiting
// sagas, the wait is long, or it stops).
using reply_waiter =
    std::function<awaitable<std::optional<remote_reply>>(std::string key, std::int64_t deadline_ms, bool may_leave)>;
// Returns at `due_ms` (unix), or throws saga_left as reply_waiter does.
using timer_waiter = std::function<awaitable<void>(std::int64_t due_ms, bool may_leave)>;

struct services {
  writer write;
  dispatcher dispatch;
  std::function<bool(const std::string& key)> has_reply;  // already delivered: no dispatch needed
  reply_waiter await_reply;
  timer_waiter await_until;
};

class run {
 public:
  run(std::string id, std::string correlation, json input, services s)
      : saga_id(std::move(id)), correlation_id(std::move(correlation)), input(std::move(input)), services_(std::move(s)),
        random_(random_source::for_key(saga_id, 0)) {}

  // Rebuilds what the journal says happened; throws unreplayable for a journal this engine
  // cannot follow.
  void replay(const std::vector<journal_entry>& history);

  awaitable<json> step(std::string name, action act, compensation undo, json input, step_options options);
  awaitable<json> remote(std::string name, std::string queue, std::string task, std::string undo_task, json input,
                         step_options options);
  awaitable<std::vector<json>> all(std::vector<step_call> calls);
  awaitable<void> sleep(std::chrono::milliseconds d);
  awaitable<std::string> value(std::string fresh);  // a recorded value, or `fresh` recorded now
  // Undoes the completed steps, last first. Returns the step whose compensation failed for
  // good (and its error), or nothing when all are undone.
  awaitable<std::optional<std::pair<std::string, std::string>>> compensate();
  awaitable<void> finish(status s, const std::string& result_json, const std::string& failed_step,
                         const std::string& error);

  const std::string saga_id;
  const std::string correlation_id;
  const json input;
  bool cancel_requested = false;  // seen in the snapshot or with a journal append

 private:
  // A step of ctx.all learns that a sibling failed for good: it starts no new attempt.
  struct sibling_failed {};
  // Appends an entry (with the deferred ones before it).
  awaitable<void> write(std::string event, fields more, fields snapshot = {}, bool final = false);
  // An entry for the next append: a step's completion travels with the next step's start, the
  // next wait or the finish, so a step costs one round trip. A crash before that append runs the
  // step again, as a crash between its action and its journal entry would.
  void defer(std::string event, fields more);
  awaitable<void> flush();  // the deferred entries, before the saga waits
  // The journal's record of step `k` called `name`, if any; throws unreplayable on a mismatch.
  step_record* recorded(std::int64_t k, const std::string& name);
  awaitable<json> local_at(std::int64_t k, std::string name, action act, compensation undo, json input,
                           step_options options, const bool* abandon);
  awaitable<json> remote_at(std::int64_t k, std::string name, std::string queue, std::string task,
                            std::string undo_task, json input, step_options options);
  awaitable<std::optional<std::string>> undo_remote(const done_step& d);
  std::string undo_key(std::int64_t k) const;

  services services_;
  random_source random_;
  std::vector<step_record> steps_;          // from the journal, by step index
  std::vector<std::string> values_;         // recorded values, in order
  std::size_t next_value_ = 0;
  std::set<std::int64_t> compensated_;      // compensations completed (or skipped)
  std::set<std::int64_t> compensation_begun_;  // a remote compensation dispatched
  std::map<std::int64_t, std::uint32_t> compensation_failures_;
  std::int64_t stuck_ = -1;                 // the step whose compensation failed for good
  std::int64_t skip_ = -1;                  // its compensation is to be skipped (client::skip_compensation)
  std::uint32_t resumes_ = 0;               // resumed after compensation_failed
  std::int64_t next_step_ = 0;
  int parallel_ = 0;                        // inside ctx.all: the saga stays (no saga_left)
  std::vector<done_step> done_;             // completed steps
  std::vector<fields> deferred_;            // entries for the next append
};

}  // namespace detail
}  // namespace sagaflow::sagas
