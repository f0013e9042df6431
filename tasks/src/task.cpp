// Envelope encoding: the packed envelope (one stream entry field, one delayed-set member), and
// the named fields of the format before it, still read during an upgrade.
#include <sagaflow/tasks/task.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <iterator>

namespace sagaflow::tasks {

std::string_view to_string(priority p) noexcept {
  switch (p) {
    case priority::critical: return "critical";
    case priority::high: return "high";
    case priority::normal: return "normal";
    case priority::low: return "low";
  }
  return "unknown";
}

payload::payload(const boost::json::value& v) : kind(encoding::json), data(boost::json::serialize(v)) {}

payload payload::bytes(std::string raw) {
  payload p;
  p.kind = encoding::bytes;
  p.data = std::move(raw);
  return p;
}

namespace {

// ---- the packed envelope (format in task.hpp) -------------------------------------------------

constexpr std::size_t known_items = 16;
constexpr std::string_view item_names[known_items] = {
    "id",         "name",          "queue", "priority",    "enc",         "attempt",          "max_attempts", "backoff",
    "timeout_ms", "prev_delay_ms", "corr",  "enqueued_ms", "unknown_since_ms", "last_error", "headers",      "payload"};
constexpr std::size_t max_length_digits = 10;  // items up to 9,999,999,999 bytes; more is malformed

// A number's text, formatted without allocating.
struct number_text {
  char buffer[32];
  std::size_t size = 0;

  template <typename T>
  explicit number_text(T v) {
    size = static_cast<std::size_t>(std::to_chars(buffer, buffer + sizeof buffer, v).ptr - buffer);
  }
  std::string_view view() const noexcept { return {buffer, size}; }
};

// "base_ms,multiplier,cap_ms,jitter", formatted without allocating; the multiplier is the
// shortest text that reads back as the same double.
struct backoff_text {
  char buffer[96];
  std::size_t size = 0;

