// Unit tests of the connection's bookkeeping without a server: replies matched to requests in
// order, write batching, deadlines and the watchdog's verdicts, cancellation, connection loss.
#include <sagaflow/transport/detail/multiplexer.hpp>

#include <gtest/gtest.h>

#include <boost/asio/error.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace std::chrono_literals;
using boost::system::error_code;
using sagaflow::transport::request;
using sagaflow::transport::response;
using sagaflow::transport::detail::multiplexer;
namespace resp = sagaflow::transport::resp;
using error_enum = sagaflow::transport::error;

const auto t0 = multiplexer::time_point{} + 1h;
constexpr auto command_timeout = 1s;

// What a request's handler was called with; `rank` says which completion of the test it was.
struct outcome {
  int calls = 0;
  int rank = 0;
  error_code ec;
  std::vector<std::string> replies;  // integers as their digits
};

struct harness {
  multiplexer mux;
  std::uint64_t next_id = 1;
  int completions = 0;

  explicit harness(std::size_t max_write_batch = 4 * 1024 * 1024) : mux(command_timeout, max_write_batch) {}

  multiplexer::handler record(outcome& o) {
    return multiplexer::handler([&o, this](error_code ec, response r) {
      ++o.calls;
      o.rank = ++completions;
      o.ec = ec;
      for (auto& v : r) o.replies.push_back(v.type == resp::type::integer ? std::to_string(v.integer) : v.text);
    });
  }
  // Adds `req` at t0 and returns its id.
  std::uint64_t add(request req, outcome& o, multiplexer::time_point now = t0) {
    auto id = next_id++;
    (void)mux.add(id, std::move(req), record(o), now);
    return id;
  }
  // The replies the server sends, as RESP bytes, handed over one by one as the read loop does.
  // False when the multiplexer refused one (no written request waits for it).
  bool read(std::string_view bytes) {
    resp::parser parser;
    while (!bytes.empty()) {
      auto r = parser.feed(bytes);
      bytes.remove_prefix(r.consumed);
      EXPECT_EQ(r.error, resp::parse_error::none);
      if (!r.complete) {
        ADD_FAILURE() << "a test reply is incomplete";
        return false;
      }
      if (!mux.on_reply(parser.take())) return false;
    }
    return true;
  }
  // Writes whatever is queued and reports the write done, as the connection's writer does.
  std::string write() {
    std::string bytes(mux.prepare_write());
    mux.commit_write();
    return bytes;
  }
};

request get(std::string_view key) {
  request r;
  r.push("GET", key);
  return r;
}

request pipeline(std::size_t n) {
  request r;
  for (std::size_t i = 0; i < n; ++i) r.push("INCR", "k");
  return r;
}

// --- ordering ---------------------------------------------------------------------------------

TEST(multiplexer, replies_go_to_requests_in_order_across_several_writes) {
  harness h;
  outcome a, b, c;
  h.add(get("a"), a);
  EXPECT_EQ(h.write(), get("a").payload());
  h.add(pipeline(2), b);
  h.add(get("c"), c);
  EXPECT_EQ(h.write(), pipeline(2).payload() + get("c").payload());

  ASSERT_TRUE(h.read("+ra\r\n+rb1\r\n"));
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(a.replies, (std::vector<std::string>{"ra"}));
  EXPECT_EQ(b.calls, 0) << "b has two commands and got one reply";
  ASSERT_TRUE(h.read("$3\r\nrb2\r\n+rc\r\n"));
  EXPECT_EQ(b.replies, (std::vector<std::string>{"rb1", "rb2"}));
  EXPECT_EQ(c.replies, (std::vector<std::string>{"rc"}));
  EXPECT_FALSE(b.ec);
  EXPECT_FALSE(c.ec);
  EXPECT_EQ(a.rank, 1);
  EXPECT_EQ(b.rank, 2);
  EXPECT_EQ(c.rank, 3);
}

