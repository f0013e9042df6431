// Sagas against a real redis-server: steps and results, compensation order, parking, idempotent
// start, a crash after every journal write, fencing of a stalled orchestrator, replay on the
// recorded branch. Orchestrators run in-process (a crash is the crash_after_writes hook, a stall
// is a blocked io_context thread); process-level crash tests come with the orchestrator program.
#include "redis_server.hpp"

#include <sagaflow/sagas/saga.hpp>
#include <sagaflow/tasks/task.hpp>
#include <sagaflow/tasks/worker.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

namespace asio = boost::asio;
namespace transport = sagaflow::transport;
namespace sagas = sagaflow::sagas;
using namespace std::chrono_literals;
using sagaflow::awaitable;
using sagaflow::stop_source;
using sagaflow::testing::eventually;
using sagaflow::testing::redis_server;
using sagaflow::testing::run;
using json = boost::json::value;

namespace {

// What the steps of a test saga did, in order ("do:<step>", "undo:<step>").
struct ledger {
  std::vector<std::string> calls;
  std::size_t count(const std::string& call) const { return std::count(calls.begin(), calls.end(), call); }
};

sagas::step_options quick(std::uint32_t attempts = 2) {
  sagas::step_options o;
  o.max_attempts = attempts;
  o.backoff = {.base = 1ms, .multiplier = 2.0, .cap = 5ms, .jitter = sagaflow::jitter::none};
  o.timeout = 5s;
  return o;
}

// A saga "order" of `steps` local steps; step `failing` (1-based; 0: none) throws `error` on
// every attempt (a permanent error: one attempt). Step i's result is its input plus i, so results
// flow from step to step; the body returns the last result.
sagas::definition order_saga(ledger& log, int steps, int failing, std::string error = "card declined") {
  sagas::definition d;
  d.name = "order";
  d.run = [&log, steps, failing, error](sagas::context& ctx) -> awaitable<json> {
    json value = ctx.input();
    for (int i = 1; i <= steps; ++i) {
      std::string name = "step" + std::to_string(i);
      sagas::action act = [&log, name, i, failing, error](const json& in) -> awaitable<json> {
        log.calls.push_back("do:" + name);
        if (i == failing) throw sagaflow::tasks::permanent_error(error);
        co_return json(in.as_int64() + i);
      };
      sagas::compensation undo = [&log, name](const json&, const json&) -> awaitable<void> {
        log.calls.push_back("undo:" + name);
        co_return;
      };
      auto options = quick();
      value = co_await ctx.step(name, act, undo, value, options);
    }
    co_return value;
  };
  return d;
}

class sagas_test : public ::testing::Test {
 protected:
  sagas::orchestrator_options quick_orchestrator(std::size_t crash_after = 0) {
    sagas::orchestrator_options o;
    o.lease = 300ms;
    o.block = 100ms;
    o.grace = 1s;
    o.crash_after_writes = crash_after;
    return o;
  }

  // Runs `body` with a client while an orchestrator with `defs` runs; stops it afterwards.
  template <typename Body>
  void with_orchestrator(std::vector<sagas::definition> defs, sagas::orchestrator_options options, Body body) {
    run([&]() -> awaitable<void> {
      auto ex = co_await asio::this_coro::executor;
      co_await orchestrate(ex, defs, options, body);
    }());
  }

  // As with_orchestrator, with a tasks::worker of the "payments" service running beside it.
  template <typename Setup, typename Body>
  void with_service(std::vector<sagas::definition> defs, sagas::orchestrator_options options, Setup setup, Body body) {
    run([&]() -> awaitable<void> {
      auto ex = co_await asio::this_coro::executor;
      sagaflow::tasks::worker_options wo;
      wo.queues = {sagaflow::tasks::queue_config{"payments", 1}};
      wo.concurrency = 8;
      wo.promoter_interval = 20ms;
      sagaflow::tasks::worker w(ex, server.config(), wo);
      setup(w);
      stop_source stop;
      bool ended = false;
      asio::co_spawn(ex, w.run(stop), [&](std::exception_ptr) { ended = true; });
      with_orchestrator_on(ex, defs, options, body);
      co_await eventually([&] { return orchestrator_done; });
      stop.request_stop();
      EXPECT_TRUE(co_await eventually([&] { return ended; }));
    }());
  }

  // Spawns the with_orchestrator body on `ex` (for with_service); sets orchestrator_done at its end.
  template <typename Body>
  void with_orchestrator_on(asio::any_io_executor ex, std::vector<sagas::definition>& defs,
                            sagas::orchestrator_options options, Body& body) {
    orchestrator_done = false;
    asio::co_spawn(ex, orchestrate(ex, defs, options, body), [this](std::exception_ptr e) {
      if (e) ADD_FAILURE() << "orchestrator body failed";
      orchestrator_done = true;
    });
  }

  // The client, the orchestrator and `body` of with_orchestrator and with_service.
  template <typename Body>
  awaitable<void> orchestrate(asio::any_io_executor ex, std::vector<sagas::definition>& defs,
                              sagas::orchestrator_options options, Body& body) {
    auto conn = transport::connection::create(ex, server.config());
    co_await conn->connect();
    sagas::client client(conn, server.config());
    sagas::orchestrator o(ex, server.config(), options);
    for (auto& d : defs) o.add(d);
    stop_source stop;
    bool ended = false;
    asio::co_spawn(ex, o.run(stop), [&](std::exception_ptr e) {
      ended = true;
      if (e) ADD_FAILURE() << "orchestrator failed";
    });
    co_await body(client, o, *conn);
    stop.request_stop();
    EXPECT_TRUE(co_await eventually([&] { return ended; }));
    conn->close();
  }

