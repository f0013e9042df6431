// What the roles of one worker (fetcher, processor, settler, promoter, lease renewer, recoverer)
// share: options, handlers, the broker and each queue's local state. All of it lives on the
// worker's strand, so the roles need no locks.
#pragma once

#include <sagaflow/engine/backoff.hpp>
#include <sagaflow/engine/notifier.hpp>
#include <sagaflow/tasks/broker.hpp>
#include <sagaflow/tasks/worker.hpp>

#include <boost/asio/strand.hpp>

#include <array>
#include <deque>
#include <unordered_set>

namespace sagaflow::tasks {

std::int64_t unix_now_ms();

// A stream entry this worker read, and the priority stream it came from.
struct fetched {
  std::size_t stream;
  transport::stream_entry entry;
};

struct queue_state {
  queue_state(queue_config c, std::string_view prefix, std::size_t slot_count, std::size_t prefetch_count,
              const boost::asio::any_io_executor& strand)
      : config(std::move(c)),
        keys(prefix, config.name),
        slots(slot_count),
        prefetch(prefetch_count),
        slot_freed(strand),
        promoter_wake(strand) {}

  queue_config config;
  queue_keys keys;
  std::size_t slots;    // handlers of this queue that may run at once
  std::size_t prefetch;  // entries it may hold fetched beyond its free slots
  std::size_t running = 0;
  bool dispatch_posted = false;
  std::array<std::deque<fetched>, priority_count> buffer;  // fetched, not yet started
  // Entries pending for this consumer that this worker holds: buffered, running or settling.
  // The lease renewer keeps them; the recoverer leaves them alone; stop hands back the rest.
  std::array<std::unordered_set<std::string>, priority_count> owned;
  notifier slot_freed;  // a handler ended, or a buffered task was handed back
  wakeup promoter_wake;
  steady_clock::time_point promoter_next = steady_clock::time_point::max();

  std::size_t buffered() const {
    std::size_t n = 0;
    for (auto& b : buffer) n += b.size();
    return n;
  }
  // Handler slots neither running nor promised to a fetched task.
  std::size_t free_slots() const {
    auto used = running + buffered();
    return slots > used ? slots - used : 0;
  }
  // How many entries the fetcher may take now: the free slots, plus the prefetch allowance.
  std::size_t fetch_room() const {
    auto used = running + buffered();
    return slots + prefetch > used ? slots + prefetch - used : 0;
  }
  std::size_t stream_index(std::string_view stream) const {
    for (std::size_t p = 0; p < priority_count; ++p)
      if (keys.streams[p] == stream) return p;
    return priority_count;
  }
  // A task becomes due at `due`: the promoter looks then, if that is before its next round.
  void wake_promoter(steady_clock::time_point due) {
    if (due < promoter_next) {
      promoter_next = due;
      promoter_wake.wake();
    }
  }
};

struct worker_state {
  worker_state(const boost::asio::any_io_executor& ex, transport::config cfg, worker_options opts);

  boost::asio::strand<boost::asio::any_io_executor> strand;
  transport::config redis_config;
  worker_options options;
  std::unordered_map<std::string, handler> handlers;
  worker_stats stats;
  std::unique_ptr<tasks::broker> broker;  // on the commands connection: scripts, acks, renewals, recovery
  std::vector<std::unique_ptr<queue_state>> queues;
  random_source random = random_source::from_entropy();
  // The worker's state, kept alive by what runs after worker::run() returned (handlers past
  // the grace, their settlement) and by timers' pending waits.
  std::weak_ptr<void> owner;
};

}  // namespace sagaflow::tasks
