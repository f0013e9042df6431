// Child processes for the benchmark: see programs.hpp. Plain POSIX (pipes, waitpid) on top of
// testing/redis_process.hpp's spawn, because all of it happens before or beside the measured part.
#include "programs.hpp"

#include "redis_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace sagaflow::bench {

using sagaflow::testing::spawn;

namespace {

// Starts `argv` with its standard output to a pipe, whose read end goes to `out`; its standard
// error passes through.
pid_t spawn_reading_output(const std::vector<std::string>& argv, int& out) {
  if (argv.empty()) throw std::invalid_argument("no program to run");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  pid_t pid = -1;
  try {
    pid = spawn(argv, fds[1], testing::inherited);
  } catch (...) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw;
  }
  ::close(fds[1]);
  out = fds[0];
  return pid;
}

}  // namespace

std::string run_program(const std::vector<std::string>& argv) {
  int out_fd = -1;
  pid_t pid = spawn_reading_output(argv, out_fd);
  std::string out;
  char buf[4096];
  for (;;) {
    auto n = ::read(out_fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(out_fd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error(argv[0] + " failed (status " + std::to_string(status) + "): " + out);
  return out;
}

child_process::child_process(std::vector<std::string> argv) { pid_ = spawn_reading_output(argv, out_); }

child_process::~child_process() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (out_ >= 0) ::close(out_);
}

bool child_process::running() {
  if (pid_ <= 0) return false;
  if (::waitpid(pid_, &status_, WNOHANG) != pid_) return true;
  pid_ = -1;
  return false;
}

void child_process::signal(int sig) noexcept {
  if (pid_ > 0) ::kill(pid_, sig);
}

std::string child_process::finish(std::chrono::milliseconds limit) {
  std::string out;
  auto give_up = std::chrono::steady_clock::now() + limit;
  bool killed = false;
  char buf[65536];
  while (out_ >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - std::chrono::steady_clock::now());
    if (left.count() <= 0 && !killed) {
      signal(SIGKILL);  // the pipe closes with it
      killed = true;
    }
    pollfd p{.fd = out_, .events = POLLIN, .revents = 0};
    int ready = ::poll(&p, 1, killed ? 1000 : static_cast<int>(std::min<std::int64_t>(left.count(), 1000)));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    auto n = ::read(out_, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      ::close(out_);
      out_ = -1;
    }
  }
  if (pid_ > 0) {
    ::waitpid(pid_, &status_, 0);
    pid_ = -1;
  }
  if (killed) throw std::runtime_error("child process did not exit within " + std::to_string(limit.count()) + " ms; killed");
  if (!WIFEXITED(status_) || WEXITSTATUS(status_) != 0)
    throw std::runtime_error("child process failed (wait status " + std::to_string(status_) + ")");
  return out;
}

std::string self_executable() {
  std::error_code ec;
  auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("cannot read /proc/self/exe: " + ec.message());
  return path.string();
}

double redis_benchmark(const redis_benchmark_run& run) {
  const char* program = std::getenv("SAGAFLOW_REDIS_BENCHMARK");
  std::vector<std::string> argv{program && *program ? program : "redis-benchmark",
                                "-h", "127.0.0.1", "-p", std::to_string(run.port),
                                "-n", std::to_string(run.requests), "-P", std::to_string(run.pipeline),
                                "-c", std::to_string(run.clients), "-q", "--csv"};
  argv.insert(argv.end(), run.command.begin(), run.command.end());
  std::string out = run_program(argv);
  // Redis 7: a header line, then "\"<command>\",\"<rps>\",\"<avg ms>\",...".
  auto line_start = out.find('\n');
  auto first = line_start == std::string::npos ? std::string::npos : out.find("\",\"", line_start);
  if (first != std::string::npos) {
    const char* p = out.c_str() + first + 3;
    char* end = nullptr;
    double rps = std::strtod(p, &end);
    if (end != p && *end == '"' && rps > 0) return rps;
  }
  throw std::runtime_error("cannot read requests per second from redis-benchmark's output: " + out);
}

}  // namespace sagaflow::bench
