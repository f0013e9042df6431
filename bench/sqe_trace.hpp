// A diagnostic for the io_uring build of the benchmark: it wraps liburing's io_uring_submit (link
// option --wrap) to see which submission entries Asio sends without setting their user_data.
// Boost 1.81's Asio does that for its cancel entries; with liburing 2.3 the field keeps the value
// of the entry that used the same ring slot before, so the kernel's answer to the cancel
// is delivered to whatever operation that stale value names. See bench/RESULTS.md.
#pragma once

#include <cstdint>

namespace sagaflow::bench {

struct sqe_trace_counts {
  std::uint64_t submitted = 0;         // entries submitted while tracing
  std::uint64_t cancels = 0;           // IORING_OP_ASYNC_CANCEL entries
  std::uint64_t unset = 0;             // entries whose user_data Asio left as the slot held it
  std::uint64_t unset_cancels = 0;     // ... of which cancels
  std::uint64_t stale_other_io = 0;    // the stale value named the I/O queue of another operation
  std::uint64_t stale_own_io = 0;      // a cancel whose stale value named the queue it cancels
  std::uint64_t stale_internal = 0;    // the stale value named a timer or another internal entry
};

// False in an epoll build (nothing to trace).
bool sqe_trace_available() noexcept;
// Starts tracing, for the rest of the process (the slots it marks must be restored on every
// later submission). `clear_stale` sets the user_data of entries Asio left unset to 0 before they
// are submitted, which is what Asio 1.27 (Boost 1.82) does for every entry it hands out.
void sqe_trace_start(bool clear_stale) noexcept;
sqe_trace_counts sqe_trace_read() noexcept;

}  // namespace sagaflow::bench
