// The typed command helpers against a real redis-server, under RESP2 and RESP3 alike.
#include "redis_server.hpp"

#include <sagaflow/transport/commands.hpp>

#include <gtest/gtest.h>

namespace asio = boost::asio;
namespace transport = sagaflow::transport;
using sagaflow::awaitable;
using sagaflow::testing::redis_server;
using sagaflow::testing::run;

namespace {

class commands_test : public ::testing::TestWithParam<int> {
 protected:
  // Runs `body` with a connected connection, closed afterwards.
  template <typename Body>
  void with_connection(Body body) {
    run([&]() -> awaitable<void> {
      auto c = server.config();
      c.protocol = GetParam();
      auto conn = transport::connection::create(co_await asio::this_coro::executor, c);
      co_await conn->connect();
      co_await body(*conn);
      conn->close();
    }());
  }
  redis_server server;
};

std::vector<std::string> ids_of(const std::vector<transport::stream_entry>& entries) {
  std::vector<std::string> ids;
  for (auto& e : entries) ids.push_back(e.id);
  return ids;
}

}  // namespace

TEST_P(commands_test, consumer_group_round_trip_leaves_nothing_pending) {
  with_connection([](transport::connection& c) -> awaitable<void> {
    EXPECT_TRUE(co_await transport::xgroup_create(c, "jobs", "workers", "0"));
    EXPECT_FALSE(co_await transport::xgroup_create(c, "jobs", "workers", "0")) << "BUSYGROUP must be tolerated";
    std::vector<std::string> added;
    for (int i = 0; i < 3; ++i) {
      std::string n = std::to_string(i);
      transport::field_view fields[] = {{"name", "job"}, {"n", n}};
      added.push_back(co_await transport::xadd(c, "jobs", fields));
    }
    transport::stream_offset from[] = {{"jobs", ">"}};
    auto batches = co_await transport::xreadgroup(c, "workers", "w1", from, {.count = 10});
    EXPECT_EQ(batches.size(), 1u);
    if (batches.empty()) co_return;
    EXPECT_EQ(batches[0].stream, "jobs");
    EXPECT_EQ(ids_of(batches[0].entries), added);
    EXPECT_EQ(*batches[0].entries[2].find("n"), "2");
    EXPECT_EQ(batches[0].entries[0].find("missing"), nullptr);

    auto pending = co_await transport::xpending(c, "jobs", "workers");
    EXPECT_EQ(pending.count, 3);
    EXPECT_EQ(pending.smallest, added.front());
    EXPECT_EQ(pending.largest, added.back());
    CO_ASSERT_EQ(pending.consumers.size(), 1u);
    EXPECT_EQ(pending.consumers[0].first, "w1");
    EXPECT_EQ(pending.consumers[0].second, 3);

    auto detail = co_await transport::xpending(c, "jobs", "workers", transport::pending_range{});
    EXPECT_EQ(detail.size(), 3u);
    EXPECT_EQ(detail[0].deliveries, 1);
    EXPECT_EQ(detail[0].consumer, "w1");

    EXPECT_EQ(co_await transport::xack(c, "jobs", "workers", added), 3);
    EXPECT_EQ((co_await transport::xpending(c, "jobs", "workers")).count, 0);
    EXPECT_EQ(co_await transport::xdel(c, "jobs", added), 3);
    EXPECT_EQ(co_await transport::xlen(c, "jobs"), 0);

    auto groups = co_await transport::xinfo_groups(c, "jobs");
    CO_ASSERT_EQ(groups.size(), 1u);
    EXPECT_EQ(groups[0].name, "workers");
    EXPECT_EQ(groups[0].consumers, 1);
    EXPECT_EQ(groups[0].pending, 0);
    EXPECT_EQ(groups[0].last_delivered_id, added.back());
  });
}

