// Running tasks: dispatch by priority, the attempt's deadline, the handler's outcome.
#include "processor.hpp"

#include <sagaflow/engine/log.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sagaflow::tasks {

namespace asio = boost::asio;
using std::chrono::milliseconds;

// Room for the envelope's own fields around a payload of max_payload_bytes.
static constexpr std::size_t envelope_allowance = 64 * 1024;

processor::processor(worker_state& state, settler& settle) : state_(state), settler_(settle), finished_(state.strand) {
  std::size_t total = 0;
  for (auto& q : state_.queues) total += q->slots;
  for (std::size_t i = 0; i < total; ++i) {
    slots_.push_back(std::make_unique<slot>(state_.strand));
    idle_.push_back(slots_.back().get());
  }
}

void processor::accept(queue_state& q, std::vector<transport::stream_batch>&& batches) {
  for (auto& b : batches) {
    auto p = q.stream_index(b.stream);
    if (p == priority_count) continue;
    for (auto& e : b.entries) {
      q.owned[p].insert(e.id);
      q.buffer[p].push_back({p, std::move(e)});
    }
  }
  schedule_dispatch(q);
}

void processor::schedule_dispatch(queue_state& q) {
  if (q.dispatch_posted) return;
  q.dispatch_posted = true;
  asio::post(state_.strand, [keep = state_.owner.lock(), this, &q] {
    q.dispatch_posted = false;
    dispatch(q);
  });
}

// At most dispatch_chunk tasks start per turn; the rest are posted behind whatever I/O completed
// meanwhile. The fetcher's round trips are then answered while a large batch runs, so its next
// read is already in Redis when this batch is done, instead of Redis and the worker taking turns.
static constexpr std::size_t dispatch_chunk = 32;

// The most urgent buffered task of `q`, if a slot of `q` may run it now.
std::optional<fetched> processor::next_task(queue_state& q) {
  if (stopping_ || q.running >= q.slots) return std::nullopt;
  for (auto& buffered : q.buffer) {
    if (buffered.empty()) continue;
    auto item = std::move(buffered.front());
    buffered.pop_front();
    return item;
  }
  return std::nullopt;
}

void processor::dispatch(queue_state& q) {
  for (std::size_t started = 0; !idle_.empty(); ++started) {
    if (started == dispatch_chunk) {
      schedule_dispatch(q);
      return;
    }
    auto item = next_task(q);
    if (!item) return;
    slot* s = idle_.back();
    idle_.pop_back();
    ++q.running;
    ++running_;
    s->q = &q;
    s->next = std::move(item);
    if (s->looping) {
      s->wake.notify_all();
      continue;
    }
    s->looping = true;
    asio::co_spawn(state_.strand, run_slot(*s),
                   asio::bind_cancellation_slot(s->signal.slot(), [keep = state_.owner.lock(), this, s](std::exception_ptr e) {
                     s->looping = false;
                     if (e) {
                       count_unhandled_exception();
                       log::error("worker", "a handler slot failed: ", log::error_text(e));
                     }
                     finished_.notify_all();
                   }));
  }
}

// A slot's coroutine runs its tasks one after the other, for the worker's lifetime: after a task
// it takes the next one of its queue itself, and waits for dispatch() only when there is none.
// A co_spawn per task cost the worker about a quarter of its time (executor copies, work guards,
// a frame and a posted completion each).
awaitable<void> processor::run_slot(slot& s) {
  std::size_t in_a_row = 0;
  for (;;) {
    if (!s.next) {
      if (stopping_) co_return;
      in_a_row = 0;
      co_await s.wake.wait();
      continue;
    }
    auto& q = *s.q;
    auto item = std::move(*s.next);
    s.next.reset();
    try {
      co_await execute(q, std::move(item), s);
    } catch (...) {
      count_unhandled_exception();
      log::error("worker", "settling a task failed: ", log::error_text(std::current_exception()));
    }
    s.busy = false;
    if (stopping_) s.timer.cancel();  // a pending wait would keep the executor busy
    --q.running;
    --running_;
    q.slot_freed.notify_all();
    finished_.notify_all();
    // Tasks that end at once would run back to back without a pause: let I/O in now and then.
    if (++in_a_row == dispatch_chunk) {
      in_a_row = 0;
      co_await asio::post(state_.strand, asio::use_awaitable);
    }
    if (auto next = next_task(q)) {
      ++q.running;
      ++running_;
      s.next = std::move(next);
      continue;
    }
    idle_.push_back(&s);
    schedule_dispatch(q);  // another queue may have a task for this slot
  }
}

void processor::stop_starting() {
  stopping_ = true;
  for (auto& s : slots_) s->wake.notify_all();  // an idle slot's coroutine ends
}

// The slot's timer wakes at the earliest deadline it was armed for; a task with a later deadline
// (the usual case: equal timeouts, later starts) leaves it as it is, and the wake-up re-arms it
// for the task then in the slot. So most tasks cost no timer operation at all.
void processor::arm(slot& s) {
  if (s.armed_for <= s.deadline) return;
  s.armed_for = s.deadline;
  s.timer.expires_at(s.deadline);
  s.timer.async_wait([keep = state_.owner.lock(), this, &s](boost::system::error_code ec) {
    if (ec) return;  // re-armed for an earlier deadline: that wait is the live one
    s.armed_for = steady_clock::time_point::max();
    if (!s.busy) return;
    if (steady_clock::now() >= s.deadline) {
      s.timed_out = true;
      s.signal.emit(asio::cancellation_type::terminal);
    } else {
      arm(s);
    }
  });
}

