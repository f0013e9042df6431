// The connection against a real redis-server: pipelining, ordering, errors, timeouts, restarts.
#include "redis_server.hpp"

#include <sagaflow/transport/commands.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <gtest/gtest.h>

#include <atomic>

namespace asio = boost::asio;
namespace transport = sagaflow::transport;
using sagaflow::awaitable;
using sagaflow::testing::redis_server;
using sagaflow::testing::run;

namespace {

std::shared_ptr<transport::connection> make(asio::any_io_executor ex, const transport::config& cfg) {
  return transport::connection::create(std::move(ex), cfg);
}

class connection_test : public ::testing::TestWithParam<int> {
 protected:
  transport::config cfg() const {
    auto c = server.config();
    c.protocol = GetParam();
    return c;
  }
  redis_server server{{"--enable-debug-command", "yes"}};
};

}  // namespace

TEST_P(connection_test, pipelines_ten_thousand_commands_with_replies_in_order) {
  run([&]() -> awaitable<void> {
    auto conn = make(co_await asio::this_coro::executor, cfg());
    co_await conn->connect();
    EXPECT_EQ(conn->protocol(), GetParam());
    transport::request req;
    for (int i = 0; i < 10'000; ++i) req.push("ECHO", i);
    auto replies = co_await conn->exec(req);
    EXPECT_EQ(replies.size(), 10'000u);
    for (int i = 0; i < 10'000 && i < static_cast<int>(replies.size()); ++i)
      if (replies[i].text != std::to_string(i)) {
        ADD_FAILURE() << "reply " << i << " is " << replies[i].text;
        break;
      }
    conn->close();
  }());
}

TEST_P(connection_test, concurrent_callers_share_one_connection_and_each_sees_its_own_replies) {
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = make(ex, cfg());
    co_await conn->connect();
    std::atomic<int> mismatches{0}, finished{0};
    constexpr int callers = 200, rounds = 50;
    for (int c = 0; c < callers; ++c) {
      asio::co_spawn(ex, [&, c]() -> awaitable<void> {
        std::string key = "caller:" + std::to_string(c);
        for (int r = 1; r <= rounds; ++r) {
          auto v = co_await conn->call("INCR", key);
          if (v.integer != r) ++mismatches;
        }
        ++finished;
      }, asio::detached);
    }
    while (finished < callers) co_await sagaflow::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(mismatches, 0);
    auto total = co_await conn->call("GET", "caller:7");
    EXPECT_EQ(total.text, std::to_string(rounds));
    conn->close();
  }());
}

TEST_P(connection_test, server_error_names_the_command_and_keeps_the_connection_usable) {
  run([&]() -> awaitable<void> {
    auto conn = make(co_await asio::this_coro::executor, cfg());
    co_await conn->connect();
    co_await conn->call("SET", "text", "hello");
    try {
      co_await conn->call("INCR", "text");
      ADD_FAILURE() << "INCR on a string must fail";
    } catch (const transport::server_error& e) {
      EXPECT_EQ(e.command(), "INCR");
      EXPECT_EQ(e.code(), "ERR");
      EXPECT_NE(std::string(e.what()).find("not an integer"), std::string::npos) << e.what();
    }
    // In a pipeline, one error does not spoil the other replies.
    transport::request req;
    req.push("INCR", "text").push("SET", "n", 1).push("INCR", "n");
    auto replies = co_await conn->exec(req);
    EXPECT_TRUE(replies[0].is_error());
    EXPECT_EQ(replies[1].text, "OK");
    EXPECT_EQ(replies[2].integer, 2);
    conn->close();
  }());
}

TEST_P(connection_test, a_command_without_reply_in_time_fails_with_timeout_and_the_connection_recovers) {
  run([&]() -> awaitable<void> {
    auto c = cfg();
    c.command_timeout = std::chrono::milliseconds(300);
    auto conn = make(co_await asio::this_coro::executor, c);
    co_await conn->connect();
    try {
      co_await conn->call("DEBUG", "SLEEP", "2");
      ADD_FAILURE() << "DEBUG SLEEP 2 must time out";
    } catch (const boost::system::system_error& e) {
      EXPECT_EQ(e.code(), transport::error::timeout) << e.what();
    }
    // The stuck connection was dropped and rebuilt: later commands work.
    for (int i = 0;; ++i) {
      try {
        auto v = co_await conn->call("PING");
        EXPECT_EQ(v.text, "PONG");
        break;
      } catch (const boost::system::system_error&) {
        if (i > 50) throw;
      }
      co_await sagaflow::sleep_for(std::chrono::milliseconds(100));
    }
    conn->close();
  }());
}

TEST_P(connection_test, reconnects_after_a_server_restart_and_reports_the_commands_lost_in_flight) {
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = make(ex, cfg());
    co_await conn->connect();
    co_await conn->call("SET", "before", "1");

    // A blocking command is in flight when the server goes away: its caller is told.
    auto blocked = asio::co_spawn(ex, [conn]() -> awaitable<boost::system::error_code> {
      transport::request req;
      req.push("BLPOP", "never", 30);
      req.block_time = std::chrono::seconds(30);
      try {
        co_await conn->exec(req);
      } catch (const boost::system::system_error& e) {
        co_return e.code();
      }
      co_return boost::system::error_code{};
    }, asio::use_awaitable);
    co_await sagaflow::sleep_for(std::chrono::milliseconds(200));
    server.stop();
    auto lost = co_await std::move(blocked);
    EXPECT_EQ(lost, transport::error::connection_lost);

    server.start();
    // Commands issued while reconnecting wait for the new connection (within their timeout).
    auto v = co_await conn->call("SET", "after", "2");
    EXPECT_EQ(v.text, "OK");
    EXPECT_GE(conn->reconnects(), 1u);
    EXPECT_TRUE(conn->connected());
    conn->close();
  }());
}