  bool orchestrator_done = false;
  redis_server server;
};

// A saga with a local step, a remote "charge" on the payments service (compensated by the remote
// "refund") and a local step that fails when `fail_last`.
sagas::definition checkout_saga(ledger& log, bool fail_last) {
  sagas::definition d;
  d.name = "checkout";
  d.run = [&log, fail_last](sagas::context& ctx) -> awaitable<json> {
    sagas::action reserve = [&log](const json& in) -> awaitable<json> {
      log.calls.push_back("do:reserve");
      co_return in;
    };
    sagas::compensation release = [&log](const json&, const json&) -> awaitable<void> {
      log.calls.push_back("undo:reserve");
      co_return;
    };
    sagas::action ship = [&log, fail_last](const json& in) -> awaitable<json> {
      log.calls.push_back("do:ship");
      if (fail_last) throw sagaflow::tasks::permanent_error("no courier");
      co_return in;
    };
    auto options = quick(3);
    auto reserved = co_await ctx.step("reserve", reserve, release, ctx.input(), options);
    sagas::remote_step charge{.queue = "payments", .task = "charge", .undo_task = "refund"};
    auto receipt = co_await ctx.remote("charge", charge, reserved, options);
    co_return co_await ctx.step("ship", ship, {}, receipt, options);
  };
  return d;
}

// The payments service: "charge" answers its input plus 100 (and checks the saga's correlation
// id came along); "refund" records what it undoes.
void payments_service(sagaflow::tasks::worker& w, ledger& log, std::string correlation = {}) {
  w.handle("charge", [&log, correlation](sagaflow::tasks::task_context& ctx) -> awaitable<void> {
    log.calls.push_back("do:charge");
    if (!correlation.empty()) {
      EXPECT_EQ(ctx.task.correlation_id, correlation);
    }
    ctx.set_result(json(ctx.json().as_int64() + 100));
    co_return;
  });
  w.handle("refund", [&log](sagaflow::tasks::task_context& ctx) -> awaitable<void> {
    log.calls.push_back("undo:charge");
    auto args = ctx.json();
    EXPECT_EQ(args.at("result"), json(args.at("input").as_int64() + 100)) << "the refund gets the charge's result";
    co_return;
  });
}

}  // namespace

TEST_F(sagas_test, a_saga_runs_its_steps_in_order_and_completes_with_the_bodys_result) {
  ledger log;
  with_orchestrator({order_saga(log, 3, 0)}, quick_orchestrator(),
                    [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
    sagas::start_options start{.correlation_id = "corr-1", .saga_id = ""};
    auto id = co_await c.start("order", json(10), start);
    auto done = co_await c.wait(id, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::completed);
    EXPECT_EQ(done->result, json(16)) << "10 + 1 + 2 + 3: each step got the previous one's result";
    std::vector<std::string> expected{"do:step1", "do:step2", "do:step3"};
    EXPECT_EQ(log.calls, expected);
    auto st = co_await c.status(id);
    CO_ASSERT_TRUE(st.has_value());
    EXPECT_EQ(st->correlation_id, "corr-1");
    EXPECT_EQ(st->version, 1u);
    std::size_t completed = 0;
    for (auto& e : st->history) {
      EXPECT_EQ(e.correlation_id, "corr-1") << "journal entry " << e.event;
      if (e.event == "step_completed") ++completed;
    }
    EXPECT_EQ(completed, 3u);
    EXPECT_EQ(st->history.back().event, "finished");
  });
}

TEST_F(sagas_test, a_failing_third_of_four_steps_compensates_the_second_then_the_first_once_each) {
  ledger log;
  with_orchestrator({order_saga(log, 4, 3)}, quick_orchestrator(),
                    [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
    auto id = co_await c.start("order", json(0));
    auto done = co_await c.wait(id, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::compensated);
    EXPECT_EQ(done->failed_step, "step3");
    EXPECT_EQ(done->error, "card declined");
    std::vector<std::string> expected{"do:step1", "do:step2", "do:step3", "undo:step2", "undo:step1"};
    EXPECT_EQ(log.calls, expected) << "step 4 never runs; step 3 (failed) is not compensated";
  });
}

