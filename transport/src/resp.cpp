// Incremental RESP2/RESP3 parser: one pass over the bytes, a stack of open aggregates, bulk
// strings copied once from the connection buffer into their value.
#include <sagaflow/transport/resp.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

namespace sagaflow::transport::resp {

std::string_view to_string(parse_error e) noexcept {
  switch (e) {
    case parse_error::none: return "no error";
    case parse_error::bad_type: return "unknown RESP type byte";
    case parse_error::bad_integer: return "malformed integer";
    case parse_error::bad_length: return "malformed length";
    case parse_error::bulk_too_large: return "bulk string over the size limit";
    case parse_error::too_many_elements: return "aggregate over the element limit";
    case parse_error::too_deep: return "nesting over the depth limit";
    case parse_error::bad_double: return "malformed double";
    case parse_error::bad_boolean: return "malformed boolean";
    case parse_error::bad_verbatim: return "verbatim string without format prefix";
    case parse_error::missing_crlf: return "bulk string not terminated by CRLF";
    case parse_error::line_too_long: return "line over the length limit";
  }
  return "unknown parse error";
}

namespace {

// Strict base-10: optional '-', at least one digit, nothing else, no overflow.
bool parse_int(std::string_view s, std::int64_t& out) noexcept {
  if (s.empty() || s.front() == '+') return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && ptr == s.data() + s.size();
}

bool parse_double(std::string_view s, double& out) noexcept {
  if (s == "inf" || s == "+inf") { out = std::numeric_limits<double>::infinity(); return true; }
  if (s == "-inf") { out = -std::numeric_limits<double>::infinity(); return true; }
  if (s == "nan" || s == "-nan") { out = std::numeric_limits<double>::quiet_NaN(); return true; }
  if (s.empty()) return false;
  if (s.front() == '+') {
    s.remove_prefix(1);
    if (s.empty() || s.front() == '-') return false;  // from_chars would take "+-1" as -1
  }
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && ptr == s.data() + s.size();
}

bool is_big_number(std::string_view s) noexcept {
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) s.remove_prefix(1);
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

void parser::reset() noexcept {
  stack_.clear();
  done_ = value{};
  bulk_ = value{};
  bulk_left_ = 0;
  in_bulk_ = false;
  error_ = parse_error::none;
}

bool parser::emit(value&& v) {
  for (;;) {
    if (stack_.empty()) {
      done_ = std::move(v);
      return true;
    }
    frame& top = stack_.back();
    top.node.elements.push_back(std::move(v));
    if (--top.remaining > 0) return false;
    bool attribute = top.attribute;
    v = std::move(top.node);
    stack_.pop_back();
    if (attribute) return false;  // the value the attribute describes follows
  }
}

parser::result parser::feed(std::string_view data) {
  result r;
  if (error_ != parse_error::none) {
    r.error = error_;
    return r;
  }
  auto fail = [&](parse_error e) {
    error_ = e;
    r.error = e;
    return r;
  };
  std::size_t pos = 0;
  while (pos < data.size()) {
    if (in_bulk_) {
      std::size_t take = std::min(bulk_left_, data.size() - pos);
      bulk_.text.append(data.data() + pos, take);
      pos += take;
      bulk_left_ -= take;
      r.consumed = pos;
      if (bulk_left_ > 0 || data.size() - pos < 2) return r;
      if (data[pos] != '\r' || data[pos + 1] != '\n') return fail(parse_error::missing_crlf);
      pos += 2;
      r.consumed = pos;
      in_bulk_ = false;
      if (bulk_.type == type::verbatim_string) {
        if (bulk_.text.size() < 4 || bulk_.text[3] != ':') return fail(parse_error::bad_verbatim);
        bulk_.text.erase(0, 4);
      }
      if (emit(std::move(bulk_))) {
        bulk_ = value{};
        r.complete = true;
        return r;
      }
      bulk_ = value{};
      continue;
    }

    auto end = data.find("\r\n", pos);
    if (end == std::string_view::npos) {
      // A CR at the end of the data may be the first half of the line's CRLF: not counted, so
      // that where the bytes were split never decides whether a line is too long.
      std::size_t line_bytes = data.size() - pos - (data.back() == '\r' ? 1 : 0);
      if (line_bytes > limits_.max_line_length) return fail(parse_error::line_too_long);
      return r;
    }
    if (end - pos > limits_.max_line_length) return fail(parse_error::line_too_long);
    char kind = data[pos];
    std::string_view line = data.substr(pos + 1, end - pos - 1);
    pos = end + 2;
    r.consumed = pos;

    value v;
    switch (kind) {
      case '+': v.type = type::simple_string; v.text.assign(line); break;
      case '-': v.type = type::simple_error; v.text.assign(line); break;
      case ':':
        v.type = type::integer;
        if (!parse_int(line, v.integer)) return fail(parse_error::bad_integer);
        break;
      case '_': v.type = type::null; break;
      case '#':
        if (line != "t" && line != "f") return fail(parse_error::bad_boolean);
        v.type = type::boolean;
        v.integer = line == "t";
        break;
      case ',':
        v.type = type::double_number;
        if (!parse_double(line, v.number)) return fail(parse_error::bad_double);
        v.text.assign(line);
        break;
      case '(':
        if (!is_big_number(line)) return fail(parse_error::bad_integer);
        v.type = type::big_number;
        v.text.assign(line);
        break;
      case '$':
      case '!':
      case '=': {
        std::int64_t len = 0;
        if (!parse_int(line, len)) return fail(parse_error::bad_length);
        if (len == -1 && kind == '$') break;  // RESP2 null bulk string
        if (len < 0) return fail(parse_error::bad_length);
        if (static_cast<std::uint64_t>(len) > limits_.max_bulk_length) return fail(parse_error::bulk_too_large);
        bulk_.type = kind == '$' ? type::bulk_string : kind == '!' ? type::bulk_error : type::verbatim_string;
        // Reserve only what has arrived: a declared size alone never allocates.
        bulk_.text.reserve(std::min<std::size_t>(static_cast<std::size_t>(len), data.size() - pos));
        bulk_left_ = static_cast<std::size_t>(len);
        in_bulk_ = true;
        continue;
      }
      case '*':
      case '%':
      case '~':
      case '>':
      case '|': {
        std::int64_t count = 0;
        if (!parse_int(line, count)) return fail(parse_error::bad_length);
        if (count == -1 && kind == '*') break;  // RESP2 null array
        if (count < 0) return fail(parse_error::bad_length);
        if (static_cast<std::uint64_t>(count) > limits_.max_elements) return fail(parse_error::too_many_elements);
        v.type = kind == '*' ? type::array : kind == '%' ? type::map : kind == '~' ? type::set
               : kind == '>' ? type::push : type::map;
        bool attribute = kind == '|';
        std::size_t items = static_cast<std::size_t>(count) * ((kind == '%' || attribute) ? 2 : 1);
        if (items == 0) {
          if (attribute) continue;
          break;
        }
        if (stack_.size() >= limits_.max_depth) return fail(parse_error::too_deep);
        v.elements.reserve(std::min<std::size_t>(items, 64));
        stack_.push_back(frame{std::move(v), items, attribute});
        continue;
      }
      default: return fail(parse_error::bad_type);
    }
    if (emit(std::move(v))) {
      r.complete = true;
      return r;
    }
  }
  return r;
}

}  // namespace sagaflow::transport::resp
