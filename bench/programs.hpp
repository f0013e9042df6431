// The programs the benchmark runs as child processes besides its redis-server (which is
// testing/redis_process.hpp's): redis-benchmark, and other modes of the benchmark itself (a task
// worker, a saga orchestrator); and the measuring helpers the modes share (measure::).
#pragma once

#include <sagaflow/engine/coro.hpp>
#include <sagaflow/transport/connection.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <string>
#include <string_view>
#include <utility>
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

// Helpers of the modes that measure the engine (tasks, sagas). A namespace of their own, so that
// the older modes' file-local copies of some of them stay unambiguous.
namespace measure {

std::string fixed(double v, int decimals);  // "%.*f"
std::int64_t unix_ns();                     // system clock: comparable between processes

// A connection to the benchmark's own server: no reconnect (a dropped connection must fail the
// run, not hide in a retry), a long command timeout (a saturated server is slow, not dead).
transport::config local_config(std::uint16_t port, std::string client_name);

// Runs `op` on `ex` and waits for it from a thread that is not the executor's.
template <typename Executor, typename T>
T run_on(const Executor& ex, awaitable<T> op) {
  return boost::asio::co_spawn(ex, std::move(op), boost::asio::use_future).get();
}
// Waits for all of them; rethrows the first failure.
void wait_all(std::vector<std::future<void>>& futures);

// CPU seconds (user + system) of this process (RUSAGE_SELF) or of its waited-for children.
double cpu_seconds(int who);
// utime + stime of a live process, from /proc/<pid>/stat.
double cpu_seconds_of(pid_t pid);
// Seconds the threads of a live process spent runnable but waiting for a CPU (the second field of
// /proc/<pid>/task/*/schedstat): on shared cores, how much a process was held back by others.
double cpu_wait_seconds_of(pid_t pid);
// A field of /proc/<pid>/status in kB ("VmHWM", "VmRSS"); -1 when missing.
double proc_status_kb(pid_t pid, std::string_view field);

// Takes up to `want` from a budget shared by producer loops; 0 when it is spent.
std::uint64_t claim(std::atomic<std::int64_t>& budget, std::uint64_t want);

// INFO commandstats: per command, {calls, microseconds}. Commands run by a script count here
// too (and inside EVALSHA's time).
using command_stats = std::map<std::string, std::pair<double, double>>;
command_stats parse_commandstats(std::string_view info_text);
// The commands that took the most server time between two snapshots, per unit of work (`per`
// tasks or sagas): "evalsha 12.30 us (7.00 calls), ...", at most `limit` of them; INFO left out.
std::string top_commands(const command_stats& before, const command_stats& after, double per, std::size_t limit);
// All commands' calls between two snapshots (INFO left out), per unit of work.
double calls_per(const command_stats& before, const command_stats& after, double per);

// Waits until `child` has a connection named `client_name` blocked in `command` (CLIENT LIST,
// as `client_list` returns it, shows flag "b"): the process is ready for the measured work.
// Throws when the child exits first or `limit` passes.
void wait_until_blocked(const std::function<std::string()>& client_list, child_process& child,
                        std::string_view client_name, std::string_view command, std::chrono::milliseconds limit);

}  // namespace measure

}  // namespace sagaflow::bench
