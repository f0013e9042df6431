// Unit tests of the retry delay policy (design invariant 4): ceiling growth and cap, the bounds and
// distributions of each jitter, reproducible per-(key, attempt) sources, and policy validation.
#include <sagaflow/engine/backoff.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using sagaflow::backoff_policy;
using sagaflow::jitter;
using sagaflow::random_source;
using ms = std::chrono::milliseconds;

constexpr int draws = 100'000;

// Distribution checks run against a fixed seed, a per-key source and the OS entropy: each must
// behave. Tolerances are many standard deviations wide, so the entropy case does not flake.
std::vector<random_source> sources() {
  return {random_source(42), random_source::for_key("task-01J0", 3), random_source::from_entropy()};
}

backoff_policy policy(jitter kind) {
  return {.base = 100ms, .multiplier = 2.0, .cap = 10s, .jitter = kind};
}

TEST(backoff, ceiling_grows_by_multiplier_until_cap) {
  const backoff_policy p = policy(jitter::none);
  EXPECT_EQ(p.ceiling(1), 100ms);
  EXPECT_EQ(p.ceiling(0), p.ceiling(1));
  for (std::uint32_t n = 1; n < 60; ++n)
    EXPECT_EQ(p.ceiling(n + 1), std::min<ms>(p.cap, p.ceiling(n) * 2)) << "attempt " << n;
  EXPECT_EQ(p.ceiling(7), 6400ms);
  EXPECT_EQ(p.ceiling(8), 10s);

  const backoff_policy slow{.base = 1000ms, .multiplier = 1.5, .cap = 1h};
  EXPECT_EQ(slow.ceiling(2), 1500ms);
  EXPECT_EQ(slow.ceiling(3), 2250ms);
  const backoff_policy flat{.base = 250ms, .multiplier = 1.0, .cap = 1s};
  EXPECT_EQ(flat.ceiling(1'000'000), 250ms);
}

TEST(backoff, huge_attempts_give_cap_not_overflow) {
  for (std::uint32_t n : {64u, 1024u, 1u << 31, std::numeric_limits<std::uint32_t>::max()})
    EXPECT_EQ(policy(jitter::none).ceiling(n), 10s) << "attempt " << n;

  // A cap at the very top of the range: the double result must neither wrap nor round away.
  // 10^(n-1) ms is exact up to 10^18 (n = 19); 10^19 is past the range, so the cap from n = 20.
  const backoff_policy wide{.base = 1ms, .multiplier = 10.0, .cap = ms::max()};
  ms::rep power = 1;
  for (std::uint32_t n = 1; n <= 19; ++n) {
    EXPECT_EQ(wide.ceiling(n), ms(power)) << "attempt " << n;
    if (n < 19) power *= 10;
  }
  for (std::uint32_t n = 20; n < 200; ++n) EXPECT_EQ(wide.ceiling(n), ms::max()) << "attempt " << n;
  EXPECT_EQ(wide.ceiling(std::numeric_limits<std::uint32_t>::max()), ms::max());
  // Jitter over the whole range stays in its bounds and still spreads (no overflow to a
  // negative value or a clamp to one end).
  random_source random(7);
  for (jitter kind : {jitter::full, jitter::equal, jitter::decorrelated}) {
    backoff_policy p = wide;
    p.jitter = kind;
    const ms lo = kind == jitter::full ? 0ms : kind == jitter::equal ? ms(ms::max().count() - ms::max().count() / 2) : p.base;
    int upper_half = 0;
    for (int i = 0; i < 1000; ++i) {
      const ms d = p.delay(4000, random, ms::max());
      ASSERT_GE(d, lo) << sagaflow::to_string(kind);
      if (d.count() > lo.count() + (ms::max().count() - lo.count()) / 2) ++upper_half;
    }
    EXPECT_GT(upper_half, 400) << sagaflow::to_string(kind);
    EXPECT_LT(upper_half, 600) << sagaflow::to_string(kind);
  }
}

TEST(backoff, unvalidated_multiplier_still_gives_cap) {
  // delay() is noexcept and may meet a policy that skipped validate(): a NaN or infinite
  // multiplier must still give a bounded value, the cap.
  for (double m : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    const backoff_policy p{.base = 100ms, .multiplier = m, .cap = 10s, .jitter = jitter::none};
    EXPECT_EQ(p.ceiling(1), 100ms) << m;
    EXPECT_EQ(p.ceiling(5), 10s) << m;
  }
}

// The inverse of the splitmix64 output function: builds a source whose next draw is `output`, so
// the extremes of uniform() can be tested without waiting for them.
random_source source_drawing(std::uint64_t output) {
  std::uint64_t z = output;
  z = (z ^ (z >> 31) ^ (z >> 62)) * 0x319642b2d24d8ec3ULL;
  z = (z ^ (z >> 27) ^ (z >> 54)) * 0x96de1b173f119089ULL;
  z = z ^ (z >> 30) ^ (z >> 60);
  return random_source(z - 0x9e3779b97f4a7c15ULL);
}

