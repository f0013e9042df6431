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
      : snapshot(std::string(prefix) + ":{saga:" + std::string(id) + "}"), log(snapshot + ":log"),
        inbox(snapshot + ":inbox") {}
  std::string snapshot, log;
  std::string inbox;  // replies of the saga's remote steps (tasks::reply_to_header)
};

inline std::string run_stream(std::string_view prefix) { return std::string(prefix) + ":{sagas}:run"; }
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
// The journal cannot be replayed by this definition: the saga is parked with the reason.
class unreplayable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::int64_t unix_now_ms();
journal_entry decode_entry(const transport::stream_entry& e);
// The saga's journal, oldest entry first (XRANGE - +).
awaitable<std::vector<journal_entry>> read_journal(transport::connection& c, const saga_keys& keys);

using fields = std::vector<std::pair<std::string, std::string>>;

// append.lua: the entry and the snapshot fields, if `epoch` still holds the saga. Returns
// nothing when it does not (fenced), else whether a cancel was asked for.
awaitable<std::optional<bool>> append(transport::connection& c, const saga_keys& keys, std::int64_t epoch, const fields& entry,
                       const fields& snapshot, std::chrono::milliseconds ttl);

namespace detail {

struct step_record {
  std::string name;
  bool started = false;
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

// Writes one journal entry (and snapshot fields); throws fenced or crash_hook. Returns whether a
// cancel was asked for.
using writer = std::function<awaitable<bool>(fields entry, fields snapshot, bool final)>;

// What a remote step's task answered: its result, or why it died.
struct remote_reply {
  bool completed = false;
  json result;
  std::string error;
};
// Enqueues a remote step's task (queue, task name, input, reply key, options); the same reply
// key again enqueues nothing (idempotency key), so a resumed saga never dispatches twice.
using dispatcher = std::function<awaitable<void>(std::string queue, std::string task, json input, std::string key,
                                                 step_options options)>;
// The reply with `key` from the saga's inbox, waiting for it until the deadline.
using reply_waiter = std::function<awaitable<std::optional<remote_reply>>(std::string key, steady_clock::time_point deadline)>;

struct services {
  writer write;
  dispatcher dispatch;
  reply_waiter await_reply;
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
  awaitable<void> write(std::string event, fields more, fields snapshot = {}, bool final = false);
  // The journal's record of step `k` called `name`, if any; throws unreplayable on a mismatch.
  step_record* recorded(std::int64_t k, const std::string& name);
  awaitable<std::optional<std::string>> undo_remote(const done_step& d);

  services services_;
  random_source random_;
  std::vector<step_record> steps_;          // from the journal, by step index
  std::vector<std::string> values_;         // recorded values, in order
  std::size_t next_value_ = 0;
  std::set<std::int64_t> compensated_;      // compensations completed
  std::map<std::int64_t, std::uint32_t> compensation_failures_;
  std::int64_t next_step_ = 0;
  std::vector<done_step> done_;             // completed steps, in order
};

}  // namespace detail
}  // namespace sagaflow::sagas
