// The task queue's scripts (tasks/lua) against a real redis-server. Settlement, one consumer
// acting as each worker: a worker whose task was taken over and settled by another changes
// nothing when its own retry or dead-letter script finally runs (design note "Settle").
// Promotion and requeue across the entry format change (design note "Entry format"): packed
// members and entries as well as those of the format before it become readable tasks.
#include "redis_server.hpp"

// Internal header of the tasks module: the embedded scripts, as the worker runs them.
#include "../../tasks/src/scripts.hpp"

#include <sagaflow/tasks/client.hpp>
#include <sagaflow/tasks/keys.hpp>
#include <sagaflow/tasks/task.hpp>
#include <sagaflow/transport/commands.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <iterator>
#include <set>

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
  std::string_view args[] = {tasks::consumer_group, "0", id, "1000", member};  // no completions, one retry
  auto reply = co_await transport::evalsha(c, scripts::settle(), script_keys, args);
  co_return reply.elements.at(1).integer;  // after the count of completions: one answer per retry
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

// Stream entries as name/value pairs.
awaitable<std::vector<transport::stream_entry>> entries(transport::connection& c, std::string_view key) {
  auto reply = co_await c.call("XRANGE", key, "-", "+");
  std::vector<transport::stream_entry> out;
  for (auto& raw : reply.elements) {
    transport::stream_entry e;
    e.id = raw.elements.at(0).text;
    auto& f = raw.elements.at(1).elements;
    for (std::size_t i = 0; i + 1 < f.size(); i += 2) e.fields.emplace_back(f[i].text, f[i + 1].text);
    out.push_back(std::move(e));
  }
  co_return out;
}

awaitable<std::string> add(transport::connection& c, std::string_view key,
                           const std::vector<std::pair<std::string, std::string>>& flat) {
  std::vector<transport::field_view> fields;
  for (auto& [k, v] : flat) fields.push_back({k, v});
  co_return co_await transport::xadd(c, key, fields);
}

tasks::envelope sample_task(std::string id, tasks::priority p) {
  tasks::envelope e;
  e.id = std::move(id);
  e.name = "work";
  e.queue = "default";
  e.priority = p;
  e.payload = tasks::payload::bytes(std::string("\0 bytes 3:x", 11));
  e.correlation_id = "corr-1";
  e.enqueued_ms = 1730000000000;
  e.headers = {{"traceparent", "00-aa-bb-01"}};
  return e;
}

