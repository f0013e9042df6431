// ULID generation and parsing: 48-bit unix milliseconds + 80 random bits in Crockford base32,
// monotonic within a process (one mutex-guarded generator, reseeded in a forked child).
#include <sagaflow/engine/id.hpp>

#include <sagaflow/engine/backoff.hpp>

#include <pthread.h>

#include <algorithm>
#include <array>
#include <mutex>

namespace sagaflow {
namespace {

constexpr std::string_view alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr std::size_t id_length = 26;
constexpr std::uint64_t max_time = (std::uint64_t{1} << 48) - 1;

// Only the canonical (upper-case) spelling is accepted: ids are compared byte-wise as Redis keys,
// so "01arz..." and "01ARZ..." must not both pass as the same id.
constexpr std::array<std::int8_t, 256> decode_table = [] {
  std::array<std::int8_t, 256> table{};
  table.fill(-1);
  for (std::size_t i = 0; i < alphabet.size(); ++i)
    table[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
  return table;
}();

class generator {
 public:
  generator() {
    // A forked child would otherwise continue the parent's sequence and repeat its ids.
    pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                   [] {
                     generator& self = instance();
                     self.random_ = random_source::from_entropy();
                     self.last_ms_ = 0;
                     self.mutex_.unlock();
                   });
  }

  static generator& instance() {
    static generator shared;
    return shared;
  }

  std::string next() {
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    const std::uint64_t now_ms = now < 0 ? 0 : std::min<std::uint64_t>(now, max_time);

    std::uint64_t hi = 0, lo = 0;
    {
      std::lock_guard lock(mutex_);
      if (now_ms > last_ms_) {
        last_ms_ = now_ms;
        random_hi_ = static_cast<std::uint16_t>(random_.next());
        random_lo_ = random_.next();
      } else if (++random_lo_ == 0 && ++random_hi_ == 0) {
        // 2^80 ids in one millisecond (or a clock stuck in the past): borrow the next millisecond
        // rather than wrap, which would break the ordering.
        last_ms_ = std::min(last_ms_ + 1, max_time);
      }
      hi = (last_ms_ << 16) | random_hi_;
      lo = random_lo_;
    }

    // 26 chars * 5 bits = 130 bits: fill from the right, the first char holds the top 3 bits.
    std::string id(id_length, '0');
    for (std::size_t i = id_length; i-- > 0;) {
      id[i] = alphabet[lo & 0x1f];
      lo = (lo >> 5) | (hi << 59);
      hi >>= 5;
    }
    return id;
  }

 private:
  std::mutex mutex_;
  random_source random_ = random_source::from_entropy();
  std::uint64_t last_ms_ = 0;
  std::uint16_t random_hi_ = 0;
  std::uint64_t random_lo_ = 0;
};

}  // namespace

std::string make_id() { return generator::instance().next(); }

bool is_valid_id(std::string_view id) noexcept {
  if (id.size() != id_length) return false;
  // 130 bits encode a 128-bit value, so the first char may carry only 3 bits.
  if (decode_table[static_cast<unsigned char>(id[0])] > 7) return false;
  for (char c : id)
    if (decode_table[static_cast<unsigned char>(c)] < 0) return false;
  return true;
}

std::optional<std::chrono::system_clock::time_point> id_time(std::string_view id) noexcept {
  if (!is_valid_id(id)) return std::nullopt;
  std::uint64_t ms = 0;
  for (char c : id.substr(0, 10))
    ms = (ms << 5) | static_cast<std::uint64_t>(decode_table[static_cast<unsigned char>(c)]);
  // system_clock counts nanoseconds on common libraries (good to year 2262); a later time would
  // overflow, so it is reported as not representable rather than wrapped.
  using duration = std::chrono::system_clock::duration;
  constexpr auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(duration::max()).count();
  if (ms > static_cast<std::uint64_t>(limit)) return std::nullopt;
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<duration>(std::chrono::milliseconds(static_cast<std::int64_t>(ms))));
}

}  // namespace sagaflow
