// The processor runs fetched tasks: per queue up to its share of slots at once, the most urgent
// buffered task first. Each attempt runs under its deadline (one timer per slot, re-armed only
// when a task's deadline is earlier than the one it waits for), its handler's end becomes an
// outcome, and the settler settles it. Bad input never reaches a handler: an oversized,
// undecodable or unknown task goes to the dead letters (an unknown one after a grace).
#pragma once

#include "outcome.hpp"
#include "settler.hpp"

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>

#include <optional>
#include <set>

namespace sagaflow::tasks {

class processor {
 public:
  processor(worker_state& state, settler& settle);

  // Entries the fetcher or the recoverer got, now owned here. They are started as slots allow,
  // after the caller's next step (posted), so that the fetcher asks Redis for the next batch
  // before this one runs: Redis and the handlers overlap instead of taking turns.
  void accept(queue_state& q, std::vector<transport::stream_batch>&& batches);

  // No task starts from now on; idle slots end their coroutine.
  void stop_starting();
  // Hands back to their streams, at once, the tasks fetched but never started, and anything else
  // pending for this consumer that is not running here (a blocking read answered as its
  // connection closed, a reply lost with a connection).
  awaitable<void> hand_back();
  // Completes when no handler runs, or at `deadline`.
  awaitable<void> drain(steady_clock::time_point deadline);
  std::size_t running() const noexcept { return running_; }

 private:
  struct slot {
    explicit slot(const boost::asio::any_io_executor& ex) : timer(ex), wake(ex) {}
    boost::asio::cancellation_signal signal;  // cancels the handler at its deadline
    boost::asio::steady_timer timer;
    notifier wake;                 // dispatch() gave the idle slot a task, or the worker stops
    queue_state* q = nullptr;      // of the task in `next` or running
    std::optional<fetched> next;   // given by dispatch(), not started yet
    bool looping = false;          // its coroutine runs
    steady_clock::time_point deadline;                                 // of the task in this slot
    steady_clock::time_point armed_for = steady_clock::time_point::max();  // the timer's expiry, if waiting
    bool busy = false;
    bool timed_out = false;
  };

  void schedule_dispatch(queue_state& q);
  void dispatch(queue_state& q);
  std::optional<fetched> next_task(queue_state& q);
  awaitable<void> run_slot(slot& s);
  awaitable<void> execute(queue_state& q, fetched item, slot& s);
  awaitable<void> no_handler(queue_state& q, const fetched& item, envelope task);
  void arm(slot& s);

  worker_state& state_;
  settler& settler_;
  std::vector<std::unique_ptr<slot>> slots_;
  std::vector<slot*> idle_;
  std::size_t running_ = 0;
  bool stopping_ = false;
  notifier finished_;                 // a handler ended
  std::set<std::string> unknown_names_;  // task names without a handler, logged once each
};

}  // namespace sagaflow::tasks
