// Unit tests of the retry-or-bury decision (tasks/src/outcome.hpp): how each way a handler can
// fail maps to an outcome, and that retry delays follow the task's policy reproducibly.
#include "../../tasks/src/outcome.hpp"

#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>
#include <gtest/gtest.h>

namespace {

using namespace std::chrono_literals;
using sagaflow::tasks::envelope;
using sagaflow::tasks::outcome;
using sagaflow::tasks::outcome_of_failure;

envelope task(std::uint32_t attempt, std::uint32_t max_attempts) {
  envelope e;
  e.id = "01J0TASK";
  e.name = "work";
  e.attempt = attempt;
  e.retry.max_attempts = max_attempts;
  e.retry.backoff = {.base = 100ms, .multiplier = 2.0, .cap = 10s, .jitter = sagaflow::jitter::none};
  e.timeout = 250ms;
  return e;
}

TEST(outcome, an_ordinary_exception_is_retried_after_the_policy_delay) {
  std::runtime_error failure("boom");
  auto o = outcome_of_failure(&failure, false, task(3, 5));
  EXPECT_EQ(o.what, outcome::kind::retry);
  EXPECT_EQ(o.error, "boom");
  EXPECT_EQ(o.delay, 400ms);  // base * 2^(3-1), no jitter
}

TEST(outcome, the_last_attempt_is_dead_with_max_attempts) {
  std::runtime_error failure("boom");
  auto o = outcome_of_failure(&failure, false, task(5, 5));
  EXPECT_EQ(o.what, outcome::kind::dead);
  EXPECT_EQ(o.reason, "max attempts");
  EXPECT_EQ(o.error, "boom");
}

TEST(outcome, a_permanent_error_is_dead_at_once_even_with_attempts_left) {
  sagaflow::tasks::permanent_error failure("bad input");
  auto o = outcome_of_failure(&failure, false, task(1, 5));
  EXPECT_EQ(o.what, outcome::kind::dead);
  EXPECT_EQ(o.reason, "permanent error");
  EXPECT_EQ(o.error, "bad input");
}

TEST(outcome, retry_after_sets_the_delay_but_not_past_max_attempts) {
  sagaflow::tasks::retry_after later(7s, "rate limited");
  auto o = outcome_of_failure(&later, false, task(1, 5));
  EXPECT_EQ(o.what, outcome::kind::retry);
  EXPECT_EQ(o.delay, 7s);
  EXPECT_EQ(o.error, "rate limited");
  auto last = outcome_of_failure(&later, false, task(5, 5));
  EXPECT_EQ(last.what, outcome::kind::dead);
  EXPECT_EQ(last.reason, "max attempts");
}

TEST(outcome, a_timed_out_attempt_says_so_whatever_the_handler_threw) {
  boost::system::system_error aborted(boost::asio::error::operation_aborted);
  auto o = outcome_of_failure(&aborted, true, task(1, 3));
  EXPECT_EQ(o.what, outcome::kind::retry);
  EXPECT_EQ(o.error, "timed out after 250 ms");
  // Even a permanent_error thrown while being cancelled: the deadline is what ended the attempt.
  sagaflow::tasks::permanent_error permanent("gave up");
  EXPECT_EQ(outcome_of_failure(&permanent, true, task(1, 3)).what, outcome::kind::retry);
}

TEST(outcome, a_non_standard_exception_and_an_empty_message_still_name_the_failure) {
  auto o = outcome_of_failure(nullptr, false, task(1, 2));
  EXPECT_EQ(o.what, outcome::kind::retry);
  EXPECT_EQ(o.error, "non-standard exception");
  std::runtime_error empty("");
  EXPECT_EQ(outcome_of_failure(&empty, false, task(1, 2)).error, "exception");
}

TEST(outcome, jittered_delays_are_reproducible_per_task_and_attempt) {
  auto t = task(2, 5);
  t.retry.backoff.jitter = sagaflow::jitter::full;
  std::runtime_error failure("boom");
  auto a = outcome_of_failure(&failure, false, t);
  auto b = outcome_of_failure(&failure, false, t);
  EXPECT_EQ(a.delay, b.delay);
  // A policy value, not a measured time: full jitter draws from [0, base * 2^(attempt-1)].
  const std::chrono::milliseconds ceiling = t.retry.backoff.base * 2;
  EXPECT_LE(a.delay.count(), ceiling.count());
  t.id = "01J0OTHER";
  bool differs = false;
  for (std::uint32_t attempt = 1; attempt <= 4 && !differs; ++attempt) {
    t.attempt = attempt;
    auto other = outcome_of_failure(&failure, false, t);
    auto mine = task(attempt, 5);
    mine.retry.backoff.jitter = sagaflow::jitter::full;
    differs = other.delay != outcome_of_failure(&failure, false, mine).delay;
  }
  EXPECT_TRUE(differs) << "the jitter should depend on the task id";
}

}  // namespace
