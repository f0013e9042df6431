// Every Redis command and Lua script of the task queue, behind typed methods: the one place that
// knows the scripts' KEYS and ARGV, the consumer group and the dead-letter fields. The client
// and each role of the worker go through it; so will event subscriptions and saga steps.
// Scripts live in tasks/lua/<name>.lua (KEYS and ARGV in their headers as well).
#pragma once

#include <sagaflow/tasks/keys.hpp>
#include <sagaflow/tasks/task.hpp>
#include <sagaflow/transport/commands.hpp>
#include <sagaflow/transport/connection.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sagaflow::tasks {

// Fields a dead-letter entry carries next to the task's own.
namespace dead_field {
inline constexpr std::string_view reason = "dead.reason";      // "max attempts", "undecodable", ...
inline constexpr std::string_view error = "dead.error";        // the last error, in words
inline constexpr std::string_view attempts = "dead.attempts";  // the attempt it died in; 0: not a task
inline constexpr std::string_view at = "dead.at";              // unix ms
inline constexpr std::string_view worker = "dead.worker";      // the consumer that buried it
inline constexpr std::string_view entry = "dead.entry";        // its id in the stream it came from
inline constexpr std::string_view raw = "dead.raw";            // a delayed member that was no task
}  // namespace dead_field

// Why a task is buried, as written into its dead-letter entry.
struct burial {
  std::string_view reason;
  std::string_view error;
  std::uint32_t attempts = 0;
  std::string_view worker;
};

struct promotion {
  std::int64_t moved = 0;                  // tasks moved back to their streams
  std::optional<std::int64_t> next_due_ms; // of the earliest task still waiting
};

class broker {
 public:
  explicit broker(std::shared_ptr<transport::connection> connection) : connection_(std::move(connection)) {}
  transport::connection& connection() const noexcept { return *connection_; }

  // --- producing ------------------------------------------------------------------------------
  // enqueue.lua. KEYS: the task's priority stream, the delayed zset, the idempotency key.
  // ARGV: "now" or "delay", due ms, idempotency TTL ms (0: no key), task id, delayed member,
  // entry fields... Returns the id of the task that holds the idempotency key: `task.id`, or the
  // first task's when the key was already taken (then nothing is enqueued).
  awaitable<std::string> enqueue(const queue_keys& q, const envelope& task, std::optional<std::int64_t> due_ms,
                                 std::string_view idempotency_key, std::chrono::milliseconds idempotency_ttl);
  // XADD of a task due now, without idempotency key, appended to `req` (to pipeline many).
  static void add_enqueue(transport::request& req, const queue_keys& q, const envelope& task);

  // XGROUP CREATE ... MKSTREAM on the four streams (idempotent).
  awaitable<void> create_groups(const queue_keys& q);

  // --- consuming ------------------------------------------------------------------------------
  // Each priority stream's lag for the group (new entries; -1 when Redis cannot tell), as the
  // last backlog.lua answered it: what the next fetch plans its reads by.
  struct fetch_plan {
    std::array<std::int64_t, priority_count> lags{};
    bool known = false;  // false: the next fetch asks backlog.lua first (one more round trip)
  };
  // Up to `count` new entries for `consumer`, the streams in `order` drained first to last
  // (strict priority exact), in one round trip once `plan` is known: each stream is read
  // (XREADGROUP COUNT) for what `count` leaves after the planned lags of the streams above it,
  // down to the first stream whose lag covers the rest, and backlog.lua, pipelined behind the
  // reads, updates `plan` for the next fetch. The streams above are read fresh whatever their
  // planned lag, so a task that arrived there since is taken first; the entries that then exceed
  // `count` (the last ones in `order`) are handed back (release.lua) at once. Entries are not
  // read through Lua: converting them to Lua values and back costs Redis more than the read.
  awaitable<std::vector<transport::stream_batch>> fetch(const queue_keys& q, std::span<const std::size_t> order,
                                                        std::string_view consumer, std::size_t count,
                                                        fetch_plan& plan);
  // The same with a plan asked for first: two round trips. (A plan not known is asked for first
  // by the form above too; being fresh, the streams it saw empty are then not read at all.)
  awaitable<std::vector<transport::stream_batch>> fetch(const queue_keys& q, std::span<const std::size_t> order,
                                                        std::string_view consumer, std::size_t count);
  // backlog.lua. KEYS: the four priority streams; ARGV: group. Answers each stream's lag.
  awaitable<fetch_plan> backlog(const queue_keys& q);
  // XREADGROUP COUNT 1 BLOCK on all four streams: waits until one has a new entry. Redis answers
  // a connection's commands in order, so `blocking` must be a connection of its own.
  static awaitable<std::vector<transport::stream_batch>> wait_for_tasks(transport::connection& blocking,
                                                                        const queue_keys& q, std::string_view consumer,
                                                                        std::chrono::milliseconds block);

