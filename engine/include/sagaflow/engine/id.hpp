// Time-ordered unique ids (ULID: 48-bit milliseconds + 80 random bits, Crockford base32, 26 chars)
// for tasks, sagas and correlation ids. Ids made by one process sort in creation order, even
// within one millisecond (monotonic increment of the random part).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sagaflow {

// Thread-safe; the default generator is shared by the whole process.
std::string make_id();

// The creation time encoded in an id, or nothing if `id` is not a well-formed ULID.
std::optional<std::chrono::system_clock::time_point> id_time(std::string_view id) noexcept;

bool is_valid_id(std::string_view id) noexcept;

}  // namespace sagaflow
