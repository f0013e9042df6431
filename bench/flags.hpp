// Command-line flags of a benchmark mode: "--name value" or "--name=value", each bound to one
// unsigned option with its bounds, so every mode parses and reports mistakes the same way.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace sagaflow::bench {

struct flag {
  std::string_view name;  // without the dashes: "n", "pipeline"
  std::uint64_t* value;   // holds the default; overwritten when the flag is given
  std::uint64_t min = 1;
  std::uint64_t max = UINT64_MAX;
  std::string_view help;
};

// Returns false when --help was asked for (the usage is then printed to stdout). Throws
// std::invalid_argument naming the flag that is unknown, lacks a value or is out of bounds.
bool parse_flags(std::string_view mode, std::span<const std::string_view> args, std::span<const flag> flags);

}  // namespace sagaflow::bench
