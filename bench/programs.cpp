// Child processes for the benchmark and the shared measuring helpers: see programs.hpp. Plain
// POSIX (pipes, waitpid, /proc) on top of testing/redis_process.hpp's spawn, because all of it
// happens before or beside the measured part.
#include "programs.hpp"

#include "redis_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <thread>

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

namespace measure {

std::string fixed(double v, int decimals) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::int64_t unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

transport::config local_config(std::uint16_t port, std::string client_name) {
  transport::config cfg;
  cfg.host = "127.0.0.1";
  cfg.port = port;
  cfg.client_name = std::move(client_name);
  cfg.command_timeout = std::chrono::seconds(30);
  cfg.reconnect = false;
  return cfg;
}

void wait_all(std::vector<std::future<void>>& futures) {
  std::exception_ptr first;
  for (auto& f : futures) {
    try {
      f.get();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

double cpu_seconds(int who) {
  rusage u{};
  ::getrusage(who, &u);
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

double cpu_seconds_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto paren = text.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(text.substr(paren + 2));
  std::string skip;
  for (int i = 3; i < 14; ++i) fields >> skip;  // state .. cmajflt
  double utime = 0, stime = 0;                  // fields 14 and 15, in clock ticks
  fields >> utime >> stime;
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double cpu_wait_seconds_of(pid_t pid) {
  std::error_code ec;
  double total = 0;
  for (auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(task.path() / "schedstat");
    double on_cpu_ns = 0, waiting_ns = 0;
    if (in >> on_cpu_ns >> waiting_ns) total += waiting_ns / 1e9;
  }
  return total;
}

double proc_status_kb(pid_t pid, std::string_view field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with(std::string(field) + ":")) return std::stod(line.substr(field.size() + 1));
  return -1;
}

std::uint64_t claim(std::atomic<std::int64_t>& budget, std::uint64_t want) {
  auto before = budget.fetch_sub(static_cast<std::int64_t>(want), std::memory_order_relaxed);
  if (before <= 0) return 0;
  return std::min<std::uint64_t>(static_cast<std::uint64_t>(before), want);
}

command_stats parse_commandstats(std::string_view info_text) {
  command_stats out;
  std::istringstream lines{std::string(info_text)};
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.starts_with("cmdstat_")) continue;
    auto colon = line.find(':');
    auto calls = line.find("calls="), usec = line.find(",usec=");
    if (colon == std::string::npos || calls == std::string::npos || usec == std::string::npos) continue;
    out[line.substr(8, colon - 8)] = {std::stod(line.substr(calls + 6)), std::stod(line.substr(usec + 6))};
  }
  return out;
}

namespace {
std::pair<double, double> delta(const command_stats& before, const std::string& name, std::pair<double, double> now) {
  auto it = before.find(name);
  if (it == before.end()) return now;
  return {now.first - it->second.first, now.second - it->second.second};
}
}  // namespace

std::string top_commands(const command_stats& before, const command_stats& after, double per, std::size_t limit) {
  std::vector<std::pair<double, std::string>> spent;
  for (auto& [name, now] : after) {
    auto [calls, usec] = delta(before, name, now);
    if (calls > 0 && name != "info")
      spent.emplace_back(usec, name + " " + fixed(usec / per, 2) + " us (" + fixed(calls / per, 2) + " calls)");
  }
  std::sort(spent.rbegin(), spent.rend());
  std::string out;
  for (std::size_t i = 0; i < spent.size() && i < limit; ++i) out += (i ? ", " : "") + spent[i].second;
  return out;
}

double calls_per(const command_stats& before, const command_stats& after, double per) {
  double calls = 0;
  for (auto& [name, now] : after)
    if (name != "info") calls += delta(before, name, now).first;
  return calls / per;
}

void wait_until_blocked(const std::function<std::string()>& client_list, child_process& child,
                        std::string_view client_name, std::string_view command, std::chrono::milliseconds limit) {
  auto give_up = std::chrono::steady_clock::now() + limit;
  const std::string name_field = " name=" + std::string(client_name) + " ", cmd_field = " cmd=" + std::string(command) + " ";
  for (;;) {
    if (!child.running())
      throw std::runtime_error(std::string(client_name) + " exited at start (wait status " +
                               std::to_string(child.exit_status()) + ")");
    std::istringstream lines(client_list());
    std::string line;
    while (std::getline(lines, line)) {
      auto flags_at = line.find(" flags=");
      if (line.find(name_field) == std::string::npos || flags_at == std::string::npos ||
          line.find(cmd_field) == std::string::npos)
        continue;
      auto flags = line.substr(flags_at + 7, line.find(' ', flags_at + 7) - flags_at - 7);
      if (flags.find('b') != std::string::npos) return;
    }
    if (std::chrono::steady_clock::now() > give_up)
      throw std::runtime_error(std::string(client_name) + " did not block in " + std::string(command) + " within " +
                               std::to_string(limit.count()) + " ms");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace measure

}  // namespace sagaflow::bench
