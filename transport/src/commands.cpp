// Typed Redis commands: request builders and reply decoders, RESP2 and RESP3 alike.
#include <sagaflow/transport/commands.hpp>

#include <openssl/evp.h>

#include <charconv>
#include <optional>

#include <boost/asio/use_awaitable.hpp>

namespace sagaflow::transport {

using boost::system::system_error;

namespace {

[[noreturn]] void unexpected(std::string_view what, const resp::value& v) {
  throw system_error(error::unexpected_reply,
                     std::string(what) + ": unexpected reply type " + std::to_string(static_cast<int>(v.type)));
}

// Sends one command and returns its reply, throwing server_error for an error reply.
awaitable<resp::value> one(connection& c, request req) { co_return co_await c.call(std::move(req)); }

std::string_view ms_arg(std::chrono::milliseconds d, char (&buf)[24]) {
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d.count());
  (void)ec;
  return {buf, static_cast<std::size_t>(end - buf)};
}

stream_entry decode_entry(resp::value&& v) {
  if (v.type != resp::type::array || v.elements.size() != 2) unexpected("stream entry", v);
  stream_entry e;
  e.id = as_string(std::move(v.elements[0]), "stream entry id");
  auto& fields = v.elements[1];
  if (fields.is_null()) return e;  // deleted while pending
  if (!fields.is_aggregate() || fields.elements.size() % 2) unexpected("stream entry fields", fields);
  e.fields.reserve(fields.elements.size() / 2);
  for (std::size_t i = 0; i + 1 < fields.elements.size(); i += 2)
    e.fields.emplace_back(as_string(std::move(fields.elements[i]), "field name"),
                          as_string(std::move(fields.elements[i + 1]), "field value"));
  return e;
}

std::vector<stream_entry> decode_entries(resp::value&& v) {
  if (v.is_null()) return {};
  if (!v.is_aggregate()) unexpected("stream entries", v);
  std::vector<stream_entry> out;
  out.reserve(v.elements.size());
  for (auto& e : v.elements) out.push_back(decode_entry(std::move(e)));
  return out;
}

// Key/value pairs sent as a RESP3 map or a RESP2 flat array: both are flat here.
template <typename F>
void for_each_pair(const resp::value& v, std::string_view what, F&& f) {
  if (!v.is_aggregate() || v.elements.size() % 2) unexpected(what, v);
  for (std::size_t i = 0; i + 1 < v.elements.size(); i += 2) f(v.elements[i].text, v.elements[i + 1]);
}

std::string to_hex(const unsigned char* data, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[data[i] >> 4];
    out[2 * i + 1] = digits[data[i] & 15];
  }
  return out;
}

}  // namespace

std::string as_string(resp::value&& v, std::string_view what) {
  if (v.is_string() || v.type == resp::type::big_number || v.type == resp::type::double_number) return std::move(v.text);
  if (v.type == resp::type::integer) return std::to_string(v.integer);
  unexpected(what, v);
}

std::int64_t as_integer(const resp::value& v, std::string_view what) {
  if (v.type == resp::type::integer || v.type == resp::type::boolean) return v.integer;
  if (v.is_string()) {
    std::int64_t n = 0;
    auto [ptr, ec] = std::from_chars(v.text.data(), v.text.data() + v.text.size(), n);
    if (ec == std::errc{} && ptr == v.text.data() + v.text.size()) return n;
  }
  unexpected(what, v);
}

loading_state parse_loading(std::string_view info) {
  // "field:value" lines separated by CRLF; sections start with '#'.
  auto field = [&](std::string_view name) -> std::optional<std::string_view> {
    for (std::size_t pos = 0; pos < info.size();) {
      auto end = info.find('\n', pos);
      if (end == std::string_view::npos) end = info.size();
      auto line = info.substr(pos, end - pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.size() > name.size() && line.starts_with(name) && line[name.size()] == ':')
        return line.substr(name.size() + 1);
      pos = end + 1;
    }
    return std::nullopt;
  };
  loading_state state;
  state.loading = field("loading") == std::optional<std::string_view>("1");
  if (auto eta = field("loading_eta_seconds")) {
    std::int64_t n = 0;
    auto [ptr, ec] = std::from_chars(eta->data(), eta->data() + eta->size(), n);
    if (ec == std::errc{} && n > 0) state.eta = std::chrono::seconds(n);
  }
  return state;
}

