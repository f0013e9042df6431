// The io_uring submission tracer of sqe_trace.hpp: a --wrap of io_uring_submit, built into the io_uring
// build of sagaflow-bench only. Off (one relaxed load per submission) until a mode starts it.
#include "sqe_trace.hpp"

#if defined(SAGAFLOW_BENCH_SQE_TRACE)

#include <liburing.h>

#include <atomic>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

extern "C" int __real_io_uring_submit(struct io_uring* ring);

namespace sagaflow::bench {
namespace {

// Written into a slot's user_data once the kernel has consumed its entry. It is no user-space
// address (not canonical), so an entry that still carries it when it is submitted again was not
// given a user_data by Asio; the tracer then puts back what the slot held (or 0 with
// clear_stale), so that the program behaves as without the tracer.
constexpr std::uint64_t poison_tag = 0x5af1'0000'0000'0000ull;
constexpr std::uint64_t poison_mask = 0xffff'0000'0000'0000ull;

struct ring_state {
  std::vector<std::uint64_t> held;              // per slot: user_data before it was marked
  std::unordered_set<std::uint64_t> io_queues;  // user_data of I/O entries: Asio's per-socket queues
};

std::atomic<bool> enabled{false};
std::atomic<bool> clear_stale{false};
std::mutex mutex;  // submissions of different io_contexts (threads) meet here
std::unordered_map<io_uring*, ring_state> rings;
sqe_trace_counts counts;

bool is_io(unsigned opcode) {
  return opcode != IORING_OP_NOP && opcode != IORING_OP_TIMEOUT && opcode != IORING_OP_TIMEOUT_REMOVE &&
         opcode != IORING_OP_ASYNC_CANCEL;
}

}  // namespace

bool sqe_trace_available() noexcept { return true; }

void sqe_trace_start(bool clear) noexcept {
  clear_stale.store(clear);
  enabled.store(true);
}

sqe_trace_counts sqe_trace_read() noexcept {
  std::lock_guard lock(mutex);
  return counts;
}

}  // namespace sagaflow::bench

extern "C" int __wrap_io_uring_submit(struct io_uring* ring) {
  using namespace sagaflow::bench;
  if (!enabled.load(std::memory_order_relaxed)) return __real_io_uring_submit(ring);
  std::lock_guard lock(mutex);
  auto& state = rings[ring];
  auto& sq = ring->sq;
  if (state.held.size() != sq.ring_entries) state.held.assign(sq.ring_entries, 0);
  // Entries prepared since the last submission.
  for (unsigned i = sq.sqe_head; i != sq.sqe_tail; ++i) {
    unsigned slot = i & sq.ring_mask;
    io_uring_sqe& sqe = sq.sqes[slot];
    ++counts.submitted;
    bool cancel = sqe.opcode == IORING_OP_ASYNC_CANCEL;
    if (cancel) ++counts.cancels;
    if ((sqe.user_data & poison_mask) == poison_tag) {
      std::uint64_t held = state.held[slot];
      ++counts.unset;
      if (cancel) ++counts.unset_cancels;
      if (state.io_queues.contains(held))
        ++(cancel && held == sqe.addr ? counts.stale_own_io : counts.stale_other_io);
      else if (held != 0)
        ++counts.stale_internal;
      sqe.user_data = clear_stale.load() ? 0 : held;
    } else if (is_io(sqe.opcode) && sqe.user_data != 0) {
      state.io_queues.insert(sqe.user_data);
    }
  }
  unsigned consumed_from = __atomic_load_n(sq.khead, __ATOMIC_ACQUIRE);
  int result = __real_io_uring_submit(ring);
  unsigned consumed_to = __atomic_load_n(sq.khead, __ATOMIC_ACQUIRE);
  // The kernel has read these entries: mark their slots.
  for (unsigned i = consumed_from; i != consumed_to; ++i) {
    unsigned slot = i & sq.ring_mask;
    state.held[slot] = sq.sqes[slot].user_data;
    sq.sqes[slot].user_data = poison_tag | slot;
  }
  return result;
}

#else

namespace sagaflow::bench {

bool sqe_trace_available() noexcept { return false; }
void sqe_trace_start(bool) noexcept {}
sqe_trace_counts sqe_trace_read() noexcept { return {}; }

}  // namespace sagaflow::bench

#endif
