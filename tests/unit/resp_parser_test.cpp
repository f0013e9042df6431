// Unit tests of the incremental RESP2/RESP3 parser: every type, input split at every byte, malformed
// input and limits (without allocating for a declared size), sticky errors and reset().
#include <sagaflow/transport/resp.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

// Failures print the error's name, not "1-byte object <0B>" (static: found by ADL, private to
// this file).
namespace sagaflow::transport::resp {
static void PrintTo(parse_error e, std::ostream* os) { *os << to_string(e); }
}  // namespace sagaflow::transport::resp

namespace {

using namespace std::string_literals;
using sagaflow::transport::resp::parse_error;
using sagaflow::transport::resp::parser;
using sagaflow::transport::resp::parser_limits;
using sagaflow::transport::resp::to_string;
using sagaflow::transport::resp::value;
namespace resp = sagaflow::transport::resp;

// A one-line rendering of a value that shows every field its type uses, so that one EXPECT_EQ
// checks type, text, number and children at once and a failure prints a readable diff.
std::string escaped(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '\r') out += "\\r";
    else if (c == '\n') out += "\\n";
    else if (c == '"' || c == '\\') out += {'\\', static_cast<char>(c)};
    else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else out += static_cast<char>(c);
  }
  return out + "\"";
}

std::string show(const value& v) {
  auto children = [&](char open, char close) {
    std::string out(1, open);
    for (std::size_t i = 0; i < v.elements.size(); ++i) out += (i ? ", " : "") + show(v.elements[i]);
    return out + close;
  };
  switch (v.type) {
    case resp::type::simple_string: return "+" + escaped(v.text);
    case resp::type::simple_error: return "-" + escaped(v.text);
    case resp::type::integer: return ":" + std::to_string(v.integer);
    case resp::type::bulk_string: return "$" + escaped(v.text);
    case resp::type::bulk_error: return "!" + escaped(v.text);
    case resp::type::verbatim_string: return "=" + escaped(v.text);
    case resp::type::null: return "_";
    case resp::type::boolean: return v.integer == 1 ? "#t" : v.integer == 0 ? "#f" : "#?" + std::to_string(v.integer);
    case resp::type::double_number: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17g", v.number);
      return "," + v.text + "=" + buf;
    }
    case resp::type::big_number: return "(" + v.text;
    case resp::type::array: return "*" + children('[', ']');
    case resp::type::map: return "%" + children('{', '}');
    case resp::type::set: return "~" + children('[', ']');
    case resp::type::push: return ">" + children('[', ']');
  }
  return "?";
}

// Field-by-field equality (NaN equal to NaN), stricter than show(): it also compares fields a
// type does not use, so a stray integer on a string is caught.
bool same(const value& a, const value& b) {
  bool numbers = (std::isnan(a.number) && std::isnan(b.number)) || a.number == b.number;
  if (a.type != b.type || a.text != b.text || a.integer != b.integer || !numbers ||
      a.elements.size() != b.elements.size())
    return false;
  for (std::size_t i = 0; i < a.elements.size(); ++i)
    if (!same(a.elements[i], b.elements[i])) return false;
  return true;
}

struct outcome {
  std::vector<value> values;
  parse_error error = parse_error::none;
  std::string left;  // bytes never consumed
};

// Offers `data` in chunks of the given sizes (the last one takes the rest) as a connection does:
// unconsumed bytes stay in the buffer and are offered again together with the next chunk.
outcome parse_chunks(std::string_view data, const std::vector<std::size_t>& chunks, parser_limits limits = {}) {
  parser p(limits);
  outcome out;
  std::size_t offered = 0, chunk = 0;
  while (offered < data.size()) {
    std::size_t n = chunk < chunks.size() ? std::min(chunks[chunk], data.size() - offered) : data.size() - offered;
    ++chunk;
    out.left.append(data.substr(offered, n));
    offered += n;
    for (;;) {
      auto r = p.feed(out.left);
      EXPECT_LE(r.consumed, out.left.size());
      out.left.erase(0, r.consumed);
      if (r.error != parse_error::none) {
        out.error = r.error;
        return out;
      }
      if (!r.complete) break;
      out.values.push_back(p.take());
    }
  }
  return out;
}

