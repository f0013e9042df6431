// The programs the benchmark runs as child processes besides its redis-server (which is
// testing/redis_process.hpp's): redis-benchmark, and other modes of the benchmark itself (a task
// worker).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace sagaflow::bench {

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