const std::string* stream_entry::find(std::string_view name) const noexcept {
  for (auto& [k, v] : fields)
    if (k == name) return &v;
  return nullptr;
}

std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_stream_id(std::string_view id) noexcept {
  auto dash = id.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  std::uint64_t ms = 0, seq = 0;
  auto [end_ms, ec_ms] = std::from_chars(id.data(), id.data() + dash, ms);
  auto [end_seq, ec_seq] = std::from_chars(id.data() + dash + 1, id.data() + id.size(), seq);
  if (ec_ms != std::errc{} || ec_seq != std::errc{} || end_ms != id.data() + dash || end_seq != id.data() + id.size())
    return std::nullopt;
  return std::pair{ms, seq};
}

bool stream_id_less(std::string_view a, std::string_view b) noexcept {
  auto x = parse_stream_id(a);
  auto y = parse_stream_id(b);
  if (!x || !y) return !x && y;  // what is not an id sorts first
  return *x < *y;
}

// --- streams ----------------------------------------------------------------------------------
void add_xadd(request& req, std::string_view key, std::span<const field_view> fields, const xadd_options& o) {
  using s = trim_options::strategy;
  std::size_t argc = 3 + 2 * fields.size() + (o.no_mkstream ? 1 : 0);
  if (o.trim.by != s::none) argc += 3 + (o.trim.limit > 0 && !o.trim.exact ? 2 : 0);
  req.begin(argc).arg("XADD").arg(key);
  if (o.no_mkstream) req.arg("NOMKSTREAM");
  if (o.trim.by != s::none) {
    req.arg(o.trim.by == s::maxlen ? "MAXLEN" : "MINID").arg(o.trim.exact ? "=" : "~").arg(o.trim.threshold);
    if (o.trim.limit > 0 && !o.trim.exact) req.arg("LIMIT").arg(o.trim.limit);
  }
  req.arg(o.id);
  for (auto& f : fields) req.arg(f.name).arg(f.value);
}

awaitable<std::string> xadd(connection& c, std::string_view key, std::span<const field_view> fields,
                            const xadd_options& options) {
  request req;
  add_xadd(req, key, fields, options);
  auto v = co_await one(c, std::move(req));
  if (v.is_null()) co_return std::string{};  // NOMKSTREAM on a missing stream
  co_return as_string(std::move(v), "XADD");
}

void add_xreadgroup(request& req, std::string_view group, std::string_view consumer,
                    std::span<const stream_offset> streams, const xreadgroup_options& o) {
  std::size_t argc = 5 + (o.count ? 2 : 0) + (o.block ? 2 : 0) + (o.noack ? 1 : 0) + 2 * streams.size();
  req.begin(argc).arg("XREADGROUP").arg("GROUP").arg(group).arg(consumer);
  if (o.count) req.arg("COUNT").arg(o.count);
  if (o.block) req.arg("BLOCK").arg(o.block->count());
  if (o.noack) req.arg("NOACK");
  req.arg("STREAMS");
  for (auto& s : streams) req.arg(s.key);
  for (auto& s : streams) req.arg(s.id);
  if (o.block) req.block_time = *o.block;
}

std::vector<stream_batch> decode_stream_batches(resp::value&& reply) {
  std::vector<stream_batch> out;
  if (reply.is_null()) return out;  // BLOCK timed out
  if (reply.type == resp::type::map) {  // RESP3: stream -> entries
    for (std::size_t i = 0; i + 1 < reply.elements.size(); i += 2)
      out.push_back({as_string(std::move(reply.elements[i]), "stream name"), decode_entries(std::move(reply.elements[i + 1]))});
    return out;
  }
  if (reply.type != resp::type::array) unexpected("XREADGROUP", reply);
  for (auto& s : reply.elements) {  // RESP2: [[stream, entries], ...]
    if (s.type != resp::type::array || s.elements.size() != 2) unexpected("XREADGROUP stream", s);
    out.push_back({as_string(std::move(s.elements[0]), "stream name"), decode_entries(std::move(s.elements[1]))});
  }
  return out;
}

