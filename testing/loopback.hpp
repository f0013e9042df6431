// Loopback TCP sockets for the tests and the benchmark: a port that was free, a listening socket
// that answers nothing by itself, a plain blocking connect. Every descriptor is close-on-exec, so
// that a program a test starts never holds one.
#pragma once

#include <cstdint>

namespace sagaflow::testing {

// A loopback TCP port that was free a moment ago.
std::uint16_t free_port();

// A socket listening on a free loopback port. It accepts nothing itself: a client's TCP connect
// succeeds (the kernel completes it) and its first request gets no answer, unless the owner
// accepts on fd(). Closed on destruction.
class loopback_listener {
 public:
  loopback_listener();  // throws std::runtime_error when it cannot listen
  ~loopback_listener();
  loopback_listener(const loopback_listener&) = delete;
  loopback_listener& operator=(const loopback_listener&) = delete;

  int fd() const noexcept { return fd_; }
  std::uint16_t port() const noexcept { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// A socket connected to 127.0.0.1:`port` (the caller closes it), or -1 when nothing listens.
int connect_loopback(std::uint16_t port);

}  // namespace sagaflow::testing
