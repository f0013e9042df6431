// The "reactor-stress" mode of sagaflow-bench: the worker's real traffic mix, bounded in time,
// counting the disconnects that the server did not initiate, to compare Asio's reactors
// (io_uring and epoll builds of the same code).
#pragma once

#include <span>
#include <string_view>

namespace sagaflow::bench {

// Flags: --seconds, --workers, --queues, --shared-timer, ... (see --help). Starts a
// redis-server (verbose log, to see which side closed each connection), runs the mix, drains
// the queues, stops, and reports one summary and a JSON line. Returns 0 when no connection was
// lost and every task finished, 1 otherwise.
int run_reactor_stress(std::span<const std::string_view> args);

}  // namespace sagaflow::bench
