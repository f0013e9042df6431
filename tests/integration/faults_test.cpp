// A fake Redis that misbehaves: corrupt and truncated replies must fail the waiting caller with a
// clear error, never crash or hang.
#include "redis_server.hpp"

#include <sagaflow/transport/connection.hpp>

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
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
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    ::listen(listener_, 4);
    thread_ = std::thread([this] { serve(); });
  }
  ~fake_redis() {
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    thread_.join();
  }
  std::uint16_t port() const { return port_; }

 private:
  void serve() {
    int fd = ::accept(listener_, nullptr, nullptr);
    if (fd < 0) return;
    char buf[4096];
    // Handshake: HELLO 3 SETNAME (one command); then INFO persistence ("OK": not loading).
    if (::read(fd, buf, sizeof buf) > 0) ::write(fd, "+OK\r\n", 5);
    if (::read(fd, buf, sizeof buf) > 0) ::write(fd, "+OK\r\n", 5);
    if (::read(fd, buf, sizeof buf) > 0) ::write(fd, poison_.data(), poison_.size());
    ::close(fd);
  }
  std::string poison_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
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
