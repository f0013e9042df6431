// The task queue against a real redis-server: priorities, retries with jittered backoff, delays,
// dead letters for every reason, idempotency keys, recovery of a dead worker's tasks, timeouts,
// graceful stop.
#include "redis_server.hpp"

#include <sagaflow/tasks/client.hpp>
#include <sagaflow/tasks/worker.hpp>
#include <sagaflow/transport/commands.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <mutex>

namespace asio = boost::asio;
namespace redis = sagaflow::redis;
namespace tasks = sagaflow::tasks;
using namespace std::chrono_literals;
using sagaflow::awaitable;
using sagaflow::steady_clock;
using sagaflow::testing::redis_server;
using sagaflow::testing::run;

namespace {

class tasks_test : public ::testing::Test {
 protected:
  // Runs `body(client, conn)` while a worker with `options` and the handlers set up by `setup`
  // runs; stops the worker (gracefully) when the body returns.
  template <typename Setup, typename Body>
  void with_worker(tasks::worker_options options, Setup setup, Body body) {
    run([&]() -> awaitable<void> {
      auto ex = co_await asio::this_coro::executor;
      auto conn = redis::connection::create(ex, server.config());
      co_await conn->connect();
      tasks::client client(conn);
      options.promoter_interval = 100ms;
      options.fetch_block = 100ms;
      tasks::worker worker(ex, server.config(), options);
      setup(worker);
      sagaflow::stop_source stop;
      bool worker_done = false;
      asio::co_spawn(ex, worker.run(stop), [&](std::exception_ptr e) {
        worker_done = true;
        if (e) ADD_FAILURE() << "worker failed";
      });
      co_await body(client, *conn);
      stop.request_stop();
      while (!worker_done) co_await sagaflow::sleep_for(10ms);
      conn->close();
    }(), std::chrono::seconds(120));
  }

  // Polls `done` every 10 ms for up to `limit` (a hang fails the test; it is not a speed check).
  template <typename Pred>
  static awaitable<bool> eventually(Pred done, std::chrono::milliseconds limit = 20s) {
    auto end = steady_clock::now() + limit;
    while (!done()) {
      if (steady_clock::now() > end) co_return false;
      co_await sagaflow::sleep_for(10ms);
    }
    co_return true;
  }

  // Lists the queue's dead letters until there are at least `count` (or 5 s pass).
  static awaitable<std::vector<tasks::dead_letter>> dead_letters(tasks::client& c, std::size_t count) {
    std::vector<tasks::dead_letter> dead;
    for (int i = 0; i < 500 && dead.size() < count; ++i) {
      dead = co_await c.list_dead("default");
      if (dead.size() < count) co_await sagaflow::sleep_for(10ms);
    }
    co_return dead;
  }

  redis_server server;
};

tasks::retry_policy no_jitter(std::uint32_t attempts, std::chrono::milliseconds base) {
  return {.max_attempts = attempts,
          .backoff = {.base = base, .multiplier = 2.0, .cap = 10s, .jitter = sagaflow::jitter::none}};
}

}  // namespace

TEST_F(tasks_test, every_task_runs_once_and_its_entry_is_acknowledged_and_deleted) {
  std::atomic<int> runs{0};
  std::mutex m;
  std::set<std::string> seen;
  with_worker({.concurrency = 8}, [&](tasks::worker& w) {
    w.handle("add", [&](tasks::task_context& ctx) -> awaitable<void> {
      auto v = ctx.json();
      EXPECT_EQ(v.at("n").as_int64() >= 0, true);
      std::lock_guard lock(m);
      seen.insert(ctx.task.id);
      ++runs;
      co_return;
    });
  }, [&](tasks::client& c, redis::connection& conn) -> awaitable<void> {
    std::vector<tasks::task_spec> batch;
    for (int i = 0; i < 200; ++i) batch.push_back({"add", boost::json::value{{"n", i}}, {}});
    auto ids = co_await c.enqueue_bulk(std::move(batch));
    EXPECT_EQ(ids.size(), 200u);
    EXPECT_TRUE(co_await eventually([&] { return runs.load() >= 200; }));
    co_await sagaflow::sleep_for(300ms);  // a few more ack flushes
    EXPECT_EQ(runs.load(), 200);
    EXPECT_EQ(seen.size(), 200u);
    EXPECT_EQ(co_await redis::xlen(conn, "sf:{q:default}:p2"), 0) << "completed entries are deleted";
    EXPECT_EQ((co_await redis::xpending(conn, "sf:{q:default}:p2", "workers")).count, 0);
  });
}

