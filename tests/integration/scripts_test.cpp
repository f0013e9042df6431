// The settlement scripts (tasks/lua) against a real redis-server, one consumer acting as each
// worker: a worker whose task was taken over and settled by another changes nothing when its own
// retry or dead-letter script finally runs (the settle race of design note "Settle").
#include "redis_server.hpp"

// Internal header of the tasks module: the embedded scripts, as the worker runs them.
#include "../../tasks/src/scripts.hpp"

#include <sagaflow/tasks/keys.hpp>
#include <sagaflow/tasks/task.hpp>
#include <sagaflow/transport/commands.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

namespace asio = boost::asio;
namespace transport = sagaflow::transport;
namespace tasks = sagaflow::tasks;
namespace scripts = sagaflow::tasks::scripts;
using namespace std::chrono_literals;
using sagaflow::awaitable;
using sagaflow::testing::redis_server;
using sagaflow::testing::run;

namespace {

const tasks::queue_keys keys("sf", "default");
const std::string& stream = keys.streams[2];

// Everything the settlement scripts can touch, to compare before and after.
struct snapshot {
  std::int64_t stream_length = 0, pending = 0, delayed = 0, dead = 0;
  std::string delayed_members;
  bool operator==(const snapshot&) const = default;
};

std::ostream& operator<<(std::ostream& out, const snapshot& s) {
  return out << "{stream " << s.stream_length << ", pending " << s.pending << ", delayed " << s.delayed << " ["
             << s.delayed_members << "], dead " << s.dead << "}";
}

awaitable<snapshot> take_snapshot(transport::connection& c) {
  snapshot s;
  s.stream_length = co_await transport::xlen(c, stream);
  s.pending = (co_await transport::xpending(c, stream, tasks::consumer_group)).count;
  s.delayed = (co_await c.call("ZCARD", keys.delayed)).integer;
  s.dead = co_await transport::xlen(c, keys.dead);
  auto members = co_await c.call("ZRANGE", keys.delayed, "0", "-1");
  for (auto& m : members.elements) s.delayed_members += m.text + ";";
  co_return s;
}

// A task entry read by consumer "a" (the worker that ran it); returns the entry id.
awaitable<std::string> deliver_to_a(transport::connection& c, tasks::envelope& task) {
  co_await transport::xgroup_create(c, stream, tasks::consumer_group, "0");
  task.id = "task-1";
  task.name = "work";
  task.queue = "default";
  task.payload = boost::json::value(1);
  auto flat = task.to_fields();
  std::vector<transport::field_view> fields;
  for (std::size_t i = 0; i + 1 < flat.size(); i += 2) fields.push_back({flat[i], flat[i + 1]});
  auto id = co_await transport::xadd(c, stream, fields);
  transport::stream_offset from[] = {{stream, ">"}};
  auto got = co_await transport::xreadgroup(c, tasks::consumer_group, "a", from, {.count = 1});
  if (got.size() != 1 || got[0].entries.size() != 1 || got[0].entries[0].id != id)
    throw std::runtime_error("consumer a did not get the entry");
  co_return id;
}

// Worker `consumer` schedules a retry of entry `id` the way the worker does; returns the script's
// answer (1 moved, 0 no longer pending).
awaitable<std::int64_t> retry(transport::connection& c, const std::string& id, const tasks::envelope& task,
                              std::string_view note) {
  auto next = task;
  next.attempt += 1;
  next.last_error = std::string(note);
  std::string member = next.to_delayed_member();
  std::string_view script_keys[] = {stream, keys.delayed};
  std::string_view args[] = {tasks::consumer_group, id, "1000", member};
  auto reply = co_await transport::evalsha(c, scripts::retry(), script_keys, args);
  co_return reply.elements.at(0).integer;  // one answer per task in the call
}

awaitable<std::int64_t> bury(transport::connection& c, const std::string& id, const tasks::envelope& task,
                             std::string_view worker) {
  auto fields = task.to_fields();
  for (std::string_view f : {std::string_view("dead.reason"), std::string_view("max attempts"),
                             std::string_view("dead.worker"), worker, std::string_view("dead.entry"),
                             std::string_view(id)})
    fields.emplace_back(f);
  std::vector<std::string_view> args{tasks::consumer_group, id};
  for (auto& f : fields) args.push_back(f);
  std::string_view script_keys[] = {stream, keys.dead};
  auto reply = co_await transport::evalsha(c, scripts::dead(), script_keys, args);
  co_return reply.integer;
}

// Worker b takes the entry over (XCLAIM, as the recoverer does after the lease).
awaitable<void> take_over_by_b(transport::connection& c, const std::string& id) {
  std::vector<std::string> ids{id};
  auto claimed = co_await transport::xclaim(c, stream, tasks::consumer_group, "b", 0ms, ids);
  if (claimed.size() != 1) throw std::runtime_error("consumer b could not claim the entry");
}

class scripts_test : public ::testing::Test {
 protected:
  template <typename Body>
  void with_connection(Body body) {
    run([&]() -> awaitable<void> {
      auto c = transport::connection::create(co_await asio::this_coro::executor, server.config());
      co_await c->connect();
      co_await body(*c);
      c->close();
    }());
  }
  redis_server server;
};

}  // namespace

