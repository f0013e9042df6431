// Teardown in every order a user may choose: the io_context, the runtime or the last
// shared_ptr<connection> first, with connections mid-read, mid-request and mid-reconnect. Under
// ASan (SAGAFLOW_SANITIZE=address) a connection that outlives the Asio services it uses is a
// heap-use-after-free; in a plain build these tests check that nothing hangs or crashes.
#include "redis_server.hpp"

#include <sagaflow/engine/runtime.hpp>
#include <sagaflow/transport/connection.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>
#include <vector>

namespace asio = boost::asio;
namespace transport = sagaflow::transport;
using namespace std::chrono_literals;
using sagaflow::awaitable;
using sagaflow::steady_clock;
using sagaflow::testing::redis_server;

namespace {

// Runs `ctx` until `done()` or a generous limit (a hang fails the test, it is not a speed check).
template <typename Pred>
bool run_until(asio::io_context& ctx, Pred done, std::chrono::seconds limit = 20s) {
  auto end = steady_clock::now() + limit;
  while (!done() && steady_clock::now() < end) ctx.run_for(5ms);
  return done();
}

// A BLPOP that blocks for a long time: a request in flight with its caller suspended on it,
// under a deadline whose timer lives in the caller's frame, on the caller's context.
awaitable<void> block_forever(std::shared_ptr<transport::connection> conn) {
  transport::request req;
  req.push("BLPOP", "nothing-ever", 60);
  req.block_time = 60s;
  try {
    co_await sagaflow::with_timeout(conn->exec(req), 120s);
  } catch (const boost::system::system_error&) {
  }
}

// A coroutine on one context (with a timer in its frame) waiting for a coroutine on another
// context that waits for a connection on a third: tearing the chain down crosses contexts twice.
awaitable<void> wait_across(asio::any_io_executor middle, std::shared_ptr<transport::connection> conn) {
  try {
    co_await sagaflow::with_timeout(asio::co_spawn(middle, block_forever(conn), asio::use_awaitable), 120s);
  } catch (const boost::system::system_error&) {
  }
}

awaitable<void> connect_and_ping(std::shared_ptr<transport::connection> conn, std::atomic<int>* ready) {
  co_await conn->connect();
  co_await conn->call("PING");
  ++*ready;
}

// A connection on `ctx`, connected, with `blocked` requests in flight and one request queued
// behind a DEBUG SLEEP so that the pipeline is busy when the context goes away.
std::shared_ptr<transport::connection> busy_connection(asio::io_context& ctx, const transport::config& cfg, int blocked) {
  auto conn = transport::connection::create(ctx.get_executor(), cfg);
  std::atomic<int> ready{0};
  asio::co_spawn(ctx, connect_and_ping(conn, &ready), asio::detached);
  EXPECT_TRUE(run_until(ctx, [&] { return ready.load() == 1; }));
  for (int i = 0; i < blocked; ++i) asio::co_spawn(ctx, block_forever(conn), asio::detached);
  ctx.run_for(50ms);  // the BLPOPs are written and waiting for replies
  return conn;
}

transport::config quick(const redis_server& server) {
  auto c = server.config();
  c.reconnect_backoff.base = 5ms;
  c.reconnect_backoff.cap = 20ms;
  c.connect_timeout = 2s;
  return c;
}

}  // namespace

TEST(teardown, io_context_destroyed_mid_read_while_the_user_still_holds_the_connection) {
  redis_server server;
  std::shared_ptr<transport::connection> conn;
  {
    asio::io_context ctx;
    conn = busy_connection(ctx, quick(server), 3);
    EXPECT_TRUE(conn->connected());
  }
  // The context and its services are gone: the connection must neither touch them nor crash.
  EXPECT_FALSE(conn->connected());
  conn->close();
  conn.reset();
}

TEST(teardown, io_context_destroyed_mid_read_after_the_user_dropped_the_connection) {
  redis_server server;
  asio::io_context ctx;
  std::weak_ptr<transport::connection> weak;
  {
    auto conn = busy_connection(ctx, quick(server), 3);
    weak = conn;
  }
  EXPECT_FALSE(weak.expired()) << "the connection's loop keeps it alive until close()";
  // ~io_context with the read loop suspended and requests in flight.
}

TEST(teardown, io_context_destroyed_right_after_close_was_called) {
  redis_server server;
  for (int i = 0; i < 20; ++i) {
    asio::io_context ctx;
    auto conn = busy_connection(ctx, quick(server), 2);
    conn->close();  // posted: the context is destroyed before it runs
  }
}

