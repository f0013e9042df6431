// sagaflow-bench: one binary for the throughput benchmarks, one mode per layer (transport, tasks,
// sagas) and the reactor stress; each mode starts and stops its own redis-server.
#include "reactor_stress.hpp"
#include "sagas_bench.hpp"
#include "tasks_bench.hpp"
#include "transport_bench.hpp"

#include <exception>
#include <iostream>
#include <span>
#include <string_view>
#include <vector>

namespace {

struct mode {
  std::string_view name;
  std::string_view summary;
  int (*run)(std::span<const std::string_view> args);
  bool hidden = false;  // started by another mode, not by people: not in the usage
};

// New modes are one line here and one run function in their own file.
constexpr mode modes[] = {
    {"transport", "pipelined XADD and XREADGROUP+XACK through one connection, next to redis-benchmark",
     sagaflow::bench::run_transport_bench},
    {"tasks", "task queue: end-to-end, enqueue, retry throughput, pickup latency, worker RSS (one worker process)",
     sagaflow::bench::run_tasks_bench},
    {"tasks-worker", "the worker process of the tasks mode", sagaflow::bench::run_tasks_worker, true},
    {"sagas", "sagas: local and remote 3-step throughput (plain and appendonly), latency, orchestrator RSS",
     sagaflow::bench::run_sagas_bench},
    {"sagas-orchestrator", "the orchestrator process of the sagas mode", sagaflow::bench::run_sagas_orchestrator, true},
    {"sagas-worker", "the remote steps' worker process of the sagas mode", sagaflow::bench::run_sagas_worker, true},
    {"reactor-stress", "the worker's traffic mix for a bounded time, counting disconnects the server did not initiate",
     sagaflow::bench::run_reactor_stress},
};

void print_usage(std::ostream& out) {
  out << "usage: sagaflow-bench <mode> [flags]   (sagaflow-bench <mode> --help for the flags)\nmodes:\n";
  for (auto& m : modes)
    if (!m.hidden) out << "  " << m.name << "  " << m.summary << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    print_usage(args.empty() ? std::cerr : std::cout);
    return args.empty() ? 2 : 0;
  }
  for (auto& m : modes) {
    if (m.name != args[0]) continue;
    try {
      return m.run(std::span(args).subspan(1));
    } catch (const std::invalid_argument& e) {
      std::cerr << "sagaflow-bench " << m.name << ": " << e.what() << "\n";
      return 2;
    } catch (const std::exception& e) {
      std::cerr << "sagaflow-bench " << m.name << ": FAILED: " << e.what() << "\n";
      return 1;
    }
  }
  std::cerr << "sagaflow-bench: unknown mode '" << args[0] << "'\n";
  print_usage(std::cerr);
  return 2;
}