TEST_P(connection_test, close_fails_later_requests_with_closed) {
  run([&]() -> awaitable<void> {
    auto conn = make(co_await asio::this_coro::executor, cfg());
    co_await conn->connect();
    conn->close();
    co_await sagaflow::sleep_for(std::chrono::milliseconds(20));
    try {
      co_await conn->call("PING");
      ADD_FAILURE() << "a closed connection must refuse requests";
    } catch (const boost::system::system_error& e) {
      EXPECT_EQ(e.code(), transport::error::closed);
    }
  }());
}

TEST_P(connection_test, a_cancelled_request_completes_at_once_with_its_deadline_error) {
  run([&]() -> awaitable<void> {
    auto conn = make(co_await asio::this_coro::executor, cfg());
    co_await conn->connect();
    transport::request req;
    req.push("BLPOP", "nothing-here", 5);
    req.block_time = std::chrono::seconds(5);
    try {
      co_await sagaflow::with_timeout(conn->exec(req), std::chrono::milliseconds(100));
      ADD_FAILURE() << "BLPOP on an empty list must not return";
    } catch (const boost::system::system_error& e) {
      EXPECT_EQ(e.code(), asio::error::timed_out);
    }
    conn->close();
  }());
}

TEST(connection, connect_to_a_port_where_nothing_listens_fails_clearly) {
  run([]() -> awaitable<void> {
    transport::config c;
    c.port = sagaflow::testing::free_port();
    auto conn = transport::connection::create(co_await asio::this_coro::executor, c);
    try {
      co_await conn->connect();
      ADD_FAILURE() << "connect must fail";
    } catch (const boost::system::system_error& e) {
      EXPECT_EQ(e.code(), asio::error::connection_refused) << e.what();
      EXPECT_NE(std::string(e.what()).find(std::to_string(c.port)), std::string::npos) << e.what();
    }
    conn->close();
  }());
}

