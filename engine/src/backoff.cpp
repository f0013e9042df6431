// Retry delay math (design invariant 4): the capped exponential ceiling, the three jitters and the
// seedable splitmix64 source that makes a delay reproducible from (task id, attempt).
#include <sagaflow/engine/backoff.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>

namespace sagaflow {
namespace {

using ms = std::chrono::milliseconds;
using rep = ms::rep;

constexpr std::uint64_t golden_gamma = 0x9e3779b97f4a7c15ULL;

// The splitmix64 output function; also used to spread seeds whose bits are poorly mixed.
std::uint64_t mix64(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t fnv1a(std::string_view key) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

// Uniform over the integers of [lo, hi], 0 <= lo <= hi. The width is taken in double so that
// hi - lo + 1 cannot overflow; double rounding near 2^63 is clamped back into the range.
ms uniform_between(random_source& random, rep lo, rep hi) noexcept {
  if (hi <= lo) return ms(lo);
  const double width = static_cast<double>(hi) - static_cast<double>(lo) + 1.0;
  const rep offset = static_cast<rep>(random.uniform() * width);
  return ms(lo + std::min(offset, hi - lo));
}

}  // namespace

jitter parse_jitter(std::string_view name) {
  if (name == "none") return jitter::none;
  if (name == "full") return jitter::full;
  if (name == "equal") return jitter::equal;
  if (name == "decorrelated") return jitter::decorrelated;
  throw std::invalid_argument("unknown jitter \"" + std::string(name) +
                              "\" (expected none, full, equal or decorrelated)");
}

std::string_view to_string(jitter kind) noexcept {
  switch (kind) {
    case jitter::none: return "none";
    case jitter::full: return "full";
    case jitter::equal: return "equal";
    case jitter::decorrelated: return "decorrelated";
  }
  return "unknown";
}

random_source random_source::for_key(std::string_view key, std::uint32_t attempt) noexcept {
  // Mixing the attempt separately keeps (key, n) and (key', n') from colliding by simple sums.
  return random_source(mix64(fnv1a(key) ^ mix64(attempt + golden_gamma)));
}

random_source random_source::from_entropy() noexcept {
  std::uint64_t seed = 0;
  try {
    std::random_device device;
    seed = (static_cast<std::uint64_t>(device()) << 32) ^ device();
  } catch (...) {
    // No entropy device: the clock and a stack address below still give distinct seeds.
  }
  const auto now = std::chrono::high_resolution_clock::now().time_since_epoch().count();
  seed ^= mix64(static_cast<std::uint64_t>(now));
  seed ^= mix64(reinterpret_cast<std::uintptr_t>(&seed));
  return random_source(mix64(seed));
}

std::uint64_t random_source::next() noexcept {
  state_ += golden_gamma;
  return mix64(state_);
}

double random_source::uniform() noexcept {
  return static_cast<double>(next() >> 11) * 0x1.0p-53;
}

ms backoff_policy::ceiling(std::uint32_t attempt) const noexcept {
  const rep b = std::max<rep>(base.count(), 0);
  const rep c = std::max<rep>(cap.count(), 0);
  const std::uint32_t n = std::max<std::uint32_t>(attempt, 1);
  // In double, a huge attempt gives inf (or NaN for a bad multiplier); both fail `<` and give cap.
  const double value = static_cast<double>(b) * std::pow(multiplier, static_cast<double>(n - 1));
  if (!(value < static_cast<double>(c))) return ms(c);
  return ms(std::max<rep>(std::llround(value), 0));
}

ms backoff_policy::delay(std::uint32_t attempt, random_source& random, ms previous) const noexcept {
  switch (jitter) {
    case sagaflow::jitter::none:
      return ceiling(attempt);
    case sagaflow::jitter::full:
      return uniform_between(random, 0, ceiling(attempt).count());
    case sagaflow::jitter::equal: {
      const rep c = ceiling(attempt).count();
      const rep half = c / 2;
      return uniform_between(random, c - half, c);
    }
    case sagaflow::jitter::decorrelated: {
      const rep b = std::max<rep>(base.count(), 0);
      const rep c = std::max<rep>(cap.count(), 0);
      const rep prev = previous.count() > 0 ? previous.count() : b;
      const rep tripled = prev > std::numeric_limits<rep>::max() / 3 ? std::numeric_limits<rep>::max()
                                                                      : prev * 3;
      // cap < base is an invalid policy; the cap still wins so that no delay exceeds it.
      const rep hi = std::min(c, std::max(b, tripled));
      return uniform_between(random, std::min(b, hi), hi);
    }
  }
  return ceiling(attempt);
}

void backoff_policy::validate() const {
  if (base.count() < 0) throw std::invalid_argument("backoff_policy.base must not be negative");
  if (!std::isfinite(multiplier) || multiplier < 1.0)
    throw std::invalid_argument("backoff_policy.multiplier must be a finite number >= 1");
  if (cap < base) throw std::invalid_argument("backoff_policy.cap must not be less than base");
}

}  // namespace sagaflow