// Control: while the entry is pending, each script does its job once; a second call is a no-op.
TEST_F(scripts_test, retry_and_dead_settle_a_pending_entry_once) {
  with_connection([&](transport::connection& c) -> awaitable<void> {
    tasks::envelope task;
    auto id = co_await deliver_to_a(c, task);
    EXPECT_EQ(co_await retry(c, id, task, "a"), 1);
    auto after = co_await take_snapshot(c);
    EXPECT_EQ(after.stream_length, 0);
    EXPECT_EQ(after.pending, 0);
    EXPECT_EQ(after.delayed, 1);
    EXPECT_EQ(co_await retry(c, id, task, "again"), 0);
    EXPECT_EQ(co_await bury(c, id, task, "a"), 0);
    EXPECT_EQ(co_await take_snapshot(c), after);

    auto second = co_await deliver_to_a(c, task);
    EXPECT_EQ(co_await bury(c, second, task, "a"), 1);
    EXPECT_EQ(co_await transport::xlen(c, keys.dead), 1);
    EXPECT_EQ(co_await bury(c, second, task, "a"), 0);
    EXPECT_EQ(co_await transport::xlen(c, keys.dead), 1) << "dead-lettered twice";
  });
}

// b took the entry over and completed it (XACK + XDEL, as the worker's acknowledgement does):
// a's late retry and dead letter change nothing.
TEST_F(scripts_test, a_late_settlement_changes_nothing_after_another_worker_completed_the_task) {
  with_connection([&](transport::connection& c) -> awaitable<void> {
    tasks::envelope task;
    auto id = co_await deliver_to_a(c, task);
    co_await take_over_by_b(c, id);
    std::vector<std::string> ids{id};
    EXPECT_EQ(co_await transport::xack(c, stream, tasks::consumer_group, ids), 1);
    EXPECT_EQ(co_await transport::xdel(c, stream, ids), 1);
    auto settled = co_await take_snapshot(c);
    EXPECT_EQ(co_await retry(c, id, task, "late"), 0);
    EXPECT_EQ(co_await bury(c, id, task, "a"), 0);
    EXPECT_EQ(co_await take_snapshot(c), settled);
  });
}

// b took the entry over and settled it by a retry, or by a dead letter: a's late settlement
// adds no second copy of the task anywhere.
TEST_F(scripts_test, a_late_settlement_changes_nothing_after_another_worker_retried_or_buried_the_task) {
  with_connection([&](transport::connection& c) -> awaitable<void> {
    tasks::envelope task;
    auto id = co_await deliver_to_a(c, task);
    co_await take_over_by_b(c, id);
    EXPECT_EQ(co_await retry(c, id, task, "b"), 1);
    auto retried = co_await take_snapshot(c);
    EXPECT_EQ(retried.delayed, 1);
    EXPECT_EQ(co_await retry(c, id, task, "a"), 0);
    EXPECT_EQ(co_await bury(c, id, task, "a"), 0);
    EXPECT_EQ(co_await take_snapshot(c), retried) << "a's retry must not replace or add to b's";

    auto second = co_await deliver_to_a(c, task);
    co_await take_over_by_b(c, second);
    EXPECT_EQ(co_await bury(c, second, task, "b"), 1);
    auto buried = co_await take_snapshot(c);
    EXPECT_EQ(buried.dead, 1);
    EXPECT_EQ(co_await bury(c, second, task, "a"), 0);
    EXPECT_EQ(co_await retry(c, second, task, "a"), 0);
    EXPECT_EQ(co_await take_snapshot(c), buried);
  });
}