// Users read "Connection refused", not Boost's " [system:111 at .../io_uring_socket_connect_op.hpp:...
// in function '...']" (kept at debug level only: see log_test).
TEST(connection, errors_and_log_lines_carry_no_source_location) {
  sagaflow::log::set_level(sagaflow::log::level::info);
  run([]() -> awaitable<void> {
    transport::config c;
    c.port = sagaflow::testing::free_port();
    auto conn = transport::connection::create(co_await asio::this_coro::executor, c);
    try {
      co_await conn->connect();
      ADD_FAILURE() << "connect must fail";
    } catch (const boost::system::system_error& e) {
      EXPECT_EQ(sagaflow::log::error_text(e), "connecting to redis://127.0.0.1:" + std::to_string(c.port) + ": Connection refused")
          << e.what();
    }
    conn->close();
  }());

  redis_server server;
  ::testing::internal::CaptureStderr();
  run([&]() -> awaitable<void> {
    auto c = server.config();
    c.reconnect_backoff.base = std::chrono::milliseconds(10);
    c.reconnect_backoff.cap = std::chrono::milliseconds(20);
    auto conn = make(co_await asio::this_coro::executor, c);
    co_await conn->connect();
    server.kill();
    co_await sagaflow::sleep_for(std::chrono::milliseconds(300));  // the loss and a few reconnect attempts
    conn->close();
  }());
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find(": connection lost: "), std::string::npos) << log;
  EXPECT_NE(log.find("reconnect attempt 1 failed: connecting to redis://127.0.0.1:" + std::to_string(server.port()) +
                     ": Connection refused\n"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("[system:"), std::string::npos) << log;
  EXPECT_EQ(log.find("[asio."), std::string::npos) << log;
  EXPECT_EQ(log.find(" in function '"), std::string::npos) << log;
}

// A server without HELLO (older than Redis 6, or with HELLO renamed away as here; an ACL cannot
// deny HELLO on Redis 7.0): asked for RESP3, the connection falls back to RESP2 (AUTH, CLIENT
// SETNAME), on the first connect and on every reconnect.
TEST(connection, without_hello_the_connection_falls_back_to_resp2) {
  for (bool password : {false, true}) {
    SCOPED_TRACE(password ? "with a password" : "without a password");
    std::vector<std::string> extra{"--rename-command", "HELLO", ""};
    if (password) extra.insert(extra.end(), {"--requirepass", "s3cret"});
    redis_server server(extra);
    run([&]() -> awaitable<void> {
      auto c = server.config();
      c.protocol = 3;
      if (password) c.password = "s3cret";
      auto conn = make(co_await asio::this_coro::executor, c);
      co_await conn->connect();
      EXPECT_EQ(conn->protocol(), 2);
      // The server really has no HELLO.
      try {
        co_await conn->call("HELLO", "3");
        ADD_FAILURE() << "HELLO must be unknown on this server";
      } catch (const transport::server_error& e) {
        EXPECT_NE(std::string(e.what()).find("unknown command"), std::string::npos) << e.what();
      }
      // RESP2 on the wire: CONFIG GET answers a flat array (a map under RESP3).
      auto config = co_await conn->call("CONFIG", "GET", "maxmemory-policy");
      EXPECT_EQ(config.type, transport::resp::type::array);
      EXPECT_EQ((co_await conn->call("SET", "k", "v")).text, "OK");
      // And again after a reconnect.
      server.stop();
      for (int i = 0; conn->connected() && i < 1000; ++i) co_await sagaflow::sleep_for(std::chrono::milliseconds(5));
      server.start();
      EXPECT_EQ((co_await conn->call("PING")).text, "PONG");
      EXPECT_GE(conn->reconnects(), 1u);
      EXPECT_EQ(conn->protocol(), 2);
      conn->close();
    }());
  }
}

INSTANTIATE_TEST_SUITE_P(resp, connection_test, ::testing::Values(2, 3),
                         [](const auto& info) { return "resp" + std::to_string(info.param); });

// --- a server loading its dataset -------------------------------------------------------------
// Redis 7's hidden key-load-delay (microseconds per key) makes loading 10,000 keys take about a
// second; loading-process-events-interval-bytes lets the server answer (-LOADING) meanwhile.
namespace {

constexpr int loading_keys = 10'000;

class loading_test : public ::testing::TestWithParam<int> {
 protected:
  transport::config cfg() const {
    auto c = server.config();
    c.protocol = GetParam();
    return c;
  }
  // Fills the server and saves it, so that the next start loads the keys.
  void fill_and_save() {
    run([&]() -> awaitable<void> {
      auto conn = make(co_await asio::this_coro::executor, cfg());
      co_await conn->connect();
      co_await conn->call("DEBUG", "POPULATE", loading_keys, "key");
      co_await conn->call("SAVE");
      conn->close();
    }());
  }
  redis_server server{{"--enable-debug-command", "yes", "--key-load-delay", "100",
                       "--loading-process-events-interval-bytes", "1024"}};
};

// Asks the server directly (no sagaflow connection, which would wait): is it loading now?
bool server_is_loading(const redis_server& server) {
  return transport::parse_loading(server.ask("INFO persistence")).loading;
}

}  // namespace

