// Graceful stop: one stop_source per process (or per worker) that every background loop observes.
// A loop either checks stop_requested() between steps or sleeps with sleep_for(), which returns
// early when stop is requested, so that no loop needs its own cancellation plumbing.
#pragma once

#include <sagaflow/engine/coro.hpp>

#include <vector>
#include <memory>

namespace sagaflow {

class stop_source {
 public:
  stop_source();

  // Thread-safe; wakes every coroutine waiting in wait() or sleep_for(). Idempotent.
  void request_stop();
  bool stop_requested() const noexcept;

  // Completes when stop is requested (at once if it already was).
  awaitable<void> wait() const;
  // Sleeps for `d` unless stop is requested first; true when the whole time elapsed.
  awaitable<bool> sleep_for(steady_clock::duration d) const;
  awaitable<bool> sleep_until(steady_clock::time_point t) const;

  struct state;

 private:
  std::shared_ptr<state> state_;  // copies share one state: a loop can hold its own copy
};

// Completes after the first of `signals` arrives and requests stop; a second signal ends the
// process at once with exit code 128+signal (the convention for "killed by a signal").
awaitable<void> stop_on_signals(stop_source stop, std::vector<int> signals);

}  // namespace sagaflow
