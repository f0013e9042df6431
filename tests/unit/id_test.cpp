// Unit tests of ULID ids: format, uniqueness and order (also within one millisecond and across
// threads), the encoded time, and rejection of malformed ids.
#include <sagaflow/engine/id.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace {

using std::chrono::system_clock;

constexpr std::string_view alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

TEST(id, has_26_chars_from_crockford_alphabet) {
  for (int i = 0; i < 1000; ++i) {
    const std::string id = sagaflow::make_id();
    ASSERT_EQ(id.size(), 26u) << id;
    for (char c : id) ASSERT_NE(alphabet.find(c), std::string_view::npos) << id;
    ASSERT_LE(id[0], '7') << id;
    ASSERT_TRUE(sagaflow::is_valid_id(id)) << id;
  }
}

TEST(id, ids_are_unique_and_strictly_increasing) {
  constexpr int count = 100'000;
  std::vector<std::string> ids;
  ids.reserve(count);
  for (int i = 0; i < count; ++i) ids.push_back(sagaflow::make_id());

  int same_millisecond = 0;
  for (std::size_t i = 1; i < ids.size(); ++i) {
    ASSERT_LT(ids[i - 1], ids[i]) << "at " << i;
    if (ids[i - 1].compare(0, 10, ids[i], 0, 10) == 0) ++same_millisecond;
  }
  // Guard: the loop must really have produced many ids per millisecond, or the monotonic
  // increment was never exercised.
  EXPECT_GT(same_millisecond, count / 2);
}

TEST(id, concurrent_ids_are_unique) {
  constexpr int threads = 4;
  constexpr int per_thread = 25'000;
  std::vector<std::vector<std::string>> made(threads);
  {
    std::vector<std::jthread> workers;
    for (int t = 0; t < threads; ++t)
      workers.emplace_back([&made, t] {
        made[t].reserve(per_thread);
        for (int i = 0; i < per_thread; ++i) made[t].push_back(sagaflow::make_id());
      });
  }
  std::vector<std::string> all;
  for (const auto& ids : made) {
    // The generator is process-wide, so each thread's own ids are strictly increasing too.
    EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end(), std::greater_equal<>{}), ids.end());
    all.insert(all.end(), ids.begin(), ids.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
  EXPECT_EQ(all.size(), static_cast<std::size_t>(threads * per_thread));
}

TEST(id, id_time_round_trips_within_a_millisecond) {
  for (int i = 0; i < 1000; ++i) {
    const auto before = std::chrono::floor<std::chrono::milliseconds>(system_clock::now());
    const std::string id = sagaflow::make_id();
    const auto after = system_clock::now();
    const auto t = sagaflow::id_time(id);
    ASSERT_TRUE(t.has_value()) << id;
    // An id borrows the next millisecond only after 2^80 increments, so its time lies between
    // the truncated time before and the time after.
    ASSERT_GE(*t, before) << id;
    ASSERT_LE(*t, after) << id;
  }
}

TEST(id, id_time_decodes_known_values) {
  // The example of the ULID specification: 1469922850259 ms = 2016-07-30T23:54:10.259Z.
  const auto t = sagaflow::id_time("01ARZ3NDEKTSV4RRFFQ69G5FAV");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch()).count(),
            1469922850259);
  EXPECT_EQ(sagaflow::id_time("00000000000000000000000000"), system_clock::time_point{});
  // Well-formed, but year ~10889 does not fit system_clock's nanoseconds: reported, not wrapped.
  EXPECT_TRUE(sagaflow::is_valid_id("7ZZZZZZZZZZZZZZZZZZZZZZZZZ"));
  EXPECT_EQ(sagaflow::id_time("7ZZZZZZZZZZZZZZZZZZZZZZZZZ"), std::nullopt);
  EXPECT_EQ(sagaflow::id_time("not an id"), std::nullopt);
}

TEST(id, is_valid_id_rejects_bad_input) {
  const std::string good = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
  EXPECT_TRUE(sagaflow::is_valid_id(good));
  EXPECT_FALSE(sagaflow::is_valid_id(""));
  EXPECT_FALSE(sagaflow::is_valid_id(good.substr(0, 25)));
  EXPECT_FALSE(sagaflow::is_valid_id(good + "0"));
  // Letters outside Crockford's alphabet, lower case, punctuation, NUL and non-ASCII bytes.
  for (char bad : {'I', 'L', 'O', 'U', 'a', 'z', '-', ' ', '\0', '\xC3'}) {
    std::string id = good;
    id[13] = bad;
    EXPECT_FALSE(sagaflow::is_valid_id(id)) << "char " << static_cast<int>(bad);
  }
  // The first char carries only 3 bits: '8' and above would overflow 128 bits.
  EXPECT_TRUE(sagaflow::is_valid_id("7" + good.substr(1)));
  for (char first : {'8', '9', 'A', 'Z'})
    EXPECT_FALSE(sagaflow::is_valid_id(first + good.substr(1))) << first;
}

}  // namespace
