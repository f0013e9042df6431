// Minimal structured-enough logging to stderr: one line per event, "time level component: text".
// The level comes from SAGAFLOW_LOG (error, warn, info, debug; default info).
#pragma once

#include <boost/system/error_code.hpp>

#include <exception>
#include <sstream>
#include <string>
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

// The text of an error for a log line or a message built on it, without the suffix Boost 1.81
// appends to boost::system::system_error::what() (" [system:111 at file:line:col in function
// '...']"): "connecting to 127.0.0.1:6379: Connection refused". At debug level (SAGAFLOW_LOG=debug)
// the suffix is kept, so that the source location is there when someone looks for it. Any other
// exception gives its what() unchanged.
std::string error_text(const std::exception& e);
std::string error_text(const std::exception_ptr& e);  // "unknown exception" for a non-standard one
std::string error_text(const boost::system::error_code& ec);  // message(), suffix at debug level

}  // namespace sagaflow::log
