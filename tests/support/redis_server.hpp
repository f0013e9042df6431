// Test support: a real redis-server per test (free loopback port, temporary directory), started
// and stopped by the test itself, and a way to run a coroutine to completion.
#pragma once

#include <sagaflow/engine/coro.hpp>
#include <sagaflow/transport/config.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <sys/types.h>
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

// A loopback TCP port that was free a moment ago.
std::uint16_t free_port();

class redis_server {
 public:
  // `extra` are passed to redis-server as "--name value" pairs, e.g. {"--requirepass", "x"}.
  explicit redis_server(std::vector<std::string> extra = {}, bool tcp = true);
  ~redis_server();
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  void start();  // on the same port(s) as before
  void stop();   // SIGTERM and wait
  void kill();   // SIGKILL and wait
  bool running() const noexcept { return pid_ > 0; }

  std::uint16_t port() const noexcept { return port_; }
  // An extra free port the test may use (e.g. for --tls-port); chosen at construction.
  std::uint16_t spare_port() const noexcept { return spare_port_; }
  const std::filesystem::path& dir() const noexcept { return dir_; }
  transport::config config() const;
  std::string url() const;

 private:
  void wait_until_listening(std::uint16_t port);
  std::vector<std::string> extra_;
  bool tcp_;
  std::uint16_t port_;
  std::uint16_t spare_port_;
  std::filesystem::path dir_;
  pid_t pid_ = -1;
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

}  // namespace sagaflow::testing
