// RESP2/RESP3 reply values and the incremental parser that reads them in place from a
// connection's buffer. The parser depends on the standard library only, so that the fuzzer and
// the unit tests exercise exactly the code the connection runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sagaflow::transport::resp {

enum class type : std::uint8_t {
  simple_string,    // +
  simple_error,     // -
  integer,          // :
  bulk_string,      // $
  bulk_error,       // !
  verbatim_string,  // =  (text holds the payload after the "fmt:" prefix)
  null,             // _  and RESP2's $-1 / *-1
  boolean,          // #  (integer holds 0 or 1)
  double_number,    // ,  (number holds the value, text the digits as sent)
  big_number,       // (  (text holds the digits)
  array,            // *
  map,              // %  (elements hold key0, value0, key1, value1, ...)
  set,              // ~
  push,             // >  (out-of-band: never the reply to a command)
};

struct value {
  resp::type type = resp::type::null;
  std::string text;
  std::int64_t integer = 0;
  double number = 0;
  std::vector<value> elements;

  bool is_error() const noexcept { return type == resp::type::simple_error || type == resp::type::bulk_error; }
  bool is_null() const noexcept { return type == resp::type::null; }
  bool is_string() const noexcept {
    return type == resp::type::simple_string || type == resp::type::bulk_string ||
           type == resp::type::verbatim_string;
  }
  bool is_aggregate() const noexcept {
    return type == resp::type::array || type == resp::type::map || type == resp::type::set ||
           type == resp::type::push;
  }
};

enum class parse_error : std::uint8_t {
  none = 0,
  bad_type,           // a type byte RESP does not define
  bad_integer,        // not a base-10 64-bit integer
  bad_length,         // a negative length other than -1, or a length that is not a number
  bulk_too_large,     // over parser_limits::max_bulk_length
  too_many_elements,  // over parser_limits::max_elements
  too_deep,           // nesting over parser_limits::max_depth
  bad_double,
  bad_boolean,
  bad_verbatim,       // verbatim string without its "fmt:" prefix
  missing_crlf,       // a bulk string not followed by CRLF
  line_too_long,      // no CRLF within parser_limits::max_line_length
};
std::string_view to_string(parse_error e) noexcept;

// Bounds that keep a hostile or corrupt peer from making the parser allocate without limit:
// memory grows only with bytes actually received, never with a declared size.
struct parser_limits {
  std::size_t max_bulk_length = 512u * 1024 * 1024;  // Redis' own proto-max-bulk-len default
  std::size_t max_elements = std::size_t{1} << 32;
  std::size_t max_depth = 64;
  std::size_t max_line_length = 64 * 1024;
};

class parser {
 public:
  explicit parser(parser_limits limits = {}) : limits_(limits) {}

  struct result {
    std::size_t consumed = 0;  // bytes of `data` used; the rest must be offered again
    bool complete = false;     // a whole top-level value is ready: take() it
    parse_error error = parse_error::none;  // the stream is corrupt: drop the connection
  };

  // Consumes as much of `data` as it can and stops right after the first complete top-level
  // value. Bytes of a partial line are left unconsumed; a partial bulk string is consumed.
  result feed(std::string_view data);

  value take() noexcept { return std::move(done_); }
  void reset() noexcept;

 private:
  struct frame {
    value node;
    std::size_t remaining;
    bool attribute;  // RESP3 attributes describe the next value: parsed, then dropped
  };
  // Hands a finished value to its parent; true when a top-level value is complete.
  bool emit(value&& v);

  parser_limits limits_;
  std::vector<frame> stack_;
  value done_;
  value bulk_;                   // the bulk string being received
  std::size_t bulk_left_ = 0;    // content bytes still to come
  bool in_bulk_ = false;
  parse_error error_ = parse_error::none;
};

}  // namespace sagaflow::transport::resp
