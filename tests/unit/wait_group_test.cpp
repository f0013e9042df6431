// Unit tests of the strand-local coordination helpers (engine/notifier.hpp, wait_group.hpp) that
// the worker's roles stop with: no server, one io_context.
#include <sagaflow/engine/wait_group.hpp>

#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <gtest/gtest.h>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using sagaflow::awaitable;

// A coroutine function, not a lambda called in place: a lambda coroutine's captures die with the
// closure, before the coroutine runs.
awaitable<void> wait_then(sagaflow::notifier& go, bool fail) {
  co_await go.wait();
  if (fail) throw std::runtime_error("failed on purpose");
}

// Runs what is ready; restart() first, since an io_context that ran out of work stays stopped.
void poll_ready(asio::io_context& io) {
  io.restart();
  io.poll();
}

TEST(notifier, notify_all_wakes_every_waiter_and_is_not_sticky) {
  asio::io_context io;
  sagaflow::notifier n(io.get_executor());
  int woken = 0;
  for (int i = 0; i < 3; ++i)
    asio::co_spawn(io, [&]() -> awaitable<void> {
      co_await n.wait();
      ++woken;
    }, asio::detached);
  poll_ready(io);
  EXPECT_EQ(woken, 0);
  n.notify_all();
  poll_ready(io);
  EXPECT_EQ(woken, 3);
  // A wait after the notification waits for the next one.
  asio::co_spawn(io, [&]() -> awaitable<void> {
    co_await n.wait();
    ++woken;
  }, asio::detached);
  poll_ready(io);
  EXPECT_EQ(woken, 3);
  n.notify_all();
  poll_ready(io);
  EXPECT_EQ(woken, 4);
}

TEST(wakeup, wake_cuts_a_sleep_short_and_the_time_ends_it_otherwise) {
  asio::io_context io;
  sagaflow::wakeup w(io.get_executor());
  int rounds = 0;
  asio::co_spawn(io, [&]() -> awaitable<void> {
    co_await w.sleep_until(sagaflow::steady_clock::now() + 1h);
    ++rounds;
    co_await w.sleep_until(sagaflow::steady_clock::now() + 5ms);
    ++rounds;
  }, asio::detached);
  poll_ready(io);
  EXPECT_EQ(rounds, 0);
  w.wake();
  io.restart();
  io.run_for(2s);
  EXPECT_EQ(rounds, 2);
}

TEST(wait_group, wait_completes_when_the_last_member_ends_and_reports_failures) {
  asio::io_context io;
  auto strand = asio::make_strand(io.get_executor());
  sagaflow::wait_group group(strand);
  sagaflow::notifier go(strand);
  bool waited = false;
  auto before = sagaflow::unhandled_exception_count();
  group.spawn(wait_then(go, false), "first");
  group.spawn(wait_then(go, true), "second");
  asio::co_spawn(strand, [&]() -> awaitable<void> {
    co_await group.wait();
    waited = true;
  }, asio::detached);
  poll_ready(io);
  EXPECT_EQ(group.running(), 2u);
  EXPECT_FALSE(waited);
  asio::post(strand, [&] { go.notify_all(); });
  poll_ready(io);
  EXPECT_TRUE(waited);
  EXPECT_EQ(group.running(), 0u);
  EXPECT_EQ(sagaflow::unhandled_exception_count(), before + 1);
}

TEST(wait_group, wait_on_an_empty_group_completes_at_once) {
  asio::io_context io;
  sagaflow::wait_group group(io.get_executor());
  bool waited = false;
  asio::co_spawn(io, [&]() -> awaitable<void> {
    co_await group.wait();
    waited = true;
  }, asio::detached);
  poll_ready(io);
  EXPECT_TRUE(waited);
}

}  // namespace