TEST_F(tasks_test, strict_priority_runs_every_critical_task_before_any_low_one) {
  std::vector<int> order;
  // The backlog exists before the worker starts: low enqueued first, critical last.
  run([&]() -> awaitable<void> {
    auto conn = redis::connection::create(co_await asio::this_coro::executor, server.config());
    co_await conn->connect();
    tasks::client c(conn);
    for (auto p : {tasks::priority::low, tasks::priority::normal, tasks::priority::high, tasks::priority::critical})
      for (int i = 0; i < 15; ++i) co_await c.enqueue("p", boost::json::value(i), {.priority = p});
    conn->close();
  }());
  with_worker({.concurrency = 1}, [&](tasks::worker& w) {
    w.handle("p", [&](tasks::task_context& ctx) -> awaitable<void> {
      order.push_back(static_cast<int>(ctx.task.priority));
      co_return;
    });
  }, [&](tasks::client&, redis::connection&) -> awaitable<void> {
    EXPECT_TRUE(co_await eventually([&] { return order.size() >= 60; }));
  });
  ASSERT_EQ(order.size(), 60u);
  for (std::size_t i = 1; i < order.size(); ++i) EXPECT_LE(order[i - 1], order[i]) << "at position " << i;
  EXPECT_EQ(order.front(), 0);
}

TEST_F(tasks_test, weighted_priority_lets_low_tasks_progress_under_a_critical_backlog) {
  std::vector<int> order;
  with_worker({.concurrency = 1, .mode = tasks::priority_mode::weighted, .weights = {1, 1, 1, 1}},
              [&](tasks::worker& w) {
                w.handle("p", [&](tasks::task_context& ctx) -> awaitable<void> {
                  order.push_back(static_cast<int>(ctx.task.priority));
                  co_return;
                });
              },
              [&](tasks::client& c, redis::connection&) -> awaitable<void> {
                for (int i = 0; i < 40; ++i) co_await c.enqueue("p", boost::json::value(i), {.priority = tasks::priority::critical});
                for (int i = 0; i < 40; ++i) co_await c.enqueue("p", boost::json::value(i), {.priority = tasks::priority::low});
                EXPECT_TRUE(co_await eventually([&] { return order.size() >= 80; }));
              });
  auto last_critical = std::find(order.rbegin(), order.rend(), 0);
  auto lows_before = std::count(last_critical, order.rend(), 3);
  EXPECT_GT(lows_before, 0) << "no low task ran before the critical backlog was drained";
}

TEST_F(tasks_test, a_task_failing_twice_then_succeeding_runs_three_times_with_policy_delays) {
  std::vector<steady_clock::time_point> calls;
  std::vector<std::chrono::milliseconds> seen_delays;
  with_worker({}, [&](tasks::worker& w) {
    w.handle("flaky", [&](tasks::task_context& ctx) -> awaitable<void> {
      calls.push_back(steady_clock::now());
      seen_delays.push_back(ctx.task.previous_delay);
      EXPECT_EQ(ctx.task.attempt, calls.size());
      if (calls.size() < 3) throw std::runtime_error("boom " + std::to_string(calls.size()));
      EXPECT_EQ(ctx.task.last_error, "boom 2");
      co_return;
    });
  }, [&](tasks::client& c, redis::connection&) -> awaitable<void> {
    co_await c.enqueue("flaky", boost::json::value(nullptr), {.retry = no_jitter(5, 200ms)});
    EXPECT_TRUE(co_await eventually([&] { return calls.size() >= 3; }));
    co_await sagaflow::sleep_for(500ms);
  });
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(seen_delays[1], 200ms);
  EXPECT_EQ(seen_delays[2], 400ms);
  // The waits are at least the policy's delays (never shorter).
  EXPECT_GE(calls[1] - calls[0], 200ms);
  EXPECT_GE(calls[2] - calls[1], 400ms);
}