awaitable<std::vector<stream_batch>> xreadgroup(connection& c, std::string_view group, std::string_view consumer,
                                                std::span<const stream_offset> streams,
                                                const xreadgroup_options& options) {
  request req;
  add_xreadgroup(req, group, consumer, streams, options);
  co_return decode_stream_batches(co_await one(c, std::move(req)));
}

void add_xack(request& req, std::string_view key, std::string_view group, std::span<const std::string> ids) {
  req.begin(3 + ids.size()).arg("XACK").arg(key).arg(group);
  for (auto& id : ids) req.arg(id);
}

awaitable<std::int64_t> xack(connection& c, std::string_view key, std::string_view group, std::span<const std::string> ids) {
  request req;
  add_xack(req, key, group, ids);
  co_return as_integer(co_await one(c, std::move(req)), "XACK");
}

void add_xdel(request& req, std::string_view key, std::span<const std::string> ids) {
  req.begin(2 + ids.size()).arg("XDEL").arg(key);
  for (auto& id : ids) req.arg(id);
}

awaitable<std::int64_t> xdel(connection& c, std::string_view key, std::span<const std::string> ids) {
  request req;
  add_xdel(req, key, ids);
  co_return as_integer(co_await one(c, std::move(req)), "XDEL");
}

awaitable<std::int64_t> xlen(connection& c, std::string_view key) {
  request req;
  req.push("XLEN", key);
  co_return as_integer(co_await one(c, std::move(req)), "XLEN");
}

awaitable<autoclaim_result> xautoclaim(connection& c, std::string_view key, std::string_view group,
                                       std::string_view consumer, std::chrono::milliseconds min_idle,
                                       std::string_view start, std::size_t count) {
  request req;
  char buf[24];
  req.push("XAUTOCLAIM", key, group, consumer, ms_arg(min_idle, buf), start, "COUNT", count);
  auto v = co_await one(c, std::move(req));
  if (v.type != resp::type::array || v.elements.size() < 2) unexpected("XAUTOCLAIM", v);
  autoclaim_result r;
  r.next_start = as_string(std::move(v.elements[0]), "XAUTOCLAIM cursor");
  r.entries = decode_entries(std::move(v.elements[1]));
  if (v.elements.size() > 2 && v.elements[2].is_aggregate())
    for (auto& id : v.elements[2].elements) r.deleted.push_back(as_string(std::move(id), "XAUTOCLAIM deleted id"));
  // Entries deleted from the stream come back as nil in Redis < 7; skip them.
  std::erase_if(r.entries, [](const stream_entry& e) { return e.id.empty(); });
  co_return r;
}

awaitable<std::vector<stream_entry>> xclaim(connection& c, std::string_view key, std::string_view group,
                                            std::string_view consumer, std::chrono::milliseconds min_idle,
                                            std::span<const std::string> ids) {
  request req;
  char buf[24];
  req.begin(5 + ids.size()).arg("XCLAIM").arg(key).arg(group).arg(consumer).arg(ms_arg(min_idle, buf));
  for (auto& id : ids) req.arg(id);
  auto v = co_await one(c, std::move(req));
  if (!v.is_aggregate()) unexpected("XCLAIM", v);
  std::vector<stream_entry> out;
  for (auto& e : v.elements)
    if (!e.is_null()) out.push_back(decode_entry(std::move(e)));
  co_return out;
}