outcome parse_all(std::string_view data, parser_limits limits = {}) { return parse_chunks(data, {}, limits); }

// Exactly one complete value that uses every byte.
value parse_one(std::string_view data) {
  parser p;
  auto r = p.feed(data);
  EXPECT_EQ(r.error, parse_error::none) << escaped(data);
  EXPECT_TRUE(r.complete) << escaped(data);
  EXPECT_EQ(r.consumed, data.size()) << escaped(data);
  return p.take();
}

std::string show_one(std::string_view data) { return show(parse_one(data)); }

parse_error error_of(std::string_view data, parser_limits limits = {}) { return parse_all(data, limits).error; }

// ---- every type ------------------------------------------------------------------------------

TEST(resp_parser, simple_string) {
  value v = parse_one("+OK\r\n");
  EXPECT_EQ(v.type, resp::type::simple_string);
  EXPECT_EQ(v.text, "OK");
  EXPECT_TRUE(v.is_string());
  EXPECT_FALSE(v.is_error());
  EXPECT_EQ(show_one("+\r\n"), "+\"\"");
  EXPECT_EQ(show_one("+a b\rc\r\n"), "+\"a b\\rc\"");  // a lone CR belongs to the line
}

TEST(resp_parser, simple_error) {
  value v = parse_one("-ERR unknown command 'FOO'\r\n");
  EXPECT_EQ(v.type, resp::type::simple_error);
  EXPECT_EQ(v.text, "ERR unknown command 'FOO'");
  EXPECT_TRUE(v.is_error());
}

