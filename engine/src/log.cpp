// Logging to stderr: level from SAGAFLOW_LOG (read once), one fwrite per line so that lines from
// concurrent threads never interleave.
#include <sagaflow/engine/log.hpp>

#include <boost/system/system_error.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace sagaflow::log {
namespace {

constexpr std::string_view names[] = {"error", "warn", "info", "debug"};

level level_from_env() noexcept {
  const char* value = std::getenv("SAGAFLOW_LOG");
  if (value == nullptr || *value == '\0') return level::info;
  const std::string_view name(value);
  if (name == "error") return level::error;
  if (name == "warn") return level::warn;
  if (name == "info") return level::info;
  if (name == "debug") return level::debug;
  // Said once, straight to stderr: write() cannot be used while the level is being initialised.
  std::fprintf(stderr, "sagaflow: unknown SAGAFLOW_LOG=\"%s\" (error|warn|info|debug), using info\n",
               value);
  return level::info;
}

std::atomic<int>& current() noexcept {
  static std::atomic<int> value{static_cast<int>(level_from_env())};
  return value;
}

// "2024-05-01T12:34:56.789Z" from the chrono calendar: gmtime() is not thread-safe.
void append_time(std::string& line) {
  using namespace std::chrono;
  const auto now = floor<milliseconds>(system_clock::now());
  const auto day = floor<days>(now);
  const year_month_day date(day);
  const hh_mm_ss time(now - day);
  char buffer[32];
  const int n = std::snprintf(buffer, sizeof buffer, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ",
                              static_cast<int>(date.year()), static_cast<unsigned>(date.month()),
                              static_cast<unsigned>(date.day()), static_cast<int>(time.hours().count()),
                              static_cast<int>(time.minutes().count()),
                              static_cast<int>(time.seconds().count()),
                              static_cast<int>(time.subseconds().count()));
  if (n > 0) line.append(buffer, static_cast<std::size_t>(n));
}

}  // namespace

bool enabled(level lvl) noexcept {
  return static_cast<int>(lvl) <= current().load(std::memory_order_relaxed);
}

void set_level(level lvl) noexcept { current().store(static_cast<int>(lvl), std::memory_order_relaxed); }

void write(level lvl, std::string_view component, std::string_view text) {
  if (!enabled(lvl)) return;
  const auto index = static_cast<std::size_t>(lvl);
  std::string line;
  line.reserve(48 + component.size() + text.size());
  append_time(line);
  line += ' ';
  line += index < std::size(names) ? names[index] : "?";
  line += ' ';
  line += component;
  line += ": ";
  // One event stays one line: embedded line breaks (exception messages, payloads) are escaped.
  for (char c : text) {
    if (c == '\n') line += "\\n";
    else if (c == '\r') line += "\\r";
    else line += c;
  }
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
}

std::string error_text(const std::exception& e) {
  std::string text = e.what();
  if (enabled(level::debug)) return text;
  const auto* se = dynamic_cast<const boost::system::system_error*>(&e);
  if (se == nullptr) return text;
  // what() is "[prefix: ]" + code().what(), and code().what() is message() + " [...]": put the
  // message back in place of the whole of code().what(). Messages built some other way (a class
  // that overrides what()) are left as they are.
  const auto code = se->code();
  const std::string full = code.what();
  if (text.size() < full.size() || text.compare(text.size() - full.size(), full.size(), full) != 0) return text;
  text.resize(text.size() - full.size());
  text += code.message();
  return text;
}

std::string error_text(const std::exception_ptr& e) {
  if (!e) return "no error";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return error_text(ex);
  } catch (...) {
    return "unknown exception";
  }
}

std::string error_text(const boost::system::error_code& ec) {
  return enabled(level::debug) ? ec.what() : ec.message();
}

}  // namespace sagaflow::log
