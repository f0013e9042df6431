// The consumer side: a worker pulls tasks of one or more queues from their Redis Streams
// consumer group, runs the handler registered for each task name, and settles every task:
// acknowledged on success, moved to the delayed set for a retry, or dead-lettered. Around that,
// in every worker: a promoter (due retries and delayed tasks back to their stream), a lease
// renewer (long handlers keep their tasks), and a recoverer (tasks of dead workers are taken
// over after the lease, within a delivery budget).
#pragma once

#include <sagaflow/engine/stop.hpp>
#include <sagaflow/tasks/keys.hpp>
#include <sagaflow/tasks/task.hpp>
#include <sagaflow/transport/config.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/json/value.hpp>

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace sagaflow::tasks {

// What a handler sees of its task.
struct task_context {
  const envelope& task;  // id, name, payload, attempt, retry policy, headers, correlation id
  std::string_view stream_entry_id;
  steady_clock::time_point deadline;  // the attempt is cancelled at this time

  // The payload as JSON; throws permanent_error when it is not valid JSON (a retry cannot help).
  boost::json::value json() const;
  const std::string& bytes() const noexcept { return task.payload.data; }

  // The task's result, stored on success for worker_options::result_ttl; read it with
  // client::result(queue, id).
  void set_result(boost::json::value v) { result = std::move(v); }
  std::optional<boost::json::value> result;
};

// Throws to fail the attempt (retried by policy), permanent_error (dead letter at once) or
// retry_after (retried after the given delay).
using handler = std::function<awaitable<void>(task_context&)>;

enum class priority_mode : std::uint8_t {
  strict,    // all critical before any high, ...
  weighted,  // the first stream read is drawn by weight, so that low priority still progresses
};

struct queue_config {
  std::string name = "default";
  unsigned share = 1;  // this queue's share of the worker's concurrency
};

struct worker_options {
  std::vector<queue_config> queues{queue_config{}};
  std::size_t concurrency = 32;  // handlers in flight in this process, split by share
  // Tasks a queue may fetch beyond its free handler slots, so that Redis serves the next batch
  // while this one runs (~25% more throughput with very short handlers). 0 keeps strict
  // priority exact: with N, a more urgent task that arrives while all slots are busy may wait
  // behind up to N fetched less urgent ones. Split by share, as concurrency is.
  std::size_t prefetch = 0;
  priority_mode mode = priority_mode::strict;
  std::array<unsigned, priority_count> weights{8, 4, 2, 1};
  std::chrono::milliseconds lease{std::chrono::seconds(30)};  // a silent worker's tasks are taken over after this
  std::uint32_t delivery_budget = 5;  // deliveries of one attempt (crash redeliveries) before "delivery limit"
  std::chrono::milliseconds grace{std::chrono::seconds(30)};  // for in-flight handlers at shutdown
  std::chrono::milliseconds promoter_interval{std::chrono::seconds(1)};  // at most one call per interval when idle
  std::chrono::milliseconds fetch_block{std::chrono::seconds(1)};  // XREADGROUP BLOCK when the queues are empty
  std::chrono::milliseconds recover_interval{std::chrono::seconds(5)};
  std::chrono::milliseconds result_ttl{std::chrono::hours(24)};  // of results set by handlers
  std::size_t max_payload_bytes = 1024 * 1024;  // a larger payload is dead-lettered as "oversized"
  // A task no handler here knows (e.g. a new task type reaching old workers first during a
  // rolling deploy) is handed back to its queue every unknown_task_delay, without using an
  // attempt, until unknown_task_grace has passed since a worker first saw it; then it is
  // dead-lettered as "unknown task". 0: dead-lettered at once.
  std::chrono::milliseconds unknown_task_grace{std::chrono::minutes(15)};
  std::chrono::milliseconds unknown_task_delay{std::chrono::seconds(5)};
  std::string consumer;  // empty: <host>-<pid>-<id>
  std::string prefix = "sf";
};

struct worker_stats {
  std::atomic<std::uint64_t> started{0}, succeeded{0}, retried{0}, dead{0}, recovered{0};
  std::atomic<std::uint64_t> handed_back{0};        // tasks with no handler here, handed back to their queue
  std::atomic<std::uint64_t> settle_retries{0};     // settlements that failed once and were tried again
  std::atomic<std::uint64_t> failed_to_settle{0};   // given up: left to recovery after the lease
};

class worker {
 public:
  worker(boost::asio::any_io_executor ex, transport::config redis, worker_options options = {});
  ~worker();

  // Registers the handler for a task name; before run().
  void handle(std::string name, handler h);

  // Runs until `stop` is requested, then stops fetching, hands fetched but unstarted tasks back,
  // lets in-flight handlers finish within the grace period and returns. Unfinished tasks stay
  // pending and are taken over by another worker after the lease. Throws when Redis cannot be
  // reached at start; returns at once when stop is requested while it is still connecting.
  awaitable<void> run(stop_source stop);

  const worker_stats& stats() const noexcept;
  const std::string& consumer() const noexcept;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace sagaflow::tasks
