// Minimal structured-enough logging to stderr: one line per event, "time level component: text".
// The level comes from SAGAFLOW_LOG (error, warn, info, debug; default info).
#pragma once

#include <sstream>
#include <string_view>

namespace sagaflow::log {

enum class level : int { error = 0, warn = 1, info = 2, debug = 3 };

bool enabled(level lvl) noexcept;
void set_level(level lvl) noexcept;
void write(level lvl, std::string_view component, std::string_view text);

template <typename... Args>
void emit(level lvl, std::string_view component, const Args&... args) {
  if (!enabled(lvl)) return;
  std::ostringstream out;
  (out << ... << args);
  write(lvl, component, out.view());
}

template <typename... Args> void error(std::string_view c, const Args&... a) { emit(level::error, c, a...); }
template <typename... Args> void warn(std::string_view c, const Args&... a) { emit(level::warn, c, a...); }
template <typename... Args> void info(std::string_view c, const Args&... a) { emit(level::info, c, a...); }
template <typename... Args> void debug(std::string_view c, const Args&... a) { emit(level::debug, c, a...); }

}  // namespace sagaflow::log
