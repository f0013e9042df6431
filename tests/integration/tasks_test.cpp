// The task queue against a real redis-server: priorities, retries with jittered backoff, delays,
// dead letters for every reason, idempotency keys, recovery of a dead worker's tasks, timeouts,
// graceful stop.
#include "background_worker.hpp"
#include "redis_server.hpp"

#include <sagaflow/tasks/client.hpp>
#include <sagaflow/tasks/worker.hpp>
#include <sagaflow/transport/commands.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <map>
#include <mutex>
#include <set>

namespace asio = boost::asio;
namespace transport = sagaflow::transport;
namespace tasks = sagaflow::tasks;
using namespace std::chrono_literals;
using sagaflow::awaitable;
using sagaflow::steady_clock;
using sagaflow::testing::eventually;
using sagaflow::testing::expect_clean_end;
using sagaflow::testing::redis_server;
using sagaflow::testing::run;
using sagaflow::testing::start_worker;
using sagaflow::testing::worker_end;

namespace {

const tasks::queue_keys keys("sf", "default");

class tasks_test : public ::testing::Test {
 protected:
  // Runs `body(client, conn)` while a worker with `options` and the handlers set up by `setup`
  // runs; stops the worker (gracefully) when the body returns. Every test through here also
  // checks that the worker settled every task it took (no failed settlement on a healthy
  // server) and that no exception escaped a background loop.
  template <typename Setup, typename Body>
  void with_worker(tasks::worker_options options, Setup setup, Body body) {
    const auto unhandled_before = sagaflow::unhandled_exception_count();
    std::uint64_t failed_to_settle = 0;
    run([&]() -> awaitable<void> {
      auto ex = co_await asio::this_coro::executor;
      auto conn = transport::connection::create(ex, server.config());
      co_await conn->connect();
      tasks::client client(conn);
      options.promoter_interval = 100ms;
      options.fetch_block = 100ms;
      tasks::worker worker(ex, server.config(), options);
      setup(worker);
      sagaflow::stop_source stop;
      worker_end end;
      start_worker(ex, worker, stop, end);
      co_await body(client, *conn);
      stop.request_stop();
      while (!end.finished) co_await sagaflow::sleep_for(10ms);
      expect_clean_end(end);
      failed_to_settle = worker.stats().failed_to_settle.load();
      conn->close();
    }(), std::chrono::seconds(120));
    EXPECT_EQ(failed_to_settle, 0u) << "a settlement failed on a healthy server";
    EXPECT_EQ(sagaflow::unhandled_exception_count(), unhandled_before) << "an exception escaped a background loop";
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

// A task envelope as the client would make it, but with an id of the test's choosing (so that a
// seeded delay is known in advance) or with fields the client would refuse.
tasks::envelope make_task(std::string id, std::string name, tasks::payload payload, tasks::retry_policy retry = {}) {
  tasks::envelope e;
  e.id = std::move(id);
  e.name = std::move(name);
  e.queue = "default";
  e.payload = std::move(payload);
  e.retry = retry;
  e.timeout = 30s;
  e.correlation_id = e.id;
  e.enqueued_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
  return e;
}

// XADDs flat name/value pairs to `stream`; returns the entry id.
awaitable<std::string> add_entry(transport::connection& conn, std::string_view stream, const std::vector<std::string>& flat) {
  std::vector<transport::field_view> fields;
  for (std::size_t i = 0; i + 1 < flat.size(); i += 2) fields.push_back({flat[i], flat[i + 1]});
  co_return co_await transport::xadd(conn, stream, fields);
}

}  // namespace

TEST_F(tasks_test, every_task_runs_once_and_its_entry_is_acknowledged_and_deleted) {
  std::atomic<int> runs{0};
  std::mutex m;
  std::map<std::string, std::int64_t> payload_of;  // task id -> the payload its handler saw
  with_worker({.concurrency = 8}, [&](tasks::worker& w) {
    w.handle("add", [&](tasks::task_context& ctx) -> awaitable<void> {
      auto n = ctx.json().at("n").as_int64();
      std::lock_guard lock(m);
      payload_of.emplace(ctx.task.id, n);
      ++runs;
      co_return;
    });
  }, [&](tasks::client& c, transport::connection& conn) -> awaitable<void> {
    std::vector<tasks::task_spec> batch;
    for (int i = 0; i < 200; ++i) batch.push_back({"add", boost::json::value{{"n", i}}, {}});
    auto ids = co_await c.enqueue_bulk(std::move(batch));
    CO_ASSERT_EQ(ids.size(), 200u);
    EXPECT_TRUE(co_await eventually([&] { return runs.load() >= 200; }));
    co_await sagaflow::sleep_for(300ms);  // a few more ack flushes
    EXPECT_EQ(runs.load(), 200);
    EXPECT_EQ(payload_of.size(), 200u);
    for (std::size_t i = 0; i < ids.size(); ++i) {
      auto it = payload_of.find(ids[i]);
      if (it == payload_of.end()) {
        ADD_FAILURE() << "task " << i << " (" << ids[i] << ") never ran";
        continue;
      }
      EXPECT_EQ(it->second, static_cast<std::int64_t>(i)) << "task " << ids[i] << " got another task's payload";
    }
    EXPECT_EQ(co_await transport::xlen(conn, "sf:{q:default}:p2"), 0) << "completed entries are deleted";
    EXPECT_EQ((co_await transport::xpending(conn, "sf:{q:default}:p2", "workers")).count, 0);
  });
}

TEST_F(tasks_test, strict_priority_runs_every_critical_task_before_any_low_one) {
  std::vector<int> order;
  // The backlog exists before the worker starts: low enqueued first, critical last.
  run([&]() -> awaitable<void> {
    auto conn = transport::connection::create(co_await asio::this_coro::executor, server.config());
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
  }, [&](tasks::client&, transport::connection&) -> awaitable<void> {
    EXPECT_TRUE(co_await eventually([&] { return order.size() >= 60; }));
  });
  ASSERT_EQ(order.size(), 60u);
  for (std::size_t i = 1; i < order.size(); ++i) EXPECT_LE(order[i - 1], order[i]) << "at position " << i;
  EXPECT_EQ(order.front(), 0);
}

// The worker chooses between waiting tasks while it runs others: a critical task that arrives
// while every slot is busy with low tasks and more low tasks wait is the next one to start.
TEST_F(tasks_test, strict_priority_starts_a_critical_task_added_while_low_ones_run_before_the_waiting_lows) {
  std::vector<std::string> started;
  bool release = false;
  with_worker({.concurrency = 2}, [&](tasks::worker& w) {
    w.handle("p", [&](tasks::task_context& ctx) -> awaitable<void> {
      started.push_back(ctx.bytes());
      while (!release) co_await sagaflow::sleep_for(5ms);
    });
  }, [&](tasks::client& c, transport::connection&) -> awaitable<void> {
    for (int i = 0; i < 6; ++i)
      co_await c.enqueue("p", tasks::payload::bytes("low-" + std::to_string(i)), {.priority = tasks::priority::low});
    CO_ASSERT_TRUE(co_await eventually([&] { return started.size() == 2; }));
    co_await sagaflow::sleep_for(50ms);  // the worker has settled into "both slots busy"
    EXPECT_EQ(started.size(), 2u) << "concurrency 2 ran more than two at once";
    co_await c.enqueue("p", tasks::payload::bytes("critical"), {.priority = tasks::priority::critical});
    release = true;
    EXPECT_TRUE(co_await eventually([&] { return started.size() == 7; }));
  });
  ASSERT_EQ(started.size(), 7u);
  EXPECT_EQ(started[2], "critical") << "a low task that waited started before the critical one";
}

// Low tasks recovered from a dead consumer (more of them than the worker has free slots) must not
// hold back a critical task that arrives meanwhile: it starts before every low one not yet started.
TEST_F(tasks_test, strict_priority_starts_a_critical_task_before_recovered_low_ones) {
  run([&]() -> awaitable<void> {
    auto conn = transport::connection::create(co_await asio::this_coro::executor, server.config());
    co_await conn->connect();
    tasks::client c(conn);
    co_await transport::xgroup_create(*conn, keys.streams[3], "workers", "0");
    for (int i = 0; i < 6; ++i)
      co_await c.enqueue("p", tasks::payload::bytes("low-" + std::to_string(i)), {.priority = tasks::priority::low});
    transport::stream_offset from[] = {{keys.streams[3], ">"}};
    auto got = co_await transport::xreadgroup(*conn, "workers", "crashed-worker", from, {.count = 10});
    CO_ASSERT_EQ(got.size(), 1u);
    CO_ASSERT_EQ(got[0].entries.size(), 6u);
    conn->close();
  }());
  std::vector<std::string> started;
  bool release = false;
  tasks::worker* worker = nullptr;
  std::uint64_t worker_recovered = 0;
  with_worker({.concurrency = 2, .lease = 500ms, .recover_interval = 100ms}, [&](tasks::worker& w) {
    worker = &w;
    w.handle("p", [&](tasks::task_context& ctx) -> awaitable<void> {
      started.push_back(ctx.bytes());
      while (!release) co_await sagaflow::sleep_for(5ms);
    });
  }, [&](tasks::client& c, transport::connection& conn) -> awaitable<void> {
    CO_ASSERT_TRUE(co_await eventually([&] { return started.size() == 2; }));
    co_await sagaflow::sleep_for(300ms);  // past fetch_block: no read issued before the recovery is still open
    EXPECT_GE(worker->stats().recovered.load(), 2u);
    co_await c.enqueue("p", tasks::payload::bytes("critical"), {.priority = tasks::priority::critical});
    co_await sagaflow::sleep_for(200ms);  // the worker has seen it
    // The lows the worker has not taken over yet stay with the dead consumer for another lease, so
    // that a recovery pass cannot race the fetcher when the slots free up (the worker's own
    // buffer, if it holds any, is what this test is about).
    transport::pending_range still_dead{.consumer = "crashed-worker"};
    auto held_by_the_dead = co_await transport::xpending(conn, keys.streams[3], "workers", still_dead);
    for (auto& e : held_by_the_dead)
      co_await conn.call("XCLAIM", keys.streams[3], "workers", "crashed-worker", "0", e.id, "JUSTID");
    release = true;
    EXPECT_TRUE(co_await eventually([&] { return started.size() == 7; }));
    worker_recovered = worker->stats().recovered.load();
  });
  ASSERT_EQ(started.size(), 7u);
  EXPECT_EQ(started[2], "critical") << "recovered low tasks started before the critical one";
  EXPECT_EQ(worker_recovered, 6u);
}

// With a backlog in all four streams, each fetch of one task reads first from a stream drawn by
// weight: the tasks run follow the weights. Weights {2, 1, 1, 4} give shares 1/4, 1/8, 1/8, 1/2;
// the bounds are five standard deviations wide, and equal weights (1/4 each), inverted weights
// (low 1/4), strict order (no low at all) or a dropped weight all fall outside them.
TEST_F(tasks_test, weighted_priority_runs_each_priority_in_proportion_to_its_weight) {
  constexpr int backlog = 150, counted = 200;
  constexpr std::array<unsigned, 4> weights{2, 1, 1, 4};
  run([&]() -> awaitable<void> {
    auto conn = transport::connection::create(co_await asio::this_coro::executor, server.config());
    co_await conn->connect();
    tasks::client c(conn);
    std::vector<tasks::task_spec> batch;
    for (auto p : {tasks::priority::critical, tasks::priority::high, tasks::priority::normal, tasks::priority::low})
      for (int i = 0; i < backlog; ++i) batch.push_back({"p", boost::json::value(i), {.priority = p}});
    co_await c.enqueue_bulk(std::move(batch));
    conn->close();
  }());
  std::vector<int> order;
  with_worker({.concurrency = 1, .mode = tasks::priority_mode::weighted, .weights = weights},
              [&](tasks::worker& w) {
                w.handle("p", [&](tasks::task_context& ctx) -> awaitable<void> {
                  order.push_back(static_cast<int>(ctx.task.priority));
                  co_return;
                });
              },
              [&](tasks::client&, transport::connection&) -> awaitable<void> {
                EXPECT_TRUE(co_await eventually([&] { return order.size() >= counted; }));
              });
  ASSERT_GE(order.size(), static_cast<std::size_t>(counted));
  std::array<int, 4> ran{};
  for (int i = 0; i < counted; ++i) ++ran[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])];
  const double total = weights[0] + weights[1] + weights[2] + weights[3];
  for (std::size_t p = 0; p < 4; ++p) {
    EXPECT_LT(ran[p], backlog) << "priority " << p << " ran its whole backlog within the first " << counted;
    const double share = weights[p] / total;
    const double expected = counted * share, sd = std::sqrt(counted * share * (1 - share));
    EXPECT_NEAR(ran[p], expected, 5 * sd) << "priority " << p << " (weight " << weights[p] << ") ran " << ran[p]
                                          << " of the first " << counted;
  }
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
  }, [&](tasks::client& c, transport::connection&) -> awaitable<void> {
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

// The waits the worker really makes between attempts are the delays seeded by (task id, attempt)
// and, for decorrelated jitter, the previous delay. The test picks task ids whose delays sit far
// from what a broken worker would wait (no wait, the unjittered value, or a decorrelated delay
// that ignored the previous one), so that each of those falls outside [delay, delay + slack].
TEST_F(tasks_test, a_retry_waits_the_delay_seeded_by_task_id_and_attempt_for_full_and_decorrelated_jitter) {
  constexpr auto slack = 250ms;  // promoter wake-up, fetch and dispatch after the due time
  struct jittered {
    std::string name;
    tasks::retry_policy policy;
    std::string id;
    std::array<std::chrono::milliseconds, 2> delays{};  // before attempt 2 and attempt 3
    std::vector<steady_clock::time_point> calls;
    std::vector<std::chrono::milliseconds> stored;  // previous_delay as the handler sees it
  };
  std::array<jittered, 2> cases{
      jittered{.name = "full",
               .policy = {.max_attempts = 3,
                          .backoff = {.base = 400ms, .multiplier = 2.0, .cap = 10s, .jitter = sagaflow::jitter::full}}},
      jittered{.name = "decorrelated",
               .policy = {.max_attempts = 3,
                          .backoff = {.base = 100ms, .multiplier = 2.0, .cap = 2s, .jitter = sagaflow::jitter::decorrelated}}}};
  for (auto& c : cases) {
    const auto& b = c.policy.backoff;
    for (int k = 0; k < 100000 && c.id.empty(); ++k) {
      std::string id = "jitter-" + c.name + "-" + std::to_string(k);
      auto r1 = sagaflow::random_source::for_key(id, 1);
      auto d1 = b.delay(1, r1, {});
      auto r2 = sagaflow::random_source::for_key(id, 2);
      auto d2 = b.delay(2, r2, d1);
      auto r2_fresh = sagaflow::random_source::for_key(id, 2);
      auto d2_without_previous = b.delay(2, r2_fresh, {});
      // Each wrong wait is either well below the delay or above delay + slack.
      auto apart = [&](std::chrono::milliseconds d, std::chrono::milliseconds wrong) {
        return wrong + 100ms <= d || wrong > d + slack + 10ms;
      };
      bool ok = apart(d1, 0ms) && apart(d2, 0ms) && apart(d1, b.ceiling(1)) && apart(d2, b.ceiling(2));
      if (b.jitter == sagaflow::jitter::decorrelated) ok = ok && apart(d2, d2_without_previous);
      if (ok) {
        c.id = id;
        c.delays = {d1, d2};
      }
    }
    ASSERT_FALSE(c.id.empty()) << "no task id with well separated delays for " << c.name;
  }
  with_worker({}, [&](tasks::worker& w) {
    for (auto& c : cases)
      w.handle(c.name, [&c](tasks::task_context& ctx) -> awaitable<void> {
        c.calls.push_back(steady_clock::now());
        c.stored.push_back(ctx.task.previous_delay);
        if (c.calls.size() < 3) throw std::runtime_error("again");
        co_return;
      });
  }, [&](tasks::client&, transport::connection& conn) -> awaitable<void> {
    for (auto& c : cases) {
      auto fields = make_task(c.id, c.name, boost::json::value(1), c.policy).to_fields();
      co_await add_entry(conn, "sf:{q:default}:p2", fields);
    }
    EXPECT_TRUE(co_await eventually([&] { return cases[0].calls.size() >= 3 && cases[1].calls.size() >= 3; }));
  });
  for (auto& c : cases) {
    ASSERT_EQ(c.calls.size(), 3u) << c.name;
    for (std::size_t i = 0; i < 2; ++i) {
      auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(c.calls[i + 1] - c.calls[i]);
      EXPECT_EQ(c.stored[i + 1], c.delays[i]) << c.name << " delay before attempt " << i + 2;
      EXPECT_GE(waited, c.delays[i]) << c.name << " attempt " << i + 2 << " ran early";
      EXPECT_LE(waited, c.delays[i] + slack) << c.name << " attempt " << i + 2 << " waited " << waited.count()
                                             << " ms, not the seeded " << c.delays[i].count() << " ms";
    }
  }
}

TEST_F(tasks_test, dead_letters_for_every_reason_and_requeue) {
  std::atomic<bool> fixed{false};
  std::atomic<int> good_runs{0}, fixed_runs{0}, refused_runs{0};
  std::vector<std::uint32_t> fixed_attempts;
  std::string failing_entry, refusing_entry;  // the stream entry each ran from last
  tasks::worker_options options;
  options.unknown_task_grace = 0ms;  // dead-letter an unknown task at once
  with_worker(options, [&](tasks::worker& w) {
    w.handle("always-fails", [&](tasks::task_context& ctx) -> awaitable<void> {
      failing_entry = ctx.stream_entry_id;
      if (fixed) {
        fixed_attempts.push_back(ctx.task.attempt);
        ++fixed_runs;
        co_return;
      }
      throw std::runtime_error("disk full");
    });
    w.handle("refuses", [&](tasks::task_context& ctx) -> awaitable<void> {
      refusing_entry = ctx.stream_entry_id;
      ++refused_runs;
      if (fixed) co_return;
      throw tasks::permanent_error("card declined");
    });
    w.handle("good", [&](tasks::task_context&) -> awaitable<void> {
      ++good_runs;
      co_return;
    });
  }, [&](tasks::client& c, transport::connection& conn) -> awaitable<void> {
    co_await c.enqueue("always-fails", boost::json::value(1), {.retry = no_jitter(2, 20ms)});
    co_await c.enqueue("refuses", boost::json::value(2));
    auto unknown = make_task("unknown-1", "nobody-handles-this", boost::json::value(3));
    auto unknown_entry = co_await add_entry(conn, "sf:{q:default}:p2", unknown.to_fields());
    std::vector<std::string> garbage{"garbage", std::string("\xff\x00junk", 6)};
    auto garbage_entry = co_await add_entry(conn, "sf:{q:default}:p2", garbage);
    co_await c.enqueue("good", tasks::payload::bytes("not json, fine"));
    EXPECT_TRUE(co_await eventually([&]() { return good_runs.load() == 1; }));
    auto dead = co_await dead_letters(c, 4);
    CO_ASSERT_EQ(dead.size(), 4u);
    std::map<std::string, tasks::dead_letter> by_reason;
    for (auto& d : dead) by_reason[d.reason] = d;
    CO_ASSERT_EQ(by_reason.size(), 4u);
    auto& max_attempts = by_reason["max attempts"];
    EXPECT_EQ(max_attempts.task.name, "always-fails");
    EXPECT_EQ(max_attempts.error, "disk full");
    EXPECT_EQ(max_attempts.task.attempt, 2u);
    EXPECT_EQ(max_attempts.attempts, 2u);
    EXPECT_EQ(max_attempts.stream_entry_id, failing_entry) << "the entry of the last attempt";
    auto& permanent = by_reason["permanent error"];
    EXPECT_EQ(permanent.task.name, "refuses");
    EXPECT_EQ(permanent.error, "card declined");
    EXPECT_EQ(permanent.attempts, 1u);
    EXPECT_EQ(permanent.stream_entry_id, refusing_entry);
    auto& unknown_task = by_reason["unknown task"];
    EXPECT_EQ(unknown_task.task.id, "unknown-1");
    EXPECT_EQ(unknown_task.task.name, "nobody-handles-this");
    EXPECT_EQ(unknown_task.attempts, 1u);
    EXPECT_EQ(unknown_task.stream_entry_id, unknown_entry);
    auto& undecodable = by_reason["undecodable"];
    EXPECT_EQ(undecodable.error, "task entry lacks the field 'id'");
    EXPECT_EQ(undecodable.attempts, 0u) << "never a task, so never an attempt";
    EXPECT_EQ(undecodable.stream_entry_id, garbage_entry);
    for (auto& d : dead) {
      EXPECT_FALSE(d.worker.empty());
      EXPECT_GT(d.at_ms, 0);
    }
    // Requeue one by id: it runs again with attempt 1, and leaves the other dead letters.
    fixed = true;
    EXPECT_EQ(co_await c.requeue_dead("default", max_attempts.entry_id), 1u);
    EXPECT_TRUE(co_await eventually([&]() { return fixed_runs.load() == 1; }));
    EXPECT_EQ(fixed_attempts, std::vector<std::uint32_t>{1u});
    auto after_one = co_await c.list_dead("default");
    std::set<std::string> left_ids, expected_ids{permanent.entry_id, unknown_task.entry_id, undecodable.entry_id};
    for (auto& d : after_one) left_ids.insert(d.entry_id);
    EXPECT_EQ(left_ids, expected_ids);
    // Requeue all: the two tasks go back (the refused one now succeeds, the unknown one dies
    // again); the undecodable entry is not a task and stays where it was.
    EXPECT_EQ(co_await c.requeue_dead("default"), 2u);
    EXPECT_TRUE(co_await eventually([&]() { return refused_runs.load() == 2; }));
    auto left = co_await dead_letters(c, 2);
    co_await sagaflow::sleep_for(200ms);  // nothing else may arrive
    left = co_await c.list_dead("default");
    CO_ASSERT_EQ(left.size(), 2u);
    EXPECT_EQ(left[0].entry_id, undecodable.entry_id) << "the undecodable entry was left in place";
    EXPECT_EQ(left[0].reason, "undecodable");
    EXPECT_EQ(left[1].reason, "unknown task");
    EXPECT_EQ(left[1].task.id, "unknown-1");
    EXPECT_EQ(left[1].attempts, 1u) << "requeued with a fresh attempt count";
    EXPECT_NE(left[1].entry_id, unknown_task.entry_id);
    EXPECT_EQ(fixed_runs.load(), 1);
  });
}

TEST_F(tasks_test, an_idempotency_key_enqueues_once) {
  std::atomic<int> runs{0};
  with_worker({}, [&](tasks::worker& w) {
    w.handle("charge", [&](tasks::task_context&) -> awaitable<void> {
      ++runs;
      co_return;
    });
  }, [&](tasks::client& c, transport::connection&) -> awaitable<void> {
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

// Invariant 8 at the worker: bad entries that reach it (the client refuses to write them) are
// dead-lettered with their reason, and the worker goes on serving good tasks.
TEST_F(tasks_test, bad_entries_reaching_the_worker_are_dead_lettered_with_their_reason) {
  std::atomic<int> json_runs{0}, good_runs{0};
  tasks::worker_options options;
  options.max_payload_bytes = 1000;
  with_worker(options, [&](tasks::worker& w) {
    w.handle("parse", [&](tasks::task_context& ctx) -> awaitable<void> {
      ++json_runs;
      (void)ctx.json();
      ++good_runs;
      co_return;
    });
  }, [&](tasks::client& c, transport::connection& conn) -> awaitable<void> {
    const std::string stream = "sf:{q:default}:p2";
    // A payload over the worker's limit (the client would refuse it: written by hand).
    auto big = make_task("too-big", "parse", tasks::payload::bytes(std::string(1001, 'x')));
    auto big_entry = co_await add_entry(conn, stream, big.to_fields());
    // A payload that claims to be JSON and is not.
    auto not_json = make_task("not-json", "parse", tasks::payload::bytes("{\"to\": "));
    not_json.payload.kind = tasks::payload::encoding::json;
    auto not_json_entry = co_await add_entry(conn, stream, not_json.to_fields());
    // Delayed-set members that are due and are not task envelopes: not JSON, JSON that is not an
    // envelope, and an envelope whose fields are not a task (it is promoted, then refused).
    const std::string not_json_member = "not json at all", not_envelope_member = R"({"p":7,"f":[]})",
                      bad_fields_member = R"({"p":2,"f":["garbage","x"]})";
    auto zadded = co_await conn.call("ZADD", keys.delayed, "1", not_json_member, "2", not_envelope_member, "3",
                                     bad_fields_member);
    EXPECT_EQ(zadded.integer, 3);
    auto dead = co_await dead_letters(c, 5);
    // The worker still serves good tasks.
    co_await c.enqueue("parse", boost::json::value(1));
    EXPECT_TRUE(co_await eventually([&] { return good_runs.load() == 1; }));
    co_await sagaflow::sleep_for(200ms);
    dead = co_await c.list_dead("default");
    CO_ASSERT_EQ(dead.size(), 5u);
    std::map<std::string, std::vector<tasks::dead_letter>> by_reason;
    for (auto& d : dead) by_reason[d.reason].push_back(d);
    CO_ASSERT_EQ(by_reason["oversized"].size(), 1u);
    auto& oversized = by_reason["oversized"][0];
    EXPECT_EQ(oversized.task.id, "too-big");
    EXPECT_EQ(oversized.stream_entry_id, big_entry);
    EXPECT_NE(oversized.error.find("1001"), std::string::npos) << "the error names the size: " << oversized.error;
    CO_ASSERT_EQ(by_reason["permanent error"].size(), 1u);
    auto& bad_json = by_reason["permanent error"][0];
    EXPECT_EQ(bad_json.task.id, "not-json");
    EXPECT_EQ(bad_json.error.rfind("payload is not valid JSON", 0), 0u) << bad_json.error;
    EXPECT_EQ(bad_json.stream_entry_id, not_json_entry);
    EXPECT_EQ(bad_json.attempts, 1u) << "invalid JSON is not retried";
    CO_ASSERT_EQ(by_reason["undecodable"].size(), 3u);
    std::set<std::string> errors;
    for (auto& d : by_reason["undecodable"]) errors.insert(d.error);
    std::set<std::string> expected_errors{"delayed entry is not a task envelope", "task entry lacks the field 'id'"};
    EXPECT_EQ(errors, expected_errors);
    // The members that never became stream entries keep their raw text in the dead letter.
    auto raw = co_await conn.call("XRANGE", keys.dead, "-", "+");
    std::multiset<std::string> raws;
    for (auto& e : raw.elements)
      for (std::size_t i = 0; i + 1 < e.elements.at(1).elements.size(); i += 2)
        if (e.elements[1].elements[i].text == "dead.raw") raws.insert(e.elements[1].elements[i + 1].text);
    std::multiset<std::string> expected_raws{not_json_member, not_envelope_member};
    EXPECT_EQ(raws, expected_raws);
    EXPECT_EQ((co_await conn.call("ZCARD", keys.delayed)).integer, 0);
    EXPECT_EQ(co_await transport::xlen(conn, stream), 0);
  });
  EXPECT_EQ(json_runs.load(), 2) << "the bad JSON payload ran once, the good one once, the oversized one never";
}

// The key holds for its TTL only: the same key enqueues a new task once it has expired.
TEST_F(tasks_test, an_idempotency_key_expires_after_its_ttl) {
  std::atomic<int> runs{0};
  with_worker({}, [&](tasks::worker& w) {
    w.handle("charge", [&](tasks::task_context&) -> awaitable<void> {
      ++runs;
      co_return;
    });
  }, [&](tasks::client& c, transport::connection& conn) -> awaitable<void> {
    const std::string uniq = keys.uniq("order-9");
    auto first = co_await c.enqueue("charge", boost::json::value(10), {.idempotency_key = "order-9", .idempotency_ttl = 300ms});
    auto ttl = (co_await conn.call("PTTL", uniq)).integer;
    EXPECT_GT(ttl, 0);
    EXPECT_LE(ttl, 300) << "the key must carry the TTL asked for";
    auto within = co_await c.enqueue("charge", boost::json::value(10), {.idempotency_key = "order-9", .idempotency_ttl = 300ms});
    EXPECT_EQ(within, first);
    EXPECT_TRUE(co_await eventually([&] { return runs.load() == 1; }));
    // Past the TTL the same key enqueues a new task, which runs.
    co_await sagaflow::sleep_for(400ms);
    auto after = co_await c.enqueue("charge", boost::json::value(10), {.idempotency_key = "order-9", .idempotency_ttl = 300ms});
    EXPECT_NE(after, first) << "the key outlived its TTL";
    EXPECT_TRUE(co_await eventually([&] { return runs.load() == 2; }));
    co_await sagaflow::sleep_for(200ms);
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
  }, [&](tasks::client& c, transport::connection& conn) -> awaitable<void> {
    enqueued = steady_clock::now();
    co_await c.enqueue("later", boost::json::value(1), {.delay = 400ms});
    auto waiting = co_await conn.call("ZCARD", "sf:{q:default}:delayed");
    EXPECT_EQ(waiting.integer, 1);
    EXPECT_TRUE(co_await eventually([&] { return done.load(); }));
  });
  EXPECT_GE(ran - enqueued, 400ms);
}

// Entries delivered to a consumer that never comes back are taken over after the lease; the
// delivery budget (5) is exact: an entry delivered 4 times still runs, one delivered 5 times is
// dead-lettered as "delivery limit" without running.
TEST_F(tasks_test, a_crashed_consumers_pending_tasks_are_recovered_and_poison_is_dead_lettered) {
  std::mutex m;
  std::map<std::string, std::uint32_t> ran;  // task id -> attempt
  std::vector<std::string> ids;
  std::string poison_entry;
  tasks::worker* worker = nullptr;
  // Set the scene without a worker: entries delivered to a consumer that will never come back.
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = transport::connection::create(ex, server.config());
    co_await conn->connect();
    tasks::client c(conn);
    const std::string stream = "sf:{q:default}:p2";
    co_await transport::xgroup_create(*conn, stream, "workers", "0");
    for (int i = 0; i < 3; ++i) ids.push_back(co_await c.enqueue("work", boost::json::value(i)));
    ids.push_back(co_await c.enqueue("work", boost::json::value("at the edge")));
    ids.push_back(co_await c.enqueue("work", boost::json::value("poison")));
    transport::stream_offset from[] = {{stream, ">"}};
    auto got = co_await transport::xreadgroup(*conn, "workers", "crashed-worker", from, {.count = 10});
    CO_ASSERT_EQ(got.size(), 1u);
    CO_ASSERT_EQ(got[0].entries.size(), 5u);
    // The edge task was delivered 4 times (budget - 1), the poison task 5 times: they kept
    // killing workers. XCLAIM counts a delivery each time.
    std::vector<std::string> edge{got[0].entries[3].id}, poison{got[0].entries[4].id};
    poison_entry = poison[0];
    for (int i = 0; i < 3; ++i) co_await transport::xclaim(*conn, stream, "workers", "crashed-worker", 0ms, edge);
    for (int i = 0; i < 4; ++i) co_await transport::xclaim(*conn, stream, "workers", "crashed-worker", 0ms, poison);
    auto pending = co_await transport::xpending(*conn, stream, "workers", transport::pending_range{});
    CO_ASSERT_EQ(pending.size(), 5u);
    EXPECT_EQ(pending[3].deliveries, 4);
    EXPECT_EQ(pending[4].deliveries, 5);
    conn->close();
  }());
  ASSERT_EQ(ids.size(), 5u);
  with_worker({.lease = 300ms, .delivery_budget = 5, .recover_interval = 100ms}, [&](tasks::worker& w) {
    worker = &w;
    w.handle("work", [&](tasks::task_context& ctx) -> awaitable<void> {
      std::lock_guard lock(m);
      ran.emplace(ctx.task.id, ctx.task.attempt);
      co_return;
    });
  }, [&](tasks::client& c, transport::connection&) -> awaitable<void> {
    EXPECT_TRUE(co_await eventually([&] { return ran.size() >= 4; }));
    auto dead = co_await dead_letters(c, 1);
    CO_ASSERT_EQ(dead.size(), 1u);
    EXPECT_EQ(dead[0].reason, "delivery limit");
    EXPECT_EQ(dead[0].task.id, ids[4]) << "the task dead-lettered is the poison task";
    EXPECT_EQ(dead[0].stream_entry_id, poison_entry);
    EXPECT_EQ(dead[0].attempts, 1u) << "crashes do not count as attempts";
    co_await sagaflow::sleep_for(300ms);
    EXPECT_EQ(worker->stats().recovered.load(), 4u);
  });
  EXPECT_EQ(ran.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(ran.contains(ids[i])) << "task " << i << " (" << ids[i] << ") was not recovered";
    EXPECT_EQ(ran[ids[i]], 1u) << "a crash must not use up a retry attempt";
  }
  EXPECT_FALSE(ran.contains(ids[4])) << "the poison task must not run";
}

#ifdef SAGAFLOW_WORKER_BIN
// The consumer that held the tasks is a real process killed with SIGKILL while running them (the
// worker program users deploy); its tasks are taken over by another worker after the lease.
TEST_F(tasks_test, tasks_of_a_killed_worker_process_are_recovered_after_the_lease) {
  constexpr int count = 4;
  std::vector<std::string> ids;
  run([&]() -> awaitable<void> {
    auto conn = transport::connection::create(co_await asio::this_coro::executor, server.config());
    co_await conn->connect();
    tasks::client c(conn);
    co_await transport::xgroup_create(*conn, "sf:{q:default}:p2", "workers", "0");
    for (int i = 0; i < count; ++i) ids.push_back(co_await c.enqueue("sleep", boost::json::value(60'000)));
    conn->close();
  }());
  std::string log = (server.dir() / "killed-worker.log").string();
  int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(log_fd, 0) << log;
  pid_t pid = sagaflow::testing::spawn({SAGAFLOW_WORKER_BIN, "--redis", server.url(), "--concurrency", "8"}, log_fd, log_fd);
  ::close(log_fd);
  // Wait until the process holds every task (they sleep for a minute), then kill it.
  std::string holder;
  run([&]() -> awaitable<void> {
    auto conn = transport::connection::create(co_await asio::this_coro::executor, server.config());
    co_await conn->connect();
    for (int i = 0; i < 3000; ++i) {
      auto summary = co_await transport::xpending(*conn, "sf:{q:default}:p2", "workers");
      if (summary.count == count && summary.consumers.size() == 1) {
        holder = summary.consumers[0].first;
        break;
      }
      co_await sagaflow::sleep_for(10ms);
    }
    conn->close();
  }());
  ::kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_FALSE(holder.empty()) << "the worker process never held the tasks; its log: " << log;
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;

  std::mutex m;
  std::map<std::string, std::uint32_t> ran;
  tasks::worker* worker = nullptr;
  with_worker({.lease = 300ms, .recover_interval = 100ms}, [&](tasks::worker& w) {
    worker = &w;
    w.handle("sleep", [&](tasks::task_context& ctx) -> awaitable<void> {
      std::lock_guard lock(m);
      ran.emplace(ctx.task.id, ctx.task.attempt);
      co_return;
    });
  }, [&](tasks::client&, transport::connection& conn) -> awaitable<void> {
    EXPECT_TRUE(co_await eventually([&] { return ran.size() >= count; }));
    co_await sagaflow::sleep_for(200ms);  // the acknowledgements
    EXPECT_EQ(worker->stats().recovered.load(), static_cast<std::uint64_t>(count));
    EXPECT_NE(worker->consumer(), holder);
    EXPECT_EQ((co_await transport::xpending(conn, "sf:{q:default}:p2", "workers")).count, 0);
  });
  ASSERT_EQ(ran.size(), static_cast<std::size_t>(count));
  for (auto& id : ids) {
    ASSERT_TRUE(ran.contains(id)) << id;
    EXPECT_EQ(ran[id], 1u) << "a crash must not use up a retry attempt";
  }
}
#else
TEST_F(tasks_test, tasks_of_a_killed_worker_process_are_recovered_after_the_lease) {
  GTEST_SKIP() << "built without examples (SAGAFLOW_BUILD_EXAMPLES=OFF): no worker program to kill";
}
#endif

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
  }, [&](tasks::client& c, transport::connection&) -> awaitable<void> {
    co_await c.enqueue("slow", boost::json::value(1), {.retry = no_jitter(1, 10ms), .timeout = 200ms});
    auto dead = co_await dead_letters(c, 1);
    CO_ASSERT_EQ(dead.size(), 1u);
    EXPECT_EQ(dead[0].reason, "max attempts");
    EXPECT_NE(dead[0].error.find("timed out"), std::string::npos) << dead[0].error;
  });
  EXPECT_EQ(cancelled.load(), 1);
}

// While its two handlers are busy, the worker holds (pending for it) its slots plus its
// prefetch allowance, no more: 0 keeps strict priority exact.
TEST_F(tasks_test, a_busy_worker_holds_its_slots_plus_its_prefetch) {
  for (std::size_t prefetch : {std::size_t{0}, std::size_t{3}}) {
    SCOPED_TRACE("prefetch " + std::to_string(prefetch));
    std::int64_t held = -1;
    bool release = false;
    int started = 0;
    with_worker({.concurrency = 2, .prefetch = prefetch}, [&](tasks::worker& w) {
      w.handle("hold", [&](tasks::task_context&) -> awaitable<void> {
        ++started;
        while (!release) co_await sagaflow::sleep_for(5ms);
      });
    }, [&](tasks::client& c, transport::connection& conn) -> awaitable<void> {
      std::vector<tasks::task_spec> specs(10, {"hold", boost::json::value(1), {}});
      co_await c.enqueue_bulk(std::move(specs));
      for (int i = 0; i < 1000 && started < 2; ++i) co_await sagaflow::sleep_for(5ms);
      co_await sagaflow::sleep_for(200ms);  // time for any further fetch to arrive
      held = (co_await transport::xpending(conn, "sf:{q:default}:p2", tasks::consumer_group)).count;
      release = true;
      while (started < 10) co_await sagaflow::sleep_for(5ms);
    });
    EXPECT_EQ(held, static_cast<std::int64_t>(2 + prefetch));
  }
}

// One handler slot runs tasks of different timeouts in turn. The slot's deadline timer is only
// re-armed for an earlier deadline: a short timeout after a long one must still fire on time,
// and a task after a timed-out one must not inherit its cancellation.
TEST_F(tasks_test, each_task_in_a_slot_gets_its_own_deadline) {
  std::vector<std::string> finished;  // on the worker's strand only
  with_worker({.concurrency = 1}, [&](tasks::worker& w) {
    w.handle("nap", [&](tasks::task_context& ctx) -> awaitable<void> {
      auto ms = ctx.json().as_int64();
      co_await sagaflow::sleep_for(std::chrono::milliseconds(ms));
      finished.push_back(std::to_string(ms));
    });
  }, [&](tasks::client& c, transport::connection&) -> awaitable<void> {
    // In order, in one slot: 50 ms within 20 s; 5 s within 300 ms (times out);
    // 400 ms within 20 s (the timer still waits for the 300 ms deadline, then for this one).
    co_await c.enqueue("nap", boost::json::value(50), {.retry = no_jitter(1, 10ms), .timeout = 20s});
    co_await c.enqueue("nap", boost::json::value(5000), {.retry = no_jitter(1, 10ms), .timeout = 300ms});
    co_await c.enqueue("nap", boost::json::value(400), {.retry = no_jitter(1, 10ms), .timeout = 20s});
    auto dead = co_await dead_letters(c, 1);
    CO_ASSERT_EQ(dead.size(), 1u);
    EXPECT_NE(dead[0].error.find("timed out after 300 ms"), std::string::npos) << dead[0].error;
    for (int i = 0; i < 500 && finished.size() < 2; ++i) co_await sagaflow::sleep_for(10ms);
  });
  EXPECT_EQ(finished, (std::vector<std::string>{"50", "400"}));
}

TEST_F(tasks_test, a_long_handler_keeps_its_lease_and_is_not_taken_over) {
  std::atomic<int> runs{0};
  auto handler = [&](tasks::task_context&) -> awaitable<void> {
    ++runs;
    co_await sagaflow::sleep_for(1500ms);
  };
  std::set<std::string> pinged;  // queues whose ping ran
  auto ping = [&](tasks::task_context& ctx) -> awaitable<void> {
    pinged.insert(ctx.task.queue);
    co_return;
  };
  const auto unhandled_before = sagaflow::unhandled_exception_count();
  // Two workers in one process; both recover aggressively; the lease is short. Both must really
  // run (a worker that failed to start would leave the other alone, and nothing to take over):
  // each also serves a queue of its own, where a ping shows that it fetches.
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = transport::connection::create(ex, server.config());
    co_await conn->connect();
    tasks::client c(conn);
    tasks::worker_options o{.lease = 300ms, .promoter_interval = 100ms, .fetch_block = 100ms, .recover_interval = 100ms};
    tasks::worker_options oa = o, ob = o;
    oa.queues = {{"default"}, {"only-a"}};
    ob.queues = {{"default"}, {"only-b"}};
    tasks::worker a(ex, server.config(), oa), b(ex, server.config(), ob);
    for (auto* w : {&a, &b}) {
      w->handle("long", handler);
      w->handle("ping", ping);
    }
    sagaflow::stop_source stop;
    worker_end end_a, end_b;
    start_worker(ex, a, stop, end_a);
    start_worker(ex, b, stop, end_b);
    co_await c.enqueue("long", boost::json::value(1));
    co_await c.enqueue("ping", boost::json::value(1), {.queue = "only-a"});
    co_await c.enqueue("ping", boost::json::value(1), {.queue = "only-b"});
    co_await sagaflow::sleep_for(2500ms);
    std::set<std::string> both{"only-a", "only-b"};
    EXPECT_EQ(pinged, both) << "a worker did not run";
    stop.request_stop();
    while (!end_a.finished || !end_b.finished) co_await sagaflow::sleep_for(10ms);
    expect_clean_end(end_a, "worker a");
    expect_clean_end(end_b, "worker b");
    EXPECT_EQ(a.stats().recovered + b.stats().recovered, 0u);
    EXPECT_EQ(a.stats().succeeded + b.stats().succeeded, 3u);
    EXPECT_EQ(a.stats().failed_to_settle + b.stats().failed_to_settle, 0u);
    conn->close();
  }());
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(sagaflow::unhandled_exception_count(), unhandled_before);
}

