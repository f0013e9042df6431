// What one attempt of a task comes to, decided in one place from how its handler ended:
// completed, retried after a delay, or dead-lettered with a reason (asynq: retryOrKill).
#pragma once

#include <sagaflow/tasks/task.hpp>

#include <chrono>
#include <exception>
#include <string>

namespace sagaflow::tasks {

struct outcome {
  enum class kind : std::uint8_t { completed, retry, dead } what = kind::completed;
  std::string reason;                    // dead: "permanent error" or "max attempts"
  std::string error;                     // retry, dead: the handler's error in words
  std::chrono::milliseconds delay{0};    // retry: when the next attempt is due

  static outcome completed() { return {}; }
};

// The outcome of `task`'s current attempt whose handler threw `failure` (nullptr: something
// that is not a std::exception). `timed_out`: the attempt's deadline had cancelled the handler.
// A permanent_error is dead at once; retry_after sets the delay; anything else is retried by the
// task's policy (its jitter seeded by task id and attempt, so a delay is reproducible) until
// max_attempts.
outcome outcome_of_failure(const std::exception* failure, bool timed_out, const envelope& task);

}  // namespace sagaflow::tasks