TEST(resp_parser, integer) {
  value v = parse_one(":1000\r\n");
  EXPECT_EQ(v.type, resp::type::integer);
  EXPECT_EQ(v.integer, 1000);
  EXPECT_EQ(parse_one(":0\r\n").integer, 0);
  EXPECT_EQ(parse_one(":-42\r\n").integer, -42);
  EXPECT_EQ(parse_one(":9223372036854775807\r\n").integer, std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(parse_one(":-9223372036854775808\r\n").integer, std::numeric_limits<std::int64_t>::min());
}

TEST(resp_parser, bulk_string) {
  value v = parse_one("$5\r\nhello\r\n");
  EXPECT_EQ(v.type, resp::type::bulk_string);
  EXPECT_EQ(v.text, "hello");
  EXPECT_EQ(show_one("$0\r\n\r\n"), "$\"\"");  // empty, not null
  EXPECT_EQ(show_one("$-1\r\n"), "_");         // RESP2 null bulk string
  EXPECT_TRUE(parse_one("$-1\r\n").is_null());
}

TEST(resp_parser, bulk_string_is_binary_safe) {
  std::string payload = "a\r\nb\0c\xff\r\n"s;  // CRLF, NUL and a high byte inside the content
  value v = parse_one("$" + std::to_string(payload.size()) + "\r\n" + payload + "\r\n");
  EXPECT_EQ(v.type, resp::type::bulk_string);
  EXPECT_EQ(v.text, payload);
  EXPECT_EQ(v.text.size(), 9u);
}

TEST(resp_parser, array) {
  EXPECT_EQ(show_one("*2\r\n$3\r\nfoo\r\n:-1\r\n"), "*[$\"foo\", :-1]");
  EXPECT_EQ(show_one("*0\r\n"), "*[]");
  EXPECT_EQ(parse_one("*0\r\n").type, resp::type::array);
  EXPECT_EQ(show_one("*-1\r\n"), "_");  // RESP2 null array
  EXPECT_EQ(show_one("*3\r\n$-1\r\n*-1\r\n$0\r\n\r\n"), "*[_, _, $\"\"]");
}

TEST(resp_parser, nested_arrays) {
  EXPECT_EQ(show_one("*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n"),
            "*[*[:1, :2, :3], *[+\"Hello\", -\"World\"]]");
  EXPECT_EQ(show_one("*1\r\n*1\r\n*1\r\n*0\r\n"), "*[*[*[*[]]]]");
  EXPECT_EQ(show_one("*3\r\n*0\r\n*1\r\n*0\r\n:7\r\n"), "*[*[], *[*[]], :7]");
  // An XREADGROUP reply: [[stream, [[id, [field, value]]]]]
  EXPECT_EQ(show_one("*1\r\n*2\r\n$6\r\nstream\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"),
            "*[*[$\"stream\", *[*[$\"1-0\", *[$\"f\", $\"v\"]]]]]");
}

TEST(resp_parser, null) {
  value v = parse_one("_\r\n");
  EXPECT_EQ(v.type, resp::type::null);
  EXPECT_TRUE(v.is_null());
}

TEST(resp_parser, boolean) {
  value t = parse_one("#t\r\n");
  EXPECT_EQ(t.type, resp::type::boolean);
  EXPECT_EQ(t.integer, 1);
  value f = parse_one("#f\r\n");
  EXPECT_EQ(f.type, resp::type::boolean);
  EXPECT_EQ(f.integer, 0);
}

TEST(resp_parser, double_number) {
  value v = parse_one(",1.5\r\n");
  EXPECT_EQ(v.type, resp::type::double_number);
  EXPECT_EQ(v.number, 1.5);
  EXPECT_EQ(v.text, "1.5");
  EXPECT_EQ(parse_one(",10\r\n").number, 10.0);
  EXPECT_EQ(parse_one(",-0.25\r\n").number, -0.25);
  EXPECT_EQ(parse_one(",1.5e3\r\n").number, 1500.0);
  EXPECT_EQ(parse_one(",-2.5E-2\r\n").number, -0.025);
  EXPECT_EQ(parse_one(",+3\r\n").number, 3.0);
  EXPECT_EQ(parse_one(",+3\r\n").text, "+3");  // the digits as sent
  EXPECT_EQ(parse_one(",inf\r\n").number, std::numeric_limits<double>::infinity());
  EXPECT_EQ(parse_one(",-inf\r\n").number, -std::numeric_limits<double>::infinity());
  value nan = parse_one(",nan\r\n");
  EXPECT_EQ(nan.type, resp::type::double_number);
  EXPECT_TRUE(std::isnan(nan.number));
  EXPECT_EQ(nan.text, "nan");
}

TEST(resp_parser, big_number) {
  value v = parse_one("(3492890328409238509324850943850943825024385\r\n");
  EXPECT_EQ(v.type, resp::type::big_number);
  EXPECT_EQ(v.text, "3492890328409238509324850943850943825024385");
  EXPECT_EQ(show_one("(-12345678901234567890123\r\n"), "(-12345678901234567890123");
}

TEST(resp_parser, bulk_error) {
  value v = parse_one("!21\r\nSYNTAX invalid syntax\r\n");
  EXPECT_EQ(v.type, resp::type::bulk_error);
  EXPECT_EQ(v.text, "SYNTAX invalid syntax");
  EXPECT_TRUE(v.is_error());
  EXPECT_EQ(show_one("!0\r\n\r\n"), "!\"\"");
}

TEST(resp_parser, verbatim_string_drops_its_format_prefix) {
  value v = parse_one("=15\r\ntxt:Some string\r\n");
  EXPECT_EQ(v.type, resp::type::verbatim_string);
  EXPECT_EQ(v.text, "Some string");
  EXPECT_TRUE(v.is_string());
  EXPECT_EQ(show_one("=4\r\nmkd:\r\n"), "=\"\"");
  EXPECT_EQ(show_one("=9\r\ntxt:a\r\nb:\r\n"), "=\"a\\r\\nb:\"");
}

TEST(resp_parser, map_holds_flat_keys_and_values) {
  value v = parse_one("%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n#f\r\n");
  EXPECT_EQ(v.type, resp::type::map);
  ASSERT_EQ(v.elements.size(), 4u);
  EXPECT_EQ(show(v), "%{+\"first\", :1, $\"second\", #f}");
  EXPECT_EQ(show_one("%0\r\n"), "%{}");
  EXPECT_EQ(show_one("%1\r\n+k\r\n%1\r\n:1\r\n~1\r\n_\r\n"), "%{+\"k\", %{:1, ~[_]}}");
}

TEST(resp_parser, set) {
  value v = parse_one("~3\r\n+orange\r\n+apple\r\n#t\r\n");
  EXPECT_EQ(v.type, resp::type::set);
  EXPECT_EQ(show(v), "~[+\"orange\", +\"apple\", #t]");
  EXPECT_TRUE(v.is_aggregate());
  EXPECT_EQ(show_one("~0\r\n"), "~[]");
}

TEST(resp_parser, push) {
  value v = parse_one(">3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$5\r\nhello\r\n");
  EXPECT_EQ(v.type, resp::type::push);
  EXPECT_EQ(show(v), ">[$\"message\", $\"ch1\", $\"hello\"]");
  EXPECT_TRUE(v.is_aggregate());
}

TEST(resp_parser, attribute_is_dropped_and_the_next_value_returned) {
  // The example of the RESP3 specification.
  std::string data =
      "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n"
      "*2\r\n:2039123\r\n:9543892\r\n";
  EXPECT_EQ(show_one(data), "*[:2039123, :9543892]");
  EXPECT_EQ(show_one("|0\r\n:7\r\n"), ":7");
  EXPECT_EQ(show_one("|1\r\n+a\r\n:1\r\n|1\r\n+b\r\n:2\r\n+OK\r\n"), "+\"OK\"");  // two in a row
  EXPECT_EQ(show_one("|1\r\n+ttl\r\n:5\r\n>2\r\n+invalidate\r\n_\r\n"), ">[+\"invalidate\", _]");
}

TEST(resp_parser, attribute_inside_an_aggregate_does_not_count_as_an_element) {
  EXPECT_EQ(show_one("*3\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n:3\r\n"), "*[:1, :2, :3]");
  EXPECT_EQ(show_one("*2\r\n|1\r\n+x\r\n*1\r\n:0\r\n$1\r\na\r\n|1\r\n+y\r\n:0\r\n:9\r\n"), "*[$\"a\", :9]");
  EXPECT_EQ(show_one("%1\r\n|1\r\n+x\r\n:0\r\n+k\r\n*1\r\n|0\r\n+v\r\n"), "%{+\"k\", *[+\"v\"]}");
}

TEST(resp_parser, attribute_alone_is_not_a_complete_value) {
  parser p;
  auto r = p.feed("|1\r\n+k\r\n+v\r\n");
  EXPECT_EQ(r.error, parse_error::none);
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.consumed, 12u);
  r = p.feed("+after\r\n");
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(show(p.take()), "+\"after\"");
}