TEST_F(tasks_test, seeded_full_jitter_gives_the_reproducible_delay) {
  std::vector<std::chrono::milliseconds> seen;
  std::string id;
  tasks::retry_policy policy{.max_attempts = 3,
                             .backoff = {.base = 100ms, .multiplier = 3.0, .cap = 2s, .jitter = sagaflow::jitter::full}};
  with_worker({}, [&](tasks::worker& w) {
    w.handle("jittery", [&](tasks::task_context& ctx) -> awaitable<void> {
      seen.push_back(ctx.task.previous_delay);
      if (seen.size() < 3) throw std::runtime_error("again");
      co_return;
    });
  }, [&](tasks::client& c, redis::connection&) -> awaitable<void> {
    id = co_await c.enqueue("jittery", boost::json::value(1), {.retry = policy});
    EXPECT_TRUE(co_await eventually([&] { return seen.size() >= 3; }));
  });
  ASSERT_EQ(seen.size(), 3u);
  auto r1 = sagaflow::random_source::for_key(id, 1);
  auto d1 = policy.backoff.delay(1, r1, {});
  auto r2 = sagaflow::random_source::for_key(id, 2);
  auto d2 = policy.backoff.delay(2, r2, d1);
  EXPECT_EQ(seen[1], d1);
  EXPECT_EQ(seen[2], d2);
  EXPECT_LE(d1, 100ms);
  EXPECT_LE(d2, 300ms);
}

TEST_F(tasks_test, dead_letters_for_every_reason_and_requeue) {
  std::atomic<bool> fixed{false};
  std::atomic<int> good_runs{0}, fixed_runs{0};
  with_worker({.unknown_task_grace = 0ms}, [&](tasks::worker& w) {
    w.handle("always-fails", [&](tasks::task_context&) -> awaitable<void> {
      if (fixed) {
        ++fixed_runs;
        co_return;
      }
      throw std::runtime_error("disk full");
    });
    w.handle("refuses", [](tasks::task_context&) -> awaitable<void> {
      throw tasks::permanent_error("card declined");
      co_return;
    });
    w.handle("good", [&](tasks::task_context&) -> awaitable<void> {
      ++good_runs;
      co_return;
    });
  }, [&](tasks::client& c, redis::connection& conn) -> awaitable<void> {
    co_await c.enqueue("always-fails", boost::json::value(1), {.retry = no_jitter(2, 20ms)});
    co_await c.enqueue("refuses", boost::json::value(2));
    co_await c.enqueue("nobody-handles-this", boost::json::value(3));
    co_await conn.call("XADD", "sf:{q:default}:p2", "*", "garbage", "\xff\x00junk");
    co_await c.enqueue("good", tasks::payload::bytes("not json, fine"));
    EXPECT_TRUE(co_await eventually([&]() { return good_runs.load() == 1; }));
    auto dead = co_await dead_letters(c, 4);
    CO_ASSERT_EQ(dead.size(), 4u);
    std::map<std::string, tasks::dead_letter> by_reason;
    for (auto& d : dead) by_reason[d.reason] = d;
    CO_ASSERT_EQ(by_reason.size(), 4u);
    EXPECT_EQ(by_reason["max attempts"].task.name, "always-fails");
    EXPECT_EQ(by_reason["max attempts"].error, "disk full");
    EXPECT_EQ(by_reason["max attempts"].task.attempt, 2u);
    EXPECT_EQ(by_reason["permanent error"].error, "card declined");
    EXPECT_EQ(by_reason["unknown task"].task.name, "nobody-handles-this");
    EXPECT_NE(by_reason["undecodable"].error.find("id"), std::string::npos) << by_reason["undecodable"].error;
    for (auto& d : dead) {
      EXPECT_FALSE(d.worker.empty());
      EXPECT_GT(d.at_ms, 0);
    }
    // Requeue one by id: it runs again with a fresh attempt count, and leaves the dead letters.
    fixed = true;
    EXPECT_EQ(co_await c.requeue_dead("default", by_reason["max attempts"].entry_id), 1u);
    EXPECT_TRUE(co_await eventually([&]() { return fixed_runs.load() == 1; }));
    EXPECT_EQ((co_await c.list_dead("default")).size(), 3u);
    // Requeue all: the undecodable one is not a task and stays.
    EXPECT_EQ(co_await c.requeue_dead("default"), 2u);
    co_await sagaflow::sleep_for(300ms);
    auto left = co_await c.list_dead("default");
    EXPECT_GE(left.size(), 1u);
  });
}