TEST(backoff, extreme_draws_stay_in_range) {
  ASSERT_EQ(source_drawing(~0ULL).next(), ~0ULL);
  ASSERT_EQ(source_drawing(0).next(), 0u);
  ASSERT_LT(source_drawing(~0ULL).uniform(), 1.0);
  ASSERT_EQ(source_drawing(0).uniform(), 0.0);

  for (const ms cap : {ms(10s), ms::max()}) {
    for (jitter kind : {jitter::full, jitter::equal, jitter::decorrelated}) {
      const backoff_policy p{.base = 2000ms, .multiplier = 2.0, .cap = cap, .jitter = kind};
      for (std::uint64_t output : {0ULL, ~0ULL}) {
        for (std::uint32_t n : {1u, 3u, 100u}) {
          random_source random = source_drawing(output);
          const ms d = p.delay(n, random, cap);
          const ms lo = kind == jitter::decorrelated ? p.base : 0ms;
          const ms hi = kind == jitter::decorrelated ? cap : p.ceiling(n);
          EXPECT_GE(d, lo) << sagaflow::to_string(kind) << " n=" << n << " output=" << output;
          if (hi < ms::max()) {  // no value is above ms::max(): there the lower bound is the check
            EXPECT_LE(d, hi) << sagaflow::to_string(kind) << " n=" << n << " output=" << output;
          }
        }
      }
    }
  }
}

TEST(backoff, none_is_ceiling_exactly) {
  const backoff_policy p = policy(jitter::none);
  random_source random(1);
  for (std::uint32_t n = 0; n < 40; ++n) EXPECT_EQ(p.delay(n, random), p.ceiling(n));
}

TEST(backoff, full_is_within_zero_and_ceiling) {
  const backoff_policy p = policy(jitter::full);
  random_source random(2);
  for (std::uint32_t n = 1; n < 12; ++n) {
    const ms c = p.ceiling(n);
    ms low = ms::max(), high = ms::min();
    for (int i = 0; i < 10'000; ++i) {
      const ms d = p.delay(n, random);
      ASSERT_GE(d, 0ms);
      ASSERT_LE(d, c);
      low = std::min(low, d);
      high = std::max(high, d);
    }
    // The draws must span the range, not sit at one end.
    EXPECT_LE(low.count(), c.count() / 20) << "attempt " << n;
    EXPECT_GE(high.count(), c.count() * 19 / 20) << "attempt " << n;
  }
}

TEST(backoff, equal_is_within_half_and_ceiling) {
  const backoff_policy p = policy(jitter::equal);
  random_source random(3);
  for (std::uint32_t n = 1; n < 12; ++n) {
    const ms c = p.ceiling(n);
    ms low = ms::max(), high = ms::min();
    for (int i = 0; i < 10'000; ++i) {
      const ms d = p.delay(n, random);
      ASSERT_GE(d * 2, c);
      ASSERT_LE(d, c);
      low = std::min(low, d);
      high = std::max(high, d);
    }
    EXPECT_LE(low.count(), c.count() * 11 / 20) << "attempt " << n;
    EXPECT_GE(high.count(), c.count() * 19 / 20) << "attempt " << n;
  }
}

TEST(backoff, decorrelated_is_within_base_and_cap) {
  const backoff_policy p = policy(jitter::decorrelated);
  random_source random(4);
  ms previous{};
  ms high{};
  for (int i = 0; i < draws; ++i) {
    const ms d = p.delay(static_cast<std::uint32_t>(i % 20 + 1), random, previous);
    ASSERT_GE(d, p.base);
    ASSERT_LE(d, p.cap);
    ASSERT_LE(d, std::max(p.base, (previous == 0ms ? p.base : previous) * 3));
    high = std::max(high, d);
    previous = d;
  }
  EXPECT_GE(high.count(), p.cap.count() * 19 / 20);

  // From a fresh start the first delay is uniform in [base, 3 * base].
  std::set<ms::rep> first;
  for (int i = 0; i < 1000; ++i) {
    const ms d = p.delay(1, random);
    ASSERT_GE(d, 100ms);
    ASSERT_LE(d, 300ms);
    first.insert(d.count());
  }
  EXPECT_GT(first.size(), 150u);
}

TEST(backoff, full_jitter_mean_is_half_cap) {
  const backoff_policy p = policy(jitter::full);
  for (random_source random : sources()) {
    double sum = 0;
    for (int i = 0; i < draws; ++i) sum += static_cast<double>(p.delay(30, random).count());
    const double expected = p.cap.count() / 2.0;
    EXPECT_NEAR(sum / draws, expected, 0.03 * expected);
  }
}

TEST(backoff, equal_jitter_mean_is_three_quarters_cap) {
  const backoff_policy p = policy(jitter::equal);
  for (random_source random : sources()) {
    double sum = 0;
    for (int i = 0; i < draws; ++i) sum += static_cast<double>(p.delay(30, random).count());
    const double expected = 0.75 * p.cap.count();
    EXPECT_NEAR(sum / draws, expected, 0.03 * expected);
  }
}