awaitable<pending_summary> xpending(connection& c, std::string_view key, std::string_view group) {
  request req;
  req.push("XPENDING", key, group);
  auto v = co_await one(c, std::move(req));
  if (v.type != resp::type::array || v.elements.size() != 4) unexpected("XPENDING", v);
  pending_summary s;
  s.count = as_integer(v.elements[0], "XPENDING count");
  if (!v.elements[1].is_null()) s.smallest = as_string(std::move(v.elements[1]), "XPENDING smallest");
  if (!v.elements[2].is_null()) s.largest = as_string(std::move(v.elements[2]), "XPENDING largest");
  if (v.elements[3].is_aggregate())
    for (auto& pair : v.elements[3].elements) {
      if (pair.elements.size() != 2) unexpected("XPENDING consumer", pair);
      s.consumers.emplace_back(as_string(std::move(pair.elements[0]), "consumer"), as_integer(pair.elements[1], "consumer count"));
    }
  co_return s;
}

awaitable<std::vector<pending_entry>> xpending(connection& c, std::string_view key, std::string_view group,
                                               const pending_range& range) {
  request req;
  char buf[24];
  req.begin(6 + (range.min_idle ? 2 : 0) + (range.consumer.empty() ? 0 : 1)).arg("XPENDING").arg(key).arg(group);
  if (range.min_idle) req.arg("IDLE").arg(ms_arg(*range.min_idle, buf));
  req.arg(range.start).arg(range.end).arg(range.count);
  if (!range.consumer.empty()) req.arg(range.consumer);
  auto v = co_await one(c, std::move(req));
  if (!v.is_aggregate()) unexpected("XPENDING", v);
  std::vector<pending_entry> out;
  for (auto& e : v.elements) {
    if (e.elements.size() != 4) unexpected("XPENDING entry", e);
    out.push_back({as_string(std::move(e.elements[0]), "id"), as_string(std::move(e.elements[1]), "consumer"),
                   as_integer(e.elements[2], "idle"), as_integer(e.elements[3], "deliveries")});
  }
  co_return out;
}

awaitable<std::vector<group_info>> xinfo_groups(connection& c, std::string_view key) {
  request req;
  req.push("XINFO", "GROUPS", key);
  auto v = co_await one(c, std::move(req));
  if (!v.is_aggregate()) unexpected("XINFO GROUPS", v);
  std::vector<group_info> out;
  for (auto& g : v.elements) {
    group_info info;
    for_each_pair(g, "XINFO GROUPS group", [&](const std::string& k, const resp::value& val) {
      if (k == "name") info.name = val.text;
      else if (k == "consumers") info.consumers = as_integer(val, k);
      else if (k == "pending") info.pending = as_integer(val, k);
      else if (k == "last-delivered-id") info.last_delivered_id = val.text;
      else if (k == "lag" && !val.is_null()) info.lag = as_integer(val, k);
    });
    out.push_back(std::move(info));
  }
  co_return out;
}

awaitable<bool> xgroup_create(connection& c, std::string_view key, std::string_view group, std::string_view start_id,
                              bool mkstream) {
  request req;
  req.begin(5 + (mkstream ? 1 : 0)).arg("XGROUP").arg("CREATE").arg(key).arg(group).arg(start_id);
  if (mkstream) req.arg("MKSTREAM");
  try {
    co_await one(c, std::move(req));
  } catch (const server_error& e) {
    if (e.code() == "BUSYGROUP") co_return false;
    throw;
  }
  co_return true;
}

// --- sorted sets, strings, hashes ---------------------------------------------------------------
awaitable<std::int64_t> zadd(connection& c, std::string_view key, std::span<const scored_member> members) {
  request req;
  req.begin(2 + 2 * members.size()).arg("ZADD").arg(key);
  for (auto& m : members) req.arg(m.score).arg(m.member);
  co_return as_integer(co_await one(c, std::move(req)), "ZADD");
}

