// Unit tests of the engine's coroutine helpers (no server): spawn reports and counts what escapes
// a coroutine, with_timeout/with_deadline end an operation at the deadline but let an early
// result or failure through at once, stop_source wakes sleepers on other threads, and
// stop_on_signals reacts to a real signal sent to this process.
#include <sagaflow/engine/coro.hpp>
#include <sagaflow/engine/stop.hpp>

#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <csignal>
#include <optional>
#include <stdexcept>
#include <thread>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using sagaflow::awaitable;
using sagaflow::steady_clock;

// Generous bound for "at once": it only catches a wait for the (much longer) deadline or a hang.
constexpr auto hang = 5s;

// Runs `op` on a fresh io_context to completion (or fails after 30 s); rethrows its exception.
template <typename T>
T run(awaitable<T> op) {
  asio::io_context ctx;
  std::exception_ptr error;
  std::optional<std::conditional_t<std::is_void_v<T>, int, T>> result;
  bool done = false;
  if constexpr (std::is_void_v<T>) {
    asio::co_spawn(ctx, std::move(op), [&](std::exception_ptr e) {
      error = e;
      done = true;
    });
  } else {
    asio::co_spawn(ctx, std::move(op), [&](std::exception_ptr e, T v) {
      error = e;
      if (!e) result.emplace(std::move(v));
      done = true;
    });
  }
  ctx.run_for(30s);
  if (!done) throw std::runtime_error("coroutine did not finish in 30 s");
  if (error) std::rethrow_exception(error);
  if constexpr (!std::is_void_v<T>) return std::move(*result);
}

awaitable<int> value_after(steady_clock::duration d, int v) {
  co_await sagaflow::sleep_for(d);
  co_return v;
}

awaitable<void> fail_after(steady_clock::duration d, std::string what) {
  co_await sagaflow::sleep_for(d);
  throw std::runtime_error(what);
}

awaitable<int> fail_with_value_type_after(steady_clock::duration d) {
  co_await sagaflow::sleep_for(d);
  throw std::logic_error("early failure");
  co_return 0;
}

// Sleeps for `d`; records whether the sleep was cancelled (and rethrows that).
awaitable<void> sleep_noting_cancel(steady_clock::duration d, bool& cancelled) {
  try {
    co_await sagaflow::sleep_for(d);
  } catch (const boost::system::system_error& e) {
    cancelled = e.code() == asio::error::operation_aborted;
    throw;
  }
}

bool is_timed_out(const boost::system::system_error& e) { return e.code() == asio::error::timed_out; }

// --- spawn -------------------------------------------------------------------------------------

awaitable<void> throw_runtime() {
  co_await sagaflow::sleep_for(1ms);
  throw std::runtime_error("the disk is on fire");
}
awaitable<void> throw_aborted() {
  co_await sagaflow::sleep_for(1ms);
  throw boost::system::system_error(asio::error::operation_aborted);
}
awaitable<void> throw_other_system_error() {
  co_await sagaflow::sleep_for(1ms);
  throw boost::system::system_error(asio::error::connection_refused);
}
awaitable<void> throw_int() {
  co_await sagaflow::sleep_for(1ms);
  throw 42;
}
awaitable<void> succeed(bool& ran) {
  co_await sagaflow::sleep_for(1ms);
  ran = true;
}

TEST(spawn, logs_and_counts_each_exception_that_escapes_but_not_cancellation_or_success) {
  sagaflow::log::set_level(sagaflow::log::level::info);
  asio::io_context ctx;
  bool ran = false;
  const auto before = sagaflow::unhandled_exception_count();
  ::testing::internal::CaptureStderr();
  sagaflow::spawn(ctx.get_executor(), throw_runtime(), "burning-loop");
  sagaflow::spawn(ctx.get_executor(), throw_aborted(), "cancelled-loop");
  sagaflow::spawn(ctx.get_executor(), throw_other_system_error(), "refused-loop");
  sagaflow::spawn(ctx.get_executor(), throw_int(), "odd-loop");
  sagaflow::spawn(ctx.get_executor(), succeed(ran), "quiet-loop");
  ctx.run_for(hang);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(ran);
  EXPECT_EQ(sagaflow::unhandled_exception_count(), before + 3);
  EXPECT_NE(err.find("burning-loop failed: the disk is on fire"), std::string::npos) << err;
  EXPECT_NE(err.find("refused-loop failed: "), std::string::npos) << err;
  EXPECT_NE(err.find("odd-loop failed with a non-standard exception"), std::string::npos) << err;
  EXPECT_EQ(err.find("cancelled-loop"), std::string::npos) << "cancellation is how a loop ends: " << err;
  EXPECT_EQ(err.find("quiet-loop"), std::string::npos) << err;
}