TEST_P(commands_test, xreadgroup_over_several_streams_and_block_timeout) {
  with_connection([](transport::connection& c) -> awaitable<void> {
    for (auto key : {"p0", "p1"}) co_await transport::xgroup_create(c, key, "g", "0");
    transport::field_view f[] = {{"k", "v"}};
    co_await transport::xadd(c, "p1", f);
    co_await transport::xadd(c, "p0", f);
    transport::stream_offset from[] = {{"p0", ">"}, {"p1", ">"}};
    auto batches = co_await transport::xreadgroup(c, "g", "w", from, {.count = 5});
    CO_ASSERT_EQ(batches.size(), 2u);
    EXPECT_EQ(batches[0].stream, "p0");
    EXPECT_EQ(batches[1].stream, "p1");
    // Nothing new: BLOCK returns empty after its time, not an error.
    auto none = co_await transport::xreadgroup(c, "g", "w", from, {.count = 5, .block = std::chrono::milliseconds(50)});
    EXPECT_TRUE(none.empty());
    // Pending entries of this consumer are read again with id 0.
    transport::stream_offset again[] = {{"p0", "0"}, {"p1", "0"}};
    auto mine = co_await transport::xreadgroup(c, "g", "w", again, {});
    CO_ASSERT_EQ(mine.size(), 2u);
    EXPECT_EQ(mine[0].entries.size(), 1u);
  });
}

TEST_P(commands_test, xautoclaim_and_xclaim_move_entries_between_consumers) {
  with_connection([](transport::connection& c) -> awaitable<void> {
    co_await transport::xgroup_create(c, "s", "g", "0");
    transport::field_view f[] = {{"k", "v"}};
    std::vector<std::string> ids;
    for (int i = 0; i < 4; ++i) ids.push_back(co_await transport::xadd(c, "s", f));
    transport::stream_offset from[] = {{"s", ">"}};
    co_await transport::xreadgroup(c, "g", "dead-worker", from, {.count = 4});
    // One entry disappears from the stream while pending: XAUTOCLAIM reports it as deleted.
    std::vector<std::string> gone{ids[3]};
    co_await transport::xdel(c, "s", gone);

    auto claimed = co_await transport::xautoclaim(c, "s", "g", "rescuer", std::chrono::milliseconds(0), "0-0", 2);
    EXPECT_EQ(ids_of(claimed.entries), (std::vector<std::string>{ids[0], ids[1]}));
    EXPECT_NE(claimed.next_start, "0-0");
    auto rest = co_await transport::xautoclaim(c, "s", "g", "rescuer", std::chrono::milliseconds(0), claimed.next_start, 10);
    EXPECT_EQ(ids_of(rest.entries), (std::vector<std::string>{ids[2]}));
    EXPECT_EQ(rest.deleted, gone);
    EXPECT_EQ(rest.next_start, "0-0");

    std::vector<std::string> one{ids[0]};
    auto back = co_await transport::xclaim(c, "s", "g", "dead-worker", std::chrono::milliseconds(0), one);
    EXPECT_EQ(ids_of(back), one);
    auto by_consumer = co_await transport::xpending(c, "s", "g", transport::pending_range{.consumer = "dead-worker"});
    CO_ASSERT_EQ(by_consumer.size(), 1u);
    EXPECT_GE(by_consumer[0].deliveries, 2);
    // Not idle long enough: nothing is claimed.
    auto fresh = co_await transport::xautoclaim(c, "s", "g", "x", std::chrono::minutes(10));
    EXPECT_TRUE(fresh.entries.empty());
  });
}

TEST_P(commands_test, xadd_trims_with_maxlen_and_minid) {
  with_connection([](transport::connection& c) -> awaitable<void> {
    transport::field_view f[] = {{"k", "v"}};
    std::vector<std::string> ids;
    for (int i = 0; i < 10; ++i)
      ids.push_back(co_await transport::xadd(c, "t", f, {.trim = {.by = transport::trim_options::strategy::maxlen, .threshold = "5", .exact = true}}));
    EXPECT_EQ(co_await transport::xlen(c, "t"), 5);
    co_await transport::xadd(c, "t", f, {.trim = {.by = transport::trim_options::strategy::minid, .threshold = ids[8], .exact = true}});
    EXPECT_EQ(co_await transport::xlen(c, "t"), 3);  // ids[8], ids[9], the new one
    auto id = co_await transport::xadd(c, "absent", f, {.no_mkstream = true});
    EXPECT_TRUE(id.empty());
    transport::request explicit_id;
    transport::add_xadd(explicit_id, "t", f, {.id = "1-1"});
    auto replies = co_await c.exec(explicit_id);
    EXPECT_TRUE(replies[0].is_error()) << "an id below the top must be refused";
  });
}