awaitable<std::vector<scored_member>> zrange_by_score(connection& c, std::string_view key, std::string_view min,
                                                      std::string_view max, std::size_t offset, std::size_t count) {
  request req;
  req.push("ZRANGE", key, min, max, "BYSCORE", "LIMIT", offset, count, "WITHSCORES");
  auto v = co_await one(c, std::move(req));
  if (!v.is_aggregate()) unexpected("ZRANGE", v);
  std::vector<scored_member> out;
  auto score_of = [](resp::value& s) {
    if (s.type == resp::type::double_number) return s.number;
    return std::stod(s.text);
  };
  if (!v.elements.empty() && v.elements.front().type == resp::type::array) {  // RESP3: [[member, score], ...]
    for (auto& pair : v.elements) {
      if (pair.elements.size() != 2) unexpected("ZRANGE pair", pair);
      out.push_back({score_of(pair.elements[1]), as_string(std::move(pair.elements[0]), "member")});
    }
  } else {  // RESP2: member, score, member, score, ...
    if (v.elements.size() % 2) unexpected("ZRANGE", v);
    for (std::size_t i = 0; i + 1 < v.elements.size(); i += 2)
      out.push_back({score_of(v.elements[i + 1]), as_string(std::move(v.elements[i]), "member")});
  }
  co_return out;
}

awaitable<std::int64_t> zrem(connection& c, std::string_view key, std::span<const std::string> members) {
  request req;
  req.begin(2 + members.size()).arg("ZREM").arg(key);
  for (auto& m : members) req.arg(m);
  co_return as_integer(co_await one(c, std::move(req)), "ZREM");
}

awaitable<bool> set_nx_px(connection& c, std::string_view key, std::string_view value, std::chrono::milliseconds ttl) {
  request req;
  char buf[24];
  req.push("SET", key, value, "NX", "PX", ms_arg(ttl, buf));
  auto v = co_await one(c, std::move(req));
  co_return !v.is_null();
}

awaitable<std::int64_t> hset(connection& c, std::string_view key, std::span<const field_view> fields) {
  request req;
  req.begin(2 + 2 * fields.size()).arg("HSET").arg(key);
  for (auto& f : fields) req.arg(f.name).arg(f.value);
  co_return as_integer(co_await one(c, std::move(req)), "HSET");
}

awaitable<std::vector<std::pair<std::string, std::string>>> hgetall(connection& c, std::string_view key) {
  request req;
  req.push("HGETALL", key);
  auto v = co_await one(c, std::move(req));
  std::vector<std::pair<std::string, std::string>> out;
  for_each_pair(v, "HGETALL", [&](const std::string& k, const resp::value& val) { out.emplace_back(k, val.text); });
  co_return out;
}

// --- scripts and transactions ----------------------------------------------------------------
script::script(std::string source) : source_(std::move(source)) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(source_.data(), source_.size(), digest, &len, EVP_sha1(), nullptr);
  sha1_ = to_hex(digest, len);
}

awaitable<resp::value> evalsha(connection& c, const script& s, std::span<const std::string_view> keys,
                               std::span<const std::string_view> args) {
  auto add_evalsha = [&](request& req) {
    req.begin(3 + keys.size() + args.size()).arg("EVALSHA").arg(s.sha1()).arg(keys.size());
    for (auto k : keys) req.arg(k);
    for (auto a : args) req.arg(a);
  };
  request req;
  add_evalsha(req);
  auto replies = co_await c.exec(req);
  if (replies.size() == 1 && replies[0].is_error() && replies[0].text.starts_with("NOSCRIPT")) {
    request retry;
    retry.push("SCRIPT", "LOAD", s.source());
    add_evalsha(retry);
    replies = co_await c.exec(retry);
    throw_on_error(retry, replies);
    co_return std::move(replies[1]);
  }
  throw_on_error(req, replies);
  co_return std::move(replies.at(0));
}

awaitable<response> transaction(connection& c, const request& commands) {
  request req;
  req.push("MULTI");
  req.append(commands);
  req.push("EXEC");
  auto replies = co_await c.exec(req);
  auto& exec_reply = replies.back();
  if (exec_reply.is_error()) {
    // EXECABORT: name the command that was refused while queueing.
    for (std::size_t i = 1; i + 1 < replies.size(); ++i)
      if (replies[i].is_error()) throw server_error(req.command_name(i), replies[i].text);
    throw server_error("EXEC", exec_reply.text);
  }
  if (exec_reply.is_null()) throw system_error(error::unexpected_reply, "EXEC: transaction aborted (WATCH)");
  if (!exec_reply.is_aggregate()) unexpected("EXEC", exec_reply);
  co_return std::move(exec_reply.elements);
}

}  // namespace sagaflow::transport
