// redis-server started as a child process for one test.
#include "redis_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <thread>

namespace sagaflow::testing {

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

namespace {
std::filesystem::path make_temp_dir() {
  std::random_device rd;
  for (int i = 0; i < 100; ++i) {
    auto p = std::filesystem::temp_directory_path() / ("sagaflow-test-" + std::to_string(rd()));
    if (std::filesystem::create_directory(p)) return p;
  }
  throw std::runtime_error("cannot create a temporary directory");
}

bool can_connect(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}
}  // namespace

redis_server::redis_server(std::vector<std::string> extra, bool tcp)
    : extra_(std::move(extra)), tcp_(tcp), port_(free_port()), spare_port_(free_port()), dir_(make_temp_dir()) {
  start();
}

redis_server::~redis_server() {
  try {
    kill();
  } catch (...) {
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

void redis_server::start() {
  if (pid_ > 0) return;
  const char* bin = std::getenv("SAGAFLOW_REDIS_SERVER");
  std::vector<std::string> args{bin && *bin ? bin : "redis-server",
                                "--port", tcp_ ? std::to_string(port_) : "0",
                                "--bind", "127.0.0.1",
                                "--save", "",
                                "--appendonly", "no",
                                "--daemonize", "no",
                                "--dir", dir_.string(),
                                "--logfile", (dir_ / "redis.log").string(), "--loglevel", "verbose"};
  args.insert(args.end(), extra_.begin(), extra_.end());
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    // The server must not outlive the test (a crashed test would leave it holding ctest's
    // output pipe open), and it writes to its log file, not to the test's output.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int null_fd = ::open("/dev/null", O_RDWR);
    ::dup2(null_fd, 0);
    ::dup2(null_fd, 1);
    ::dup2(null_fd, 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  pid_ = pid;
  wait_until_listening(tcp_ ? port_ : spare_port_);
}

void redis_server::wait_until_listening(std::uint16_t port) {
  for (int i = 0; i < 500; ++i) {
    if (can_connect(port)) return;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("redis-server exited at start; see " + (dir_ / "redis.log").string());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  throw std::runtime_error("redis-server did not listen on port " + std::to_string(port) + " within 5 s");
}

void redis_server::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void redis_server::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

transport::config redis_server::config() const {
  transport::config c;
  c.host = "127.0.0.1";
  c.port = port_;
  c.connect_timeout = std::chrono::seconds(5);
  c.command_timeout = std::chrono::seconds(10);
  return c;
}

std::string redis_server::url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

}  // namespace sagaflow::testing