  explicit backoff_text(const backoff_policy& b) {
    char* out = buffer;
    char* end = buffer + sizeof buffer;
    out = std::to_chars(out, end, b.base.count()).ptr;
    *out++ = ',';
    // A whole multiplier (the usual 2) as an integer: the same text, without the cost of the
    // shortest-double search.
    if (b.multiplier >= 1 && b.multiplier <= 1e15 && b.multiplier == static_cast<double>(static_cast<std::int64_t>(b.multiplier)))
      out = std::to_chars(out, end, static_cast<std::int64_t>(b.multiplier)).ptr;
    else
      out = std::to_chars(out, end, b.multiplier).ptr;
    *out++ = ',';
    out = std::to_chars(out, end, b.cap.count()).ptr;
    *out++ = ',';
    auto jitter = to_string(b.jitter);  // at most 12 bytes: the buffer holds 20 + 24 + 20 + 3 + 12
    out = std::copy(jitter.begin(), jitter.end(), out);
    size = static_cast<std::size_t>(out - buffer);
  }
  std::string_view view() const noexcept { return {buffer, size}; }
};

std::size_t digits(std::size_t n) noexcept {
  std::size_t d = 1;
  while (n >= 10) {
    n /= 10;
    ++d;
  }
  return d;
}

// The size of an item of n bytes with the space before it: " length:bytes".
std::size_t item_size(std::size_t n) noexcept { return 1 + digits(n) + 1 + n; }

// put_length writes "length:", put_item " length:bytes", at `out` in a buffer sized for them
// beforehand; each returns the end of what it wrote.
char* put_length(char* out, std::size_t n) noexcept {
  if (n < 10) {  // most items: a digit or two
    *out++ = static_cast<char>('0' + n);
  } else if (n < 100) {
    *out++ = static_cast<char>('0' + n / 10);
    *out++ = static_cast<char>('0' + n % 10);
  } else {
    out = std::to_chars(out, out + 20, n).ptr;
  }
  *out++ = ':';
  return out;
}

char* put_item(char* out, std::string_view bytes) noexcept {
  *out++ = ' ';
  out = put_length(out, bytes.size());
  return std::copy(bytes.begin(), bytes.end(), out);
}

// `text`, shortened and with bytes other than printable ASCII as \xNN: for error messages.
std::string quoted(std::string_view text) {
  constexpr std::size_t shown = 40;
  std::string out = "'";
  for (std::size_t i = 0; i < text.size() && i < shown; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out.push_back(static_cast<char>(c));
    } else {
      constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  out += text.size() > shown ? "'..." : "'";
  return out;
}

[[noreturn]] void malformed(std::string_view what) {
  throw std::invalid_argument("packed task envelope: " + std::string(what));
}

// Reads items (" length:bytes") one after the other from a packed envelope or a nested list.
class item_reader {
 public:
  // `offset`: where `text` starts in the whole envelope. `space_first`: the first item starts
  // with a space too (at the top level, after the version tag; in a nested list only the items
  // after the first do).
  item_reader(std::string_view text, std::size_t offset, bool space_first) noexcept
      : text_(text), offset_(offset), space_next_(space_first) {}

  bool at_end() const noexcept { return pos_ == text_.size(); }
  std::string_view rest() const noexcept { return text_.substr(pos_); }

  // The next item's bytes; `what` names it in errors.
  std::string_view next(std::string_view what) {
    std::size_t at = pos_;
    if (space_next_) {
      if (at == text_.size() || text_[at] != ' ') refuse(what);
      ++at;
    }
    // The length: at most max_length_digits digits, no leading zero, then ':'.
    const char* start = text_.data() + at;
    const char* end = text_.data() + text_.size();
    std::size_t length = 0;
    auto [after, ec] = std::from_chars(start, start + std::min<std::size_t>(end - start, max_length_digits + 1), length);
    auto digits = static_cast<std::size_t>(after - start);
    if (ec != std::errc{} || after == end || *after != ':' || digits > max_length_digits || (digits > 1 && *start == '0'))
      refuse(what);
    at += digits + 1;
    if (length > text_.size() - at) refuse(what);
    space_next_ = true;
    pos_ = at + length;
    return text_.substr(at, length);
  }

 private:
  // Says why the item at pos_ cannot be read (next() found that it cannot): kept out of next()
  // so that the hot path stays small.
  [[noreturn, gnu::cold, gnu::noinline]] void refuse(std::string_view what) const {
    std::size_t at = pos_;
    if (at == text_.size()) malformed("truncated: item '" + std::string(what) + "' is missing");
    if (space_next_) {
      if (text_[at] != ' ')
        malformed("expected a space before item '" + std::string(what) + "' at byte " + std::to_string(offset_ + at) +
                  ", found " + quoted(text_.substr(at, 1)));
      ++at;
    }
    auto colon = text_.find(':', at);
    auto length_text = text_.substr(at, colon == std::string_view::npos ? std::string_view::npos : colon - at);
    bool all_digits = std::all_of(length_text.begin(), length_text.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (colon == std::string_view::npos && all_digits && length_text.size() <= max_length_digits)
      malformed("truncated: item '" + std::string(what) + "' ends in its length");
    if (colon == std::string_view::npos || !all_digits || length_text.empty() || length_text.size() > max_length_digits ||
        (length_text.size() > 1 && length_text[0] == '0'))
      malformed("item '" + std::string(what) + "' has a bad length " + quoted(length_text));
    std::size_t length = 0;
    std::from_chars(length_text.data(), length_text.data() + length_text.size(), length);
    at = colon + 1;
    malformed("truncated: item '" + std::string(what) + "' needs " + std::to_string(length) + " bytes, " +
              std::to_string(text_.size() - at) + " are left");
  }

  std::string_view text_;
  std::size_t offset_;
  std::size_t pos_ = 0;
  bool space_next_;
};

[[noreturn, gnu::cold, gnu::noinline]] void not_a_number(std::string_view item, std::string_view text) {
  malformed("item '" + std::string(item) + "' is not a number: " + quoted(text));
}

template <typename Number>
Number packed_number(std::string_view item, std::string_view text) {
  Number v{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) not_a_number(item, text);
  return v;
}

backoff_policy packed_backoff(std::string_view text) {
  std::string_view parts[4];
  std::string_view rest = text;
  for (int i = 0; i < 4; ++i) {
    auto comma = rest.find(',');
    if ((comma == std::string_view::npos) != (i == 3))
      malformed("item 'backoff' is not base_ms,multiplier,cap_ms,jitter: " + quoted(text));
    parts[i] = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  }
  backoff_policy b;
  b.base = std::chrono::milliseconds(packed_number<std::int64_t>("backoff", parts[0]));
  b.multiplier = packed_number<double>("backoff", parts[1]);
  b.cap = std::chrono::milliseconds(packed_number<std::int64_t>("backoff", parts[2]));
  try {
    b.jitter = parse_jitter(parts[3]);
    b.validate();
  } catch (const std::invalid_argument& e) {
    malformed("item 'backoff': " + std::string(e.what()));
  }
  return b;
}

// ---- the named fields of the format before the packed one (read only) ------------------------

template <typename Int>
Int number(std::string_view field, std::string_view text) {
  Int v{};
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size())
    throw std::invalid_argument("task field '" + std::string(field) + "' is not a number: '" + std::string(text) + "'");
  return v;
}

backoff_policy parse_backoff(std::string_view text) {
  backoff_policy b;
  std::string_view parts[4];
  for (int i = 0; i < 4; ++i) {
    auto comma = text.find(',');
    if ((comma == std::string_view::npos) != (i == 3)) throw std::invalid_argument("task field 'backoff' is malformed");
    parts[i] = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
  }
  b.base = std::chrono::milliseconds(number<std::int64_t>("backoff", parts[0]));
  try {
    b.multiplier = std::stod(std::string(parts[1]));
  } catch (const std::exception&) {
    throw std::invalid_argument("task field 'backoff' has a bad multiplier");
  }
  b.cap = std::chrono::milliseconds(number<std::int64_t>("backoff", parts[2]));
  b.jitter = parse_jitter(parts[3]);
  b.validate();
  return b;
}

envelope from_named_fields(const std::vector<std::pair<std::string, std::string>>& fields) {
  envelope e;
  bool has_id = false, has_name = false, has_payload = false;
  for (auto& [k, v] : fields) {
    if (k == "id") { e.id = v; has_id = true; }
    else if (k == "name") { e.name = v; has_name = true; }
    else if (k == "queue") e.queue = v;
    else if (k == "priority") {
      auto p = number<int>(k, v);
      if (p < 0 || p > 3) throw std::invalid_argument("task field 'priority' must be 0..3");
      e.priority = static_cast<tasks::priority>(p);
    }
    else if (k == "enc") {
      if (v != "json" && v != "bytes") throw std::invalid_argument("task field 'enc' must be json or bytes");
      e.payload.kind = v == "json" ? payload::encoding::json : payload::encoding::bytes;
    }
    else if (k == "payload") { e.payload.data = v; has_payload = true; }
    else if (k == "attempt") e.attempt = number<std::uint32_t>(k, v);
    else if (k == "max_attempts") e.retry.max_attempts = number<std::uint32_t>(k, v);
    else if (k == "backoff") e.retry.backoff = parse_backoff(v);
    else if (k == "timeout_ms") e.timeout = std::chrono::milliseconds(number<std::int64_t>(k, v));
    else if (k == "prev_delay_ms") e.previous_delay = std::chrono::milliseconds(number<std::int64_t>(k, v));
    else if (k == "corr") e.correlation_id = v;
    else if (k == "enqueued_ms") e.enqueued_ms = number<std::int64_t>(k, v);
    else if (k == "last_error") e.last_error = v;
    else if (k == "unknown_since_ms") e.unknown_since_ms = number<std::int64_t>(k, v);
    else if (k.starts_with("h.")) e.headers.emplace(k.substr(2), v);
  }
  if (!has_id || !has_name || !has_payload)
    throw std::invalid_argument(std::string("task entry lacks the field '") + (!has_id ? "id" : !has_name ? "name" : "payload") + "'");
  if (e.attempt == 0 || e.retry.max_attempts == 0) throw std::invalid_argument("task attempt counts must be >= 1");
  return e;
}

// The packed envelope, after `prefix` (0: none), in one allocation: every size is known first.
std::string pack(const envelope& e, char prefix) {
  const char priority_digit = static_cast<char>('0' + static_cast<int>(e.priority));
  const std::string_view enc = e.payload.kind == payload::encoding::json ? "json" : "bytes";
  const number_text attempt(e.attempt), max_attempts(e.retry.max_attempts), timeout(e.timeout.count()),
      previous_delay(e.previous_delay.count()), enqueued(e.enqueued_ms), unknown_since(e.unknown_since_ms);
  const backoff_text backoff(e.retry.backoff);
  std::size_t headers_size = 0;
  for (auto& [k, v] : e.headers) headers_size += item_size(k.size()) + item_size(v.size());
  if (headers_size) --headers_size;  // the first nested item has no space before it
  const std::string_view before_headers[] = {
      e.id, e.name, e.queue, std::string_view(&priority_digit, 1), enc, attempt.view(), max_attempts.view(),
      backoff.view(), timeout.view(), previous_delay.view(), e.correlation_id, enqueued.view(),
      unknown_since.view(), e.last_error};
  static_assert(std::size(before_headers) + 2 == known_items);

  // Everything up to the payload's bytes is written in place; the payload (possibly large) and
  // the appended items are copied after it, so that only the small part is zeroed by resize.
  std::size_t head = (prefix ? 1 : 0) + packed_version.size() + item_size(headers_size) +
                     item_size(e.payload.data.size()) - e.payload.data.size();
  for (auto item : before_headers) head += item_size(item.size());
  std::string out;
  out.reserve(head + e.payload.data.size() + e.unknown_items.size());
  out.resize(head);
  char* at = out.data();
  if (prefix) *at++ = prefix;
  at = std::copy(packed_version.begin(), packed_version.end(), at);
  for (auto item : before_headers) at = put_item(at, item);
  *at++ = ' ';
  at = put_length(at, headers_size);
  bool first = true;
  for (auto& [k, v] : e.headers) {
    if (!first) *at++ = ' ';
    first = false;
    at = put_length(at, k.size());
    at = std::copy(k.begin(), k.end(), at);
    at = put_item(at, v);
  }
  *at++ = ' ';
  at = put_length(at, e.payload.data.size());
  assert(at == out.data() + out.size());
  out.append(e.payload.data);
  out.append(e.unknown_items);
  return out;
}

}  // namespace

std::string envelope::encode() const { return pack(*this, 0); }

envelope envelope::decode(std::string_view packed) {
  if (!packed.starts_with(packed_version))
    malformed("does not start with the version tag '" + std::string(packed_version) + "': " + quoted(packed));
  item_reader items(packed.substr(packed_version.size()), packed_version.size(), true);
  std::string_view v[known_items];
  for (std::size_t i = 0; i < known_items; ++i) v[i] = items.next(item_names[i]);
  envelope e;
  e.id = std::string(v[0]);
  e.name = std::string(v[1]);
  e.queue = std::string(v[2]);
  if (v[3].size() != 1 || v[3][0] < '0' || v[3][0] > '3') malformed("item 'priority' must be 0..3, not " + quoted(v[3]));
  e.priority = static_cast<tasks::priority>(v[3][0] - '0');
  if (v[4] == "json") e.payload.kind = payload::encoding::json;
  else if (v[4] == "bytes") e.payload.kind = payload::encoding::bytes;
  else malformed("item 'enc' must be json or bytes, not " + quoted(v[4]));
  e.attempt = packed_number<std::uint32_t>(item_names[5], v[5]);
  if (e.attempt == 0) malformed("item 'attempt' must be >= 1");
  e.retry.max_attempts = packed_number<std::uint32_t>(item_names[6], v[6]);
  if (e.retry.max_attempts == 0) malformed("item 'max_attempts' must be >= 1");
  e.retry.backoff = packed_backoff(v[7]);
  e.timeout = std::chrono::milliseconds(packed_number<std::int64_t>(item_names[8], v[8]));
  e.previous_delay = std::chrono::milliseconds(packed_number<std::int64_t>(item_names[9], v[9]));
  e.correlation_id = std::string(v[10]);
  e.enqueued_ms = packed_number<std::int64_t>(item_names[11], v[11]);
  e.unknown_since_ms = packed_number<std::int64_t>(item_names[12], v[12]);
  e.last_error = std::string(v[13]);
  item_reader headers(v[14], static_cast<std::size_t>(v[14].data() - packed.data()), false);
  while (!headers.at_end()) {
    auto key = headers.next("header name");
    auto value = headers.next("header value");
    e.headers.emplace(key, value);
  }
  e.payload.data = std::string(v[15]);
  // Items a newer writer appended: checked to be items, then kept as they are.
  auto unknown = items.rest();
  for (std::size_t i = known_items; !items.at_end(); ++i) items.next("#" + std::to_string(i + 1) + " (appended)");
  e.unknown_items = unknown;
  return e;
}

std::vector<std::string> envelope::to_fields() const {
  std::vector<std::string> f;
  f.reserve(2);
  f.emplace_back(entry_field);
  f.push_back(encode());
  return f;
}

envelope envelope::from_fields(const std::vector<std::pair<std::string, std::string>>& fields) {
  for (auto& [k, v] : fields)
    if (k == entry_field) return decode(v);
  return from_named_fields(fields);
}

std::string envelope::to_delayed_member() const {
  return pack(*this, static_cast<char>('0' + static_cast<int>(priority)));
}

}  // namespace sagaflow::tasks
