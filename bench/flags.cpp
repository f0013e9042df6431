// Parsing of "--name value" flags for the benchmark modes; see flags.hpp.
#include "flags.hpp"

#include <charconv>
#include <iostream>
#include <stdexcept>
#include <string>

namespace sagaflow::bench {

namespace {

void print_usage(std::string_view mode, std::span<const flag> flags) {
  std::cout << "usage: sagaflow-bench " << mode;
  for (auto& f : flags) std::cout << " [--" << f.name << " N]";
  std::cout << "\n";
  for (auto& f : flags) std::cout << "  --" << f.name << "  " << f.help << " (default " << *f.value << ")\n";
}

}  // namespace

bool parse_flags(std::string_view mode, std::span<const std::string_view> args, std::span<const flag> flags) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      print_usage(mode, flags);
      return false;
    }
    if (!arg.starts_with("--")) throw std::invalid_argument("unexpected argument '" + std::string(arg) + "'");
    arg.remove_prefix(2);
    std::string_view text;
    bool inline_value = false;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      text = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      inline_value = true;
    }
    const flag* match = nullptr;
    for (auto& f : flags)
      if (f.name == arg) match = &f;
    if (!match) throw std::invalid_argument("unknown flag --" + std::string(arg) + " (see --help)");
    if (!inline_value) {
      if (i + 1 >= args.size()) throw std::invalid_argument("--" + std::string(arg) + " needs a value");
      text = args[++i];
    }
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end != text.data() + text.size() || text.empty())
      throw std::invalid_argument("--" + std::string(arg) + ": '" + std::string(text) + "' is not a whole number");
    if (v < match->min || v > match->max)
      throw std::invalid_argument("--" + std::string(arg) + " must be between " + std::to_string(match->min) +
                                  " and " + std::to_string(match->max));
    *match->value = v;
  }
  return true;
}

}  // namespace sagaflow::bench
