// Typed helpers for the Redis commands sagaflow uses. Each command has an add_*() that appends it
// to a request (to pipeline several) and a coroutine that sends it alone and decodes the reply.
// Replies are decoded the same under RESP2 and RESP3. Error replies throw server_error.
#pragma once

#include <sagaflow/transport/connection.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sagaflow::transport {

// Option aggregates stay trivially destructible: GCC 12 destroys a brace-initialized aggregate
// temporary twice when it appears in a co_await expression, e.g. co_await xadd(c, k, f, {...}),
// if the aggregate owns memory (GCC 13 is fixed). Views are safe: the temporary lives until the
// awaited operation completes.
template <typename Options>
inline constexpr bool safe_coroutine_options = std::is_trivially_destructible_v<Options>;

// --- reply decoding ---------------------------------------------------------------------------
// Throw system_error(error::unexpected_reply) naming `what` when the reply has another shape.
std::string as_string(resp::value&& v, std::string_view what);
std::int64_t as_integer(const resp::value& v, std::string_view what);

// --- server -----------------------------------------------------------------------------------
// What INFO persistence says about loading: a restarted server accepts connections but answers
// -LOADING to most commands until its dataset is in memory (the connection waits for that after
// each connect). `eta` is the server's estimate of the time left.
struct loading_state {
  bool loading = false;
  std::chrono::seconds eta{0};
};
loading_state parse_loading(std::string_view info);

// --- streams ----------------------------------------------------------------------------------
struct field_view {
  std::string_view name;
  std::string_view value;
};

struct stream_entry {
  std::string id;
  std::vector<std::pair<std::string, std::string>> fields;  // empty for an entry deleted while pending
  const std::string* find(std::string_view name) const noexcept;
};

// A stream id ("ms-seq") as its two numbers; nothing when `id` is not one.
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_stream_id(std::string_view id) noexcept;
// Stream ids in the order Redis keeps them; text that is not an id sorts first.
bool stream_id_less(std::string_view a, std::string_view b) noexcept;

struct stream_batch {
  std::string stream;
  std::vector<stream_entry> entries;
};

struct trim_options {
  enum class strategy { none, maxlen, minid } by = strategy::none;
  std::string_view threshold;  // a count for maxlen, an entry id for minid
  bool exact = false;     // false: "~", let Redis trim whole nodes (much cheaper)
  std::int64_t limit = 0; // with "~": at most this many entries evicted per call (0: Redis' default)
};

struct xadd_options {
  std::string_view id = "*";
  bool no_mkstream = false;
  trim_options trim;
};

static_assert(safe_coroutine_options<xadd_options>);

void add_xadd(request& req, std::string_view key, std::span<const field_view> fields, const xadd_options& options = {});
awaitable<std::string> xadd(connection& c, std::string_view key, std::span<const field_view> fields,
                            const xadd_options& options = {});

struct stream_offset {
  std::string_view key;
  std::string_view id = ">";  // ">" new entries; "0" this consumer's pending ones
};

struct xreadgroup_options {
  std::size_t count = 0;                          // 0: no COUNT
  std::optional<std::chrono::milliseconds> block;  // unset: do not block
  bool noack = false;
};

static_assert(safe_coroutine_options<xreadgroup_options>);

void add_xreadgroup(request& req, std::string_view group, std::string_view consumer,
                    std::span<const stream_offset> streams, const xreadgroup_options& options = {});
std::vector<stream_batch> decode_stream_batches(resp::value&& reply);
// With `block`, the request's timeout is extended by the block time: use a connection of its
// own for blocking reads, since Redis answers a connection's commands in order.
awaitable<std::vector<stream_batch>> xreadgroup(connection& c, std::string_view group, std::string_view consumer,
                                                std::span<const stream_offset> streams,
                                                const xreadgroup_options& options = {});

void add_xack(request& req, std::string_view key, std::string_view group, std::span<const std::string> ids);
awaitable<std::int64_t> xack(connection& c, std::string_view key, std::string_view group, std::span<const std::string> ids);
void add_xdel(request& req, std::string_view key, std::span<const std::string> ids);
awaitable<std::int64_t> xdel(connection& c, std::string_view key, std::span<const std::string> ids);
awaitable<std::int64_t> xlen(connection& c, std::string_view key);