awaitable<void> processor::execute(queue_state& q, fetched item, slot& s) {
  // Bad input never crashes a worker: each of these goes to the dead letters with its reason.
  std::size_t entry_bytes = 0;
  for (auto& [k, v] : item.entry.fields) entry_bytes += k.size() + v.size();
  auto limit = state_.options.max_payload_bytes;
  if (entry_bytes > limit + envelope_allowance) {
    // Named, not a temporary in the co_await: GCC 12 mishandles those.
    std::string why = "entry of " + std::to_string(entry_bytes) + " bytes; this worker takes payloads up to " +
                      std::to_string(limit) + " bytes";
    co_await settler_.bury(q, item, nullptr, "oversized", why);
    co_return;
  }
  envelope task;
  std::string undecodable;
  try {
    task = envelope::from_fields(item.entry.fields);
  } catch (const std::invalid_argument& e) {
    undecodable = e.what();
  }
  if (!undecodable.empty()) {
    co_await settler_.bury(q, item, nullptr, "undecodable", undecodable);
    co_return;
  }
  if (task.payload.data.size() > limit) {
    std::string why = "payload of " + std::to_string(task.payload.data.size()) +
                      " bytes; this worker takes payloads up to " + std::to_string(limit) + " bytes";
    co_await settler_.bury(q, item, &task, "oversized", why);
    co_return;
  }
  auto found = state_.handlers.find(task.name);
  if (found == state_.handlers.end()) {
    co_await no_handler(q, item, std::move(task));
    co_return;
  }

  ++state_.stats.started;
  task_context ctx{task, item.entry.id, steady_clock::now() + task.timeout};
  s.busy = true;
  s.timed_out = false;
  s.deadline = ctx.deadline;
  arm(s);
  std::optional<outcome> failed;
  try {
    co_await found->second(ctx);
  } catch (const std::exception& e) {
    failed = outcome_of_failure(&e, s.timed_out, task);
  } catch (...) {
    failed = outcome_of_failure(nullptr, s.timed_out, task);
  }
  s.busy = false;
  // The deadline's cancellation would also cancel the settlement's own operations.
  if (s.timed_out) co_await asio::this_coro::reset_cancellation_state();

  if (!failed) {
    ++state_.stats.succeeded;
    settler_.complete(q, item, task, ctx.result);
    co_return;
  }
  if (failed->what == outcome::kind::dead) {
    co_await settler_.bury(q, item, &task, failed->reason, failed->error);
    co_return;
  }
  log::debug("worker", "task ", task.id, " (", task.name, ") attempt ", task.attempt, " failed: ", failed->error,
             "; retry in ", failed->delay.count(), " ms");
  task.previous_delay = failed->delay;
  task.last_error = std::move(failed->error);
  task.attempt += 1;
  settler_.schedule(q, item, task, failed->delay);
}

// No handler for this task's name here. During a rolling deploy a new task type reaches old
// workers first, so the task goes back to its queue (no attempt used) until the grace since a
// worker first saw it has passed; only then is it a dead letter.
awaitable<void> processor::no_handler(queue_state& q, const fetched& item, envelope task) {
  auto now = unix_now_ms();
  auto& options = state_.options;
  if (task.unknown_since_ms == 0 || task.unknown_since_ms > now) task.unknown_since_ms = now;
  milliseconds waited(now - task.unknown_since_ms);
  if (waited >= options.unknown_task_grace) {
    std::string why = "no handler for task name '" + task.name + "'";
    if (waited.count()) why += " within " + std::to_string(waited.count()) + " ms";
    co_await settler_.bury(q, item, &task, "unknown task", why);
    co_return;
  }
  if (unknown_names_.size() < 1024 && unknown_names_.insert(task.name).second)
    log::warn("worker", "no handler for task name '", task.name, "' (queue ", q.config.name,
              "): such tasks go back to their queue for up to ", options.unknown_task_grace.count(),
              " ms, for a worker that has one, then to the dead letters");
  auto delay = std::min(options.unknown_task_delay, options.unknown_task_grace - waited);
  settler_.schedule(q, item, task, delay, true);
}

awaitable<void> processor::hand_back() {
  for (auto& q : state_.queues)
    for (std::size_t p = 0; p < priority_count; ++p) {
      std::vector<std::string> ids;
      for (auto& item : q->buffer[p]) ids.push_back(item.entry.id);
      try {
        auto mine = co_await state_.broker->pending(q->keys, p, 1000, milliseconds(0), state_.options.consumer);
        for (auto& e : mine)
          if (!q->owned[p].contains(e.id)) ids.push_back(e.id);
        if (ids.empty()) continue;
        auto released = co_await state_.broker->release(q->keys, p, ids);
        log::info("worker", "handed ", released, " unstarted task(s) back to ", q->keys.streams[p]);
        q->buffer[p].clear();
        for (auto& id : ids) q->owned[p].erase(id);
        q->slot_freed.notify_all();
      } catch (const std::exception& e) {
        log::warn("worker", "could not hand back unstarted tasks (they return after the lease): ", log::error_text(e));
      }
    }
}

awaitable<void> processor::drain(steady_clock::time_point deadline) {
  asio::steady_timer grace(state_.strand, deadline);
  grace.async_wait([keep = state_.owner.lock(), this](boost::system::error_code) { finished_.notify_all(); });
  while (running_ > 0 && steady_clock::now() < deadline) co_await finished_.wait();
  grace.cancel();
  for (auto* s : idle_) s->timer.cancel();
}

}  // namespace sagaflow::tasks
