// A fake Redis that misbehaves: corrupt and truncated replies must fail the waiting caller with a
// clear error, never crash or hang.
#include "redis_server.hpp"

#include <sagaflow/transport/connection.hpp>

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <thread>

namespace asio = boost::asio;
namespace transport = sagaflow::transport;
using sagaflow::awaitable;
using sagaflow::testing::run;

namespace {

// Accepts one client, answers its handshake and its readiness check (INFO persistence) with +OK
// each, then answers the next command with `poison` and closes.
class fake_redis {
 public:
  explicit fake_redis(std::string poison) : poison_(std::move(poison)) {
    thread_ = std::thread([this] { serve(); });
  }
  ~fake_redis() {
    ::shutdown(listener_.fd(), SHUT_RDWR);  // ends an accept still waiting
    thread_.join();
  }
  std::uint16_t port() const { return listener_.port(); }

 private:
  void serve() {
    int fd = ::accept(listener_.fd(), nullptr, nullptr);
    if (fd < 0) return;
    char buf[4096];
    // Handshake: HELLO 3 SETNAME (one command); then INFO persistence ("OK": not loading).
    if (::read(fd, buf, sizeof buf) > 0) ::write(fd, "+OK\r\n", 5);
    if (::read(fd, buf, sizeof buf) > 0) ::write(fd, "+OK\r\n", 5);
    if (::read(fd, buf, sizeof buf) > 0) ::write(fd, poison_.data(), poison_.size());
    ::close(fd);
  }
  std::string poison_;
  sagaflow::testing::loopback_listener listener_;
  std::thread thread_;
};

boost::system::error_code first_command_error(std::uint16_t port) {
  return run([port]() -> awaitable<boost::system::error_code> {
    transport::config c;
    c.port = port;
    c.command_timeout = std::chrono::seconds(5);
    auto conn = transport::connection::create(co_await asio::this_coro::executor, c);
    co_await conn->connect();
    boost::system::error_code ec;
    try {
      co_await conn->call("GET", "k");
    } catch (const boost::system::system_error& e) {
      ec = e.code();
    }
    conn->close();
    co_return ec;
  }());
}

}  // namespace

TEST(faults, a_corrupt_reply_fails_the_caller_with_protocol_error) {
  fake_redis server("?not-resp\r\n");
  EXPECT_EQ(first_command_error(server.port()), transport::error::protocol_error);
}

TEST(faults, an_overlong_declared_bulk_fails_without_allocating_it) {
  fake_redis server("$99999999999999\r\nabc");
  EXPECT_EQ(first_command_error(server.port()), transport::error::protocol_error);
}

TEST(faults, a_truncated_reply_then_close_fails_the_caller_with_connection_lost) {
  fake_redis server("$10\r\nabc");
  EXPECT_EQ(first_command_error(server.port()), transport::error::connection_lost);
}
