// The order example's shared pieces (common.hpp): flag checks, failure choice, the signal-driven
// run of a program, key names.
#include "common.hpp"

#include <sagaflow/engine/log.hpp>
#include <sagaflow/engine/runtime.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_future.hpp>

#include <charconv>
#include <csignal>
#include <cstdlib>
#include <iostream>

namespace orders {

namespace asio = boost::asio;

void program::usage_error(const std::string& why) const {
  std::cerr << name << ": " << why << "\n" << usage << "Try '" << name << " --help'.\n";
  std::exit(2);
}

long program::number(const std::string& flag, const std::string& text, long min, long max) const {
  long v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || v < min || v > max)
    usage_error(flag + " needs a whole number from " + std::to_string(min) + " to " + std::to_string(max) + ", not '" +
                text + "'");
  return v;
}

double program::rate(const std::string& flag, const std::string& text) const {
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v, std::chars_format::fixed);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || !(v >= 0.0 && v <= 1.0))
    usage_error(flag + " needs a fraction from 0 to 1 (e.g. 0.2), not '" + text + "'");
  return v;
}

sagaflow::transport::config program::redis(const std::string& url) const {
  try {
    return url.empty() ? sagaflow::transport::config{} : sagaflow::transport::config::from_url(url);
  } catch (const std::invalid_argument& e) {
    usage_error(sagaflow::log::error_text(e));
  }
}

std::string redis_url_from_env() {
  const char* url = std::getenv("SAGAFLOW_REDIS_URL");
  return url ? url : "";
}

bool fails(const std::string& what, const std::string& order_id, double rate) {
  if (rate <= 0.0) return false;
  // FNV-1a: stable across runs, builds and machines (std::hash is not).
  std::uint64_t h = 14695981039346656037ull;
  auto mix = [&h](const std::string& s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  mix(what);
  mix("/");
  mix(order_id);
  return static_cast<double>(h % 1'000'000) < rate * 1'000'000.0;
}

int run_until_signal(const program& p, std::function<sagaflow::awaitable<void>(sagaflow::stop_source)> body) {
  sagaflow::runtime rt(sagaflow::runtime_options{.threads = 1});
  auto ex = rt.executor();
  rt.start();
  // Signals first, as examples/worker.cpp does: a SIGTERM while Redis is still being reached
  // must stop the program cleanly, not kill it.
  sagaflow::stop_source stop;
  asio::co_spawn(ex, sagaflow::stop_on_signals(stop, {SIGINT, SIGTERM}), asio::detached);
  // The failure comes back as text, caught on the runtime's thread (see examples/worker.cpp).
  std::string failure;
  asio::co_spawn(ex, [&]() -> sagaflow::awaitable<void> {
    try {
      co_await body(stop);
    } catch (const std::exception& e) {
      failure = sagaflow::log::error_text(e);
    }
  }(), asio::use_future).get();
  stop.request_stop();  // ends the wait for signals, which would keep the runtime from stopping
  if (failure.empty()) return 0;
  std::cerr << p.name << ": " << failure << "\n";
  return 1;
}

std::string service_key(const std::string& service, const std::string& what) {
  return "orders:" + service + ":" + what;
}

}  // namespace orders