TEST_P(commands_test, sorted_sets_strings_and_hashes) {
  with_connection([](transport::connection& c) -> awaitable<void> {
    transport::scored_member members[] = {{300, "c"}, {100, "a"}, {200, "b"}};
    EXPECT_EQ(co_await transport::zadd(c, "delayed", members), 3);
    auto due = co_await transport::zrange_by_score(c, "delayed", "-inf", "250", 0, 10);
    CO_ASSERT_EQ(due.size(), 2u);
    EXPECT_EQ(due[0].member, "a");
    EXPECT_DOUBLE_EQ(due[0].score, 100);
    EXPECT_EQ(due[1].member, "b");
    auto limited = co_await transport::zrange_by_score(c, "delayed", "-inf", "+inf", 1, 1);
    CO_ASSERT_EQ(limited.size(), 1u);
    EXPECT_EQ(limited[0].member, "b");
    std::vector<std::string> remove{"a", "zz"};
    EXPECT_EQ(co_await transport::zrem(c, "delayed", remove), 1);

    EXPECT_TRUE(co_await transport::set_nx_px(c, "uniq", "task-1", std::chrono::seconds(10)));
    EXPECT_FALSE(co_await transport::set_nx_px(c, "uniq", "task-2", std::chrono::seconds(10)));
    auto ttl = co_await c.call("PTTL", "uniq");
    EXPECT_GT(ttl.integer, 0);
    EXPECT_LE(ttl.integer, 10'000);

    transport::field_view fields[] = {{"status", "running"}, {"step", "2"}};
    EXPECT_EQ(co_await transport::hset(c, "saga", fields), 2);
    auto all = co_await transport::hgetall(c, "saga");
    std::sort(all.begin(), all.end());
    CO_ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0], (std::pair<std::string, std::string>{"status", "running"}));
    EXPECT_EQ(all[1], (std::pair<std::string, std::string>{"step", "2"}));
    EXPECT_TRUE((co_await transport::hgetall(c, "no-such-hash")).empty());
  });
}

TEST_P(commands_test, evalsha_loads_the_script_on_noscript) {
  with_connection([](transport::connection& c) -> awaitable<void> {
    transport::script move("-- KEYS[1] from, KEYS[2] to; ARGV[1] member\n"
                       "if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then\n"
                       "  return redis.call('RPUSH', KEYS[2], ARGV[1])\n"
                       "end\n"
                       "return 0\n");
    EXPECT_EQ(move.sha1().size(), 40u);
    transport::scored_member m[] = {{1, "x"}};
    co_await transport::zadd(c, "{q}:from", m);
    std::string_view keys[] = {"{q}:from", "{q}:to"};
    std::string_view args[] = {"x"};
    auto first = co_await transport::evalsha(c, move, keys, args);  // not loaded yet: NOSCRIPT, load, retry
    EXPECT_EQ(first.integer, 1);
    auto again = co_await transport::evalsha(c, move, keys, args);
    EXPECT_EQ(again.integer, 0);
    co_await c.call("SCRIPT", "FLUSH");  // as after a server restart
    auto after_flush = co_await transport::evalsha(c, move, keys, args);
    EXPECT_EQ(after_flush.integer, 0);

    transport::script broken("return redis.call('NOSUCHCOMMAND')");
    try {
      co_await transport::evalsha(c, broken, {}, {});
      ADD_FAILURE() << "a failing script must throw";
    } catch (const transport::server_error& e) {
      EXPECT_EQ(e.command(), "EVALSHA");
    }
  });
}

TEST_P(commands_test, transactions_apply_all_or_report_the_refused_command) {
  with_connection([](transport::connection& c) -> awaitable<void> {
    transport::request tx;
    tx.push("INCR", "a").push("INCR", "a").push("GET", "a");
    auto replies = co_await transport::transaction(c, tx);
    CO_ASSERT_EQ(replies.size(), 3u);
    EXPECT_EQ(replies[1].integer, 2);
    EXPECT_EQ(replies[2].text, "2");

    transport::request bad;
    bad.push("INCR", "a").push("NOSUCHCOMMAND", "x");
    try {
      co_await transport::transaction(c, bad);
      ADD_FAILURE() << "EXECABORT expected";
    } catch (const transport::server_error& e) {
      EXPECT_EQ(e.command(), "NOSUCHCOMMAND");
    }
    EXPECT_EQ((co_await c.call("GET", "a")).text, "2") << "an aborted transaction applies nothing";
  });
}

INSTANTIATE_TEST_SUITE_P(resp, commands_test, ::testing::Values(2, 3),
                         [](const auto& info) { return "resp" + std::to_string(info.param); });
