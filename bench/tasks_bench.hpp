// The "tasks" mode of sagaflow-bench: the task queue end to end (client, Redis, one worker
// process), and the hidden "tasks-worker" mode that is that worker process.
#pragma once

#include <span>
#include <string_view>

namespace sagaflow::bench {

// Flags: --n, --retry-n, --concurrency, ... (see --help). Starts a redis-server and one
// "tasks-worker" process (this executable again), and reports one table and a JSON line.
// Returns the exit status; throws std::invalid_argument for bad flags and std::runtime_error
// when a check fails (a task lost, run twice or dead-lettered).
int run_tasks_bench(std::span<const std::string_view> args);

// The worker process of the tasks mode: a sagaflow::tasks::worker on the queue "bench" of the
// redis-server at 127.0.0.1:--port, with the handlers "noop", "fail-twice" and "latency". Runs
// until SIGTERM, then prints what its handlers counted (and the pickup latencies) to stdout.
int run_tasks_worker(std::span<const std::string_view> args);

}  // namespace sagaflow::bench
