// Test support: a real redis-server per test (testing/redis_process.hpp, logging verbosely, with
// the transport::config that reaches it), and ways to run a coroutine to completion and to wait
// in one until something holds.
#pragma once

#include "loopback.hpp"
#include "redis_process.hpp"

#include <sagaflow/engine/coro.hpp>
#include <sagaflow/transport/config.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

// ASSERT_* returns from the function: inside a coroutine it must co_return instead.
#define CO_ASSERT_EQ(a, b)        \
  do {                            \
    EXPECT_EQ(a, b);              \
    if (!((a) == (b))) co_return; \
  } while (0)
#define CO_ASSERT_TRUE(c)  \
  do {                     \
    EXPECT_TRUE(c);        \
    if (!(c)) co_return;   \
  } while (0)

namespace sagaflow::testing {

class redis_server : public redis_process {
 public:
  // `options` follow --loglevel verbose on redis-server's command line (see redis_process).
  explicit redis_server(std::vector<std::string> options = {});
  // Generous timeouts: a slow, loaded machine must not fail a test, a hang still does.
  transport::config config() const;
};

// Runs `op` on a fresh io_context until it completes; rethrows its exception; throws if it has
// not completed within `limit` (so a hang fails the test instead of stalling the suite).
template <typename T>
T run(boost::asio::awaitable<T> op, std::chrono::seconds limit = std::chrono::seconds(60)) {
  boost::asio::io_context ctx;
  std::exception_ptr error;
  std::optional<std::conditional_t<std::is_void_v<T>, int, T>> result;
  bool done = false;
  if constexpr (std::is_void_v<T>) {
    boost::asio::co_spawn(ctx, std::move(op), [&](std::exception_ptr e) {
      error = e;
      done = true;
      ctx.stop();
    });
  } else {
    boost::asio::co_spawn(ctx, std::move(op), [&](std::exception_ptr e, T v) {
      error = e;
      if (!e) result.emplace(std::move(v));
      done = true;
      ctx.stop();
    });
  }
  ctx.run_for(limit);
  if (!done) throw std::runtime_error("test coroutine did not finish in time");
  if (error) std::rethrow_exception(error);
  if constexpr (!std::is_void_v<T>) return std::move(*result);
}

// Polls `done` every 10 ms for up to `limit`: a hang fails the test, it is not a speed check.
template <typename Pred>
awaitable<bool> eventually(Pred done, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  auto end = sagaflow::steady_clock::now() + limit;
  while (!done()) {
    if (sagaflow::steady_clock::now() > end) co_return false;
    co_await sagaflow::sleep_for(std::chrono::milliseconds(10));
  }
  co_return true;
}

}  // namespace sagaflow::testing