TEST_F(sagas_test, a_compensation_that_fails_twice_then_succeeds_is_retried_and_one_that_always_fails_parks_the_saga) {
  ledger log;
  int undo_failures_left = 2;
  bool undo_always_fails = false;
  sagas::definition d;
  d.name = "pay";
  d.run = [&](sagas::context& ctx) -> awaitable<json> {
    sagas::action charge = [&](const json&) -> awaitable<json> {
      log.calls.push_back("do:charge");
      co_return json("receipt");
    };
    sagas::compensation refund = [&](const json&, const json& receipt) -> awaitable<void> {
      log.calls.push_back("undo:charge");
      EXPECT_EQ(receipt, json("receipt")) << "the compensation gets the step's result";
      if (undo_always_fails || undo_failures_left-- > 0) throw std::runtime_error("refund service down");
      co_return;
    };
    sagas::action ship = [&](const json&) -> awaitable<json> {
      log.calls.push_back("do:ship");
      throw sagaflow::tasks::permanent_error("no courier");
    };
    auto options = quick(3);
    co_await ctx.step("charge", charge, refund, ctx.input(), options);
    co_await ctx.step("ship", ship, {}, ctx.input(), options);
    co_return json(nullptr);
  };
  with_orchestrator({d}, quick_orchestrator(), [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
    auto first = co_await c.start("pay", json(1));
    auto done = co_await c.wait(first, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::compensated);
    EXPECT_EQ(log.count("undo:charge"), 3u) << "two failures, then success";
    undo_always_fails = true;
    log.calls.clear();
    auto second = co_await c.start("pay", json(2));
    done = co_await c.wait(second, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::compensation_failed);
    EXPECT_EQ(done->failed_step, "charge");
    EXPECT_EQ(done->error, "refund service down");
    EXPECT_EQ(log.count("undo:charge"), 3u) << "the compensation's own policy: 3 attempts";
  });
}

