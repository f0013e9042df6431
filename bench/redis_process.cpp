// Child processes for the benchmark: see redis_process.hpp. Plain POSIX (fork/exec, pipes, a
// blocking PING) because all of it happens before or beside the measured part.
#include "redis_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string_view>
#include <thread>

namespace sagaflow::bench {

namespace {

using namespace std::chrono_literals;

std::filesystem::path find_program(std::string_view name, const char* env_override = nullptr) {
  if (const char* p = env_override ? std::getenv(env_override) : nullptr; p && *p) {
    if (::access(p, X_OK) != 0) throw std::runtime_error(std::string(env_override) + "=" + p + " is not an executable");
    return p;
  }
  if (name.find('/') != std::string_view::npos) return name;
  const char* path = std::getenv("PATH");
  std::string_view dirs = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
  while (!dirs.empty()) {
    auto colon = dirs.find(':');
    std::filesystem::path candidate = std::filesystem::path(dirs.substr(0, colon)) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    dirs.remove_prefix(colon == std::string_view::npos ? dirs.size() : colon + 1);
  }
  throw std::runtime_error(std::string(name) + " not found in PATH" +
                           (env_override ? std::string(" (or set ") + env_override + ")" : std::string()));
}

// Resolves the path in the parent so that the child, forked from a multi-threaded process, only
// makes async-signal-safe calls before execv.
struct child_spec {
  std::vector<std::string> args;
  int stdout_fd = -1;  // -1: /dev/null
  int stderr_fd = -1;  // -1: /dev/null; -2: inherit
};

pid_t spawn(const child_spec& spec) {
  std::vector<char*> argv;
  for (auto& a : spec.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // If the benchmark dies (crash, Ctrl-C), its children go with it: no stray redis-server.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    ::dup2(spec.stdout_fd >= 0 ? spec.stdout_fd : null_fd, STDOUT_FILENO);
    if (spec.stderr_fd != -2) ::dup2(spec.stderr_fd >= 0 ? spec.stderr_fd : null_fd, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot find a free loopback port");
  return ntohs(addr.sin_port);
}

// A listening socket is not enough: Redis may still be loading; PING must say PONG.
bool answers_ping(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  timeval tv{.tv_sec = 0, .tv_usec = 200000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::write(fd, "PING\r\n", 6) == 6) {
    char buf[16] = {};
    auto n = ::read(fd, buf, sizeof buf - 1);
    ok = n >= 5 && std::string_view(buf, static_cast<std::size_t>(n)).starts_with("+PONG");
  }
  ::close(fd);
  return ok;
}

std::filesystem::path make_temp_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "sagaflow-bench-XXXXXX").string();
  if (!::mkdtemp(pattern.data())) throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  return pattern;
}

}  // namespace

redis_process::redis_process(std::vector<std::string> extra_args)
    : program_(find_program("redis-server", "SAGAFLOW_REDIS_SERVER")), extra_args_(std::move(extra_args)),
      dir_(make_temp_dir()) {
  try {
    // The port was free when we looked; another process may take it before Redis binds it.
    for (int attempt = 0; attempt < 5; ++attempt)
      if (start_on(free_port())) return;
    // The directory goes away with us: quote the end of the server's output instead of a path.
    std::string text;
    for (const char* name : {"redis.out", "redis.log"}) {
      std::ifstream in(dir_ / name);
      text.append((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }
    if (text.size() > 800) text.erase(0, text.size() - 800);
    throw std::runtime_error("redis-server (" + program_.string() + ") did not start; its log ends with:\n" + text);
  } catch (...) {
    stop();  // the destructor does not run for a constructor that throws
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    throw;
  }
}

redis_process::~redis_process() {
  stop();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

bool redis_process::start_on(std::uint16_t port) {
  // Errors found before the log file is open (a bad option) go to the console: keep the last
  // attempt's.
  int console = ::open((dir_ / "redis.out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  child_spec spec{.args = {program_.string(), "--port", std::to_string(port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--daemonize", "no",
                           "--dir", dir_.string(), "--logfile", (dir_ / "redis.log").string()},
                  .stdout_fd = console,
                  .stderr_fd = console};
  spec.args.insert(spec.args.end(), extra_args_.begin(), extra_args_.end());
  try {
    pid_ = spawn(spec);
  } catch (...) {
    if (console >= 0) ::close(console);
    throw;
  }
  if (console >= 0) ::close(console);
  auto give_up = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < give_up) {
    if (answers_ping(port)) {
      port_ = port;
      return true;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    std::this_thread::sleep_for(10ms);
  }
  stop();
  throw std::runtime_error("redis-server did not answer PING on port " + std::to_string(port) + " within 5 s");
}

void redis_process::stop() noexcept {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  auto give_up = std::chrono::steady_clock::now() + 5s;
  while (::waitpid(pid_, nullptr, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > give_up) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  pid_ = -1;
}

std::string run_program(const std::vector<std::string>& argv) {
  if (argv.empty()) throw std::invalid_argument("run_program: no program");
  child_spec spec{.args = argv, .stderr_fd = -2};
  spec.args[0] = find_program(argv[0]).string();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  spec.stdout_fd = fds[1];
  pid_t pid = -1;
  try {
    pid = spawn(spec);
  } catch (...) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw;
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (;;) {
    auto n = ::read(fds[0], buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error(argv[0] + " failed (status " + std::to_string(status) + "): " + out);
  return out;
}

child_process::child_process(std::vector<std::string> argv) {
  if (argv.empty()) throw std::invalid_argument("child_process: no program");
  child_spec spec{.args = std::move(argv), .stderr_fd = -2};
  spec.args[0] = find_program(spec.args[0]).string();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  spec.stdout_fd = fds[1];
  try {
    pid_ = spawn(spec);
  } catch (...) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw;
  }
  ::close(fds[1]);
  out_ = fds[0];
}

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
  std::vector<std::string> argv{find_program("redis-benchmark", "SAGAFLOW_REDIS_BENCHMARK").string(),
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
