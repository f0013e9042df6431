// Unit tests of the command serializer: exact RESP bytes of commands and pipelines, argument
// counting errors, command names for error messages, append() and clear(); the order of stream ids.
#include <sagaflow/transport/commands.hpp>
#include <sagaflow/transport/request.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace std::string_literals;
using namespace std::chrono_literals;
using sagaflow::transport::request;

TEST(request, push_serializes_an_array_of_bulk_strings) {
  request r;
  r.push("SET", "k", "v");
  EXPECT_EQ(r.payload(), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
  EXPECT_EQ(r.size(), 1u);
  EXPECT_FALSE(r.empty());
}

TEST(request, begin_and_arg_give_the_same_bytes_as_push) {
  request a, b;
  a.push("HSET", "h", "f", "v");
  b.begin(4).arg("HSET").arg("h").arg("f").arg("v");
  EXPECT_EQ(a.payload(), b.payload());
  EXPECT_EQ(b.size(), 1u);
}

TEST(request, std_string_and_c_string_arguments) {
  request r;
  std::string key = "user:42";
  const char* field = "name";
  r.push("HGET", key, field);
  EXPECT_EQ(r.payload(), "*3\r\n$4\r\nHGET\r\n$7\r\nuser:42\r\n$4\r\nname\r\n");
}

TEST(request, integer_arguments_in_decimal) {
  request r;
  r.push("EXPIRE", "k", 60);
  EXPECT_EQ(r.payload(), "*3\r\n$6\r\nEXPIRE\r\n$1\r\nk\r\n$2\r\n60\r\n");
  r.clear();
  r.push("INCRBY", "k", -5);
  EXPECT_EQ(r.payload(), "*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$2\r\n-5\r\n");
  r.clear();
  r.push("X", 0, std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::uint64_t>::max(),
         std::size_t{7}, static_cast<short>(-1));
  EXPECT_EQ(r.payload(),
            "*6\r\n$1\r\nX\r\n$1\r\n0\r\n$20\r\n-9223372036854775808\r\n$20\r\n18446744073709551615\r\n"
            "$1\r\n7\r\n$2\r\n-1\r\n");
}

TEST(request, double_arguments_in_shortest_round_trip_form) {
  request r;
  r.push("ZADD", "z", 1.5, "m");
  EXPECT_EQ(r.payload(), "*4\r\n$4\r\nZADD\r\n$1\r\nz\r\n$3\r\n1.5\r\n$1\r\nm\r\n");
  r.clear();
  r.push("X", 0.1, -2.0, 1e21, 1e-7, 100.0);
  EXPECT_EQ(r.payload(), "*6\r\n$1\r\nX\r\n$3\r\n0.1\r\n$2\r\n-2\r\n$5\r\n1e+21\r\n$5\r\n1e-07\r\n$3\r\n100\r\n");
  r.clear();
  // Redis reads "inf" and "-inf" as the infinities (ZADD, ZRANGEBYSCORE).
  r.push("X", std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(r.payload(), "*3\r\n$1\r\nX\r\n$3\r\ninf\r\n$4\r\n-inf\r\n");
}

TEST(request, empty_arguments) {
  request r;
  r.push("SET", "k", "");
  EXPECT_EQ(r.payload(), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
  r.clear();
  r.push("", "");
  EXPECT_EQ(r.payload(), "*2\r\n$0\r\n\r\n$0\r\n\r\n");
}

TEST(request, binary_arguments_are_length_prefixed_as_is) {
  request r;
  std::string blob = "a\r\nb\0\xff*1\r\n"s;  // CRLF, NUL, a high byte and something RESP-like
  ASSERT_EQ(blob.size(), 10u);
  r.push("SET", "k\0k"s, blob);
  EXPECT_EQ(r.payload(), "*3\r\n$3\r\nSET\r\n$3\r\nk\0k\r\n$10\r\n"s + blob + "\r\n");
}

TEST(request, pipeline_concatenates_commands) {
  request r;
  r.push("MULTI").push("INCR", "n").push("EXEC");
  EXPECT_EQ(r.size(), 3u);
  EXPECT_EQ(r.payload(), "*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n*1\r\n$4\r\nEXEC\r\n");
}

TEST(request, too_many_arguments_throw) {
  request r;
  r.begin(1).arg("PING");
  EXPECT_THROW(r.arg("extra"), std::logic_error);
  EXPECT_THROW(r.arg(5), std::logic_error);
  EXPECT_EQ(r.payload(), "*1\r\n$4\r\nPING\r\n");  // the refused argument left no bytes
  request fresh;
  EXPECT_THROW(fresh.arg("GET"), std::logic_error);  // no begin() at all
  EXPECT_TRUE(fresh.empty());
}

TEST(request, too_few_arguments_throw_at_payload_and_begin) {
  request r;
  r.begin(2).arg("GET");
  EXPECT_THROW((void)r.payload(), std::logic_error);
  EXPECT_THROW(r.begin(1), std::logic_error);
  EXPECT_THROW(r.push("PING"), std::logic_error);
  r.arg("k");
  EXPECT_EQ(r.payload(), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
  EXPECT_EQ(r.size(), 1u);
}

TEST(request, begin_zero_throws) {
  request r;
  EXPECT_THROW(r.begin(0), std::logic_error);
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(r.payload(), "");
}

TEST(request, command_name_of_each_command) {
  request r;
  r.push("MULTI").push("XADD", "stream", "*", "f", "v").push("SET", "k", "v\r\n").push("EXEC");
  r.push("XREADGROUP", "GROUP", "g", "c", "COUNT", 10, "BLOCK", 5000, "STREAMS", "s", ">");
  EXPECT_EQ(r.command_name(0), "MULTI");
  EXPECT_EQ(r.command_name(1), "XADD");
  EXPECT_EQ(r.command_name(2), "SET");
  EXPECT_EQ(r.command_name(3), "EXEC");
  EXPECT_EQ(r.command_name(4), "XREADGROUP");
  EXPECT_EQ(r.command_name(5), "");
  EXPECT_EQ(r.command_name(1000), "");
  EXPECT_EQ(request{}.command_name(0), "");
}

TEST(request, command_name_of_an_unfinished_command_is_empty) {
  request r;
  r.push("GET", "a");
  r.begin(2);
  EXPECT_EQ(r.command_name(0), "GET");
  EXPECT_EQ(r.command_name(1), "");
  r.arg("DEL");
  EXPECT_EQ(r.command_name(1), "DEL");
}

TEST(request, append_keeps_bytes_and_names) {
  request tx, body;
  body.push("SET", "k", "v").push("GET", "k");
  tx.push("MULTI");
  tx.append(body).push("EXEC");
  EXPECT_EQ(tx.size(), 4u);
  EXPECT_EQ(tx.command_name(0), "MULTI");
  EXPECT_EQ(tx.command_name(1), "SET");
  EXPECT_EQ(tx.command_name(2), "GET");
  EXPECT_EQ(tx.command_name(3), "EXEC");
  request expected;
  expected.push("MULTI").push("SET", "k", "v").push("GET", "k").push("EXEC");
  EXPECT_EQ(tx.payload(), expected.payload());
  // The source is untouched.
  EXPECT_EQ(body.size(), 2u);
  EXPECT_EQ(body.payload(), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
}

TEST(request, append_to_an_empty_request_and_of_an_empty_request) {
  request a, b;
  b.push("PING");
  a.append(b);
  EXPECT_EQ(a.size(), 1u);
  EXPECT_EQ(a.payload(), b.payload());
  EXPECT_EQ(a.command_name(0), "PING");
  a.append(request{});
  EXPECT_EQ(a.size(), 1u);
  EXPECT_EQ(a.payload(), b.payload());
}

TEST(request, append_refuses_unfinished_commands) {
  request target, unfinished;
  target.push("PING");
  unfinished.begin(2).arg("GET");
  EXPECT_THROW(target.append(unfinished), std::logic_error);
  EXPECT_EQ(target.size(), 1u);
  EXPECT_EQ(target.payload(), "*1\r\n$4\r\nPING\r\n");

  request open_target, done;
  done.push("PING");
  open_target.begin(2).arg("GET");
  EXPECT_THROW(open_target.append(done), std::logic_error);
  open_target.arg("k");
  EXPECT_EQ(open_target.size(), 1u);
  EXPECT_EQ(open_target.payload(), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
}

// Disabled: append() of a request to itself iterates starts_ while pushing into it (use after
// free under ASan). Enable once request::append copies other.starts_ first.
TEST(request, append_to_itself_doubles_the_pipeline) {
  request r;
  r.push("GET", "a").push("GET", "b");
  r.append(r);
  EXPECT_EQ(r.size(), 4u);
  EXPECT_EQ(r.command_name(3), "GET");
  request expected;
  expected.push("GET", "a").push("GET", "b").push("GET", "a").push("GET", "b");
  EXPECT_EQ(r.payload(), expected.payload());
}

TEST(request, clear_empties_everything) {
  request r;
  r.push("SET", "k", "v");
  r.timeout = 250ms;
  r.block_time = 5s;
  r.clear();
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(r.size(), 0u);
  EXPECT_EQ(r.payload(), "");
  EXPECT_EQ(r.command_name(0), "");
  EXPECT_FALSE(r.timeout.has_value());
  EXPECT_EQ(r.block_time, 0ms);
  r.push("PING");
  EXPECT_EQ(r.payload(), "*1\r\n$4\r\nPING\r\n");
  EXPECT_EQ(r.command_name(0), "PING");
}

TEST(request, clear_abandons_an_unfinished_command) {
  request r;
  r.begin(3).arg("SET");
  r.clear();
  EXPECT_EQ(r.payload(), "");
  r.push("PING");
  EXPECT_EQ(r.size(), 1u);
  EXPECT_EQ(r.payload(), "*1\r\n$4\r\nPING\r\n");
}

}  // namespace

// Stream ids compare as Redis orders them (numbers, not text), so that complete.lua can bisect.
TEST(stream_id_less, orders_ids_by_their_numbers_and_puts_what_is_not_an_id_first) {
  using sagaflow::transport::stream_id_less;
  EXPECT_TRUE(stream_id_less("9-0", "10-0"));
  EXPECT_FALSE(stream_id_less("10-0", "9-0"));
  EXPECT_TRUE(stream_id_less("10-2", "10-10"));
  EXPECT_FALSE(stream_id_less("10-2", "10-2"));
  EXPECT_TRUE(stream_id_less("junk", "1-0"));
  EXPECT_FALSE(stream_id_less("1-0", "junk"));
  EXPECT_FALSE(stream_id_less("1-x", "1-y"));
  std::vector<std::string> ids{"1700000000000-3", "999-0", "1700000000000-0", "1700000000001-0"};
  std::sort(ids.begin(), ids.end(), stream_id_less);
  std::vector<std::string> sorted{"999-0", "1700000000000-0", "1700000000000-3", "1700000000001-0"};
  EXPECT_EQ(ids, sorted);
}