TEST_F(sagas_test, starting_the_same_saga_id_twice_runs_it_once) {
  ledger log;
  with_orchestrator({order_saga(log, 2, 0)}, quick_orchestrator(),
                    [&](sagas::client& c, sagas::orchestrator& o, transport::connection&) -> awaitable<void> {
    sagas::start_options start{.correlation_id = "", .saga_id = "order-42"};
    EXPECT_EQ(co_await c.start("order", json(1), start), "order-42");
    auto done = co_await c.wait("order-42", 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(co_await c.start("order", json(1), start), "order-42");
    co_await sagaflow::sleep_for(300ms);
    EXPECT_EQ(log.count("do:step1"), 1u);
    EXPECT_EQ(o.stats().completed, 1u);
  });
}

TEST_F(sagas_test, an_unknown_saga_name_parks_the_saga_with_the_reason) {
  ledger log;
  with_orchestrator({order_saga(log, 1, 0)}, quick_orchestrator(),
                    [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
    auto id = co_await c.start("no-such-saga", json(1));
    auto done = co_await c.wait(id, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::parked);
    EXPECT_NE(done->error.find("no-such-saga"), std::string::npos) << done->error;
  });
}

// The orchestrator "dies" right after its k-th Redis write (take, journal appends, the final
// acknowledgement), for every k over a saga with a failure and two compensations; a second
// orchestrator takes the saga over after the lease and must reach the same outcome, with no
// completed step and no compensation run twice.
TEST_F(sagas_test, a_crash_after_any_write_is_resumed_to_the_same_outcome_without_running_anything_twice) {
  // A clean run first, to count the writes.
  std::uint64_t writes = 0;
  {
    ledger log;
    with_orchestrator({order_saga(log, 3, 3)}, quick_orchestrator(),
                      [&](sagas::client& c, sagas::orchestrator& o, transport::connection&) -> awaitable<void> {
      auto id = co_await c.start("order", json(0));
      auto done = co_await c.wait(id, 10s);
      CO_ASSERT_TRUE(done.has_value());
      EXPECT_EQ(done->state, sagas::status::compensated);
      co_await sagaflow::sleep_for(50ms);  // the acknowledgement follows the finish
      writes = o.stats().writes;
    });
  }
  ASSERT_GE(writes, 10u);
  for (std::uint64_t k = 1; k <= writes; ++k) {
    SCOPED_TRACE("crash after write " + std::to_string(k));
    ledger log;
    std::string id;
    with_orchestrator({order_saga(log, 3, 3)}, quick_orchestrator(k),
                      [&](sagas::client& c, sagas::orchestrator& o, transport::connection&) -> awaitable<void> {
      id = co_await c.start("order", json(0));
      EXPECT_TRUE(co_await eventually([&] { return o.crashed(); }, 10s));
    });
    with_orchestrator({order_saga(log, 3, 3)}, quick_orchestrator(),
                      [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
      auto done = co_await c.wait(id, 10s);
      CO_ASSERT_TRUE(done.has_value());
      EXPECT_EQ(done->state, sagas::status::compensated);
      EXPECT_EQ(done->failed_step, "step3");
    });
    for (auto call : {"do:step1", "do:step2", "do:step3", "undo:step2", "undo:step1"})
      EXPECT_EQ(log.count(call), 1u) << call;
  }
}

// A body that branches on a step's result resumes on the branch the journal recorded, even when
// the step would answer differently now.
TEST_F(sagas_test, a_resumed_saga_follows_the_branch_its_recorded_result_chose) {
  ledger log;
  int flips = 0;
  auto coin_saga = [&] {
    sagas::definition d;
    d.name = "coin";
    d.run = [&](sagas::context& ctx) -> awaitable<json> {
      sagas::action flip = [&](const json&) -> awaitable<json> {
        log.calls.push_back("do:flip");
        co_return json(flips++ == 0 ? "heads" : "tails");
      };
      sagas::action path = [&](const json& side) -> awaitable<json> {
        log.calls.push_back("do:" + std::string(side.as_string()));
        co_return side;
      };
      auto side = co_await ctx.step("flip", flip, {}, json(nullptr), quick());
      if (side == json("heads")) co_return co_await ctx.step("heads-path", path, {}, side, quick());
      co_return co_await ctx.step("tails-path", path, {}, side, quick());
    };
    return d;
  };
  std::string id;
  // Writes: take, flip started, flip completed: crash right after the result is journaled.
  with_orchestrator({coin_saga()}, quick_orchestrator(3),
                    [&](sagas::client& c, sagas::orchestrator& o, transport::connection&) -> awaitable<void> {
    id = co_await c.start("coin", json(nullptr));
    EXPECT_TRUE(co_await eventually([&] { return o.crashed(); }, 10s));
  });
  with_orchestrator({coin_saga()}, quick_orchestrator(), [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
    auto done = co_await c.wait(id, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->result, json("heads"));
  });
  std::vector<std::string> expected{"do:flip", "do:heads"};
  EXPECT_EQ(log.calls, expected);
}

// Fencing: orchestrator A stalls (its whole thread blocked, as under SIGSTOP) past its lease in
// the middle of a step; B takes the saga over and finishes it. When A wakes up, its journal
// write is refused: it drops the saga and has written nothing.
TEST_F(sagas_test, a_stalled_orchestrator_writes_nothing_to_a_saga_taken_over_meanwhile) {
  std::atomic<bool> a_stalled{false};
  auto stalling_saga = [&](std::string me, bool stall) {
    sagas::definition d;
    d.name = "stall";
    d.run = [me, stall, &a_stalled](sagas::context& ctx) -> awaitable<json> {
      sagas::action work = [me, stall, &a_stalled](const json&) -> awaitable<json> {
        if (stall) {
          a_stalled = true;
          std::this_thread::sleep_for(1500ms);  // blocks A's io_context: no renewal, no I/O
        }
        co_return json("from-" + me);
      };
      co_return co_await ctx.step("work", work, {}, json(nullptr), quick());
    };
    return d;
  };
  // A on its own thread and io_context.
  asio::io_context a_context;
  sagas::orchestrator a(a_context.get_executor(), server.config(), quick_orchestrator());
  a.add(stalling_saga("A", true));
  stop_source a_stop;
  asio::co_spawn(a_context, a.run(a_stop), asio::detached);
  std::thread a_thread([&] { a_context.run_for(30s); });

  std::string id = "stalled-1";
  run([&]() -> awaitable<void> {
    auto conn = transport::connection::create(co_await asio::this_coro::executor, server.config());
    co_await conn->connect();
    sagas::client c(conn, server.config());
    sagas::start_options start{.correlation_id = "", .saga_id = id};
    co_await c.start("stall", json(nullptr), start);
    EXPECT_TRUE(co_await eventually([&] { return a_stalled.load(); }, 10s)) << "A took the saga first";
    conn->close();
  }());
  with_orchestrator({stalling_saga("B", false)}, quick_orchestrator(),
                    [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
    auto done = co_await c.wait(id, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::completed);
    EXPECT_EQ(done->result, json("from-B"));
    co_await sagaflow::sleep_for(1500ms);  // A wakes up and tries to write
    auto st = co_await c.status(id);
    CO_ASSERT_TRUE(st.has_value());
    for (auto& e : st->history) EXPECT_EQ(e.value.find("from-A"), std::string::npos) << e.event;
    EXPECT_EQ(st->history.back().event, "finished") << "nothing after B's finish";
  });
  a_stop.request_stop();
  a_thread.join();
  EXPECT_EQ(a.stats().fenced, 1u);
}

TEST_F(sagas_test, a_declared_sequence_runs_as_the_coroutine_form_does_and_sagas_are_found_by_correlation_id) {
  ledger log;
  auto step = [&log](std::string name, bool fails) {
    sagas::declared_step s;
    s.name = name;
    s.act = [&log, name, fails](const json& in) -> awaitable<json> {
      log.calls.push_back("do:" + name);
      if (fails) throw sagaflow::tasks::permanent_error("out of stock");
      co_return json(in.as_int64() * 2);
    };
    s.undo = [&log, name](const json&, const json&) -> awaitable<void> {
      log.calls.push_back("undo:" + name);
      co_return;
    };
    s.options = quick();
    return s;
  };
  std::vector<sagas::declared_step> good{step("a", false), step("b", false)};
  std::vector<sagas::declared_step> bad{step("a", false), step("b", false), step("c", true)};
  auto doubling = sagas::sequence("doubling", good);
  auto failing = sagas::sequence("failing", bad);
  with_orchestrator({doubling, failing}, quick_orchestrator(),
                    [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
    sagas::start_options start{.correlation_id = "order-7", .saga_id = ""};
    auto first = co_await c.start("doubling", json(3), start);
    auto done = co_await c.wait(first, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->result, json(12));
    auto second = co_await c.start("failing", json(1), start);
    done = co_await c.wait(second, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::compensated);
    EXPECT_EQ(done->failed_step, "c");
    std::vector<std::string> expected{"do:a", "do:b", "do:a", "do:b", "do:c", "undo:b", "undo:a"};
    EXPECT_EQ(log.calls, expected);
    std::vector<std::string> both{first, second};
    std::sort(both.begin(), both.end());
    EXPECT_EQ(co_await c.find("order-7"), both);
    EXPECT_TRUE((co_await c.find("order-8")).empty());
  });
}

// A journal written by version 1 is not replayed by version 2 unless version 2 declares itself
// compatible: the saga is parked with the reason.
TEST_F(sagas_test, a_journal_of_another_version_parks_the_saga_unless_declared_compatible) {
  ledger log;
  auto versioned = [&](std::uint32_t version, std::vector<std::uint32_t> compatible) {
    auto d = order_saga(log, 2, 0);
    d.version = version;
    d.compatible_versions = std::move(compatible);
    return d;
  };
  // Version 1 takes a saga and dies after its first journal entry; then version 2 runs.
  auto start_with_version_1 = [&]() {
    std::string id;
    with_orchestrator({versioned(1, {})}, quick_orchestrator(2),
                      [&](sagas::client& c, sagas::orchestrator& o, transport::connection&) -> awaitable<void> {
      id = co_await c.start("order", json(1));
      EXPECT_TRUE(co_await eventually([&] { return o.crashed(); }, 10s));
    });
    return id;
  };
  auto parked = start_with_version_1();
  with_orchestrator({versioned(2, {})}, quick_orchestrator(),
                    [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
    auto done = co_await c.wait(parked, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::parked);
    EXPECT_NE(done->error.find("version 1"), std::string::npos) << done->error;
  });
  auto resumed = start_with_version_1();
  with_orchestrator({versioned(2, {1})}, quick_orchestrator(),
                    [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
    auto done = co_await c.wait(resumed, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::completed);
  });
}

TEST_F(sagas_test, a_remote_step_runs_on_another_services_worker_and_its_result_comes_back) {
  ledger log;
  with_service({checkout_saga(log, false)}, quick_orchestrator(), [&](sagaflow::tasks::worker& w) { payments_service(w, log, "corr-remote"); },
               [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
    sagas::start_options start{.correlation_id = "corr-remote", .saga_id = ""};
    auto id = co_await c.start("checkout", json(5), start);
    auto done = co_await c.wait(id, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::completed);
    EXPECT_EQ(done->result, json(105));
  });
  std::vector<std::string> expected{"do:reserve", "do:charge", "do:ship"};
  EXPECT_EQ(log.calls, expected);
}

TEST_F(sagas_test, a_failure_after_a_remote_step_runs_its_remote_compensation) {
  ledger log;
  with_service({checkout_saga(log, true)}, quick_orchestrator(), [&](sagaflow::tasks::worker& w) { payments_service(w, log); },
               [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
    auto id = co_await c.start("checkout", json(5));
    auto done = co_await c.wait(id, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::compensated);
    EXPECT_EQ(done->failed_step, "ship");
  });
  std::vector<std::string> expected{"do:reserve", "do:charge", "do:ship", "undo:charge", "undo:reserve"};
  EXPECT_EQ(log.calls, expected);
}

// The crash-at-every-write test over a saga with a remote step: the dispatch counts as a write,
// and a resumed saga neither charges twice nor refunds twice.
TEST_F(sagas_test, a_crash_after_any_write_of_a_saga_with_a_remote_step_dispatches_nothing_twice) {
  std::uint64_t writes = 0;
  {
    ledger log;
    with_service({checkout_saga(log, true)}, quick_orchestrator(), [&](sagaflow::tasks::worker& w) { payments_service(w, log); },
                 [&](sagas::client& c, sagas::orchestrator& o, transport::connection&) -> awaitable<void> {
      auto id = co_await c.start("checkout", json(1));
      auto done = co_await c.wait(id, 10s);
      CO_ASSERT_TRUE(done.has_value());
      co_await sagaflow::sleep_for(50ms);
      writes = o.stats().writes;
    });
  }
  ASSERT_GE(writes, 12u);
  for (std::uint64_t k = 1; k <= writes; ++k) {
    SCOPED_TRACE("crash after write " + std::to_string(k));
    ledger log;
    std::string id;
    with_service({checkout_saga(log, true)}, quick_orchestrator(k), [&](sagaflow::tasks::worker& w) { payments_service(w, log); },
                 [&](sagas::client& c, sagas::orchestrator& o, transport::connection&) -> awaitable<void> {
      id = co_await c.start("checkout", json(1));
      EXPECT_TRUE(co_await eventually([&] { return o.crashed(); }, 10s));
    });
    with_service({checkout_saga(log, true)}, quick_orchestrator(), [&](sagaflow::tasks::worker& w) { payments_service(w, log); },
                 [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
      auto done = co_await c.wait(id, 10s);
      CO_ASSERT_TRUE(done.has_value());
      EXPECT_EQ(done->state, sagas::status::compensated);
      EXPECT_EQ(done->failed_step, "ship");
    });
    for (auto call : {"do:reserve", "do:charge", "do:ship", "undo:charge", "undo:reserve"})
      EXPECT_EQ(log.count(call), 1u) << call;
  }
}

// cancel(): the running step ends, no later step starts, and what completed is compensated.
TEST_F(sagas_test, a_cancelled_saga_stops_after_its_running_step_and_compensates) {
  ledger log;
  bool release = false;
  sagas::definition d;
  d.name = "long";
  d.run = [&](sagas::context& ctx) -> awaitable<json> {
    for (int i = 1; i <= 3; ++i) {
      std::string name = "step" + std::to_string(i);
      sagas::action act = [&log, &release, name, i](const json& in) -> awaitable<json> {
        log.calls.push_back("do:" + name);
        while (i == 2 && !release) co_await sagaflow::sleep_for(5ms);
        co_return in;
      };
      sagas::compensation undo = [&log, name](const json&, const json&) -> awaitable<void> {
        log.calls.push_back("undo:" + name);
        co_return;
      };
      co_await ctx.step(name, act, undo, ctx.input(), quick());
    }
    co_return json("done");
  };
  with_orchestrator({d}, quick_orchestrator(), [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
    auto id = co_await c.start("long", json(1));
    CO_ASSERT_TRUE(co_await eventually([&] { return log.count("do:step2") == 1; }, 10s));
    EXPECT_TRUE(co_await c.cancel(id));
    release = true;
    auto done = co_await c.wait(id, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::cancelled);
    EXPECT_FALSE(co_await c.cancel(id)) << "a finished saga is not cancelled again";
    EXPECT_FALSE(co_await c.cancel("no-such-saga"));
  });
  std::vector<std::string> expected{"do:step1", "do:step2", "undo:step2", "undo:step1"};
  EXPECT_EQ(log.calls, expected);
}

// ctx.all: the steps run together; one fails for good, a sibling that would retry starts no new
// attempt, and the completed siblings (a local and a remote one) are compensated, last index first.
TEST_F(sagas_test, parallel_steps_where_one_fails_compensate_the_completed_siblings) {
  ledger log;
  sagas::definition d;
  d.name = "fanout";
  d.run = [&log](sagas::context& ctx) -> awaitable<json> {
    sagas::action a = [&log](const json& in) -> awaitable<json> {
      log.calls.push_back("do:a");
      co_return json(in.as_int64() + 1);
    };
    sagas::compensation undo_a = [&log](const json&, const json&) -> awaitable<void> {
      log.calls.push_back("undo:a");
      co_return;
    };
    sagas::action flaky = [&log](const json&) -> awaitable<json> {
      log.calls.push_back("do:flaky");
      throw std::runtime_error("busy");
    };
    sagas::action b = [&log, fail = ctx.input().as_int64() < 0](const json& in) -> awaitable<json> {
      log.calls.push_back("do:b");
      co_await sagaflow::sleep_for(20ms);
      if (fail) throw sagaflow::tasks::permanent_error("b refused");
      co_return in;
    };
    auto slow_retry = quick(5);
    slow_retry.backoff.base = slow_retry.backoff.cap = 300ms;
    std::vector<sagas::step_call> calls;
    calls.push_back(sagas::local_call("a", a, undo_a, ctx.input(), quick()));
    sagas::remote_step charge{.queue = "payments", .task = "charge", .undo_task = "refund"};
    calls.push_back(sagas::remote_call("charge", charge, ctx.input(), quick()));
    if (ctx.input().as_int64() < 0) calls.push_back(sagas::local_call("flaky", flaky, {}, ctx.input(), slow_retry));
    calls.push_back(sagas::local_call("b", b, {}, ctx.input(), quick()));
    auto results = co_await ctx.all(std::move(calls));
    co_return json{results.at(0), results.at(1), results.back()};
  };
  with_service({d}, quick_orchestrator(), [&](sagaflow::tasks::worker& w) { payments_service(w, log); },
               [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
    auto ok = co_await c.start("fanout", json(5));
    auto done = co_await c.wait(ok, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::completed);
    EXPECT_EQ(done->result, (json{6, 105, 5})) << "results in the order of the steps";
    log.calls.clear();
    auto failing = co_await c.start("fanout", json(-5));
    done = co_await c.wait(failing, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::compensated);
    EXPECT_EQ(done->failed_step, "b");
    EXPECT_EQ(done->error, "b refused");
  });
  EXPECT_EQ(log.count("do:flaky"), 1u) << "no new attempt once a sibling failed for good";
  EXPECT_EQ(log.count("undo:a"), 1u);
  EXPECT_EQ(log.count("undo:charge"), 1u);
  auto charge_undone = std::find(log.calls.begin(), log.calls.end(), "undo:charge");
  auto a_undone = std::find(log.calls.begin(), log.calls.end(), "undo:a");
  EXPECT_LT(charge_undone, a_undone) << "the step with the higher index is compensated first";
}

// A saga parked as compensation_failed runs again on request: retry (the compensation succeeds
// now, then the earlier step is undone) or skip (journaled as skipped, the rest undone).
TEST_F(sagas_test, a_saga_parked_by_a_failed_compensation_is_resumed_by_retry_or_skip) {
  ledger log;
  bool refund_works = false;
  sagas::definition d;
  d.name = "pay";
  d.run = [&](sagas::context& ctx) -> awaitable<json> {
    sagas::action reserve = [&](const json&) -> awaitable<json> {
      log.calls.push_back("do:reserve");
      co_return json("stock");
    };
    sagas::compensation release = [&](const json&, const json&) -> awaitable<void> {
      log.calls.push_back("undo:reserve");
      co_return;
    };
    sagas::action charge = [&](const json&) -> awaitable<json> {
      log.calls.push_back("do:charge");
      co_return json("receipt");
    };
    sagas::compensation refund = [&](const json&, const json&) -> awaitable<void> {
      log.calls.push_back("undo:charge");
      if (!refund_works) throw std::runtime_error("refund service down");
      co_return;
    };
    sagas::action ship = [&](const json&) -> awaitable<json> { throw sagaflow::tasks::permanent_error("no courier"); };
    co_await ctx.step("reserve", reserve, release, ctx.input(), quick());
    co_await ctx.step("charge", charge, refund, ctx.input(), quick());
    co_await ctx.step("ship", ship, {}, ctx.input(), quick());
    co_return json(nullptr);
  };
  with_orchestrator({d}, quick_orchestrator(), [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
    auto retried = co_await c.start("pay", json(1));
    auto skipped = co_await c.start("pay", json(2));
    for (auto& id : {retried, skipped}) {
      auto done = co_await c.wait(id, 10s);
      CO_ASSERT_TRUE(done.has_value());
      EXPECT_EQ(done->state, sagas::status::compensation_failed);
      EXPECT_EQ(done->failed_step, "charge");
    }
    EXPECT_EQ(log.count("undo:reserve"), 0u) << "parked before the earlier step is undone";
    EXPECT_FALSE(co_await c.retry_compensation("no-such-saga"));

    EXPECT_TRUE(co_await c.skip_compensation(skipped));
    auto done = co_await c.wait(skipped, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::compensated);
    EXPECT_EQ(done->failed_step, "ship");
    EXPECT_EQ(log.count("undo:charge"), 4u) << "2 sagas x 2 attempts; the skip runs nothing";
    EXPECT_EQ(log.count("undo:reserve"), 1u);
    EXPECT_FALSE(co_await c.retry_compensation(skipped)) << "only a compensation_failed saga resumes";

    refund_works = true;
    EXPECT_TRUE(co_await c.retry_compensation(retried));
    done = co_await c.wait(retried, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::compensated);
    EXPECT_EQ(log.count("undo:charge"), 5u) << "the retried compensation ran again, under its policy";
    EXPECT_EQ(log.count("undo:reserve"), 2u);
    EXPECT_EQ(log.count("do:charge"), 2u) << "completed steps are not run again";

    auto st = co_await c.status(skipped);
    CO_ASSERT_TRUE(st.has_value());
    std::vector<std::string> tail;
    for (auto& e : st->history)
      if (e.event == "resumed" || e.event.starts_with("compensation_")) tail.push_back(e.event + ":" + e.name);
    std::vector<std::string> expected{"compensation_started:charge", "compensation_failed:charge",
                                      "compensation_started:charge", "compensation_failed:charge", "resumed:",
                                      "compensation_skipped:charge", "compensation_started:reserve",
                                      "compensation_completed:reserve"};
    EXPECT_EQ(tail, expected);
  });
}

// A sleep longer than the lease: the saga leaves the orchestrator, its timer brings it back, and
// it goes on after the recorded wake-up time without running its first step again.
TEST_F(sagas_test, a_long_durable_sleep_leaves_the_orchestrator_and_resumes_on_its_timer) {
  ledger log;
  sagas::definition d;
  d.name = "nap";
  d.run = [&log](sagas::context& ctx) -> awaitable<json> {
    sagas::action act = [&log](const json& in) -> awaitable<json> {
      log.calls.push_back("do:" + std::string(in.as_string()));
      co_return in;
    };
    co_await ctx.step("before", act, {}, json("before"), quick());
    co_await ctx.sleep(700ms);
    co_await ctx.step("after", act, {}, json("after"), quick());
    co_return json(true);
  };
  with_orchestrator({d}, quick_orchestrator(), [&](sagas::client& c, sagas::orchestrator& o, transport::connection&) -> awaitable<void> {
    auto id = co_await c.start("nap", json(nullptr));
    auto done = co_await c.wait(id, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::completed);
    EXPECT_GE(o.stats().left, 1u) << "700 ms is longer than the 300 ms lease";
    auto st = co_await c.status(id);
    CO_ASSERT_TRUE(st.has_value());
    std::int64_t due = 0, after_started = 0;
    for (auto& e : st->history) {
      if (e.event == "value") due = std::stoll(e.value);
      if (e.event == "step_started" && e.name == "after") after_started = e.at_ms;
    }
    EXPECT_GT(due, 0);
    EXPECT_GE(after_started, due) << "the step after the sleep starts at its recorded wake-up time or later";
  });
  std::vector<std::string> expected{"do:before", "do:after"};
  EXPECT_EQ(log.calls, expected);
}

// max_waiting 0: every wait leaves the orchestrator. A reply resumes the saga from its journal
// (the task is not dispatched again); a reply that never comes fails the step at its deadline,
// through the timer, and the saga compensates.
TEST_F(sagas_test, sagas_that_leave_while_waiting_resume_on_their_reply_or_fail_at_their_deadline) {
  ledger log;
  sagas::definition lost;
  lost.name = "lost";
  lost.run = [&log](sagas::context& ctx) -> awaitable<json> {
    sagas::action reserve = [&log](const json& in) -> awaitable<json> {
      log.calls.push_back("do:reserve");
      co_return in;
    };
    sagas::compensation release = [&log](const json&, const json&) -> awaitable<void> {
      log.calls.push_back("undo:reserve");
      co_return;
    };
    auto short_wait = quick(1);
    short_wait.timeout = 200ms;
    co_await ctx.step("reserve", reserve, release, ctx.input(), quick());
    sagas::remote_step nobody{.queue = "nobody", .task = "anything"};
    co_return co_await ctx.remote("ask", nobody, ctx.input(), short_wait);
  };
  auto options = quick_orchestrator();
  options.max_waiting = 0;
  with_service({checkout_saga(log, false), lost}, options, [&](sagaflow::tasks::worker& w) { payments_service(w, log); },
               [&](sagas::client& c, sagas::orchestrator& o, transport::connection&) -> awaitable<void> {
    auto id = co_await c.start("checkout", json(5));
    auto done = co_await c.wait(id, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::completed);
    EXPECT_EQ(done->result, json(105));
    EXPECT_GE(o.stats().left, 1u);
    auto unanswered = co_await c.start("lost", json(1));
    done = co_await c.wait(unanswered, 10s);
    CO_ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->state, sagas::status::compensated);
    EXPECT_EQ(done->failed_step, "ask");
    EXPECT_EQ(done->error, "no reply from queue 'nobody' in time");
  });
  EXPECT_EQ(log.count("do:charge"), 1u) << "the resumed saga found its reply: no second dispatch";
  EXPECT_EQ(log.count("do:ship"), 1u);
  EXPECT_EQ(log.count("undo:reserve"), 1u);
}