TEST_F(tasks_test, an_idempotency_key_enqueues_once) {
  std::atomic<int> runs{0};
  with_worker({}, [&](tasks::worker& w) {
    w.handle("charge", [&](tasks::task_context&) -> awaitable<void> {
      ++runs;
      co_return;
    });
  }, [&](tasks::client& c, redis::connection&) -> awaitable<void> {
    auto first = co_await c.enqueue("charge", boost::json::value(10), {.idempotency_key = "order-42"});
    auto second = co_await c.enqueue("charge", boost::json::value(10), {.idempotency_key = "order-42"});
    auto other = co_await c.enqueue("charge", boost::json::value(10), {.idempotency_key = "order-43"});
    EXPECT_EQ(first, second);
    EXPECT_NE(first, other);
    EXPECT_TRUE(co_await eventually([&] { return runs.load() >= 2; }));
    co_await sagaflow::sleep_for(300ms);
    EXPECT_EQ(runs.load(), 2);
  });
}

TEST_F(tasks_test, a_delayed_task_runs_after_its_delay) {
  steady_clock::time_point enqueued, ran;
  std::atomic<bool> done{false};
  with_worker({}, [&](tasks::worker& w) {
    w.handle("later", [&](tasks::task_context&) -> awaitable<void> {
      ran = steady_clock::now();
      done = true;
      co_return;
    });
  }, [&](tasks::client& c, redis::connection& conn) -> awaitable<void> {
    enqueued = steady_clock::now();
    co_await c.enqueue("later", boost::json::value(1), {.delay = 400ms});
    auto waiting = co_await conn.call("ZCARD", "sf:{q:default}:delayed");
    EXPECT_EQ(waiting.integer, 1);
    EXPECT_TRUE(co_await eventually([&] { return done.load(); }));
  });
  EXPECT_GE(ran - enqueued, 400ms);
}

TEST_F(tasks_test, a_crashed_consumers_pending_tasks_are_recovered_and_poison_is_dead_lettered) {
  std::vector<std::uint32_t> attempts;
  std::atomic<int> runs{0};
  // Set the scene without a worker: entries delivered to a consumer that will never come back.
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = redis::connection::create(ex, server.config());
    co_await conn->connect();
    tasks::client c(conn);
    const std::string stream = "sf:{q:default}:p2";
    co_await redis::xgroup_create(*conn, stream, "workers", "0");
    for (int i = 0; i < 3; ++i) co_await c.enqueue("work", boost::json::value(i));
    auto poison_id = co_await c.enqueue("work", boost::json::value("poison"));
    (void)poison_id;
    redis::stream_offset from[] = {{stream, ">"}};
    auto got = co_await redis::xreadgroup(*conn, "workers", "crashed-worker", from, {.count = 10});
    CO_ASSERT_EQ(got.size(), 1u);
    CO_ASSERT_EQ(got[0].entries.size(), 4u);
    // The poison task was already redelivered 5 times (it kept killing workers).
    std::vector<std::string> last{got[0].entries[3].id};
    for (int i = 0; i < 4; ++i) co_await redis::xclaim(*conn, stream, "workers", "crashed-worker", 0ms, last);
    conn->close();
  }());
  with_worker({.lease = 300ms, .recover_interval = 100ms}, [&](tasks::worker& w) {
    w.handle("work", [&](tasks::task_context& ctx) -> awaitable<void> {
      attempts.push_back(ctx.task.attempt);
      ++runs;
      co_return;
    });
  }, [&](tasks::client& c, redis::connection&) -> awaitable<void> {
    EXPECT_TRUE(co_await eventually([&] { return runs.load() >= 3; }));
    auto dead = co_await dead_letters(c, 1);
    CO_ASSERT_EQ(dead.size(), 1u);
    EXPECT_EQ(dead[0].reason, "delivery limit");
    co_await sagaflow::sleep_for(300ms);
  });
  EXPECT_EQ(runs.load(), 3) << "the poison task must not run";
  for (auto a : attempts) EXPECT_EQ(a, 1u) << "a crash must not use up a retry attempt";
}

TEST_F(tasks_test, a_handler_over_its_timeout_is_cancelled_and_the_attempt_fails) {
  std::atomic<int> cancelled{0};
  with_worker({}, [&](tasks::worker& w) {
    w.handle("slow", [&](tasks::task_context&) -> awaitable<void> {
      try {
        co_await sagaflow::sleep_for(30s);
      } catch (const boost::system::system_error&) {
        ++cancelled;
        throw;
      }
    });
  }, [&](tasks::client& c, redis::connection&) -> awaitable<void> {
    co_await c.enqueue("slow", boost::json::value(1), {.retry = no_jitter(1, 10ms), .timeout = 200ms});
    auto dead = co_await dead_letters(c, 1);
    CO_ASSERT_EQ(dead.size(), 1u);
    EXPECT_EQ(dead[0].reason, "max attempts");
    EXPECT_NE(dead[0].error.find("timed out"), std::string::npos) << dead[0].error;
  });
  EXPECT_EQ(cancelled.load(), 1);
}

