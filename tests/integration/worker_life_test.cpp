// A worker's life around its tasks rather than in them: a task no handler knows (rolling
// deploys), a stop requested before Redis answered, settlement across a Redis restart, and the
// engine pieces a worker program stops with (until_stopped, stop_on_signals).
#include "background_worker.hpp"
#include "redis_server.hpp"

#include <sagaflow/engine/stop.hpp>
#include <sagaflow/tasks/client.hpp>
#include <sagaflow/tasks/worker.hpp>
#include <sagaflow/transport/commands.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <signal.h>

#include <mutex>
#include <set>

namespace asio = boost::asio;
namespace transport = sagaflow::transport;
namespace tasks = sagaflow::tasks;
using namespace std::chrono_literals;
using sagaflow::awaitable;
using sagaflow::steady_clock;
using sagaflow::testing::eventually;
using sagaflow::testing::redis_server;
using sagaflow::testing::run;
using sagaflow::testing::start_worker;
using sagaflow::testing::worker_end;

namespace {

tasks::worker_options quick(tasks::worker_options o) {
  o.promoter_interval = 50ms;
  o.fetch_block = 100ms;
  o.recover_interval = 100ms;
  return o;
}

}  // namespace

TEST(worker_life, an_unknown_task_goes_back_to_its_queue_without_using_an_attempt_then_dies_after_the_grace) {
  redis_server server;
  std::vector<tasks::dead_letter> dead;
  std::uint64_t handed_back = 0;
  steady_clock::time_point enqueued;
  testing::internal::CaptureStderr();
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = transport::connection::create(ex, server.config());
    co_await conn->connect();
    tasks::client client(conn);
    tasks::worker old_worker(ex, server.config(), quick({.unknown_task_grace = 800ms, .unknown_task_delay = 100ms}));
    old_worker.handle("known", [](tasks::task_context&) -> awaitable<void> { co_return; });
    sagaflow::stop_source stop;
    worker_end end;
    start_worker(ex, old_worker, stop, end);
    enqueued = steady_clock::now();
    co_await client.enqueue("brand-new", boost::json::value(1));
    co_await client.enqueue("brand-new", boost::json::value(2));
    EXPECT_TRUE(co_await eventually([&] { return old_worker.stats().dead.load() >= 2; }));
    dead = co_await client.list_dead("default");
    handed_back = old_worker.stats().handed_back.load();
    EXPECT_EQ(old_worker.stats().started.load(), 0u);
    EXPECT_EQ(old_worker.stats().failed_to_settle.load(), 0u);
    stop.request_stop();
    EXPECT_TRUE(co_await eventually([&] { return end.finished; }));
    EXPECT_EQ(end.failure, "");
    conn->close();
  }());
  auto log = testing::internal::GetCapturedStderr();
  auto elapsed = steady_clock::now() - enqueued;
  ASSERT_EQ(dead.size(), 2u);
  for (auto& d : dead) {
    EXPECT_EQ(d.reason, "unknown task");
    EXPECT_NE(d.error.find("no handler for task name 'brand-new'"), std::string::npos) << d.error;
    EXPECT_EQ(d.task.attempt, 1u) << "handing back must not use an attempt";
    EXPECT_NE(d.task.unknown_since_ms, 0);
  }
  // 800 ms of grace in steps of 100 ms: several hand-backs per task, and not dead before the grace.
  EXPECT_GE(handed_back, 6u);
  EXPECT_GE(elapsed, 800ms);
  std::size_t mentions = 0;
  for (auto at = log.find("no handler for task name 'brand-new' (queue"); at != std::string::npos;
       at = log.find("no handler for task name 'brand-new' (queue", at + 1))
    ++mentions;
  EXPECT_EQ(mentions, 1u) << "said once per name, not per task or per hand-back:\n" << log;
}

