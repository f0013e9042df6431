// Reading INFO persistence for the readiness check after a connect, and which error replies mean
// "not run, try later" (server_error::transient).
#include <sagaflow/transport/commands.hpp>

#include <gtest/gtest.h>

namespace transport = sagaflow::transport;
using namespace std::chrono_literals;

TEST(parse_loading, a_loading_server_with_its_estimate) {
  // As Redis 7.0 sends it (CRLF lines, a section header first).
  auto s = transport::parse_loading(
      "# Persistence\r\nloading:1\r\nasync_loading:0\r\ncurrent_cow_peak:0\r\nloading_start_time:1700000000\r\n"
      "loading_total_bytes:428988\r\nloading_rdb_used_mem:0\r\nloading_loaded_bytes:20480\r\n"
      "loading_loaded_perc:4.77\r\nloading_eta_seconds:12\r\nrdb_changes_since_last_save:0\r\n");
  EXPECT_TRUE(s.loading);
  EXPECT_EQ(s.eta, 12s);
}

TEST(parse_loading, a_loaded_server) {
  auto s = transport::parse_loading("# Persistence\r\nloading:0\r\nasync_loading:0\r\nrdb_changes_since_last_save:0\r\n");
  EXPECT_FALSE(s.loading);
  EXPECT_EQ(s.eta, 0s);
}

TEST(parse_loading, similar_field_names_and_odd_text_are_not_loading) {
  EXPECT_FALSE(transport::parse_loading("async_loading:1\r\nloading:0\r\n").loading);
  EXPECT_TRUE(transport::parse_loading("async_loading:0\nloading:1\n").loading);  // LF only
  EXPECT_FALSE(transport::parse_loading("loading:10\r\n").loading);
  EXPECT_FALSE(transport::parse_loading("OK").loading);
  EXPECT_FALSE(transport::parse_loading("").loading);
  EXPECT_EQ(transport::parse_loading("loading:1\r\nloading_eta_seconds:x\r\n").eta, 0s);
}

TEST(server_error, loading_busy_tryagain_and_masterdown_are_transient) {
  EXPECT_TRUE(transport::server_error("GET", "LOADING Redis is loading the dataset in memory").transient());
  EXPECT_TRUE(transport::server_error("EVALSHA", "BUSY Redis is busy running a script.").transient());
  EXPECT_TRUE(transport::server_error("MGET", "TRYAGAIN Multiple keys request during rehashing of slot").transient());
  EXPECT_TRUE(transport::server_error("SET", "MASTERDOWN Link with MASTER is down").transient());
  EXPECT_FALSE(transport::server_error("INCR", "ERR value is not an integer or out of range").transient());
  EXPECT_FALSE(transport::server_error("GET", "WRONGTYPE Operation against a key holding the wrong kind of value").transient());
  EXPECT_FALSE(transport::server_error("XGROUP", "BUSYGROUP Consumer Group name already exists").transient());
  EXPECT_EQ(transport::server_error("GET", "LOADING Redis is loading the dataset in memory").code(), "LOADING");
}