TEST_P(loading_test, commands_sent_across_a_restart_wait_until_the_dataset_is_loaded) {
  fill_and_save();
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = make(ex, cfg());
    co_await conn->connect();
    server.stop();
    for (int i = 0; conn->connected() && i < 1000; ++i) co_await sagaflow::sleep_for(std::chrono::milliseconds(5));
    // Sent while the server is down; written once it is back and has loaded its data.
    std::vector<std::string> got(20);
    int finished = 0;
    for (int i = 0; i < 20; ++i) {
      asio::co_spawn(ex, [&, i]() -> awaitable<void> {
        try {
          got[i] = (co_await conn->call("GET", "key:" + std::to_string(i))).text;
        } catch (const std::exception& e) {
          got[i] = e.what();
        }
        ++finished;
      }, asio::detached);
    }
    co_await sagaflow::sleep_for(std::chrono::milliseconds(50));
    server.start();
    CO_ASSERT_TRUE(server_is_loading(server));  // else this test would prove nothing
    while (finished < 20) co_await sagaflow::sleep_for(std::chrono::milliseconds(10));
    for (int i = 0; i < 20; ++i) EXPECT_EQ(got[i], "value:" + std::to_string(i));
    EXPECT_GE(conn->reconnects(), 1u);
    EXPECT_FALSE(server_is_loading(server));
    conn->close();
  }());
}

TEST_P(loading_test, connect_to_a_loading_server_returns_once_it_has_loaded) {
  fill_and_save();
  server.stop();
  server.start();
  ASSERT_TRUE(server_is_loading(server));
  run([&]() -> awaitable<void> {
    auto conn = make(co_await asio::this_coro::executor, cfg());
    co_await conn->connect();
    EXPECT_FALSE(server_is_loading(server));
    auto v = co_await conn->call("GET", "key:7");
    EXPECT_EQ(v.text, "value:7");
    conn->close();
  }());
}

// A server can start loading while we are connected (DEBUG RELOAD here; a replica's full sync in
// production): the replies are -LOADING. The connection passes them on as a server_error that
// says the command did not run (no transparent retry: see connection.hpp), and stays usable.
TEST_P(loading_test, a_loading_reply_on_a_live_connection_is_a_transient_server_error) {
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto reloader = make(ex, cfg());
    auto conn = make(ex, cfg());
    co_await reloader->connect();
    co_await conn->connect();
    co_await reloader->call("DEBUG", "POPULATE", loading_keys, "key");
    bool reloaded = false;
    asio::co_spawn(ex, [&]() -> awaitable<void> {
      co_await reloader->call("DEBUG", "RELOAD");
      reloaded = true;
    }, asio::detached);
    co_await sagaflow::sleep_for(std::chrono::milliseconds(200));
    CO_ASSERT_TRUE(server_is_loading(server));
    try {
      co_await conn->call("GET", "key:3");
      ADD_FAILURE() << "GET during DEBUG RELOAD must be refused with LOADING";
    } catch (const transport::server_error& e) {
      EXPECT_EQ(e.code(), "LOADING") << e.what();
      EXPECT_EQ(e.command(), "GET");
      EXPECT_TRUE(e.transient());
    }
    while (!reloaded) co_await sagaflow::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ((co_await conn->call("GET", "key:3")).text, "value:3");
    reloader->close();
    conn->close();
  }());
}

INSTANTIATE_TEST_SUITE_P(resp, loading_test, ::testing::Values(2, 3),
                         [](const auto& info) { return "resp" + std::to_string(info.param); });

// Regression: with GCC 12 a closure temporary in a co_await expression inside connect() was
// destroyed twice, freeing the connection while its read loop still ran.
TEST(connection, connect_and_close_many_times) {
  redis_server server;
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    for (int i = 0; i < 200; ++i) {
      auto conn = transport::connection::create(ex, server.config());
      co_await conn->connect();
      auto v = co_await conn->call("PING");
      EXPECT_EQ(v.text, "PONG");
      conn->close();
    }
    co_await sagaflow::sleep_for(std::chrono::milliseconds(50));
  }());
}