TEST(multiplexer, a_pipeline_of_n_commands_completes_with_exactly_n_replies) {
  harness h;
  outcome p;
  constexpr std::size_t n = 100;
  h.add(pipeline(n), p);
  h.write();
  std::string bytes;
  for (std::size_t i = 1; i < n; ++i) bytes += ":" + std::to_string(i) + "\r\n";
  ASSERT_TRUE(h.read(bytes));
  EXPECT_EQ(p.calls, 0) << "completed before its last reply";
  ASSERT_TRUE(h.read(":100\r\n"));
  ASSERT_EQ(p.calls, 1);
  ASSERT_EQ(p.replies.size(), n);
  for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(p.replies[i], std::to_string(i + 1));
  EXPECT_FALSE(h.read("+extra\r\n")) << "a reply beyond the N expected must be refused";
}

TEST(multiplexer, replies_of_a_pipeline_keep_their_order) {
  harness h;
  outcome p;
  h.add(pipeline(3), p);
  h.write();
  ASSERT_TRUE(h.read("+one\r\n+two\r\n+three\r\n"));
  EXPECT_EQ(p.replies, (std::vector<std::string>{"one", "two", "three"}));
}

TEST(multiplexer, a_reply_with_no_written_request_waiting_is_refused) {
  harness h;
  EXPECT_FALSE(h.read("+OK\r\n"));
  outcome a;
  h.add(get("a"), a);  // queued, not written: the reply cannot be its
  EXPECT_FALSE(h.read("+OK\r\n"));
  EXPECT_EQ(a.calls, 0);
}

TEST(multiplexer, a_push_is_not_a_reply) {
  harness h;
  EXPECT_TRUE(h.read(">2\r\n+invalidate\r\n+k\r\n")) << "a push with nothing written is not an error";
  outcome a;
  h.add(get("a"), a);
  h.write();
  ASSERT_TRUE(h.read(">2\r\n+invalidate\r\n+k\r\n+ra\r\n"));
  EXPECT_EQ(a.replies, (std::vector<std::string>{"ra"}));
}

TEST(multiplexer, a_reply_may_arrive_before_its_write_completes) {
  harness h;
  outcome a;
  h.add(get("a"), a);
  EXPECT_FALSE(h.mux.prepare_write().empty());
  ASSERT_TRUE(h.read("+ra\r\n"));
  EXPECT_EQ(a.replies, (std::vector<std::string>{"ra"}));
  h.mux.commit_write();
  EXPECT_TRUE(h.mux.prepare_write().empty());
}

// --- write batching ---------------------------------------------------------------------------

TEST(multiplexer, requests_queued_while_a_write_is_in_flight_go_together_in_the_next_write) {
  harness h;
  outcome a, b, c;
  h.add(get("a"), a);
  EXPECT_EQ(h.mux.prepare_write(), get("a").payload());
  h.add(get("b"), b);
  h.add(get("c"), c);
  EXPECT_TRUE(h.mux.prepare_write().empty()) << "one write at a time";
  h.mux.commit_write();
  EXPECT_EQ(h.mux.prepare_write(), get("b").payload() + get("c").payload());
  h.mux.commit_write();
  EXPECT_TRUE(h.mux.prepare_write().empty()) << "nothing left to write";
}

TEST(multiplexer, a_write_takes_no_more_requests_once_it_reaches_max_write_batch) {
  const std::size_t one = get("a").payload().size();
  harness h(2 * one);
  outcome a, b, c;
  h.add(get("a"), a);
  h.add(get("b"), b);
  h.add(get("c"), c);
  EXPECT_EQ(h.write(), get("a").payload() + get("b").payload()) << "under the limit after a: b goes too; then at it";
  EXPECT_EQ(h.write(), get("c").payload());
}

TEST(multiplexer, a_request_larger_than_max_write_batch_is_written_alone) {
  harness h(4);
  outcome a, b;
  h.add(pipeline(3), a);
  h.add(get("b"), b);
  EXPECT_EQ(h.write(), pipeline(3).payload());
  EXPECT_EQ(h.write(), get("b").payload());
}