TEST_F(tasks_test, a_long_handler_keeps_its_lease_and_is_not_taken_over) {
  std::atomic<int> runs{0};
  auto handler = [&](tasks::task_context&) -> awaitable<void> {
    ++runs;
    co_await sagaflow::sleep_for(1500ms);
  };
  // Two workers in one process; both recover aggressively; the lease is short.
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = redis::connection::create(ex, server.config());
    co_await conn->connect();
    tasks::client c(conn);
    tasks::worker_options o{.lease = 300ms, .promoter_interval = 100ms, .fetch_block = 100ms, .recover_interval = 100ms};
    tasks::worker a(ex, server.config(), o), b(ex, server.config(), o);
    a.handle("long", handler);
    b.handle("long", handler);
    sagaflow::stop_source stop;
    int done = 0;
    asio::co_spawn(ex, a.run(stop), [&](std::exception_ptr) { ++done; });
    asio::co_spawn(ex, b.run(stop), [&](std::exception_ptr) { ++done; });
    co_await c.enqueue("long", boost::json::value(1));
    co_await sagaflow::sleep_for(2500ms);
    stop.request_stop();
    while (done < 2) co_await sagaflow::sleep_for(10ms);
    EXPECT_EQ(a.stats().recovered + b.stats().recovered, 0u);
    EXPECT_EQ(a.stats().succeeded + b.stats().succeeded, 1u);
    conn->close();
  }());
  EXPECT_EQ(runs.load(), 1);
}

TEST_F(tasks_test, graceful_stop_finishes_running_handlers_and_acknowledges_them) {
  std::atomic<int> started{0}, finished{0};
  with_worker({.concurrency = 4}, [&](tasks::worker& w) {
    w.handle("work", [&](tasks::task_context&) -> awaitable<void> {
      ++started;
      co_await sagaflow::sleep_for(300ms);
      ++finished;
    });
  }, [&](tasks::client& c, redis::connection&) -> awaitable<void> {
    for (int i = 0; i < 4; ++i) co_await c.enqueue("work", boost::json::value(i));
    EXPECT_TRUE(co_await eventually([&] { return started.load() == 4; }));
  });  // stop requested here, while all four run
  EXPECT_EQ(finished.load(), 4);
  run([&]() -> awaitable<void> {
    auto conn = redis::connection::create(co_await asio::this_coro::executor, server.config());
    co_await conn->connect();
    EXPECT_EQ((co_await redis::xpending(*conn, "sf:{q:default}:p2", "workers")).count, 0);
    conn->close();
  }());
}

TEST_F(tasks_test, bad_input_is_refused_at_enqueue) {
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = redis::connection::create(ex, server.config());
    co_await conn->connect();
    tasks::client c(conn, {.max_payload_bytes = 1000});
    auto big = tasks::payload::bytes(std::string(1001, 'x'));
    EXPECT_THROW(co_await c.enqueue("x", big), std::invalid_argument);
    EXPECT_THROW(co_await c.enqueue("", boost::json::value(1)), std::invalid_argument);
    EXPECT_THROW(co_await c.enqueue("x", boost::json::value(1), {.queue = "bad}name"}), std::invalid_argument);
    EXPECT_THROW(co_await c.enqueue("x", boost::json::value(1), {.retry = {.max_attempts = 0}}), std::invalid_argument);
    EXPECT_EQ(co_await redis::xlen(*conn, "sf:{q:default}:p2"), 0) << "nothing was enqueued";
    conn->close();
  }());
}