TEST_F(tasks_test, graceful_stop_finishes_running_handlers_and_acknowledges_them) {
  std::atomic<int> started{0}, finished{0};
  with_worker({.concurrency = 4}, [&](tasks::worker& w) {
    w.handle("work", [&](tasks::task_context&) -> awaitable<void> {
      ++started;
      co_await sagaflow::sleep_for(300ms);
      ++finished;
    });
  }, [&](tasks::client& c, transport::connection&) -> awaitable<void> {
    for (int i = 0; i < 4; ++i) co_await c.enqueue("work", boost::json::value(i));
    EXPECT_TRUE(co_await eventually([&] { return started.load() == 4; }));
  });  // stop requested here, while all four run
  EXPECT_EQ(finished.load(), 4);
  run([&]() -> awaitable<void> {
    auto conn = transport::connection::create(co_await asio::this_coro::executor, server.config());
    co_await conn->connect();
    EXPECT_EQ((co_await transport::xpending(*conn, "sf:{q:default}:p2", "workers")).count, 0);
    conn->close();
  }());
}

TEST_F(tasks_test, bad_input_is_refused_at_enqueue) {
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = transport::connection::create(ex, server.config());
    co_await conn->connect();
    tasks::client c(conn, {.max_payload_bytes = 1000});
    auto big = tasks::payload::bytes(std::string(1001, 'x'));
    EXPECT_THROW(co_await c.enqueue("x", big), std::invalid_argument);
    EXPECT_THROW(co_await c.enqueue("", boost::json::value(1)), std::invalid_argument);
    EXPECT_THROW(co_await c.enqueue("x", boost::json::value(1), {.queue = "bad}name"}), std::invalid_argument);
    EXPECT_THROW(co_await c.enqueue("x", boost::json::value(1), {.retry = {.max_attempts = 0}}), std::invalid_argument);
    EXPECT_EQ(co_await transport::xlen(*conn, "sf:{q:default}:p2"), 0) << "nothing was enqueued";
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
  }, [&](tasks::client& c, transport::connection&) -> awaitable<void> {
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
  }, [&](tasks::client& c, transport::connection&) -> awaitable<void> {
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
  }, [&](tasks::client& c, transport::connection& conn) -> awaitable<void> {
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
  }, [&](tasks::client& c, transport::connection&) -> awaitable<void> {
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

// Request/reply: a task with a reply_to header gets its outcome appended to that stream, with the
// reply key and its sf.reply.* headers echoed: the result when it completes, the reason when it is dead-lettered.
TEST_F(tasks_test, a_task_with_a_reply_to_stream_gets_its_outcome_appended_there) {
  with_worker({}, [&](tasks::worker& w) {
    w.handle("double", [&](tasks::task_context& ctx) -> awaitable<void> {
      ctx.set_result(boost::json::value(ctx.json().as_int64() * 2));
      co_return;
    });
    w.handle("refuse", [&](tasks::task_context&) -> awaitable<void> { throw tasks::permanent_error("no way"); });
  }, [&](tasks::client& c, transport::connection& conn) -> awaitable<void> {
    std::map<std::string, std::string> ok_headers{{std::string(tasks::reply_to_header), "replies"},
                                                  {std::string(tasks::reply_key_header), "k-1"},
                                                  {std::string(tasks::reply_field_prefix) + "saga", "s-7"}};
    std::map<std::string, std::string> dead_headers{{std::string(tasks::reply_to_header), "replies"},
                                                    {std::string(tasks::reply_key_header), "k-2"}};
    tasks::enqueue_options ok_options;
    ok_options.headers = &ok_headers;
    tasks::enqueue_options dead_options;
    dead_options.headers = &dead_headers;
    auto doubled = co_await c.enqueue("double", boost::json::value(21), ok_options);
    auto refused = co_await c.enqueue("refuse", boost::json::value(1), dead_options);
    std::map<std::string, std::map<std::string, std::string>> by_key;
    for (int i = 0; i < 500 && by_key.size() < 2; ++i) {
      auto all = co_await conn.call("XRANGE", "replies", "-", "+");
      by_key.clear();
      for (auto& e : all.elements) {
        std::map<std::string, std::string> fields;
        auto& f = e.elements.at(1).elements;
        for (std::size_t j = 0; j + 1 < f.size(); j += 2) fields[f[j].text] = f[j + 1].text;
        by_key[fields["key"]] = fields;
      }
      co_await sagaflow::sleep_for(10ms);
    }
    CO_ASSERT_EQ(by_key.size(), 2u);
    EXPECT_EQ(by_key["k-1"]["task"], doubled);
    EXPECT_EQ(by_key["k-1"]["status"], "completed");
    EXPECT_EQ(by_key["k-1"]["result"], "42");
    EXPECT_EQ(by_key["k-1"]["saga"], "s-7");  // a sf.reply.<name> header, echoed as <name>
    EXPECT_FALSE(by_key["k-2"].contains("saga"));
    EXPECT_EQ(by_key["k-2"]["task"], refused);
    EXPECT_EQ(by_key["k-2"]["status"], "dead");
    EXPECT_EQ(by_key["k-2"]["reason"], "permanent error");
    EXPECT_EQ(by_key["k-2"]["error"], "no way");
  });
}