// --- deadlines and the watchdog ---------------------------------------------------------------

TEST(multiplexer, a_deadline_is_the_request_timeout_or_command_timeout_plus_block_time) {
  harness h;
  outcome a, b;
  EXPECT_EQ(h.mux.add(1, get("a"), h.record(a), t0), t0 + command_timeout);
  request blocking = get("b");
  blocking.timeout = 100ms;
  blocking.block_time = 50ms;
  EXPECT_EQ(h.mux.add(2, std::move(blocking), h.record(b), t0), t0 + 150ms);
}

TEST(multiplexer, the_watchdog_is_moved_only_for_an_earlier_deadline) {
  harness h;
  outcome a, b, c;
  EXPECT_EQ(h.mux.add(1, get("a"), h.record(a), t0), t0 + 1s);
  EXPECT_EQ(h.mux.add(2, get("b"), h.record(b), t0 + 10ms), std::nullopt);
  request quick = get("c");
  quick.timeout = 100ms;
  EXPECT_EQ(h.mux.add(3, std::move(quick), h.record(c), t0), t0 + 100ms);
}

TEST(multiplexer, an_unwritten_request_past_its_deadline_fails_with_timeout_and_is_never_written) {
  harness h;
  outcome a, b;
  request quick = get("a");
  quick.timeout = 100ms;
  h.add(std::move(quick), a);
  h.add(get("b"), b);
  auto verdict = h.mux.on_watchdog(t0 + 100ms);
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(a.ec, error_enum::timeout);
  EXPECT_EQ(b.calls, 0);
  EXPECT_FALSE(verdict.stuck) << "nothing was written: the link is not to blame";
  EXPECT_EQ(verdict.next, t0 + 1s) << "b's deadline is next";
  EXPECT_EQ(h.write(), get("b").payload());
}

TEST(multiplexer, an_overdue_written_request_fails_with_timeout_and_the_link_is_stuck) {
  harness h;
  outcome a, b;
  h.add(get("a"), a);
  h.add(get("b"), b, t0 + 500ms);
  h.write();
  auto verdict = h.mux.on_watchdog(t0 + 1s);
  EXPECT_TRUE(verdict.stuck);
  EXPECT_EQ(verdict.command, "GET");
  EXPECT_EQ(a.ec, error_enum::timeout);
  EXPECT_EQ(b.calls, 0) << "only the oldest written request is judged";
  EXPECT_EQ(verdict.next, t0 + 1500ms);
  // Until the link is dropped, a's reply still takes its place: b gets its own.
  ASSERT_TRUE(h.read("+late\r\n+rb\r\n"));
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.replies, (std::vector<std::string>{"rb"}));
}

TEST(multiplexer, a_written_request_stays_until_its_replies_arrive_whatever_its_deadline) {
  harness h;
  outcome slow, quick;
  request blocking = get("slow");
  blocking.block_time = 5s;
  h.add(std::move(blocking), slow);
  request q = get("quick");
  q.timeout = 100ms;
  h.add(std::move(q), quick);
  h.write();
  // quick's deadline has passed, but it cannot be answered before slow, which is not overdue.
  auto verdict = h.mux.on_watchdog(t0 + 100ms);
  EXPECT_FALSE(verdict.stuck);
  EXPECT_EQ(quick.calls, 0);
  EXPECT_EQ(verdict.next, t0 + 6s);
  ASSERT_TRUE(h.read("+rs\r\n+rq\r\n"));
  EXPECT_EQ(slow.replies, (std::vector<std::string>{"rs"}));
  EXPECT_EQ(quick.replies, (std::vector<std::string>{"rq"}));
}