// Two orchestrators at once: every remote step's reply goes to the inbox of the orchestrator that
// dispatched it, so sagas are neither taken over nor run twice, and the work is shared.
TEST_F(sagas_test, two_orchestrators_share_sagas_with_remote_steps_without_taking_them_from_each_other) {
  ledger log;
  constexpr int count = 40;
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    sagaflow::tasks::worker_options wo;
    wo.queues = {sagaflow::tasks::queue_config{"payments", 1}};
    wo.concurrency = 8;
    sagaflow::tasks::worker w(ex, server.config(), wo);
    payments_service(w, log);
    auto conn = transport::connection::create(ex, server.config());
    co_await conn->connect();
    sagas::client client(conn, server.config());
    std::vector<std::unique_ptr<sagas::orchestrator>> orchestrators;
    for (int i = 0; i < 2; ++i) {
      orchestrators.push_back(std::make_unique<sagas::orchestrator>(ex, server.config(), quick_orchestrator()));
      orchestrators.back()->add(checkout_saga(log, false));
    }
    stop_source stop;
    int ended = 0;
    asio::co_spawn(ex, w.run(stop), [&](std::exception_ptr) { ++ended; });
    for (auto& o : orchestrators) asio::co_spawn(ex, o->run(stop), [&](std::exception_ptr) { ++ended; });
    std::vector<std::string> ids;
    for (int i = 0; i < count; ++i) ids.push_back(co_await client.start("checkout", json(i)));
    for (auto& id : ids) {
      auto done = co_await client.wait(id, 20s);
      CO_ASSERT_TRUE(done.has_value());
      EXPECT_EQ(done->state, sagas::status::completed);
    }
    for (auto& o : orchestrators) {
      EXPECT_EQ(o->stats().fenced, 0u) << "no saga was taken from the orchestrator holding it";
      EXPECT_GT(o->stats().completed, 0u) << "both orchestrators took sagas";
    }
    EXPECT_EQ(orchestrators[0]->stats().completed + orchestrators[1]->stats().completed, std::uint64_t(count));
    EXPECT_EQ(orchestrators[0]->stats().started + orchestrators[1]->stats().started, std::uint64_t(count))
        << "each saga was taken once: its reply came back to the orchestrator holding it";
    for (auto& id : ids) {
      auto epoch = co_await conn->call("HGET", "sf:{saga:" + id + "}", "epoch");
      EXPECT_EQ(epoch.text, "1") << id;
    }
    stop.request_stop();
    EXPECT_TRUE(co_await eventually([&] { return ended == 3; }));
    conn->close();
  }());
  EXPECT_EQ(log.count("do:charge"), std::size_t(count));
  EXPECT_EQ(log.count("do:reserve"), std::size_t(count));
}