// Ten equal buckets over [lo, hi]; each must hold its expected share within 5% (about 5 sigma).
void expect_uniform(const std::vector<double>& values, double lo, double hi) {
  std::array<int, 10> buckets{};
  for (double v : values) {
    const auto b = static_cast<std::size_t>((v - lo) / (hi - lo) * 10.0);
    ++buckets[std::min<std::size_t>(b, 9)];
  }
  const double expected = static_cast<double>(values.size()) / 10.0;
  for (std::size_t b = 0; b < buckets.size(); ++b)
    EXPECT_NEAR(buckets[b], expected, 0.05 * expected) << "bucket " << b;
}

TEST(backoff, full_jitter_is_roughly_uniform) {
  const backoff_policy p = policy(jitter::full);
  for (random_source random : sources()) {
    std::vector<double> values;
    for (int i = 0; i < draws; ++i) values.push_back(static_cast<double>(p.delay(30, random).count()));
    expect_uniform(values, 0.0, static_cast<double>(p.cap.count()) + 1.0);
  }
}

TEST(backoff, uniform_is_in_unit_interval_and_uniform) {
  for (random_source random : sources()) {
    std::vector<double> values;
    for (int i = 0; i < draws; ++i) {
      const double u = random.uniform();
      ASSERT_GE(u, 0.0);
      ASSERT_LT(u, 1.0);
      values.push_back(u);
    }
    expect_uniform(values, 0.0, 1.0);
  }
}

TEST(backoff, for_key_is_reproducible) {
  const backoff_policy p = policy(jitter::full);
  for (std::uint32_t attempt = 1; attempt < 50; ++attempt) {
    random_source a = random_source::for_key("01J0TASKID", attempt);
    random_source b = random_source::for_key("01J0TASKID", attempt);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(p.delay(30, a), p.delay(30, b));
  }
  random_source a = random_source::for_key("", 0);
  random_source b = random_source::for_key("", 0);
  EXPECT_EQ(a.next(), b.next());
}

TEST(backoff, for_key_differs_across_attempts_and_keys) {
  const backoff_policy p = policy(jitter::full);
  // Across attempts and across near-identical keys, the first outputs are all distinct and the
  // first delays spread evenly: a seed that ignored the attempt or part of the key would not.
  std::set<std::uint64_t> outputs;
  std::vector<double> by_attempt, by_key;
  for (std::uint32_t attempt = 1; attempt <= static_cast<std::uint32_t>(draws); ++attempt) {
    random_source random = random_source::for_key("01J0TASKID", attempt);
    outputs.insert(random_source::for_key("01J0TASKID", attempt).next());
    const ms d = p.delay(30, random);
    by_attempt.push_back(static_cast<double>(d.count()));
  }
  for (int k = 0; k < draws; ++k) {
    const std::string key = "task-" + std::to_string(k);
    outputs.insert(random_source::for_key(key, 1).next());
    random_source random = random_source::for_key(key, 1);
    by_key.push_back(static_cast<double>(p.delay(30, random).count()));
  }
  EXPECT_EQ(outputs.size(), 2u * draws);
  const double hi = static_cast<double>(p.cap.count()) + 1.0;
  expect_uniform(by_attempt, 0.0, hi);
  expect_uniform(by_key, 0.0, hi);
  EXPECT_NE(random_source::for_key("ab", 1).next(), random_source::for_key("ba", 1).next());
  EXPECT_NE(random_source::for_key("a", 2).next(), random_source::for_key("b", 1).next());
}

TEST(backoff, validate_rejects_bad_policies) {
  EXPECT_NO_THROW(backoff_policy{}.validate());
  EXPECT_NO_THROW((backoff_policy{.base = 0ms, .multiplier = 1.0, .cap = 0ms}.validate()));

  const auto rejects = [](const backoff_policy& p, const std::string& field) {
    try {
      p.validate();
      ADD_FAILURE() << "accepted a bad " << field;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  rejects({.base = -1ms}, "base");
  rejects({.multiplier = 0.5}, "multiplier");
  rejects({.multiplier = 0.0}, "multiplier");
  rejects({.multiplier = std::nan("")}, "multiplier");
  rejects({.multiplier = std::numeric_limits<double>::infinity()}, "multiplier");
  rejects({.base = 2s, .cap = 1s}, "cap");
}

TEST(backoff, parse_jitter_round_trips_and_rejects_unknown) {
  for (jitter kind : {jitter::none, jitter::full, jitter::equal, jitter::decorrelated})
    EXPECT_EQ(sagaflow::parse_jitter(sagaflow::to_string(kind)), kind);
  EXPECT_EQ(sagaflow::to_string(jitter::decorrelated), "decorrelated");
  for (std::string_view bad : {"", "Full", "fulll", "random", "none "})
    EXPECT_THROW(sagaflow::parse_jitter(bad), std::invalid_argument) << bad;
}

}  // namespace