TEST(resp_parser, feed_stops_after_the_first_complete_value) {
  parser p;
  std::string data = "+OK\r\n:1\r\n*1\r\n$1\r\nx\r\n";
  auto r = p.feed(data);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.consumed, 5u);
  EXPECT_EQ(show(p.take()), "+\"OK\"");
  r = p.feed(std::string_view(data).substr(5));
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.consumed, 4u);
  EXPECT_EQ(show(p.take()), ":1");
  r = p.feed(std::string_view(data).substr(9));
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.consumed, 11u);
  EXPECT_EQ(show(p.take()), "*[$\"x\"]");
  r = p.feed("");
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.consumed, 0u);
  EXPECT_EQ(r.error, parse_error::none);
}

TEST(resp_parser, error_strings_are_distinct) {
  std::vector<std::string_view> seen;
  for (int e = 0; e <= static_cast<int>(parse_error::line_too_long); ++e) {
    auto s = to_string(static_cast<parse_error>(e));
    EXPECT_FALSE(s.empty());
    EXPECT_NE(s, "unknown parse error") << e;
    for (auto other : seen) EXPECT_NE(s, other);
    seen.push_back(s);
  }
  EXPECT_EQ(to_string(parse_error::none), "no error");
}

// ---- split input -----------------------------------------------------------------------------

struct sample {
  std::string bytes;
  std::size_t values;  // top-level values it holds
};