TEST_F(tasks_test, retry_after_overrides_the_policy_delay_and_context_carries_headers) {
  std::vector<steady_clock::time_point> calls;
  std::vector<std::chrono::milliseconds> delays;
  std::string correlation, header;
  std::map<std::string, std::string> headers{{"tenant", "acme"}};
  with_worker({}, [&](tasks::worker& w) {
    w.handle("rate-limited", [&](tasks::task_context& ctx) -> awaitable<void> {
      calls.push_back(steady_clock::now());
      delays.push_back(ctx.task.previous_delay);
      correlation = ctx.task.correlation_id;
      header = ctx.task.headers.count("tenant") ? ctx.task.headers.at("tenant") : "";
      if (calls.size() == 1) throw tasks::retry_after(300ms, "429 from the mail API");
      co_return;
    });
  }, [&](tasks::client& c, redis::connection&) -> awaitable<void> {
    // The policy alone would wait 10 s: the handler's retry_after(300 ms) wins.
    co_await c.enqueue("rate-limited", boost::json::value(1),
                       {.retry = no_jitter(3, 10s), .correlation_id = "order-7", .headers = &headers});
    EXPECT_TRUE(co_await eventually([&] { return calls.size() >= 2; }, 5s));
  });
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(delays[1], 300ms);
  EXPECT_GE(calls[1] - calls[0], 300ms);
  EXPECT_EQ(correlation, "order-7");
  EXPECT_EQ(header, "acme");
}

TEST_F(tasks_test, a_worker_serves_several_queues_each_with_its_share) {
  std::mutex m;
  std::map<std::string, int> per_queue;
  std::atomic<int> running_emails{0}, max_running_emails{0};
  with_worker({.queues = {{"emails", 1}, {"reports", 3}}, .concurrency = 4}, [&](tasks::worker& w) {
    w.handle("job", [&](tasks::task_context& ctx) -> awaitable<void> {
      if (ctx.task.queue == "emails") {
        int now = ++running_emails;
        int seen = max_running_emails.load();
        while (now > seen && !max_running_emails.compare_exchange_weak(seen, now)) {
        }
      }
      co_await sagaflow::sleep_for(20ms);
      if (ctx.task.queue == "emails") --running_emails;
      std::lock_guard lock(m);
      ++per_queue[ctx.task.queue];
    });
  }, [&](tasks::client& c, redis::connection&) -> awaitable<void> {
    for (int i = 0; i < 20; ++i) {
      co_await c.enqueue("job", boost::json::value(i), {.queue = "emails"});
      co_await c.enqueue("job", boost::json::value(i), {.queue = "reports"});
    }
    EXPECT_TRUE(co_await eventually([&] {
      std::lock_guard lock(m);
      return per_queue["emails"] == 20 && per_queue["reports"] == 20;
    }));
  });
  EXPECT_EQ(max_running_emails.load(), 1) << "emails has one slot of four (share 1 of 4)";
}

TEST_F(tasks_test, run_at_in_the_future_waits_and_in_the_past_runs_now) {
  std::atomic<int> runs{0};
  with_worker({}, [&](tasks::worker& w) {
    w.handle("at", [&](tasks::task_context&) -> awaitable<void> {
      ++runs;
      co_return;
    });
  }, [&](tasks::client& c, redis::connection& conn) -> awaitable<void> {
    auto past = std::chrono::system_clock::now() - 1h;
    auto future = std::chrono::system_clock::now() + 1h;
    co_await c.enqueue("at", boost::json::value(1), {.run_at = past});
    co_await c.enqueue("at", boost::json::value(2), {.run_at = future});
    EXPECT_TRUE(co_await eventually([&] { return runs.load() >= 1; }));
    co_await sagaflow::sleep_for(300ms);
    EXPECT_EQ(runs.load(), 1);
    EXPECT_EQ((co_await conn.call("ZCARD", "sf:{q:default}:delayed")).integer, 1) << "the future task waits in the delayed set";
  });
}

TEST_F(tasks_test, a_handler_result_is_stored_and_readable_by_task_id) {
  std::atomic<bool> done{false};
  with_worker({}, [&](tasks::worker& w) {
    w.handle("sum", [&](tasks::task_context& ctx) -> awaitable<void> {
      auto v = ctx.json().as_array();
      ctx.set_result(boost::json::value{{"sum", v.at(0).as_int64() + v.at(1).as_int64()}});
      done = true;
      co_return;
    });
  }, [&](tasks::client& c, redis::connection&) -> awaitable<void> {
    boost::json::value numbers = boost::json::array{1, 2};
    auto id = co_await c.enqueue("sum", numbers);
    EXPECT_FALSE((co_await c.result("default", "no-such-task")).has_value());
    std::optional<boost::json::value> result;
    for (int i = 0; i < 500 && !result; ++i) {
      result = co_await c.result("default", id);
      co_await sagaflow::sleep_for(10ms);
    }
    CO_ASSERT_TRUE(result.has_value());
    EXPECT_EQ(result->at("sum").as_int64(), 3);
  });
}