  // --- settling -------------------------------------------------------------------------------
  // settle.lua, appended to `req`: one call settles a round for stream `p`. KEYS: the stream,
  // the delayed zset. ARGV: group, the number of completed entries, their ids, then per retry:
  // entry id, due ms, member. Completed entries are acknowledged and removed; each retried
  // entry still pending for the group is acknowledged and moved to the delayed set as its member
  // (the next attempt's envelope). Removal is one XTRIM MINID below what every group still needs
  // and XDEL for the rest. Both lists in ascending id order (transport::stream_id_less): one out
  // of order may stay in the stream, acknowledged, until a later call trims past it.
  struct retry_item {
    std::string_view entry_id;
    std::int64_t due_ms = 0;
    std::string_view member;
  };
  static void add_settle(transport::request& req, const queue_keys& q, std::size_t p,
                         std::span<const std::string> completed, std::span<const retry_item> retries);
  // What a settle call answered: completions acknowledged, and per retry whether it moved (false:
  // no longer pending for the group, another worker settled it; nothing changed for it).
  struct settled {
    std::int64_t acknowledged = 0;
    std::vector<bool> moved;
  };
  static settled settle_reply(const transport::resp::value& reply, std::size_t retries);
  // settle.lua with retries only, on its own round trip (loading the scripts on NOSCRIPT).
  awaitable<std::vector<bool>> retry(const queue_keys& q, std::size_t p, std::span<const retry_item> items);
  // SET result PX ttl, appended to `req`.
  static void add_result(transport::request& req, const queue_keys& q, std::string_view task_id,
                         std::string_view json, std::chrono::milliseconds ttl);
  // A script in `req` met NOSCRIPT (a restarted server): load them all, then send it again.
  static bool needs_scripts(const transport::response& replies);
  awaitable<void> load_scripts();
  // dead.lua. KEYS: the stream, the dead-letter stream. ARGV: group, entry id, dead-letter fields...
  // Moves the pending entry to the dead letters: `fields` (the task, or the raw entry when it was
  // not one) plus the burial's dead.* fields. False as for retry().
  awaitable<bool> dead_letter(const queue_keys& q, std::size_t p, std::string_view entry_id,
                              std::span<const transport::field_view> fields, const burial& why);
  // promote.lua. KEYS: the delayed zset, the streams p0..p3, the dead-letter stream. ARGV: now
  // ms, limit. Moves up to `limit` due tasks back to their streams; a member that is no task
  // goes to the dead letters.
  awaitable<promotion> promote(const queue_keys& q, std::int64_t now_ms, std::size_t limit);

  // --- leases and recovery --------------------------------------------------------------------
  // renew.lua. KEYS: the stream. ARGV: group, consumer, entry ids... Resets the idle time of
  // the entries `consumer` still owns (without counting a delivery); returns those ids.
  awaitable<std::vector<std::string>> renew(const queue_keys& q, std::size_t p, std::string_view consumer,
                                            std::span<const std::string> entry_ids);
  // release.lua. KEYS: the stream. ARGV: group, entry ids... Hands pending entries back to the
  // stream at once (re-added at its end, the old ones acknowledged and deleted); returns how many.
  awaitable<std::int64_t> release(const queue_keys& q, std::size_t p, std::span<const std::string> entry_ids);
  // XPENDING: entries of stream `p` idle for at least `min_idle` (any consumer), or pending for
  // `consumer` (min_idle 0).
  awaitable<std::vector<transport::pending_entry>> pending(const queue_keys& q, std::size_t p, std::size_t count,
                                                           std::chrono::milliseconds min_idle,
                                                           std::string_view consumer = {});
  // XCLAIM for `consumer` of the ids still idle for `min_idle`; returns the entries taken.
  awaitable<std::vector<transport::stream_entry>> claim(const queue_keys& q, std::size_t p, std::string_view consumer,
                                                        std::chrono::milliseconds min_idle,
                                                        std::span<const std::string> entry_ids);

  // --- results and dead letters ----------------------------------------------------------------
  awaitable<std::optional<std::string>> result(const queue_keys& q, std::string_view task_id);
  // XRANGE of the dead-letter stream from `first` to `last` ("-" and "+": all), up to `count`.
  awaitable<std::vector<transport::stream_entry>> dead_letters(const queue_keys& q, std::string_view first,
                                                               std::string_view last, std::size_t count);
  // requeue_dead.lua. KEYS: the dead-letter stream, the streams p0..p3. ARGV: per task three:
  // dead entry id, priority digit, packed envelope. Each task goes back to its stream only if
  // this call removed its dead letter, so that two operators requeueing at once do not run a task
  // twice. Calls of at most 100 tasks (each call blocks Redis while it runs); returns how many
  // went back.
  struct requeue_item {
    std::string_view dead_entry_id;
    tasks::priority priority = tasks::priority::normal;
    std::string_view packed;  // the envelope as it should run again (attempt 1)
  };
  awaitable<std::size_t> requeue_dead(const queue_keys& q, std::span<const requeue_item> items);

 private:
  std::shared_ptr<transport::connection> connection_;
};

}  // namespace sagaflow::tasks