std::vector<sample> split_corpus() {
  return {
      {"+OK\r\n", 1},
      {"-ERR wrong type\r\n", 1},
      {":-12345\r\n", 1},
      {"$5\r\nhello\r\n", 1},
      {"$0\r\n\r\n", 1},
      {"$-1\r\n", 1},
      {"$8\r\na\r\nb\r\n\0\xff\r\n"s, 1},
      {"*-1\r\n", 1},
      {"*0\r\n", 1},
      {"_\r\n", 1},
      {"#t\r\n", 1},
      {",1.5e3\r\n", 1},
      {",-inf\r\n", 1},
      {",nan\r\n", 1},
      {"(123456789012345678901234567890\r\n", 1},
      {"!10\r\nERR broken\r\n", 1},
      {"=15\r\ntxt:Some string\r\n", 1},
      {"*3\r\n$3\r\nfoo\r\n*2\r\n:1\r\n$-1\r\n%1\r\n+k\r\n~2\r\n#t\r\n#f\r\n", 1},
      {">3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$5\r\nhello\r\n", 1},
      {"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.1923\r\n*2\r\n:2039123\r\n:9543892\r\n", 1},
      {"*3\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n:3\r\n", 1},
      // A pipeline's replies, an out-of-band push among them, in one buffer.
      {"+OK\r\n:1\r\n$3\r\nbar\r\n*2\r\n$1\r\na\r\n$-1\r\n>2\r\n+invalidate\r\n*1\r\n$3\r\nfoo\r\n_\r\n"
       "%1\r\n$2\r\nid\r\n$4\r\n\r\n\r\n\r\n-ERR x\r\n",
       8},
  };
}

void expect_same_values(const outcome& got, const outcome& want, const std::string& what) {
  EXPECT_EQ(got.error, want.error) << what;
  EXPECT_EQ(got.left, want.left) << what;
  ASSERT_EQ(got.values.size(), want.values.size()) << what;
  for (std::size_t i = 0; i < want.values.size(); ++i)
    EXPECT_TRUE(same(got.values[i], want.values[i]))
        << what << ": value " << i << " is " << show(got.values[i]) << ", not " << show(want.values[i]);
}

TEST(resp_parser, whole_corpus_parses) {
  for (const auto& s : split_corpus()) {
    outcome whole = parse_all(s.bytes);
    EXPECT_EQ(whole.error, parse_error::none) << escaped(s.bytes);
    EXPECT_EQ(whole.values.size(), s.values) << escaped(s.bytes);
    EXPECT_EQ(whole.left, "") << escaped(s.bytes);
  }
}

TEST(resp_parser, pipeline_in_one_buffer) {
  outcome whole = parse_all(split_corpus().back().bytes);
  ASSERT_EQ(whole.values.size(), 8u);
  std::vector<std::string> shown;
  for (const auto& v : whole.values) shown.push_back(show(v));
  EXPECT_EQ(shown, (std::vector<std::string>{"+\"OK\"", ":1", "$\"bar\"", "*[$\"a\", _]",
                                             ">[+\"invalidate\", *[$\"foo\"]]", "_",
                                             "%{$\"id\", $\"\\r\\n\\r\\n\"}", "-\"ERR x\""}));
}

TEST(resp_parser, split_in_two_at_every_byte_gives_the_same_values) {
  for (const auto& s : split_corpus()) {
    outcome whole = parse_all(s.bytes);
    for (std::size_t k = 0; k <= s.bytes.size(); ++k)
      expect_same_values(parse_chunks(s.bytes, {k}), whole, escaped(s.bytes) + " split at " + std::to_string(k));
  }
}

TEST(resp_parser, one_byte_at_a_time_gives_the_same_values) {
  for (const auto& s : split_corpus()) {
    outcome whole = parse_all(s.bytes);
    expect_same_values(parse_chunks(s.bytes, std::vector<std::size_t>(s.bytes.size(), 1)), whole,
                       escaped(s.bytes) + " byte by byte");
  }
}

TEST(resp_parser, split_does_not_trip_the_line_limit) {
  // "+abc\r\n" is a 4-byte line: within a limit of 4 whether or not its CR arrives alone.
  parser_limits limits{.max_line_length = 4};
  std::string data = "+abc\r\n:12\r\n";
  outcome whole = parse_all(data, limits);
  ASSERT_EQ(whole.error, parse_error::none);
  ASSERT_EQ(whole.values.size(), 2u);
  for (std::size_t k = 0; k <= data.size(); ++k)
    expect_same_values(parse_chunks(data, {k}, limits), whole, "split at " + std::to_string(k));
  expect_same_values(parse_chunks(data, std::vector<std::size_t>(data.size(), 1), limits), whole, "byte by byte");
}

