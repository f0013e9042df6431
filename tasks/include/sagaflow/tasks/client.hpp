// The producer side: enqueue tasks (one, or many in one pipeline) and manage dead letters.
#pragma once

#include <sagaflow/tasks/broker.hpp>
#include <sagaflow/tasks/keys.hpp>
#include <sagaflow/tasks/task.hpp>
#include <sagaflow/transport/connection.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sagaflow::tasks {

struct client_options {
  std::string prefix = "sf";
  std::size_t max_payload_bytes = 1024 * 1024;
};

// One task of a bulk enqueue.
struct task_spec {
  std::string name;
  tasks::payload payload;
  enqueue_options options;  // views in here must outlive the enqueue_bulk call
};

// A dead letter as listed: the task and why it died.
struct dead_letter {
  std::string entry_id;  // its id in the dead-letter stream (for requeue_dead)
  envelope task;
  std::string reason;    // "max attempts", "permanent error", "unknown task", "undecodable", "delivery limit"
  std::string error;
  std::string stream_entry_id;  // its id in the priority stream it died from (dead.entry)
  std::uint32_t attempts = 0;   // the attempt it died in (dead.attempts); 0 when it was not a task
  std::int64_t at_ms = 0;
  std::string worker;
};

class client {
 public:
  explicit client(std::shared_ptr<transport::connection> connection, client_options options = {});

  // Returns the task id once the task is durable in Redis. With an idempotency key that was
  // seen within its TTL, returns the first task's id and enqueues nothing. Throws
  // std::invalid_argument for bad input (empty name, bad queue name, payload over the limit,
  // invalid policy), transport::server_error / system_error for Redis failures.
  awaitable<std::string> enqueue(std::string name, tasks::payload payload, enqueue_options options = {});
  // Many tasks in one pipeline; ids in the order given.
  awaitable<std::vector<std::string>> enqueue_bulk(std::vector<task_spec> tasks);

  // The result a handler set for task `id` (JSON), or nothing: no result (yet), or expired.
  awaitable<std::optional<boost::json::value>> result(std::string queue, std::string id);

  awaitable<std::vector<dead_letter>> list_dead(std::string queue, std::size_t count = 100);
  // Requeues one dead letter (by its dead-letter entry id) or, with an empty id, up to `count`.
  // Returns how many went back, each with a fresh attempt count.
  awaitable<std::size_t> requeue_dead(std::string queue, std::string entry_id = {}, std::size_t count = 1000);

  const client_options& options() const noexcept { return options_; }

 private:
  envelope make_envelope(std::string name, tasks::payload payload, const enqueue_options& options) const;
  std::shared_ptr<transport::connection> connection_;
  tasks::broker broker_;
  client_options options_;
};

// Throws std::invalid_argument unless `queue` can name a queue (non-empty, at most 128 bytes,
// no braces, colons or whitespace: it becomes part of a Redis hash tag).
void validate_queue_name(std::string_view queue);

}  // namespace sagaflow::tasks
