// The "transport" mode of sagaflow-bench: throughput of sagaflow::transport::connection.
#pragma once

#include <span>
#include <string_view>

namespace sagaflow::bench {

// Flags: --n, --pipeline, --inflight, --readers (see --help). Returns the exit status; throws
// std::invalid_argument for bad flags and std::runtime_error when a check fails.
int run_transport_bench(std::span<const std::string_view> args);

}  // namespace sagaflow::bench