TEST(multiplexer, a_written_request_that_failed_with_its_link_is_not_judged_by_the_watchdog) {
  harness h;
  outcome a;
  h.add(get("a"), a);
  h.write();
  h.mux.on_connection_lost(boost::asio::error::eof);
  EXPECT_EQ(a.ec, error_enum::connection_lost);
  auto verdict = h.mux.on_watchdog(t0 + 1s);
  EXPECT_FALSE(verdict.stuck) << "the new link is not to blame";
  EXPECT_EQ(verdict.next, std::nullopt) << "nothing is left to watch";
  EXPECT_EQ(a.calls, 1);
}

TEST(multiplexer, the_watchdog_asks_for_nothing_when_nothing_waits) {
  harness h;
  outcome a;
  h.add(get("a"), a);
  h.write();
  ASSERT_TRUE(h.read("+ra\r\n"));
  auto verdict = h.mux.on_watchdog(t0 + 1s);
  EXPECT_FALSE(verdict.stuck);
  EXPECT_EQ(verdict.next, std::nullopt);
  EXPECT_FALSE(a.ec) << "completed before the watchdog: not failed again";
  EXPECT_EQ(a.calls, 1);
}

TEST(multiplexer, after_the_watchdog_fires_a_later_request_arms_it_again) {
  harness h;
  outcome a, b;
  h.add(get("a"), a);
  h.write();
  ASSERT_TRUE(h.read("+ra\r\n"));
  EXPECT_EQ(h.mux.on_watchdog(t0 + 1s).next, std::nullopt);
  EXPECT_EQ(h.mux.add(9, get("b"), h.record(b), t0 + 2s), t0 + 3s);
}

// --- cancellation -----------------------------------------------------------------------------

TEST(multiplexer, a_cancelled_unwritten_request_is_dropped_and_never_written) {
  harness h;
  outcome a, b;
  auto id = h.add(get("a"), a);
  h.add(get("b"), b);
  h.mux.cancel(id);
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(a.ec, boost::asio::error::operation_aborted);
  EXPECT_EQ(h.write(), get("b").payload());
  ASSERT_TRUE(h.read("+rb\r\n"));
  EXPECT_EQ(b.replies, (std::vector<std::string>{"rb"}));
  EXPECT_EQ(h.mux.on_watchdog(t0 + 1s).next, std::nullopt) << "a holds no deadline once cancelled";
  EXPECT_EQ(a.calls, 1);
}

TEST(multiplexer, a_cancelled_written_request_has_its_replies_read_and_discarded) {
  harness h;
  outcome a, b;
  auto id = h.add(pipeline(2), a);
  h.add(get("b"), b);
  h.write();
  h.mux.cancel(id);
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(a.ec, boost::asio::error::operation_aborted);
  EXPECT_TRUE(a.replies.empty());
  ASSERT_TRUE(h.read("+ra1\r\n+ra2\r\n"));
  EXPECT_EQ(b.calls, 0) << "b got a's replies";
  ASSERT_TRUE(h.read("+rb\r\n"));
  EXPECT_EQ(b.replies, (std::vector<std::string>{"rb"}));
  EXPECT_EQ(a.calls, 1) << "completed twice";
  EXPECT_TRUE(a.replies.empty());
}

TEST(multiplexer, cancelling_a_completed_or_unknown_request_does_nothing) {
  harness h;
  outcome a;
  auto id = h.add(get("a"), a);
  h.write();
  ASSERT_TRUE(h.read("+ra\r\n"));
  h.mux.cancel(id);
  h.mux.cancel(12345);
  EXPECT_EQ(a.calls, 1);
  EXPECT_FALSE(a.ec);
}

TEST(multiplexer, a_cancelled_written_request_still_holds_the_line_for_the_watchdog) {
  harness h;
  outcome a, b;
  auto id = h.add(get("a"), a);
  h.add(get("b"), b, t0 + 500ms);
  h.write();
  h.mux.cancel(id);
  // The watchdog looks after live requests only (b), but when it fires, a's replies are still
  // overdue and b cannot be answered before them: the link is stuck.
  auto first = h.mux.on_watchdog(t0 + 10ms);
  EXPECT_EQ(first.next, t0 + 1500ms);
  auto verdict = h.mux.on_watchdog(t0 + 1500ms);
  EXPECT_TRUE(verdict.stuck);
  EXPECT_EQ(b.calls, 0) << "b fails when the link is dropped, not here";
  h.mux.on_connection_lost(boost::asio::error::connection_reset);
  EXPECT_EQ(b.ec, error_enum::connection_lost);
  EXPECT_EQ(a.calls, 1);
}