// --- with_timeout / with_deadline --------------------------------------------------------------

TEST(with_timeout, returns_the_result_of_an_operation_that_finishes_in_time) {
  EXPECT_EQ(run(sagaflow::with_timeout(value_after(10ms, 42), 10s)), 42);
  bool cancelled = false;
  EXPECT_NO_THROW(run(sagaflow::with_timeout(sleep_noting_cancel(10ms, cancelled), 10s)));
  EXPECT_FALSE(cancelled);
}

TEST(with_timeout, cancels_an_operation_at_the_timeout_and_throws_timed_out) {
  bool cancelled = false;
  auto start = steady_clock::now();
  try {
    run(sagaflow::with_timeout(sleep_noting_cancel(30s, cancelled), 50ms));
    ADD_FAILURE() << "no timeout";
  } catch (const boost::system::system_error& e) {
    EXPECT_TRUE(is_timed_out(e)) << e.what();
  }
  auto took = steady_clock::now() - start;
  EXPECT_GE(took, 50ms);
  EXPECT_LT(took, hang) << "the operation was not cancelled";
  EXPECT_TRUE(cancelled) << "the operation must be cancelled, not left running";

  try {
    run(sagaflow::with_timeout(value_after(30s, 1), 50ms));
    ADD_FAILURE() << "no timeout";
  } catch (const boost::system::system_error& e) {
    EXPECT_TRUE(is_timed_out(e)) << e.what();
  }
}

TEST(with_timeout, an_early_failure_propagates_at_once_as_it_is) {
  auto start = steady_clock::now();
  try {
    run(sagaflow::with_timeout(fail_after(10ms, "early failure"), 20s));
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "early failure");
  }
  EXPECT_LT(steady_clock::now() - start, hang) << "waited for the deadline instead of failing at once";

  start = steady_clock::now();
  EXPECT_THROW(run(sagaflow::with_timeout(fail_with_value_type_after(10ms), 20s)), std::logic_error);
  EXPECT_LT(steady_clock::now() - start, hang);
}

TEST(with_deadline, finishes_before_or_times_out_at_an_absolute_time) {
  EXPECT_EQ(run(sagaflow::with_deadline(value_after(10ms, 7), steady_clock::now() + 10s)), 7);
  bool cancelled = false;
  auto deadline = steady_clock::now() + 80ms;
  try {
    run(sagaflow::with_deadline(sleep_noting_cancel(30s, cancelled), deadline));
    ADD_FAILURE() << "no timeout";
  } catch (const boost::system::system_error& e) {
    EXPECT_TRUE(is_timed_out(e)) << e.what();
  }
  EXPECT_GE(steady_clock::now(), deadline);
  EXPECT_TRUE(cancelled);
  // A deadline already past ends a slow operation at once.
  cancelled = false;
  auto start = steady_clock::now();
  EXPECT_THROW(run(sagaflow::with_deadline(sleep_noting_cancel(30s, cancelled), steady_clock::now() - 1s)),
               boost::system::system_error);
  EXPECT_LT(steady_clock::now() - start, hang);
  EXPECT_TRUE(cancelled);
  start = steady_clock::now();
  EXPECT_THROW(run(sagaflow::with_deadline(fail_after(1ms, "x"), steady_clock::now() + 20s)), std::runtime_error);
  EXPECT_LT(steady_clock::now() - start, hang) << "waited for the deadline instead of failing at once";
}

// --- stop_source -------------------------------------------------------------------------------

awaitable<bool> stop_sleep(sagaflow::stop_source stop, steady_clock::duration d) { co_return co_await stop.sleep_for(d); }

TEST(stop_source, sleep_for_runs_its_whole_time_when_no_stop_is_requested) {
  sagaflow::stop_source stop;
  auto start = steady_clock::now();
  EXPECT_TRUE(run(stop_sleep(stop, 30ms)));
  EXPECT_GE(steady_clock::now() - start, 30ms);
  EXPECT_FALSE(stop.stop_requested());
}

