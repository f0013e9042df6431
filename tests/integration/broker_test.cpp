// The broker (tasks/broker.hpp) against a real redis-server: one test per script or command
// group of the task queue, each checking what the call changes in Redis and what it answers.
// (GCC 12: no braced list inside a co_await expression, hence the named vectors.)
#include "redis_server.hpp"

#include <sagaflow/tasks/broker.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

namespace asio = boost::asio;
namespace transport = sagaflow::transport;
namespace tasks = sagaflow::tasks;
using namespace std::chrono_literals;
using sagaflow::awaitable;
using sagaflow::testing::redis_server;
using sagaflow::testing::run;

namespace {

const tasks::queue_keys keys("sf", "default");

tasks::envelope make_task(std::string id, tasks::priority p = tasks::priority::normal) {
  tasks::envelope e;
  e.id = std::move(id);
  e.name = "work";
  e.queue = "default";
  e.priority = p;
  e.payload = boost::json::value(1);
  return e;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class broker_test : public ::testing::Test {
 protected:
  template <typename Body>
  void with_broker(Body body) {
    run([&]() -> awaitable<void> {
      auto c = transport::connection::create(co_await asio::this_coro::executor, server.config());
      co_await c->connect();
      tasks::broker b(c);
      co_await b.create_groups(keys);
      co_await body(b, *c);
      c->close();
    }());
  }

  // Enqueues `ids` (due now) and has consumer `consumer` fetch them; returns their entry ids.
  static awaitable<std::vector<std::string>> deliver(tasks::broker& b, std::vector<std::string> ids,
                                                     std::string_view consumer = "a") {
    for (auto& id : ids) co_await b.enqueue(keys, make_task(id), std::nullopt, {}, 0ms);
    std::size_t order[] = {0, 1, 2, 3};
    auto got = co_await b.fetch(keys, order, consumer, ids.size());
    std::vector<std::string> entries;
    for (auto& batch : got)
      for (auto& e : batch.entries) entries.push_back(e.id);
    co_return entries;
  }

  // settle.lua completing `entries` of the normal stream; answers how many it acknowledged.
  static awaitable<std::int64_t> complete(transport::connection& c, const std::vector<std::string>& entries) {
    transport::request req;
    tasks::broker::add_settle(req, keys, 2, entries, {});
    auto replies = co_await c.exec(std::move(req));
    co_return tasks::broker::settle_reply(replies.at(0), 0).acknowledged;
  }

  // The ids of the normal stream's entries, oldest first.
  static awaitable<std::vector<std::string>> entry_ids(transport::connection& c) {
    auto all = co_await c.call("XRANGE", keys.streams[2], "-", "+");
    std::vector<std::string> ids;
    for (auto& e : all.elements) ids.push_back(e.elements.at(0).text);
    co_return ids;
  }

  static awaitable<std::int64_t> count(transport::connection& c, std::string_view command, std::string_view key) {
    co_return (co_await c.call(command, key)).integer;
  }

  redis_server server;
};

}  // namespace

TEST_F(broker_test, enqueue_adds_now_delays_later_and_honours_the_idempotency_key) {
  with_broker([&](tasks::broker& b, transport::connection& c) -> awaitable<void> {
    EXPECT_EQ(co_await b.enqueue(keys, make_task("t-now"), std::nullopt, {}, 0ms), "t-now");
    EXPECT_EQ(co_await count(c, "XLEN", keys.streams[2]), 1);
    EXPECT_EQ(co_await b.enqueue(keys, make_task("t-later"), now_ms() + 60'000, {}, 0ms), "t-later");
    EXPECT_EQ(co_await count(c, "ZCARD", keys.delayed), 1);
    EXPECT_EQ(co_await b.enqueue(keys, make_task("t-first"), std::nullopt, "key-1", 60s), "t-first");
    EXPECT_EQ(co_await b.enqueue(keys, make_task("t-second"), std::nullopt, "key-1", 60s), "t-first");
    EXPECT_EQ(co_await count(c, "XLEN", keys.streams[2]), 2) << "the duplicate must not be enqueued";
  });
}

TEST_F(broker_test, fetch_drains_higher_streams_first_and_stops_at_count) {
  with_broker([&](tasks::broker& b, transport::connection&) -> awaitable<void> {
    co_await b.enqueue(keys, make_task("low", tasks::priority::low), std::nullopt, {}, 0ms);
    co_await b.enqueue(keys, make_task("crit-1", tasks::priority::critical), std::nullopt, {}, 0ms);
    co_await b.enqueue(keys, make_task("crit-2", tasks::priority::critical), std::nullopt, {}, 0ms);
    std::size_t order[] = {0, 1, 2, 3};
    auto first = co_await b.fetch(keys, order, "a", 2);
    CO_ASSERT_EQ(first.size(), 1u);
    EXPECT_EQ(first[0].stream, keys.streams[0]);
    CO_ASSERT_EQ(first[0].entries.size(), 2u);
    EXPECT_EQ(tasks::envelope::from_fields(first[0].entries[0].fields).id, "crit-1");
    auto second = co_await b.fetch(keys, order, "a", 5);
    CO_ASSERT_EQ(second.size(), 1u);
    EXPECT_EQ(second[0].stream, keys.streams[3]);
    auto pending = co_await b.pending(keys, 0, 10, 0ms, "a");
    EXPECT_EQ(pending.size(), 2u) << "fetched entries are pending for the consumer";
    EXPECT_TRUE((co_await b.fetch(keys, order, "a", 5)).empty());
  });
}

// A fetch planned by the lags the previous one answered reads in one round trip; the streams
// above the planned one are still read fresh, so a critical task enqueued since is taken first,
// and what then exceeds the count goes back to its stream (to its end), not lost.
TEST_F(broker_test, fetch_by_a_stale_plan_takes_a_newer_critical_first_and_hands_back_the_excess) {
  with_broker([&](tasks::broker& b, transport::connection& c) -> awaitable<void> {
    for (auto id : {"n-1", "n-2", "n-3", "n-4"}) co_await b.enqueue(keys, make_task(id), std::nullopt, {}, 0ms);
    auto plan = co_await b.backlog(keys);
    EXPECT_TRUE(plan.known);
    EXPECT_EQ(plan.lags[0], 0);
    EXPECT_EQ(plan.lags[2], 4);
    co_await b.enqueue(keys, make_task("crit", tasks::priority::critical), std::nullopt, {}, 0ms);
    std::size_t order[] = {0, 1, 2, 3};
    auto got = co_await b.fetch(keys, order, "a", 3, plan);
    std::vector<std::string> ids;
    for (auto& batch : got)
      for (auto& e : batch.entries) ids.push_back(tasks::envelope::from_fields(e.fields).id);
    std::vector<std::string> expected{"crit", "n-1", "n-2"};
    EXPECT_EQ(ids, expected);
    auto pending = co_await b.pending(keys, 2, 10, 0ms, "a");
    EXPECT_EQ(pending.size(), 2u) << "the entry read beyond the count is no longer pending";
    EXPECT_EQ(co_await count(c, "XLEN", keys.streams[2]), 4) << "handed back, not lost";
    EXPECT_EQ(plan.lags[0], 0) << "the plan is the backlog after the reads";
    EXPECT_EQ(plan.lags[2], 2);
    auto rest = co_await b.fetch(keys, order, "a", 10, plan);
    ids.clear();
    for (auto& batch : rest)
      for (auto& e : batch.entries) ids.push_back(tasks::envelope::from_fields(e.fields).id);
    expected = {"n-4", "n-3"};
    EXPECT_EQ(ids, expected) << "the handed-back entry is at the end of its stream";
    EXPECT_EQ(plan.lags[2], 0);
  });
}

TEST_F(broker_test, retry_moves_every_pending_entry_of_a_call_and_skips_the_settled) {
  with_broker([&](tasks::broker& b, transport::connection& c) -> awaitable<void> {
    std::vector<std::string> ids{"r-1", "r-2", "r-3"};
    auto entries = co_await deliver(b, ids);
    CO_ASSERT_EQ(entries.size(), 3u);
    std::vector<std::string> done{entries[2]};
    co_await transport::xack(c, keys.streams[2], tasks::consumer_group, done);  // settled elsewhere
    auto member = [](std::string id) {
      auto t = make_task(std::move(id));
      t.attempt = 2;
      return t.to_delayed_member();
    };
    std::string m1 = member("r-1"), m2 = member("r-2"), m3 = member("r-3");
    tasks::broker::retry_item items[] = {{entries[0], 1000, m1}, {entries[1], 2000, m2}, {entries[2], 3000, m3}};
    auto moved = co_await b.retry(keys, 2, items);
    EXPECT_EQ(moved, (std::vector<bool>{true, true, false}));
    EXPECT_EQ(co_await count(c, "ZCARD", keys.delayed), 2);
    auto left = co_await entry_ids(c);
    EXPECT_EQ(std::count(left.begin(), left.end(), entries[0]) + std::count(left.begin(), left.end(), entries[1]), 0)
        << "moved entries are removed";
    EXPECT_EQ((co_await b.pending(keys, 2, 10, 0ms)).size(), 0u);
    // Again (a reply lost, the call repeated): nothing changes.
    auto again = co_await b.retry(keys, 2, items);
    EXPECT_EQ(again, (std::vector<bool>{false, false, false}));
    EXPECT_EQ(co_await count(c, "ZCARD", keys.delayed), 2);
  });
}

TEST_F(broker_test, retry_loads_its_script_again_after_a_script_flush) {
  with_broker([&](tasks::broker& b, transport::connection& c) -> awaitable<void> {
    std::vector<std::string> ids{"f-1"};
    auto entries = co_await deliver(b, ids);
    CO_ASSERT_EQ(entries.size(), 1u);
    co_await c.call("SCRIPT", "FLUSH");  // as a restarted server would have forgotten them
    std::string m = make_task("f-1").to_delayed_member();
    tasks::broker::retry_item items[] = {{entries[0], 1000, m}};
    auto moved = co_await b.retry(keys, 2, items);
    EXPECT_EQ(moved, (std::vector<bool>{true}));
  });
}

TEST_F(broker_test, dead_letter_writes_the_task_and_why_once) {
  with_broker([&](tasks::broker& b, transport::connection& c) -> awaitable<void> {
    std::vector<std::string> ids{"d-1"};
    auto entries = co_await deliver(b, ids);
    CO_ASSERT_EQ(entries.size(), 1u);
    auto task = make_task("d-1");
    auto flat = task.to_fields();
    std::vector<transport::field_view> fields;
    for (std::size_t i = 0; i + 1 < flat.size(); i += 2) fields.push_back({flat[i], flat[i + 1]});
    tasks::burial why{.reason = "max attempts", .error = "boom", .attempts = 3, .worker = "a"};
    EXPECT_TRUE(co_await b.dead_letter(keys, 2, entries[0], fields, why));
    EXPECT_FALSE(co_await b.dead_letter(keys, 2, entries[0], fields, why)) << "a second burial changes nothing";
    auto dead = co_await c.call("XRANGE", keys.dead, "-", "+");
    CO_ASSERT_EQ(dead.elements.size(), 1u);
    transport::stream_entry entry;
    auto& raw = dead.elements[0].elements.at(1).elements;
    for (std::size_t i = 0; i + 1 < raw.size(); i += 2) entry.fields.emplace_back(raw[i].text, raw[i + 1].text);
    EXPECT_EQ(tasks::envelope::from_fields(entry.fields).id, "d-1");
    auto field = [&](std::string_view name) { auto* v = entry.find(name); return v ? *v : std::string("<missing>"); };
    EXPECT_EQ(field(tasks::dead_field::reason), "max attempts");
    EXPECT_EQ(field(tasks::dead_field::error), "boom");
    EXPECT_EQ(field(tasks::dead_field::attempts), "3");
    EXPECT_EQ(field(tasks::dead_field::worker), "a");
    EXPECT_EQ(field(tasks::dead_field::entry), entries[0]);
    EXPECT_EQ(co_await count(c, "XLEN", keys.streams[2]), 0);
  });
}

TEST_F(broker_test, promote_moves_due_tasks_to_their_stream_and_reports_the_next_due) {
  with_broker([&](tasks::broker& b, transport::connection& c) -> awaitable<void> {
    auto now = now_ms();
    co_await b.enqueue(keys, make_task("due-high", tasks::priority::high), now - 10, {}, 0ms);
    co_await b.enqueue(keys, make_task("due-low", tasks::priority::low), now - 5, {}, 0ms);
    co_await b.enqueue(keys, make_task("later"), now + 60'000, {}, 0ms);
    co_await c.call("ZADD", keys.delayed, "1", "not a task");
    auto done = co_await b.promote(keys, now, 100);
    EXPECT_EQ(done.moved, 3);
    CO_ASSERT_TRUE(done.next_due_ms.has_value());
    EXPECT_GE(*done.next_due_ms, now + 59'000);
    std::size_t order[] = {0, 1, 2, 3};
    auto got = co_await b.fetch(keys, order, "a", 10);
    CO_ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].stream, keys.streams[1]);
    EXPECT_EQ(tasks::envelope::from_fields(got[0].entries.at(0).fields).id, "due-high");
    EXPECT_EQ(got[1].stream, keys.streams[3]);
    EXPECT_EQ(co_await count(c, "XLEN", keys.dead), 1) << "a member that is no task is dead-lettered, not lost";
    EXPECT_EQ(co_await count(c, "ZCARD", keys.delayed), 1);
    auto empty = co_await b.promote(keys, now, 100);
    EXPECT_EQ(empty.moved, 0);
  });
}

TEST_F(broker_test, renew_resets_the_idle_time_only_of_entries_the_consumer_still_owns) {
  with_broker([&](tasks::broker& b, transport::connection&) -> awaitable<void> {
    std::vector<std::string> ids{"l-1", "l-2"};
    auto entries = co_await deliver(b, ids);
    CO_ASSERT_EQ(entries.size(), 2u);
    std::vector<std::string> taken{entries[1]};
    co_await b.claim(keys, 2, "b", 0ms, taken);  // another worker took l-2 over
    co_await sagaflow::sleep_for(120ms);
    auto renewed = co_await b.renew(keys, 2, "a", entries);
    EXPECT_EQ(renewed, (std::vector<std::string>{entries[0]}));
    auto stale = co_await b.pending(keys, 2, 10, 100ms);
    CO_ASSERT_EQ(stale.size(), 1u);
    EXPECT_EQ(stale[0].id, entries[1]) << "only the renewed entry is fresh";
    auto mine = co_await b.pending(keys, 2, 10, 0ms, "a");
    CO_ASSERT_EQ(mine.size(), 1u);
    EXPECT_EQ(mine[0].deliveries, 1) << "renewing is not a delivery";
  });
}

TEST_F(broker_test, release_hands_pending_entries_back_to_the_end_of_their_stream) {
  with_broker([&](tasks::broker& b, transport::connection& c) -> awaitable<void> {
    std::vector<std::string> ids{"h-1", "h-2"};
    auto entries = co_await deliver(b, ids);
    CO_ASSERT_EQ(entries.size(), 2u);
    std::vector<std::string> done{entries[1]};
    co_await transport::xack(c, keys.streams[2], tasks::consumer_group, done);
    EXPECT_EQ(co_await b.release(keys, 2, entries), 1) << "an entry no longer pending is left alone";
    EXPECT_TRUE((co_await b.pending(keys, 2, 10, 0ms)).empty());
    std::size_t order[] = {0, 1, 2, 3};
    auto again = co_await b.fetch(keys, order, "b", 10);
    CO_ASSERT_EQ(again.size(), 1u);
    CO_ASSERT_EQ(again[0].entries.size(), 1u);
    EXPECT_NE(again[0].entries[0].id, entries[0]) << "re-added as a new entry";
    EXPECT_EQ(tasks::envelope::from_fields(again[0].entries[0].fields).id, "h-1");
  });
}

TEST_F(broker_test, claim_takes_over_entries_idle_past_the_lease_and_counts_a_delivery) {
  with_broker([&](tasks::broker& b, transport::connection&) -> awaitable<void> {
    std::vector<std::string> ids{"c-1"};
    auto entries = co_await deliver(b, ids);
    CO_ASSERT_EQ(entries.size(), 1u);
    EXPECT_TRUE((co_await b.claim(keys, 2, "b", 10s, entries)).empty()) << "not idle long enough";
    co_await sagaflow::sleep_for(60ms);
    auto taken = co_await b.claim(keys, 2, "b", 50ms, entries);
    CO_ASSERT_EQ(taken.size(), 1u);
    EXPECT_EQ(tasks::envelope::from_fields(taken[0].fields).id, "c-1");
    auto now_b = co_await b.pending(keys, 2, 10, 0ms, "b");
    CO_ASSERT_EQ(now_b.size(), 1u);
    EXPECT_EQ(now_b[0].deliveries, 2);
  });
}

// settle.lua trims what no group needs any more and deletes the rest of what it completes
// (16 entries or more: fewer are deleted one by one), but never an entry still pending or not
// yet delivered, for any group.
TEST_F(broker_test, complete_removes_the_completed_entries_and_nothing_still_needed) {
  with_broker([&](tasks::broker& b, transport::connection& c) -> awaitable<void> {
    co_await b.load_scripts();  // add_settle() appends an EVALSHA, which does not load it
    std::size_t order[] = {0, 1, 2, 3};
    auto deliver_n = [&](std::string prefix, std::size_t n) -> awaitable<std::vector<std::string>> {
      for (std::size_t i = 0; i < n; ++i)
        co_await b.enqueue(keys, make_task(prefix + std::to_string(i)), std::nullopt, {}, 0ms);
      auto got = co_await b.fetch(keys, order, "a", n);
      std::vector<std::string> ids;
      for (auto& batch : got)
        for (auto& e : batch.entries) ids.push_back(e.id);
      co_return ids;
    };
    auto e = co_await deliver_n("e-", 20);
    CO_ASSERT_EQ(e.size(), 20u);
    // e[0] still runs (older), as do e[18] and e[19]: e[1..17], completed behind e[0], go one by one.
    std::vector<std::string> behind(e.begin() + 1, e.begin() + 18);
    EXPECT_EQ(co_await complete(c, behind), 17);
    std::vector<std::string> expected{e[0], e[18], e[19]};
    EXPECT_EQ(co_await entry_ids(c), expected);
    // Nothing older pending: what the call completes goes with the trim, and the entries still
    // pending (g[16..19]) or never delivered (u) stay.
    auto g = co_await deliver_n("g-", 20);
    CO_ASSERT_EQ(g.size(), 20u);
    co_await b.enqueue(keys, make_task("u"), std::nullopt, {}, 0ms);
    std::vector<std::string> done{e[0], e[18], e[19]};
    done.insert(done.end(), g.begin(), g.begin() + 16);
    EXPECT_EQ(co_await complete(c, done), 19);
    auto left = co_await entry_ids(c);
    CO_ASSERT_EQ(left.size(), 5u);
    std::vector<std::string> running(g.begin() + 16, g.end());
    EXPECT_EQ(std::vector<std::string>(left.begin(), left.begin() + 4), running);
    EXPECT_EQ(co_await complete(c, done), 0) << "acknowledged once";
    // Another group that has read nothing holds the trim back: the completed entries still go.
    co_await transport::xgroup_create(c, keys.streams[2], "audit", "0");
    auto u_and_h = co_await deliver_n("h-", 15);
    CO_ASSERT_EQ(u_and_h.size(), 15u);
    running.insert(running.end(), u_and_h.begin(), u_and_h.end());
    EXPECT_EQ(co_await complete(c, running), 19);
    EXPECT_EQ(co_await count(c, "XLEN", keys.streams[2]), 1) << "h-14, never delivered, stays";
    EXPECT_TRUE((co_await b.pending(keys, 2, 100, 0ms)).empty());
  });
}

// The trim bound is exact to the sequence number: ids within one millisecond, all delivered ones
// completed, the next undelivered one stays.
TEST_F(broker_test, complete_trims_up_to_the_last_delivered_entry_and_not_one_further) {
  with_broker([&](tasks::broker& b, transport::connection& c) -> awaitable<void> {
    co_await b.load_scripts();
    for (int i = 1; i <= 20; ++i) co_await c.call("XADD", keys.streams[2], "5-" + std::to_string(i), "task", "x");
    transport::stream_offset from[] = {{keys.streams[2], ">"}};
    auto got = co_await transport::xreadgroup(c, tasks::consumer_group, "a", from, {.count = 18});
    CO_ASSERT_EQ(got.size(), 1u);
    std::vector<std::string> ids;
    for (auto& e : got[0].entries) ids.push_back(e.id);
    CO_ASSERT_EQ(ids.size(), 18u);
    EXPECT_EQ(co_await complete(c, ids), 18);
    std::vector<std::string> expected{"5-19", "5-20"};
    EXPECT_EQ(co_await entry_ids(c), expected);
  });
}

TEST_F(broker_test, result_reads_what_a_completion_wrote) {
  with_broker([&](tasks::broker& b, transport::connection& c) -> awaitable<void> {
    EXPECT_FALSE((co_await b.result(keys, "t-1")).has_value());
    co_await b.load_scripts();
    std::vector<std::string> ids{"t-1"};
    auto entries = co_await deliver(b, ids);
    CO_ASSERT_EQ(entries.size(), 1u);
    transport::request req;
    tasks::broker::add_result(req, keys, "t-1", "{\"ok\":true}", 60s);
    tasks::broker::add_settle(req, keys, 2, entries, {});
    auto replies = co_await c.exec(std::move(req));
    for (auto& r : replies) EXPECT_FALSE(r.is_error()) << r.text;
    auto stored = co_await b.result(keys, "t-1");
    EXPECT_EQ(stored, std::optional<std::string>("{\"ok\":true}"));
    EXPECT_EQ(co_await count(c, "XLEN", keys.streams[2]), 0);
    EXPECT_TRUE((co_await b.pending(keys, 2, 10, 0ms)).empty());
  });
}

TEST_F(broker_test, requeue_dead_moves_each_dead_letter_back_once) {
  with_broker([&](tasks::broker& b, transport::connection& c) -> awaitable<void> {
    std::vector<std::string> ids{"q-1"};
    auto entries = co_await deliver(b, ids);
    CO_ASSERT_EQ(entries.size(), 1u);
    auto task = make_task("q-1", tasks::priority::high);
    task.attempt = 5;
    auto flat = task.to_fields();
    std::vector<transport::field_view> fields;
    for (std::size_t i = 0; i + 1 < flat.size(); i += 2) fields.push_back({flat[i], flat[i + 1]});
    tasks::burial why{.reason = "max attempts", .error = "boom", .attempts = 5, .worker = "a"};
    co_await b.dead_letter(keys, 2, entries[0], fields, why);
    auto dead = co_await b.dead_letters(keys, "-", "+", 10);
    CO_ASSERT_EQ(dead.size(), 1u);
    task.attempt = 1;
    std::string packed = task.encode();
    tasks::broker::requeue_item items[] = {{dead[0].id, task.priority, packed}};
    EXPECT_EQ(co_await b.requeue_dead(keys, items), 1u);
    EXPECT_EQ(co_await b.requeue_dead(keys, items), 0u) << "a dead letter already requeued is not requeued again";
    EXPECT_EQ(co_await count(c, "XLEN", keys.dead), 0);
    std::size_t order[] = {0, 1, 2, 3};
    auto back = co_await b.fetch(keys, order, "b", 10);
    CO_ASSERT_EQ(back.size(), 1u);
    EXPECT_EQ(back[0].stream, keys.streams[1]) << "back in its priority's stream";
    auto again = tasks::envelope::from_fields(back[0].entries.at(0).fields);
    EXPECT_EQ(again.id, "q-1");
    EXPECT_EQ(again.attempt, 1u);
  });
}

// More entries than one ZADD/XDEL slice of the script (500) and than Lua's unpack() could take
// at once: every one is moved.
TEST_F(broker_test, retry_moves_a_batch_larger_than_the_scripts_slices) {
  with_broker([&](tasks::broker& b, transport::connection& c) -> awaitable<void> {
    constexpr std::size_t n = 1200;
    std::vector<std::string> ids;
    for (std::size_t i = 0; i < n; ++i) ids.push_back("big-" + std::to_string(i));
    auto entries = co_await deliver(b, ids);
    CO_ASSERT_EQ(entries.size(), n);
    std::vector<std::string> members;
    for (auto& id : ids) members.push_back(make_task(id).to_delayed_member());
    std::vector<tasks::broker::retry_item> items;
    for (std::size_t i = 0; i < n; ++i) items.push_back({entries[i], static_cast<std::int64_t>(1000 + i), members[i]});
    auto moved = co_await b.retry(keys, 2, items);
    EXPECT_EQ(moved, std::vector<bool>(n, true));
    EXPECT_EQ(co_await count(c, "ZCARD", keys.delayed), static_cast<std::int64_t>(n));
    EXPECT_EQ(co_await count(c, "XLEN", keys.streams[2]), 0);
  });
}