TEST(worker_life, during_a_rolling_deploy_the_worker_that_knows_the_task_runs_it_with_attempt_one) {
  redis_server server;
  std::vector<std::uint32_t> attempts;
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = transport::connection::create(ex, server.config());
    co_await conn->connect();
    tasks::client client(conn);
    sagaflow::stop_source stop;
    worker_end old_end, new_end;
    tasks::worker old_worker(ex, server.config(), quick({.unknown_task_delay = 50ms}));
    old_worker.handle("known", [](tasks::task_context&) -> awaitable<void> { co_return; });
    start_worker(ex, old_worker, stop, old_end);
    for (int i = 0; i < 5; ++i) co_await client.enqueue("new-type", boost::json::value(i));
    EXPECT_TRUE(co_await eventually([&] { return old_worker.stats().handed_back.load() >= 5; }));
    // The new version of the service is deployed next to the old one.
    tasks::worker new_worker(ex, server.config(), quick({}));
    new_worker.handle("new-type", [&](tasks::task_context& ctx) -> awaitable<void> {
      attempts.push_back(ctx.task.attempt);
      co_return;
    });
    start_worker(ex, new_worker, stop, new_end);
    EXPECT_TRUE(co_await eventually([&] { return attempts.size() >= 5; }));
    stop.request_stop();
    EXPECT_TRUE(co_await eventually([&] { return old_end.finished && new_end.finished; }));
    EXPECT_EQ(old_worker.stats().dead.load() + new_worker.stats().dead.load(), 0u);
    EXPECT_EQ((co_await client.list_dead("default")).size(), 0u);
    conn->close();
  }());
  ASSERT_EQ(attempts.size(), 5u);
  for (auto a : attempts) EXPECT_EQ(a, 1u);
}

TEST(worker_life, a_stop_requested_while_redis_does_not_answer_ends_run_cleanly) {
  // A listening socket that never accepts: TCP connects, the handshake gets no answer.
  sagaflow::testing::loopback_listener listener;
  transport::config cfg;
  cfg.port = listener.port();
  cfg.connect_timeout = 60s;
  worker_end end;
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    tasks::worker w(ex, cfg, {});
    sagaflow::stop_source stop;
    start_worker(ex, w, stop, end);
    co_await sagaflow::sleep_for(200ms);
    EXPECT_FALSE(end.finished) << "still connecting";
    stop.request_stop();
    // Far below the 60 s connect timeout: only a hang fails this.
    EXPECT_TRUE(co_await eventually([&] { return end.finished; }, 10s));
  }());
  EXPECT_TRUE(end.finished);
  EXPECT_EQ(end.failure, "") << "a stop while connecting is not an error";
}

TEST(worker_life, no_task_is_orphaned_when_settlement_fails_while_redis_restarts) {
  // Persistent, so that the restarted server has every task, and slow to load its data again
  // (hidden test configs of Redis: 300 us per key, serving clients while loading), so that it
  // answers LOADING for a while. Every task fails its first attempt, so retry settlements are
  // what runs into the restart.
  redis_server server({"--appendonly", "yes", "--appendfsync", "always", "--key-load-delay", "300",
                       "--loading-process-events-interval-bytes", "1024"});
  constexpr int total = 64;
  std::mutex m;
  std::set<std::string> done;
  std::uint64_t failed_to_settle = 0, settle_retries = 0;
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = transport::connection::create(ex, server.config());
    co_await conn->connect();
    tasks::client client(conn);
    std::vector<tasks::task_spec> batch;
    tasks::retry_policy retry{.max_attempts = 10,
                              .backoff = {.base = 20ms, .multiplier = 1.0, .cap = 20ms, .jitter = sagaflow::jitter::none}};
    for (int i = 0; i < total; ++i) batch.push_back({"flaky", boost::json::value(i), {.retry = retry}});
    co_await client.enqueue_bulk(std::move(batch));
    tasks::worker w(ex, server.config(), quick({.concurrency = 32, .lease = 5000ms}));
    // First attempts take 0.1 to 1.6 s and fail: many end while the server restarts or loads.
    w.handle("flaky", [&](tasks::task_context& ctx) -> awaitable<void> {
      if (ctx.task.attempt == 1) {
        co_await sagaflow::sleep_for(100ms * (1 + ctx.json().as_int64() % 16));
        throw std::runtime_error("first attempts fail");
      }
      std::lock_guard lock(m);
      done.insert(ctx.task.id);
    });
    sagaflow::stop_source stop;
    worker_end end;
    start_worker(ex, w, stop, end);
    EXPECT_TRUE(co_await eventually([&] { return w.stats().started.load() >= 32; }));
    co_await conn->call("EVAL", "for i = 1, 4000 do redis.call('SET', 'filler:' .. i, i) end", "0");
    server.stop();
    server.start();
    EXPECT_TRUE(co_await eventually([&] {
      std::lock_guard lock(m);
      return done.size() >= total;
    }, 60s)) << "tasks never finished: " << total - done.size();
    failed_to_settle = w.stats().failed_to_settle.load();
    settle_retries = w.stats().settle_retries.load();
    stop.request_stop();
    EXPECT_TRUE(co_await eventually([&] { return end.finished; }));
    EXPECT_EQ(end.failure, "");
    for (int p = 0; p < 4; ++p) {
      auto stream = "sf:{q:default}:p" + std::to_string(p);
      EXPECT_EQ((co_await transport::xpending(*conn, stream, "workers")).count, 0) << stream;
    }
    EXPECT_EQ((co_await conn->call("ZCARD", "sf:{q:default}:delayed")).integer, 0);
    conn->close();
  }(), std::chrono::seconds(120));
  EXPECT_EQ(done.size(), static_cast<std::size_t>(total));
  EXPECT_EQ(failed_to_settle, 0u) << "a settlement that failed was given up instead of retried";
  std::cout << "[ report ] settlements retried across the restart: " << settle_retries << "\n";
}