// --- connection loss and closing --------------------------------------------------------------

TEST(multiplexer, a_lost_connection_fails_written_requests_and_keeps_unwritten_ones_for_the_next) {
  harness h;
  outcome a, b;
  h.add(get("a"), a);
  EXPECT_FALSE(h.mux.prepare_write().empty());
  h.add(get("b"), b);  // queued while a's write is in flight
  h.mux.on_connection_lost(boost::asio::error::eof);
  EXPECT_EQ(a.ec, error_enum::connection_lost) << "a may have run";
  EXPECT_EQ(b.calls, 0);
  h.mux.commit_write();  // the old link's write ends (aborted)
  EXPECT_EQ(h.write(), get("b").payload()) << "b goes on the next link";
  ASSERT_TRUE(h.read("+rb\r\n"));
  EXPECT_EQ(b.replies, (std::vector<std::string>{"rb"}));
}

TEST(multiplexer, a_corrupt_reply_stream_fails_written_requests_with_protocol_error) {
  harness h;
  outcome a;
  h.add(get("a"), a);
  h.write();
  h.mux.on_connection_lost(make_error_code(error_enum::protocol_error));
  EXPECT_EQ(a.ec, error_enum::protocol_error);
}

TEST(multiplexer, fail_all_fails_unwritten_requests_then_written_ones) {
  harness h;
  outcome written, queued;
  h.add(get("a"), written);
  h.write();
  h.add(get("b"), queued);
  h.mux.fail_all(make_error_code(error_enum::closed));
  EXPECT_EQ(written.ec, error_enum::closed);
  EXPECT_EQ(queued.ec, error_enum::closed);
  EXPECT_EQ(queued.rank, 1);
  EXPECT_EQ(written.rank, 2);
  EXPECT_TRUE(h.mux.prepare_write().empty());
  EXPECT_FALSE(h.read("+late\r\n")) << "no request is left to take a reply";
}

TEST(multiplexer, drop_all_destroys_requests_without_completing_them) {
  harness h;
  auto token = std::make_shared<int>(0);
  int calls = 0;
  (void)h.mux.add(1, get("a"), multiplexer::handler([token, &calls](error_code, response) { ++calls; }), t0);
  h.write();
  (void)h.mux.add(2, get("b"), multiplexer::handler([token, &calls](error_code, response) { ++calls; }), t0);
  EXPECT_EQ(token.use_count(), 3);
  h.mux.drop_all();
  EXPECT_EQ(token.use_count(), 1) << "the handlers are destroyed";
  EXPECT_EQ(calls, 0);
}

// --- requests completed at once ---------------------------------------------------------------

TEST(multiplexer, an_empty_request_completes_at_once_with_no_replies) {
  harness h;
  outcome a;
  EXPECT_EQ(h.mux.add(1, request{}, h.record(a), t0), std::nullopt) << "no deadline to watch";
  EXPECT_EQ(a.calls, 1);
  EXPECT_FALSE(a.ec);
  EXPECT_TRUE(h.mux.prepare_write().empty());
}

TEST(multiplexer, an_incomplete_request_fails_with_invalid_argument_and_is_never_written) {
  harness h;
  outcome a;
  request r;
  r.begin(3).arg("SET").arg("k");  // one argument short
  EXPECT_EQ(h.mux.add(1, std::move(r), h.record(a), t0), std::nullopt);
  EXPECT_EQ(a.ec, boost::asio::error::invalid_argument);
  EXPECT_TRUE(h.mux.prepare_write().empty());
}

}  // namespace