// What the worker does at the end of a test: close() runs (the socket is closed with its read in
// flight), then the context is destroyed before it processes the cancellation. Under io_uring
// the reactor keeps that read until the kernel confirms the cancellation and, the context never
// running again, destroys it (with the connection's coroutine frames) only when it is deleted,
// after the timer service: the connection must not touch its timers then.
TEST(teardown, io_context_destroyed_after_close_ran_but_before_the_read_was_cancelled) {
  redis_server server;
  for (int i = 0; i < 20; ++i) {
    std::shared_ptr<transport::connection> held;  // half the time the user still holds it
    asio::io_context ctx;
    auto conn = busy_connection(ctx, quick(server), 1);
    conn->close();
    for (int n = 0; conn->connected() && n < 1000; ++n) ctx.poll_one();
    EXPECT_FALSE(conn->connected());
    if (i % 2 == 0) held = conn;
  }
}

TEST(teardown, io_context_destroyed_mid_reconnect) {
  redis_server server;
  for (bool hold : {true, false}) {
    std::shared_ptr<transport::connection> held;
    {
      asio::io_context ctx;
      auto conn = busy_connection(ctx, quick(server), 1);
      server.kill();
      EXPECT_TRUE(run_until(ctx, [&] { return !conn->connected(); }));
      // A request waits for the next connection; the loop sleeps or tries to connect.
      asio::co_spawn(ctx, block_forever(conn), asio::detached);
      ctx.run_for(100ms);
      if (hold) held = conn;
    }
    held.reset();
    server.start();
  }
}

TEST(teardown, io_context_destroyed_while_the_first_connect_is_in_progress) {
  // A listening socket that never answers the handshake: connect() waits for HELLO's reply.
  sagaflow::testing::loopback_listener listener;
  transport::config cfg;
  cfg.port = listener.port();
  cfg.connect_timeout = 30s;
  std::shared_ptr<transport::connection> held;
  {
    asio::io_context ctx;
    auto conn = transport::connection::create(ctx.get_executor(), cfg);
    asio::co_spawn(ctx, conn->connect(), asio::detached);
    ctx.run_for(100ms);
    held = conn;
  }
  held.reset();
}

TEST(teardown, runtime_destroyed_with_live_connections_on_every_context_and_callers_on_others) {
  redis_server server;
  std::vector<std::shared_ptr<transport::connection>> kept;
  for (int round = 0; round < 3; ++round) {
    sagaflow::runtime rt({.threads = 3});  // wait_across below assumes 3

    rt.start();
    std::vector<std::shared_ptr<transport::connection>> conns;
    for (std::size_t i = 0; i < rt.size(); ++i)
      conns.push_back(transport::connection::create(rt.context(i).get_executor(), quick(server)));
    std::atomic<int> ready{0};
    for (auto& c : conns) asio::co_spawn(rt.context(0), connect_and_ping(c, &ready), asio::detached);
    auto end = steady_clock::now() + 20s;
    while (ready.load() < static_cast<int>(conns.size()) && steady_clock::now() < end) std::this_thread::sleep_for(5ms);
    ASSERT_EQ(ready.load(), static_cast<int>(conns.size()));
    // Each connection has requests in flight from coroutines on the other contexts, directly and
    // through a coroutine on a third context.
    for (std::size_t i = 0; i < conns.size(); ++i)
      for (std::size_t j = 0; j < rt.size(); ++j) {
        if (j == i) continue;
        asio::co_spawn(rt.context(j), block_forever(conns[i]), asio::detached);
        auto k = 3 - i - j;  // the third context
        asio::co_spawn(rt.context(j), wait_across(rt.context(k).get_executor(), conns[i]), asio::detached);
      }
    std::this_thread::sleep_for(100ms);
    if (round == 1) kept = conns;       // the user outlives the runtime
    if (round == 2) conns[0]->close();  // one closed, the others forgotten
  }
  for (auto& c : kept) EXPECT_FALSE(c->connected());
  kept.clear();
}

TEST(teardown, runtime_destruction_does_not_wait_for_idle_connections) {
  redis_server server;
  std::shared_ptr<transport::connection> conn;
  auto rt = std::make_unique<sagaflow::runtime>(sagaflow::runtime_options{.threads = 2});
  rt->start();
  conn = transport::connection::create(rt->executor(), quick(server));
  std::promise<void> ready;
  asio::co_spawn(conn->get_executor(), conn->connect(), [&](std::exception_ptr e) {
    if (e)
      ready.set_exception(e);
    else
      ready.set_value();
  });
  ready.get_future().get();
  // An idle connection (a read waiting for a reply that never comes) is no work to wait for. The
  // bound is far above a prompt teardown and below the 2 s grace the runtime used to sit out.
  auto start = steady_clock::now();
  rt.reset();
  EXPECT_LT(steady_clock::now() - start, 1s);
  conn.reset();
}