TEST(resp_parser, partial_bulk_string_is_consumed) {
  parser p;
  auto r = p.feed("$10\r\nhello");
  EXPECT_EQ(r.error, parse_error::none);
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.consumed, 10u);  // header and content: the caller's buffer need not hold them
  r = p.feed("wor");
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.consumed, 3u);
  r = p.feed("ld");
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.consumed, 2u);  // content done, CRLF still to come
  r = p.feed("\r");
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.consumed, 0u);  // a lone CR is kept for the next feed
  r = p.feed("\r\n+next\r\n");
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.consumed, 2u);
  EXPECT_EQ(show(p.take()), "$\"helloworld\"");
}

TEST(resp_parser, partial_line_is_not_consumed) {
  parser p;
  for (std::string_view part : {"+", "+O", "+OK", "+OK\r", ":12", "*2", "$5", "%1\r"}) {
    auto r = p.feed(part);
    EXPECT_EQ(r.error, parse_error::none) << part;
    EXPECT_FALSE(r.complete) << part;
    EXPECT_EQ(r.consumed, 0u) << part;
  }
  // The complete lines before a partial one are consumed.
  auto r = p.feed("*2\r\n:1\r\n:2");
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.consumed, 8u);
  r = p.feed(":2\r\n");
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(show(p.take()), "*[:1, :2]");
}

// ---- malformed input -------------------------------------------------------------------------

struct bad_case {
  std::string bytes;
  parse_error error;
};

TEST(resp_parser, malformed_input_is_rejected) {
  const std::vector<bad_case> cases = {
      {"?x\r\n", parse_error::bad_type},
      {"\r\n", parse_error::bad_type},
      {"OK\r\n", parse_error::bad_type},
      {"*2\r\n:1\r\n@\r\n", parse_error::bad_type},
      {":abc\r\n", parse_error::bad_integer},
      {":12a\r\n", parse_error::bad_integer},
      {":\r\n", parse_error::bad_integer},
      {":+5\r\n", parse_error::bad_integer},
      {": 5\r\n", parse_error::bad_integer},
      {":-\r\n", parse_error::bad_integer},
      {":1.0\r\n", parse_error::bad_integer},
      {":9223372036854775808\r\n", parse_error::bad_integer},
      {":-9223372036854775809\r\n", parse_error::bad_integer},
      {":99999999999999999999999\r\n", parse_error::bad_integer},
      {"(\r\n", parse_error::bad_integer},
      {"(-\r\n", parse_error::bad_integer},
      {"(12a\r\n", parse_error::bad_integer},
      {"(1.5\r\n", parse_error::bad_integer},
      {"$-2\r\n", parse_error::bad_length},
      {"$abc\r\n", parse_error::bad_length},
      {"$\r\n", parse_error::bad_length},
      {"$+5\r\n", parse_error::bad_length},
      {"$99999999999999999999\r\n", parse_error::bad_length},
      {"!-1\r\n", parse_error::bad_length},
      {"=-1\r\n", parse_error::bad_length},
      {"*-2\r\n", parse_error::bad_length},
      {"*abc\r\n", parse_error::bad_length},
      {"*\r\n", parse_error::bad_length},
      {"%-1\r\n", parse_error::bad_length},
      {"~-1\r\n", parse_error::bad_length},
      {">-1\r\n", parse_error::bad_length},
      {"|-1\r\n", parse_error::bad_length},
      {",abc\r\n", parse_error::bad_double},
      {",\r\n", parse_error::bad_double},
      {",1.5x\r\n", parse_error::bad_double},
      {", 1\r\n", parse_error::bad_double},
      {",+-5\r\n", parse_error::bad_double},
      {",0x10\r\n", parse_error::bad_double},
      {"#x\r\n", parse_error::bad_boolean},
      {"#\r\n", parse_error::bad_boolean},
      {"#true\r\n", parse_error::bad_boolean},
      {"#T\r\n", parse_error::bad_boolean},
      {"=3\r\ntxt\r\n", parse_error::bad_verbatim},
      {"=5\r\nhello\r\n", parse_error::bad_verbatim},
      {"=0\r\n\r\n", parse_error::bad_verbatim},
      {"$3\r\nfooXY", parse_error::missing_crlf},
      {"$3\r\nfoo\n\r", parse_error::missing_crlf},
      {"$3\r\nfoo\rX:1\r\n", parse_error::missing_crlf},
      {"$0\r\nXX", parse_error::missing_crlf},
      {"*1\r\n$1\r\nab\r\n", parse_error::missing_crlf},
  };
  for (const auto& c : cases) {
    outcome whole = parse_all(c.bytes);
    EXPECT_EQ(whole.error, c.error) << escaped(c.bytes) << ": " << to_string(whole.error);
    EXPECT_TRUE(whole.values.empty()) << escaped(c.bytes);
    // Offered byte by byte the error is the same (it may only come later).
    EXPECT_EQ(parse_chunks(c.bytes, std::vector<std::size_t>(c.bytes.size(), 1)).error, c.error) << escaped(c.bytes);
  }
}

