// A private redis-server and child programs: see redis_process.hpp. Plain POSIX (fork/exec, a
// blocking probe over loopback) because all of it happens before, after or beside what a test
// checks or the benchmark measures.
#include "redis_process.hpp"

#include "loopback.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>

namespace sagaflow::testing {

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// How long a server may take to answer after it was started, or to exit after SIGTERM: far more
// than it needs (a few ms), so only a hang trips it.
constexpr auto start_limit = 10s;
constexpr auto stop_limit = 10s;

std::filesystem::path find_program(std::string_view name, const char* env_override = nullptr) {
  if (const char* p = env_override ? std::getenv(env_override) : nullptr; p && *p) {
    if (::access(p, X_OK) != 0) throw std::runtime_error(std::string(env_override) + "=" + p + " is not an executable");
    return p;
  }
  if (name.find('/') != std::string_view::npos) {
    if (::access(std::string(name).c_str(), X_OK) != 0) throw std::runtime_error(std::string(name) + " is not an executable");
    return name;
  }
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

std::filesystem::path make_temp_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "sagaflow-redis-XXXXXX").string();
  if (!::mkdtemp(pattern.data())) throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  return pattern;
}

// The end of what the server wrote: errors found before its log file is open (a bad option) go to
// its console output, the rest to its log.
std::string output_tail(const std::filesystem::path& dir) {
  std::string text;
  for (const char* name : {"redis.out", "redis.log"}) {
    std::ifstream in(dir / name);
    text.append((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  if (text.size() > 800) text.erase(0, text.size() - 800);
  return text;
}

// True once `reply` holds a whole simple reply or bulk string (of an array, its first line).
bool complete(std::string_view reply) {
  auto eol = reply.find("\r\n");
  if (eol == std::string_view::npos) return false;
  if (!reply.starts_with('$')) return true;
  long long size = 0;
  auto [end, ec] = std::from_chars(reply.data() + 1, reply.data() + eol, size);
  if (ec != std::errc() || size < 0) return true;  // malformed, or a null bulk ("$-1")
  return reply.size() >= eol + 2 + static_cast<std::size_t>(size) + 2;
}

std::string ask_port(std::uint16_t port, std::string_view command, std::chrono::milliseconds limit) {
  int fd = connect_loopback(port);
  if (fd < 0) return {};
  std::string request(command);
  request += "\r\n";
  std::string reply;
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    auto end = clock_type::now() + limit;
    while (!complete(reply)) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - clock_type::now()).count();
      if (left <= 0) break;
      pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
      int ready = ::poll(&p, 1, static_cast<int>(left));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) break;
      char buf[4096];
      auto n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      reply.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return reply;
}

void wait_for_exit(pid_t pid) {
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

pid_t spawn(const std::vector<std::string>& argv, int out, int err) {
  if (argv.empty()) throw std::invalid_argument("spawn: no program");
  // Everything that allocates happens here: the child of a multi-threaded process may make only
  // async-signal-safe calls before execv.
  std::string program = find_program(argv[0]).string();
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // PDEATHSIG follows the thread that forked: spawn from a thread that lives as long as the child.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
    int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    ::dup2(null_fd, STDIN_FILENO);
    if (out != inherited) ::dup2(out >= 0 ? out : null_fd, STDOUT_FILENO);
    if (err != inherited) ::dup2(err >= 0 ? err : null_fd, STDERR_FILENO);
    ::execv(program.c_str(), args.data());
    ::_exit(127);
  }
  return pid;
}

redis_process::redis_process(std::vector<std::string> options)
    : program_(find_program("redis-server", "SAGAFLOW_REDIS_SERVER")), options_(std::move(options)),
      dir_(make_temp_dir()) {
  try {
    // The port was free when we looked; another process may take it before the server binds it.
    for (int attempt = 0; attempt < 5; ++attempt)
      if (start_on(free_port()) == outcome::ready) return;
    // The directory goes away with us: quote the server's output instead of naming a path.
    throw std::runtime_error("redis-server (" + program_.string() + ") did not start; its output ends with:\n" +
                             output_tail(dir_));
  } catch (...) {
    kill();  // the destructor does not run for a constructor that throws
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    throw;
  }
}

redis_process::~redis_process() {
  kill();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

void redis_process::start() {
  if (pid_ > 0) return;
  if (start_on(port_) == outcome::exited)
    throw std::runtime_error("redis-server exited as it started again on port " + std::to_string(port_) +
                             "; its output ends with:\n" + output_tail(dir_));
}

redis_process::outcome redis_process::start_on(std::uint16_t port) {
  // The last start's console output only (its log file collects every start).
  int console = ::open((dir_ / "redis.out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  std::vector<std::string> argv{program_.string(), "--port", std::to_string(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--daemonize", "no",
                                "--dir", dir_.string(), "--logfile", log_file().string()};
  argv.insert(argv.end(), options_.begin(), options_.end());
  try {
    pid_ = spawn(argv, console, console);
  } catch (...) {
    if (console >= 0) ::close(console);
    throw;
  }
  if (console >= 0) ::close(console);
  port_ = port;
  auto give_up = clock_type::now() + start_limit;
  while (clock_type::now() < give_up) {
    // INFO is served while the server loads its data (PING is refused then), and its process_id
    // tells our server from another that took the port. One with a password answers -NOAUTH: ours
    // as long as our child runs (checked next).
    auto reply = ask_port(port, "INFO server", 200ms);
    bool ours = reply.starts_with('$') ? info_field(reply, "process_id") == std::to_string(pid_) : reply.starts_with('-');
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return outcome::exited;
    }
    if (ours) return outcome::ready;
    std::this_thread::sleep_for(10ms);
  }
  kill();
  throw std::runtime_error("redis-server did not answer on port " + std::to_string(port) + " within " +
                           std::to_string(start_limit.count()) + " s; its output ends with:\n" + output_tail(dir_));
}

void redis_process::stop() noexcept {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  auto give_up = clock_type::now() + stop_limit;
  for (;;) {
    auto r = ::waitpid(pid_, nullptr, WNOHANG);
    if (r == pid_ || (r < 0 && errno != EINTR)) break;
    if (clock_type::now() > give_up) {
      ::kill(pid_, SIGKILL);
      wait_for_exit(pid_);
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  pid_ = -1;
}

void redis_process::kill() noexcept {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  wait_for_exit(pid_);
  pid_ = -1;
}

std::string redis_process::url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

std::string redis_process::ask(std::string_view command) const { return ask_port(port_, command, 5s); }

std::string info_field(std::string_view info, std::string_view name) {
  for (auto at = info.find(name); at != std::string_view::npos; at = info.find(name, at + 1)) {
    auto rest = info.substr(at + name.size());
    if ((at == 0 || info[at - 1] == '\n') && rest.starts_with(':')) {
      rest.remove_prefix(1);
      return std::string(rest.substr(0, rest.find_first_of("\r\n")));
    }
  }
  return {};
}

}  // namespace sagaflow::testing
