// The task model: priorities, retry policy, enqueue options, the errors a handler throws, and the
// envelope that carries a task in a stream entry.
#pragma once

#include <sagaflow/engine/backoff.hpp>

#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sagaflow::tasks {

enum class priority : std::uint8_t { critical = 0, high = 1, normal = 2, low = 3 };
inline constexpr std::size_t priority_count = 4;
std::string_view to_string(priority p) noexcept;

struct retry_policy {
  std::uint32_t max_attempts = 5;  // 1: never retried
  backoff_policy backoff{.base = std::chrono::milliseconds(1000), .multiplier = 2.0,
                         .cap = std::chrono::minutes(10), .jitter = sagaflow::jitter::full};
};

// Request/reply: a task enqueued with the header `reply_to_header` (a stream key) gets its
// outcome appended to that stream when it ends for good, with the fields `task` (its id), `key`
// (the header `reply_key_header`, echoed), `status` ("completed", with `result`: the handler's
// result as JSON or empty; or "dead", with `reason` and `error`), and one field per header named
// `reply_field_prefix` + name (the name without the prefix, e.g. "sf.reply.saga" -> `saga`). A
// task can end more than once (at least once): a reply can come twice.
inline constexpr std::string_view reply_to_header = "sf.reply_to";
inline constexpr std::string_view reply_key_header = "sf.reply_key";
inline constexpr std::string_view reply_field_prefix = "sf.reply.";

// Enqueue options. Keep this aggregate trivially destructible (views, not strings): GCC 12
// destroys brace-initialized aggregate temporaries in co_await expressions twice.
struct enqueue_options {
  std::string_view queue = "default";
  tasks::priority priority = tasks::priority::normal;
  std::chrono::milliseconds delay{0};                             // run no earlier than now + delay
  std::optional<std::chrono::system_clock::time_point> run_at;    // or at this time
  tasks::retry_policy retry{};
  std::chrono::milliseconds timeout{std::chrono::minutes(30)};     // per attempt
  std::string_view idempotency_key;                               // empty: none
  std::chrono::milliseconds idempotency_ttl{std::chrono::hours(24)};
  std::string_view correlation_id;                                // empty: a new id
  const std::map<std::string, std::string>* headers = nullptr;    // carried to the handler
};
static_assert(std::is_trivially_destructible_v<enqueue_options>);

// A payload is JSON or raw bytes; it travels as a string either way.
struct payload {
  enum class encoding : std::uint8_t { json, bytes } kind = encoding::json;
  std::string data;

  payload() = default;
  payload(const boost::json::value& v);  // NOLINT: implicit, enqueue(name, json) reads well
  static payload bytes(std::string raw);
};

// Thrown by a handler: the task goes to the dead letters at once.
class permanent_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown by a handler: retry (within max_attempts) after `delay` instead of the policy's delay.
class retry_after : public std::runtime_error {
 public:
  explicit retry_after(std::chrono::milliseconds delay, const std::string& reason = "retry requested")
      : std::runtime_error(reason), delay_(delay) {}
  std::chrono::milliseconds delay() const noexcept { return delay_; }

 private:
  std::chrono::milliseconds delay_;
};

// The one field of a task's stream entry: it holds the packed envelope (envelope::encode).
inline constexpr std::string_view entry_field = "task";
// The version tag that starts a packed envelope.
inline constexpr std::string_view packed_version = "sf2";

// A task as it travels. In a stream entry it is one field, `task` -> the packed envelope, so
// that Lua scripts move it as one string and a reader parses it without a field per item (design
// note "Entry format"). The packed form is text, readable in redis-cli:
//   packed = "sf2" 16*(" " item)     the 16 items below in this order, then any a newer writer appended
//   item   = length ":" bytes        length: decimal byte count, no leading zero; any byte may follow
// id name queue priority(0..3) enc(json|bytes) attempt max_attempts backoff(base_ms,multiplier,
// cap_ms,jitter) timeout_ms prev_delay_ms corr enqueued_ms unknown_since_ms last_error
// headers(items: name value name value ...) payload
struct envelope {
  std::string id;
  std::string name;
  std::string queue;
  tasks::priority priority = tasks::priority::normal;
  tasks::payload payload;
  std::uint32_t attempt = 1;  // the attempt this delivery is (1 = first)
  tasks::retry_policy retry;
  std::chrono::milliseconds timeout{std::chrono::minutes(30)};
  std::chrono::milliseconds previous_delay{0};  // for decorrelated jitter
  std::string correlation_id;
  std::int64_t enqueued_ms = 0;  // unix ms of the first enqueue
  std::string last_error;        // of the previous attempt
  std::int64_t unknown_since_ms = 0;  // unix ms a worker first found no handler for it (0: never)
  std::map<std::string, std::string> headers;
  // Items a newer writer appended after the payload, verbatim (" length:bytes" each): written
  // back unchanged, so that a task passing through an older worker loses nothing.
  std::string unknown_items;

  // The packed envelope (format above). Throws nothing but std::bad_alloc.
  std::string encode() const;
  // Throws std::invalid_argument naming what is malformed (truncated, bad length, bad number,
  // priority out of range, missing version tag, attempt 0...).
  static envelope decode(std::string_view packed);

  // Stream entry fields, flat: {"task", encode()}.
  std::vector<std::string> to_fields() const;
  // Reads an entry with a `task` field (the packed envelope; other fields, such as a dead
  // letter's dead.*, are ignored) or, failing that, the named fields of the format before it
  // (`id name queue priority enc payload attempt ...`), which entries written before an upgrade
  // still have. Throws std::invalid_argument naming what is missing or malformed.
  static envelope from_fields(const std::vector<std::pair<std::string, std::string>>& fields);
  // How a task waits in the delayed set: its priority digit, then encode(). Unique per (id,
  // attempt); promote.lua XADDs the rest as the `task` field without decoding it.
  std::string to_delayed_member() const;
};

}  // namespace sagaflow::tasks