TEST(stop_source, request_stop_from_another_thread_wakes_sleepers_and_waiters_on_other_threads) {
  sagaflow::stop_source stop;
  // Two event loops on two threads: one sleeper and one waiter on each.
  std::atomic<int> woken{0}, slept_fully{0};
  auto sleeper = [&](sagaflow::stop_source s) -> awaitable<void> {
    bool full = co_await s.sleep_for(60s);
    if (full) ++slept_fully;
    ++woken;
  };
  auto waiter = [&](sagaflow::stop_source s) -> awaitable<void> {
    co_await s.wait();
    ++woken;
  };
  asio::io_context one, two;
  for (auto* ctx : {&one, &two}) {
    asio::co_spawn(*ctx, sleeper(stop), asio::detached);
    asio::co_spawn(*ctx, waiter(stop), asio::detached);
  }
  auto start = steady_clock::now();
  std::thread t1([&] { one.run_for(30s); }), t2([&] { two.run_for(30s); });
  std::this_thread::sleep_for(50ms);  // let them all go to sleep
  EXPECT_EQ(woken.load(), 0);
  std::thread stopper([stop]() mutable { stop.request_stop(); });
  stopper.join();
  t1.join();
  t2.join();
  EXPECT_EQ(woken.load(), 4);
  EXPECT_EQ(slept_fully.load(), 0);
  EXPECT_LT(steady_clock::now() - start, hang) << "sleepers were not woken by request_stop";
  EXPECT_TRUE(stop.stop_requested());
}

TEST(stop_source, after_request_stop_sleep_and_wait_return_at_once_and_copies_share_the_state) {
  sagaflow::stop_source stop;
  sagaflow::stop_source copy = stop;
  copy.request_stop();
  copy.request_stop();  // idempotent
  EXPECT_TRUE(stop.stop_requested());
  auto start = steady_clock::now();
  EXPECT_FALSE(run(stop_sleep(stop, 60s)));
  run([](sagaflow::stop_source s) -> awaitable<void> { co_await s.wait(); }(stop));
  EXPECT_LT(steady_clock::now() - start, hang);
}

TEST(stop_source, a_timeout_around_a_stop_sleep_is_the_callers_cancellation_not_a_stop) {
  sagaflow::stop_source stop;
  try {
    run(sagaflow::with_timeout(stop_sleep(stop, 30s), 30ms));
    ADD_FAILURE() << "no timeout";
  } catch (const boost::system::system_error& e) {
    EXPECT_TRUE(is_timed_out(e)) << e.what();
  }
  EXPECT_FALSE(stop.stop_requested());
}

// --- stop_on_signals ---------------------------------------------------------------------------

// Runs `ctx` until `done` or the hang bound.
template <typename Pred>
void run_until(asio::io_context& ctx, Pred done) {
  auto end = steady_clock::now() + hang;
  while (!done() && steady_clock::now() < end) ctx.run_one_for(10ms);
}

TEST(stop_on_signals, a_real_signal_to_the_process_requests_stop) {
  asio::io_context ctx;
  sagaflow::stop_source stop;
  bool finished = false;
  std::exception_ptr error;
  asio::co_spawn(ctx, sagaflow::stop_on_signals(stop, {SIGUSR1, SIGUSR2}), [&](std::exception_ptr e) {
    error = e;
    finished = true;
  });
  ctx.poll();  // the handler is installed once the coroutine waits
  ctx.restart();
  ctx.run_for(50ms);  // nothing happens without a signal
  EXPECT_FALSE(stop.stop_requested());
  // From another thread, as a signal from outside would come.
  std::thread sender([] { ::kill(::getpid(), SIGUSR2); });
  sender.join();
  run_until(ctx, [&] { return stop.stop_requested() && finished; });
  EXPECT_TRUE(stop.stop_requested());
  EXPECT_TRUE(finished);
  EXPECT_FALSE(error);
}

// Once the first signal has requested stop, the signals have their default action again: a
// second one ends the process at once, as a second SIGTERM must during a long graceful stop.
TEST(stop_on_signals_death, a_second_signal_ends_the_process_at_once) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        asio::io_context ctx;
        sagaflow::stop_source stop;
        bool finished = false;
        asio::co_spawn(ctx, sagaflow::stop_on_signals(stop, {SIGUSR1}), [&](std::exception_ptr) { finished = true; });
        ctx.poll();
        ctx.restart();
        ::raise(SIGUSR1);
        run_until(ctx, [&] { return stop.stop_requested() && finished; });
        if (!stop.stop_requested()) std::_Exit(3);
        ::raise(SIGUSR1);
        run_until(ctx, [] { return false; });
        std::_Exit(0);  // still alive: the second signal was swallowed
      },
      ::testing::KilledBySignal(SIGUSR1), "");
}

}  // namespace
