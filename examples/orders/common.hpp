// What the programs of the order saga example share: command-line checks (a bad flag exits 2
// with the usage), the Redis keys where the services keep their state, and the order failures.
#pragma once

#include <sagaflow/engine/coro.hpp>
#include <sagaflow/engine/stop.hpp>
#include <sagaflow/transport/config.hpp>

#include <cstdint>
#include <functional>
#include <string>

namespace orders {

// One program's name and usage, for its error messages.
struct program {
  std::string name;   // "orders-payments"
  std::string usage;  // "usage: orders-payments [--redis URL] ..."
  // Bad arguments: says what is wrong, shows the usage, exits 2 (the convention for usage errors).
  [[noreturn]] void usage_error(const std::string& why) const;
  // The whole text must be a decimal integer within [min, max]: "10x", "" and overflow are refused.
  long number(const std::string& flag, const std::string& text, long min, long max) const;
  // A fraction from 0 to 1: "0.2", "0", "1".
  double rate(const std::string& flag, const std::string& text) const;
  // $SAGAFLOW_REDIS_URL unless --redis gave one; a malformed URL is a usage error.
  sagaflow::transport::config redis(const std::string& url) const;
};

// The URL in $SAGAFLOW_REDIS_URL, or empty (then redis://127.0.0.1:6379).
std::string redis_url_from_env();

// Whether the order with this id fails in `what` ("payments:declined"): a hash of both, so that
// every attempt (and every run of the demo) of the same order fails the same way.
bool fails(const std::string& what, const std::string& order_id, double rate);

// Runs `body` on a one-thread runtime until it ends; SIGTERM or SIGINT request `stop` (a second
// signal ends the process at once). Returns 0, or 1 with the error printed when `body` threw.
int run_until_signal(const program& p, std::function<sagaflow::awaitable<void>(sagaflow::stop_source)> body);

// The services' state in Redis, so that the effects of the sagas can be seen (redis-cli) and
// counted (tests, summary). For a service S (inventory, payments, shipping):
//   orders:S:done     hash order id -> runs of the action that took effect (1 unless re-executed)
//   orders:S:undone   hash order id -> runs of the undo
//   orders:S:attempts count of action attempts; orders:S:retries those of attempt > 1
//   orders:S:failed   set of orders whose action failed for good (declined, no courier, ...)
// and each service's own records, named in service.cpp.
std::string service_key(const std::string& service, const std::string& what);

// The client's bookkeeping: every order saga it started (saga id = correlation id = order id)
// and when the first one started (ms since the epoch).
inline constexpr const char* ids_key = "orders:ids";
inline constexpr const char* first_start_key = "orders:first-start-ms";

}  // namespace orders
