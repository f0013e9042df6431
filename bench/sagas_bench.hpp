// The "sagas" mode of sagaflow-bench: the saga engine end to end (sagas::client starting sagas,
// redis-server, an orchestrator process, a task worker process for remote steps), and the hidden
// modes that are those two processes.
#pragma once

#include <span>
#include <string_view>

namespace sagaflow::bench {

// Flags: --sagas, --remote-sagas, --repeat, ... (see --help). Starts a redis-server (and a second
// one with appendonly/everysec), "sagas-orchestrator" and "sagas-worker" processes (this
// executable again), and reports one table and a JSON line. A figure that cannot be measured is
// reported as failed with the reason; the others are still measured. Returns the exit status
// (1 when a figure failed); throws std::invalid_argument for bad flags.
int run_sagas_bench(std::span<const std::string_view> args);

// The orchestrator process: a sagas::orchestrator with the sagas "local3" (three local no-op
// steps, each with a no-op compensation) and "remote3" (three remote steps, task "noop" on the
// queues saga-s1, saga-s2, saga-s3), on the redis-server at 127.0.0.1:--port. Publishes its
// stats every millisecond on a shared board (a file mapped by the parent too, --board names it),
// so that the parent counts finished sagas without a Redis command. Runs until SIGTERM, then
// prints its stats.
int run_sagas_orchestrator(std::span<const std::string_view> args);

// The worker process of the remote steps: a sagaflow::tasks::worker on the queues saga-s1,
// saga-s2 and saga-s3 with the no-op handler "noop". Runs until SIGTERM, then prints its counts.
int run_sagas_worker(std::span<const std::string_view> args);

}  // namespace sagaflow::bench
