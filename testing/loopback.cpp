// Loopback sockets: see loopback.hpp. Plain blocking POSIX calls: they are set-up and probes, never
// on the path a test or the benchmark measures.
#include "loopback.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

namespace sagaflow::testing {

namespace {

sockaddr_in loopback_address(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  return addr;
}

// A socket bound to a port the kernel chose (0: none could be bound); `port` receives it.
int bind_free_port(std::uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  auto addr = loopback_address(0);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return -1;
  }
  port = ntohs(addr.sin_port);
  return fd;
}

}  // namespace

std::uint16_t free_port() {
  std::uint16_t port = 0;
  int fd = bind_free_port(port);
  if (fd < 0) throw std::runtime_error("cannot find a free loopback port");
  ::close(fd);
  return port;
}

loopback_listener::loopback_listener() {
  fd_ = bind_free_port(port_);
  if (fd_ >= 0 && ::listen(fd_, SOMAXCONN) == 0) return;
  if (fd_ >= 0) ::close(fd_);
  throw std::runtime_error("cannot listen on a loopback port");
}

loopback_listener::~loopback_listener() { ::close(fd_); }

int connect_loopback(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  auto addr = loopback_address(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
  ::close(fd);
  return -1;
}

}  // namespace sagaflow::testing
