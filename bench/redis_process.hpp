// The programs the benchmark runs as child processes: a private redis-server (free loopback
// port, temporary directory, no persistence; never the system service), redis-benchmark, and
// other processes of the benchmark itself (a task worker).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace sagaflow::bench {

class redis_process {
 public:
  // Starts redis-server (SAGAFLOW_REDIS_SERVER, else from PATH) and returns once it answers
  // PING; throws std::runtime_error saying why it did not. `extra_args` are appended to its
  // command line (e.g. {"--loglevel", "verbose"}).
  explicit redis_process(std::vector<std::string> extra_args = {});
  // Stops the server (SIGTERM, SIGKILL after 5 s) and removes its directory; also on unwinding.
  ~redis_process();
  redis_process(const redis_process&) = delete;
  redis_process& operator=(const redis_process&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  const std::filesystem::path& dir() const noexcept { return dir_; }
  std::filesystem::path log_file() const { return dir_ / "redis.log"; }
  void stop() noexcept;

 private:
  bool start_on(std::uint16_t port);  // false when the server exited at start (port taken)

  std::filesystem::path program_;
  std::vector<std::string> extra_args_;
  std::filesystem::path dir_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// A long-running child (e.g. a worker process) whose standard output goes to a pipe that is read
// when it ends; its standard error passes through. It dies with the benchmark (PDEATHSIG), and
// is killed (SIGKILL) if still running when this object is destroyed.
class child_process {
 public:
  // argv[0]: a path, or a name looked up in PATH. Throws when it cannot start.
  explicit child_process(std::vector<std::string> argv);
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const noexcept { return pid_; }
  // False once the child has exited (it is reaped then; exit_status() says how).
  bool running();
  int exit_status() const noexcept { return status_; }
  void signal(int sig) noexcept;
  // Reads the child's standard output to its end and waits for it to exit; after `limit` it is
  // killed. Returns the output; throws unless the child exited with status 0.
  std::string finish(std::chrono::milliseconds limit);

 private:
  pid_t pid_ = -1;
  int out_ = -1;    // read end of the child's stdout
  int status_ = 0;  // from waitpid, once reaped
};

// The path of the running executable (/proc/self/exe), to start another mode of the benchmark.
std::string self_executable();

// Runs `argv` (argv[0] looked up in PATH) to completion and returns its standard output; its
// standard error passes through. Throws when it cannot start or exits with a non-zero status.
std::string run_program(const std::vector<std::string>& argv);

struct redis_benchmark_run {
  std::uint16_t port = 0;
  std::uint64_t requests = 100000;  // -n
  std::size_t pipeline = 1;         // -P
  std::size_t clients = 50;         // -c
  std::vector<std::string> command;  // e.g. {"XADD", "sfbench:rb", "*", "f", "v"}
};

// Requests per second as redis-benchmark reports them (its --csv "rps" column).
// redis-benchmark comes from SAGAFLOW_REDIS_BENCHMARK, else from PATH.
double redis_benchmark(const redis_benchmark_run& run);

}  // namespace sagaflow::bench