TEST(worker_life, until_stopped_returns_the_value_or_nothing_when_stopped_first) {
  run([]() -> awaitable<void> {
    sagaflow::stop_source stop;
    auto quick_value = []() -> awaitable<int> {
      co_await sagaflow::sleep_for(1ms);
      co_return 42;
    };
    auto value = co_await sagaflow::until_stopped(quick_value(), stop);
    EXPECT_EQ(value, std::optional<int>(42));
    auto failing = []() -> awaitable<void> {
      co_await sagaflow::sleep_for(1ms);
      throw std::runtime_error("boom");
    };
    bool threw = false;
    try {
      co_await sagaflow::until_stopped(failing(), stop);
    } catch (const std::runtime_error& e) {
      threw = std::string(e.what()) == "boom";
    }
    EXPECT_TRUE(threw) << "the operation's exception comes through";
    bool cancelled = false;
    auto slow = [&]() -> awaitable<void> {
      try {
        co_await sagaflow::sleep_for(30s);
      } catch (const boost::system::system_error&) {
        cancelled = true;
        throw;
      }
    };
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer later(ex, 50ms);
    later.async_wait([stop](boost::system::error_code) mutable { stop.request_stop(); });
    auto start = steady_clock::now();
    bool completed = co_await sagaflow::until_stopped(slow(), stop);
    EXPECT_FALSE(completed);
    EXPECT_TRUE(cancelled) << "the operation is cancelled, not left running";
    EXPECT_LT(steady_clock::now() - start, 10s) << "hang";
  }());
}

TEST(worker_life, stop_on_signals_stops_on_a_signal_and_ends_by_itself_when_stopped_otherwise) {
  run([]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    sagaflow::stop_source by_signal;
    bool ended = false;
    asio::co_spawn(ex, sagaflow::stop_on_signals(by_signal, {SIGUSR2}), [&](std::exception_ptr) { ended = true; });
    co_await sagaflow::sleep_for(20ms);
    ::raise(SIGUSR2);
    EXPECT_TRUE(co_await eventually([&] { return ended; }, 10s));
    EXPECT_TRUE(by_signal.stop_requested());

    // Stopped some other way: the signal wait ends too, so it never keeps the context busy.
    sagaflow::stop_source other;
    ended = false;
    asio::co_spawn(ex, sagaflow::stop_on_signals(other, {SIGUSR2}), [&](std::exception_ptr) { ended = true; });
    co_await sagaflow::sleep_for(20ms);
    EXPECT_FALSE(ended);
    other.request_stop();
    EXPECT_TRUE(co_await eventually([&] { return ended; }, 10s));
  }());
}