struct autoclaim_result {
  std::string next_start;              // "0-0" once the whole pending list was scanned
  std::vector<stream_entry> entries;   // now owned by the claiming consumer
  std::vector<std::string> deleted;    // pending ids whose entries no longer exist (removed from the PEL)
};
awaitable<autoclaim_result> xautoclaim(connection& c, std::string_view key, std::string_view group,
                                       std::string_view consumer, std::chrono::milliseconds min_idle,
                                       std::string_view start = "0-0", std::size_t count = 100);
awaitable<std::vector<stream_entry>> xclaim(connection& c, std::string_view key, std::string_view group,
                                            std::string_view consumer, std::chrono::milliseconds min_idle,
                                            std::span<const std::string> ids);

struct pending_summary {
  std::int64_t count = 0;
  std::string smallest, largest;
  std::vector<std::pair<std::string, std::int64_t>> consumers;
};
awaitable<pending_summary> xpending(connection& c, std::string_view key, std::string_view group);

struct pending_entry {
  std::string id;
  std::string consumer;
  std::int64_t idle_ms = 0;
  std::int64_t deliveries = 0;
};
struct pending_range {
  std::string_view start = "-";
  std::string_view end = "+";
  std::size_t count = 100;
  std::string_view consumer;                         // empty: all consumers
  std::optional<std::chrono::milliseconds> min_idle;
};
static_assert(safe_coroutine_options<pending_range>);
awaitable<std::vector<pending_entry>> xpending(connection& c, std::string_view key, std::string_view group,
                                               const pending_range& range);

struct group_info {
  std::string name;
  std::int64_t consumers = 0;
  std::int64_t pending = 0;
  std::string last_delivered_id;
  std::optional<std::int64_t> lag;  // null when Redis cannot tell
};
awaitable<std::vector<group_info>> xinfo_groups(connection& c, std::string_view key);

// Creates the group; returns false when it already existed (BUSYGROUP), so start-up can call it
// every time.
awaitable<bool> xgroup_create(connection& c, std::string_view key, std::string_view group,
                              std::string_view start_id = "$", bool mkstream = true);

// --- sorted sets, strings, hashes ---------------------------------------------------------------
struct scored_member {
  double score = 0;
  std::string member;
};
awaitable<std::int64_t> zadd(connection& c, std::string_view key, std::span<const scored_member> members);
// ZRANGE key min max BYSCORE LIMIT offset count WITHSCORES
awaitable<std::vector<scored_member>> zrange_by_score(connection& c, std::string_view key, std::string_view min,
                                                      std::string_view max, std::size_t offset = 0,
                                                      std::size_t count = 100);
awaitable<std::int64_t> zrem(connection& c, std::string_view key, std::span<const std::string> members);

// SET key value NX PX ttl: true when the key was set (did not exist).
awaitable<bool> set_nx_px(connection& c, std::string_view key, std::string_view value, std::chrono::milliseconds ttl);

awaitable<std::int64_t> hset(connection& c, std::string_view key, std::span<const field_view> fields);
awaitable<std::vector<std::pair<std::string, std::string>>> hgetall(connection& c, std::string_view key);

// --- scripts and transactions ----------------------------------------------------------------
class script {
 public:
  explicit script(std::string source);
  const std::string& source() const noexcept { return source_; }
  const std::string& sha1() const noexcept { return sha1_; }

 private:
  std::string source_;
  std::string sha1_;
};

// EVALSHA; on NOSCRIPT (first use, or a restarted server) loads the script and retries once.
awaitable<resp::value> evalsha(connection& c, const script& s, std::span<const std::string_view> keys,
                               std::span<const std::string_view> args);

// MULTI, the commands of `commands`, EXEC: one pipeline, applied atomically. Returns EXEC's
// replies (error replies of single commands included as values). Throws server_error when Redis
// refused the transaction (EXECABORT: a command was rejected while queueing).
awaitable<response> transaction(connection& c, const request& commands);

}  // namespace sagaflow::transport
