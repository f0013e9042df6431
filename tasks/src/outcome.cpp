// outcome_of_failure: the retry-or-bury decision, a pure function of the failure and the task.
#include "outcome.hpp"

#include <sagaflow/engine/log.hpp>


namespace sagaflow::tasks {

outcome outcome_of_failure(const std::exception* failure, bool timed_out, const envelope& task) {
  outcome o;
  std::optional<std::chrono::milliseconds> requested;
  if (timed_out) {
    o.error = "timed out after " + std::to_string(task.timeout.count()) + " ms";
  } else if (failure == nullptr) {
    o.error = "non-standard exception";
  } else if (dynamic_cast<const permanent_error*>(failure)) {
    o.what = outcome::kind::dead;
    o.reason = "permanent error";
    o.error = failure->what();
    return o;
  } else {
    if (auto* later = dynamic_cast<const retry_after*>(failure)) requested = later->delay();
    o.error = log::error_text(*failure);
    if (o.error.empty()) o.error = "exception";
  }
  if (task.attempt >= task.retry.max_attempts) {
    o.what = outcome::kind::dead;
    o.reason = "max attempts";
    return o;
  }
  o.what = outcome::kind::retry;
  if (requested) {
    o.delay = *requested;
  } else {
    auto source = random_source::for_key(task.id, task.attempt);
    o.delay = task.retry.backoff.delay(task.attempt, source, task.previous_delay);
  }
  return o;
}

}  // namespace sagaflow::tasks