TEST(resp_parser, bulk_over_the_limit) {
  parser_limits limits{.max_bulk_length = 10};
  EXPECT_EQ(error_of("$10\r\n0123456789\r\n", limits), parse_error::none);
  EXPECT_EQ(error_of("$11\r\n", limits), parse_error::bulk_too_large);
  EXPECT_EQ(error_of("!11\r\n", limits), parse_error::bulk_too_large);
  EXPECT_EQ(error_of("=11\r\n", limits), parse_error::bulk_too_large);
  // Redis' own default is 512 MiB: one byte more is refused before any content arrives.
  EXPECT_EQ(error_of("$536870913\r\n"), parse_error::bulk_too_large);
  EXPECT_EQ(error_of("$9223372036854775807\r\n"), parse_error::bulk_too_large);
}

TEST(resp_parser, aggregate_over_the_element_limit) {
  parser_limits limits{.max_elements = 1000};
  EXPECT_EQ(error_of("*99999999999\r\n", limits), parse_error::too_many_elements);
  EXPECT_EQ(error_of("*1001\r\n", limits), parse_error::too_many_elements);
  EXPECT_EQ(error_of("~1001\r\n", limits), parse_error::too_many_elements);
  EXPECT_EQ(error_of(">1001\r\n", limits), parse_error::too_many_elements);
  EXPECT_EQ(error_of("%1001\r\n", limits), parse_error::too_many_elements);
  EXPECT_EQ(error_of("|1001\r\n", limits), parse_error::too_many_elements);
  outcome at_limit = parse_all("*1000\r\n", limits);
  EXPECT_EQ(at_limit.error, parse_error::none);
  EXPECT_TRUE(at_limit.values.empty());
  EXPECT_EQ(at_limit.left, "");
}

TEST(resp_parser, nesting_over_the_depth_limit) {
  parser_limits limits{.max_depth = 3};
  outcome three = parse_all("*1\r\n*1\r\n*1\r\n:1\r\n", limits);
  EXPECT_EQ(three.error, parse_error::none);
  ASSERT_EQ(three.values.size(), 1u);
  EXPECT_EQ(show(three.values[0]), "*[*[*[:1]]]");
  EXPECT_EQ(error_of("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", limits), parse_error::too_deep);
  EXPECT_EQ(error_of("%1\r\n+k\r\n~1\r\n>1\r\n*1\r\n:1\r\n", limits), parse_error::too_deep);
  // Empty aggregates never open a level.
  EXPECT_EQ(error_of("*1\r\n*1\r\n*1\r\n*0\r\n", limits), parse_error::none);
  // The default depth of 64 stops a hostile stream of nested headers.
  std::string deep;
  for (int i = 0; i < 65; ++i) deep += "*1\r\n";
  EXPECT_EQ(error_of(deep + ":1\r\n"), parse_error::too_deep);
}

TEST(resp_parser, line_over_the_length_limit) {
  parser_limits limits{.max_line_length = 8};  // counts the type byte, not the CRLF
  EXPECT_EQ(error_of("+1234567\r\n", limits), parse_error::none);
  EXPECT_EQ(error_of("+12345678\r\n", limits), parse_error::line_too_long);
  // Without a CRLF in sight: refused as soon as more bytes than the limit are waiting.
  outcome eight = parse_all("+1234567", limits);
  EXPECT_EQ(eight.error, parse_error::none);
  EXPECT_EQ(eight.left, "+1234567");
  EXPECT_EQ(error_of("+1234567\r", limits), parse_error::none);
  EXPECT_EQ(error_of("+12345678", limits), parse_error::line_too_long);
  EXPECT_EQ(error_of(":" + std::string(100, '1'), limits), parse_error::line_too_long);
  // Bulk content is not a line: only max_bulk_length bounds it.
  std::string content(20, 'x');
  outcome bulk = parse_all("$20\r\n" + content + "\r\n", limits);
  EXPECT_EQ(bulk.error, parse_error::none);
  ASSERT_EQ(bulk.values.size(), 1u);
  EXPECT_EQ(bulk.values[0].text, content);
}