// A saga waiting for replies does not hold a concurrency slot, however many of its steps wait:
// with concurrency 1, a saga whose two parallel remote steps wait still gets their replies (the
// reader keeps reading), and a second saga runs meanwhile.
TEST_F(sagas_test, waiting_parallel_steps_do_not_hold_the_orchestrators_concurrency) {
  ledger log;
  sagas::definition d;
  d.name = "pair";
  d.run = [](sagas::context& ctx) -> awaitable<json> {
    sagas::remote_step charge{.queue = "payments", .task = "charge"};
    std::vector<sagas::step_call> calls;
    calls.push_back(sagas::remote_call("first", charge, ctx.input(), quick()));
    calls.push_back(sagas::remote_call("second", charge, json(ctx.input().as_int64() + 1), quick()));
    auto results = co_await ctx.all(std::move(calls));
    co_return json(results.at(0).as_int64() + results.at(1).as_int64());
  };
  auto options = quick_orchestrator();
  options.concurrency = 1;
  with_service({d}, options, [&](sagaflow::tasks::worker& w) { payments_service(w, log); },
               [&](sagas::client& c, sagas::orchestrator&, transport::connection&) -> awaitable<void> {
    auto a = co_await c.start("pair", json(1));
    auto b = co_await c.start("pair", json(10));
    std::vector<std::pair<std::string, int>> expected{{a, 203}, {b, 221}};
    for (auto& [id, sum] : expected) {
      auto done = co_await c.wait(id, 10s);
      CO_ASSERT_TRUE(done.has_value());
      EXPECT_EQ(done->state, sagas::status::completed);
      EXPECT_EQ(done->result, json(sum));
    }
  });
  EXPECT_EQ(log.count("do:charge"), 4u);
}
