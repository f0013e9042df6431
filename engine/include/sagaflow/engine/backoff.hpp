// Retry delay policy: jittered exponential backoff with a cap (design invariant 4).
// delay(n) = jitter(min(cap, base * multiplier^(n-1))); the random source is explicit so that a
// delay can be reproduced from (task id, attempt).
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

namespace sagaflow {

enum class jitter : std::uint8_t {
  none,          // exactly the exponential value
  full,          // uniform in [0, value]
  equal,         // value/2 + uniform in [0, value/2]
  decorrelated,  // uniform in [base, min(cap, previous * 3)] (AWS "decorrelated jitter")
};

// Parses "none", "full", "equal", "decorrelated"; throws std::invalid_argument otherwise.
jitter parse_jitter(std::string_view name);
std::string_view to_string(jitter kind) noexcept;

// splitmix64: small, fast, and seedable from any 64-bit value; good enough for delays.
class random_source {
 public:
  explicit random_source(std::uint64_t seed) noexcept : state_(seed) {}
  // A source whose sequence is fixed by (key, attempt): the same task retry gets the same delay.
  static random_source for_key(std::string_view key, std::uint32_t attempt) noexcept;
  // A source seeded from the OS entropy and the clock.
  static random_source from_entropy() noexcept;

  std::uint64_t next() noexcept;
  // Uniform in [0, 1).
  double uniform() noexcept;

 private:
  std::uint64_t state_;
};

struct backoff_policy {
  std::chrono::milliseconds base{1000};
  double multiplier = 2.0;
  std::chrono::milliseconds cap{std::chrono::minutes(10)};
  sagaflow::jitter jitter = sagaflow::jitter::full;

  // The capped exponential value for attempt n (n >= 1), before jitter.
  std::chrono::milliseconds ceiling(std::uint32_t attempt) const noexcept;

  // The delay before retry number `attempt` (1 = the delay after the first failure).
  // `previous` is the delay chosen last time (used by decorrelated jitter; zero at first).
  std::chrono::milliseconds delay(std::uint32_t attempt, random_source& random,
                                  std::chrono::milliseconds previous = {}) const noexcept;

  // Throws std::invalid_argument naming the bad field (negative base, multiplier < 1, cap < base).
  void validate() const;
};

}  // namespace sagaflow