TEST(resp_parser, error_is_sticky_until_reset) {
  parser p;
  auto r = p.feed(":1x\r\n");
  EXPECT_EQ(r.error, parse_error::bad_integer);
  for (int i = 0; i < 2; ++i) {
    r = p.feed("+OK\r\n");
    EXPECT_EQ(r.error, parse_error::bad_integer);
    EXPECT_FALSE(r.complete);
    EXPECT_EQ(r.consumed, 0u);
  }
  p.reset();
  r = p.feed("+OK\r\n");
  EXPECT_EQ(r.error, parse_error::none);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(show(p.take()), "+\"OK\"");
}

TEST(resp_parser, reset_drops_a_half_parsed_value) {
  parser p;
  EXPECT_FALSE(p.feed("*2\r\n:1\r\n").complete);
  p.reset();
  auto r = p.feed(":5\r\n");
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(show(p.take()), ":5");  // not the second element of the abandoned array
  EXPECT_EQ(p.feed("$5\r\nab").consumed, 6u);
  p.reset();
  r = p.feed("+x\r\n");
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(show(p.take()), "+\"x\"");
}

// ---- declared sizes do not allocate ----------------------------------------------------------

// Heap bytes in use according to glibc (0 where it cannot tell, e.g. under ASan's allocator):
// a reservation of a declared size would show up here even if never touched.
std::size_t heap_in_use() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
#else
  return 0;
#endif
}

TEST(resp_parser, declared_bulk_size_does_not_allocate) {
  parser p;
  std::size_t before = heap_in_use();
  auto r = p.feed("$536870000\r\nabc");  // just under the 512 MiB default limit
  std::size_t after = heap_in_use();
  EXPECT_EQ(r.error, parse_error::none);
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.consumed, 15u);
  EXPECT_LT(after, before + (1u << 20));
  r = p.feed(std::string(1000, 'x'));
  EXPECT_EQ(r.consumed, 1000u);
  EXPECT_LT(heap_in_use(), before + (1u << 20));
}

TEST(resp_parser, declared_sizes_beyond_memory_do_not_reserve) {
  // With no limits, a reservation of the declared size would throw (length_error/bad_alloc).
  constexpr auto unlimited = std::numeric_limits<std::size_t>::max();
  parser_limits none{.max_bulk_length = unlimited, .max_elements = unlimited, .max_line_length = 4096};
  {
    parser p(none);
    parser::result r;
    std::string data = "$9000000000000000000\r\nab";
    EXPECT_NO_THROW(r = p.feed(data));
    EXPECT_EQ(r.error, parse_error::none);
    EXPECT_FALSE(r.complete);
    EXPECT_EQ(r.consumed, data.size());
  }
  for (std::string header : {"*4000000000\r\n", "*9000000000000000000\r\n", "%9223372036854775807\r\n",
                             "~9000000000000000000\r\n"}) {
    parser p(none);
    parser::result r;
    std::size_t before = heap_in_use();
    EXPECT_NO_THROW(r = p.feed(header + ":1\r\n:2\r\n")) << header;
    EXPECT_LT(heap_in_use(), before + (1u << 20)) << header;
    EXPECT_EQ(r.error, parse_error::none) << header;
    EXPECT_FALSE(r.complete) << header;
    EXPECT_EQ(r.consumed, header.size() + 8) << header;
  }
}

TEST(resp_parser, default_element_limit_admits_four_billion_without_reserving) {
  parser p;
  std::size_t before = heap_in_use();
  auto r = p.feed("*4000000000\r\n:1\r\n");
  EXPECT_EQ(r.error, parse_error::none);
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.consumed, 17u);
  EXPECT_LT(heap_in_use(), before + (1u << 20));
}

}  // namespace