// A task as the format before the packed one wrote it: named fields.
std::vector<std::pair<std::string, std::string>> named_fields(std::string id, int priority, int attempt) {
  return {{"id", std::move(id)},        {"name", "work"},        {"queue", "default"},
          {"priority", std::to_string(priority)},                  {"enc", "json"},
          {"payload", "{\"n\":1}"},    {"attempt", std::to_string(attempt)},
          {"max_attempts", "5"},         {"backoff", "1000,2.000000,600000,full"},
          {"timeout_ms", "1800000"},     {"corr", "corr-old"},    {"enqueued_ms", "1700000000000"},
          {"last_error", "boom"},        {"unknown_since_ms", "1700000000500"},
          {"h.traceparent", "00-cc-dd-01"}};
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
  template <typename Body>
  void with_client(Body body) {
    run([&]() -> awaitable<void> {
      auto c = transport::connection::create(co_await asio::this_coro::executor, server.config());
      co_await c->connect();
      tasks::client client(c);
      co_await body(client, *c);
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

// promote.lua moves a packed member (priority digit + envelope) into its priority stream as the
// one `task` field without decoding it, still decodes a JSON member written before the packed
// format, and sends anything else to the dead letters with its raw text. A member not yet due
// stays.
TEST_F(scripts_test, promote_moves_packed_and_old_json_members_and_buries_garbage) {
  with_connection([&](transport::connection& c) -> awaitable<void> {
    auto packed = sample_task("new-1", tasks::priority::high);
    packed.attempt = 2;
    packed.last_error = "first try failed";
    const std::string packed_member = packed.to_delayed_member();
    boost::json::array old_fields;
    for (auto& [k, v] : named_fields("old-1", 3, 3)) {
      old_fields.emplace_back(k);
      old_fields.emplace_back(v);
    }
    const std::string old_member = boost::json::serialize(boost::json::object{{"p", 3}, {"f", old_fields}});
    const std::string garbage[] = {"not a task", "7" + packed.encode(), R"({"p":2,"f":[]})", "{broken json", ""};
    auto later = sample_task("later-1", tasks::priority::low);
    const std::string later_member = later.to_delayed_member();
    std::vector<std::string> zadd{"ZADD", keys.delayed, "1", packed_member, "2", old_member, "9000", later_member};
    for (auto& g : garbage) {
      zadd.push_back("3");
      zadd.push_back(g);
    }
    transport::request req;
    req.begin(zadd.size());
    for (auto& a : zadd) req.arg(a);
    auto added = co_await c.call(std::move(req));
    EXPECT_EQ(added.integer, 8);

    std::string_view script_keys[] = {keys.delayed, keys.streams[0], keys.streams[1], keys.streams[2],
                                      keys.streams[3], keys.dead};
    std::string_view args[] = {"5000", "100"};
    auto reply = co_await transport::evalsha(c, scripts::promote(), script_keys, args);
    CO_ASSERT_EQ(reply.elements.size(), 2u);
    EXPECT_EQ(reply.elements[0].integer, 7);
    EXPECT_EQ(reply.elements[1].text, "9000") << "the member not yet due is next";

    auto high = co_await entries(c, keys.streams[1]);
    CO_ASSERT_EQ(high.size(), 1u);
    CO_ASSERT_EQ(high[0].fields.size(), 1u);  // one field
    EXPECT_EQ(high[0].fields[0].first, tasks::entry_field);
    EXPECT_EQ(high[0].fields[0].second, packed.encode()) << "the member's envelope, unchanged";
    auto moved = tasks::envelope::from_fields(high[0].fields);
    EXPECT_EQ(moved.id, "new-1");
    EXPECT_EQ(moved.attempt, 2u);
    EXPECT_EQ(moved.payload.data, packed.payload.data);
    EXPECT_EQ(moved.last_error, "first try failed");

    auto low = co_await entries(c, keys.streams[3]);
    CO_ASSERT_EQ(low.size(), 1u);
    auto old = tasks::envelope::from_fields(low[0].fields);
    EXPECT_EQ(old.id, "old-1");
    EXPECT_EQ(old.attempt, 3u);
    EXPECT_EQ(old.priority, tasks::priority::low);
    EXPECT_EQ(old.payload.data, "{\"n\":1}");
    EXPECT_EQ(old.headers.at("traceparent"), "00-cc-dd-01");

    EXPECT_EQ(co_await transport::xlen(c, keys.streams[0]), 0);
    EXPECT_EQ(co_await transport::xlen(c, keys.streams[2]), 0);
    std::multiset<std::string> raws, expected_raws(std::begin(garbage), std::end(garbage));
    for (auto& e : co_await entries(c, keys.dead)) {
      auto reason = e.find("dead.reason");
      EXPECT_TRUE(reason && *reason == "undecodable");
      if (auto raw = e.find("dead.raw")) raws.insert(*raw);
    }
    EXPECT_EQ(raws, expected_raws);
    auto left = co_await c.call("ZRANGE", keys.delayed, "0", "-1");
    CO_ASSERT_EQ(left.elements.size(), 1u);
    EXPECT_EQ(left.elements[0].text, later_member);
  });
}

// client::requeue_dead gives a dead task, packed, in named fields, or a packed delayed member an
// older promoter buried, a fresh start (attempt 1, no memory of having had no handler) back in
// its priority stream as a packed entry; an entry that is not a task stays a dead letter.
// list_dead shows each of them.
TEST_F(scripts_test, requeue_dead_requeues_packed_and_old_dead_letters_with_attempt_1_and_leaves_the_rest) {
  with_client([&](tasks::client& client, transport::connection& c) -> awaitable<void> {
    auto packed = sample_task("new-1", tasks::priority::high);
    packed.attempt = 5;
    packed.unknown_since_ms = 1730000000100;
    packed.last_error = "gave up";
    packed.unknown_items = " 4:next";  // appended by a newer writer: requeued with the task
    auto packed_fields = std::vector<std::pair<std::string, std::string>>{
        {"task", packed.encode()}, {"dead.reason", "max attempts"}, {"dead.error", "gave up"},
        {"dead.attempts", "5"}, {"dead.at", "1"}, {"dead.worker", "w1"}, {"dead.entry", "1-1"}};
    auto old_fields = named_fields("old-1", 0, 4);
    old_fields.emplace_back("dead.reason", "unknown task");
    old_fields.emplace_back("dead.attempts", "4");
    const auto not_a_task = std::vector<std::pair<std::string, std::string>>{
        {"garbage", "x"}, {"dead.reason", "undecodable"}, {"dead.error", "task entry lacks the field 'id'"}};
    // A packed member that a promoter of the version before could not read: buried as it was.
    auto unread = sample_task("unread-1", tasks::priority::low);
    unread.attempt = 2;
    const auto unread_fields = std::vector<std::pair<std::string, std::string>>{
        {"dead.reason", "undecodable"}, {"dead.error", "delayed entry is not a task envelope"},
        {"dead.raw", unread.to_delayed_member()}, {"dead.at", "1"}};
    co_await add(c, keys.dead, packed_fields);
    auto stays = co_await add(c, keys.dead, not_a_task);
    co_await add(c, keys.dead, old_fields);
    co_await add(c, keys.dead, unread_fields);

    auto listed = co_await client.list_dead("default");
    CO_ASSERT_EQ(listed.size(), 4u);
    EXPECT_EQ(listed[0].task.id, "new-1");
    EXPECT_EQ(listed[0].attempts, 5u);
    EXPECT_EQ(listed[1].task.id, "") << "not a task";
    EXPECT_EQ(listed[2].task.id, "old-1");
    EXPECT_EQ(listed[3].task.id, "unread-1");

    EXPECT_EQ(co_await client.requeue_dead("default"), 3u);

    auto high = co_await entries(c, keys.streams[1]);
    CO_ASSERT_EQ(high.size(), 1u);
    CO_ASSERT_EQ(high[0].fields.size(), 1u);  // the task alone, no dead.* fields
    EXPECT_EQ(high[0].fields[0].first, tasks::entry_field);
    auto again = tasks::envelope::from_fields(high[0].fields);
    EXPECT_EQ(again.id, "new-1");
    EXPECT_EQ(again.attempt, 1u);
    EXPECT_EQ(again.unknown_since_ms, 0);
    EXPECT_EQ(again.last_error, "gave up");
    EXPECT_EQ(again.payload.data, packed.payload.data);
    EXPECT_EQ(again.unknown_items, " 4:next");

    auto critical = co_await entries(c, keys.streams[0]);
    CO_ASSERT_EQ(critical.size(), 1u);
    CO_ASSERT_EQ(critical[0].fields.size(), 1u);  // an old dead letter comes back packed
    auto old = tasks::envelope::from_fields(critical[0].fields);
    EXPECT_EQ(old.id, "old-1");
    EXPECT_EQ(old.attempt, 1u);
    EXPECT_EQ(old.unknown_since_ms, 0);
    EXPECT_EQ(old.priority, tasks::priority::critical);
    EXPECT_EQ(old.correlation_id, "corr-old");
    EXPECT_EQ(old.headers.at("traceparent"), "00-cc-dd-01");

    auto low = co_await entries(c, keys.streams[3]);
    CO_ASSERT_EQ(low.size(), 1u);
    auto unread_again = tasks::envelope::from_fields(low[0].fields);
    EXPECT_EQ(unread_again.id, "unread-1");
    EXPECT_EQ(unread_again.attempt, 1u);

    auto dead = co_await entries(c, keys.dead);
    CO_ASSERT_EQ(dead.size(), 1u);
    EXPECT_EQ(dead[0].id, stays);
    EXPECT_EQ(co_await client.requeue_dead("default"), 0u) << "nothing left that is a task";
    EXPECT_EQ(co_await client.requeue_dead("default", stays), 0u);
    EXPECT_EQ(co_await transport::xlen(c, keys.dead), 1);
  });
}

// Two operators requeue the same dead letter at once: both read it, both run the script; only
// the one whose XDEL removed it adds the task to its stream.
TEST_F(scripts_test, a_second_concurrent_requeue_of_the_same_dead_letter_does_nothing) {
  with_client([&](tasks::client& client, transport::connection& c) -> awaitable<void> {
    auto task = sample_task("new-1", tasks::priority::normal);
    auto dead_fields = std::vector<std::pair<std::string, std::string>>{{"task", task.encode()},
                                                                        {"dead.reason", "max attempts"}};
    auto id = co_await add(c, keys.dead, dead_fields);
    // What each operator's client sends after reading the entry.
    std::string_view script_keys[] = {keys.dead, keys.streams[0], keys.streams[1], keys.streams[2], keys.streams[3]};
    const std::string packed = task.encode();
    std::string_view args[] = {id, "2", packed};
    auto first = co_await transport::evalsha(c, scripts::requeue_dead(), script_keys, args);
    auto second = co_await transport::evalsha(c, scripts::requeue_dead(), script_keys, args);
    EXPECT_EQ(first.integer, 1);
    EXPECT_EQ(second.integer, 0);
    EXPECT_EQ(co_await transport::xlen(c, keys.streams[2]), 1) << "the task was added twice";
    EXPECT_EQ(co_await transport::xlen(c, keys.dead), 0);
    // The client asked for the entry after it is gone: nothing.
    EXPECT_EQ(co_await client.requeue_dead("default", id), 0u);
    EXPECT_EQ(co_await transport::xlen(c, keys.streams[2]), 1);
  });
}
