// The worker: per queue a fetcher, a local priority scheduler and a promoter; per worker a lease
// renewer and a recoverer; every task settled by one atomic step (ack, retry script, dead script).
// All of a worker's state lives on one strand.
#include "scripts.hpp"

#include <sagaflow/engine/id.hpp>
#include <sagaflow/engine/log.hpp>
#include <sagaflow/tasks/client.hpp>
#include <sagaflow/tasks/worker.hpp>
#include <sagaflow/transport/commands.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json.hpp>

#include <deque>
#include <span>
#include <set>
#include <unistd.h>

namespace sagaflow::tasks {

namespace asio = boost::asio;
using std::chrono::milliseconds;

boost::json::value task_context::json() const {
  boost::system::error_code ec;
  auto v = boost::json::parse(task.payload.data, ec);
  if (ec) throw permanent_error("payload is not valid JSON: " + ec.message());
  return v;
}

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string default_consumer() {
  char host[256] = "host";
  ::gethostname(host, sizeof host - 1);
  return std::string(host) + "-" + std::to_string(::getpid()) + "-" + make_id().substr(16);
}

// Waits until cancelled (or `t`): the condition variable of a single-threaded strand.
awaitable<void> wait_on(asio::steady_timer& timer, steady_clock::time_point t = steady_clock::time_point::max()) {
  timer.expires_at(t);
  boost::system::error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

}  // namespace

struct worker::impl : std::enable_shared_from_this<worker::impl> {
  struct fetched {
    std::size_t stream;  // priority index
    transport::stream_entry entry;
  };

  struct queue_state {
    queue_config config;
    queue_keys keys;
    std::size_t slots = 1;
    std::size_t running = 0;
    std::array<std::deque<fetched>, priority_count> buffer;  // fetched, not yet started
    std::array<std::set<std::string>, priority_count> owned;  // pending for us: buffered or running
    std::array<std::vector<std::string>, priority_count> to_ack;
    std::vector<std::pair<std::string, std::string>> results;  // key, JSON: written before the acks
    std::shared_ptr<transport::connection> blocking;  // XREADGROUP BLOCK only
    std::unique_ptr<asio::steady_timer> slot_freed;
    std::unique_ptr<asio::steady_timer> promoter_wake;
    steady_clock::time_point promoter_next = steady_clock::time_point::max();

    queue_state(queue_config c, std::string_view prefix) : config(std::move(c)), keys(prefix, config.name) {}
    std::size_t buffered() const {
      std::size_t n = 0;
      for (auto& b : buffer) n += b.size();
      return n;
    }
  };

  asio::strand<asio::any_io_executor> strand;
  transport::config redis_config;
  worker_options options;
  std::unordered_map<std::string, handler> handlers;
  std::shared_ptr<transport::connection> commands;  // scripts, acks, renewals, recovery
  std::vector<std::unique_ptr<queue_state>> queues;
  worker_stats stats;
  stop_source stop;
  bool stopping = false;        // no handler starts any more
  bool finished = false;        // the background loops end
  std::size_t fetchers = 0;     // fetch loops still running
  std::size_t loops = 0;        // other background loops still running
  std::size_t running_total = 0;
  bool flushing = false;
  asio::steady_timer idle;      // wakes run() when a handler or a loop finishes
  asio::steady_timer renew_timer;    // one timer per loop: expires_at() cancels every wait on a timer
  asio::steady_timer recover_timer;
  random_source random = random_source::from_entropy();
  std::set<std::string> unknown_names;  // task names without a handler, logged once each
  // Settlement retries: quick at first (a dropped connection is back in milliseconds), then
  // patient (a restarted Redis loading its data).
  static constexpr backoff_policy settle_backoff{.base = milliseconds(50), .multiplier = 2.0, .cap = milliseconds(2000),
                                                 .jitter = jitter::equal};
  // Room for the envelope's own fields around a payload of max_payload_bytes.
  static constexpr std::size_t envelope_allowance = 64 * 1024;

  impl(asio::any_io_executor ex, transport::config cfg, worker_options opts)
      : strand(asio::make_strand(ex)), redis_config(std::move(cfg)), options(std::move(opts)), idle(strand), renew_timer(strand), recover_timer(strand) {
    if (options.consumer.empty()) options.consumer = default_consumer();
    if (options.queues.empty()) throw std::invalid_argument("worker: no queues");
    if (options.concurrency == 0) throw std::invalid_argument("worker: concurrency must be at least 1");
    if (options.lease < milliseconds(100)) throw std::invalid_argument("worker: lease must be at least 100 ms");
    if (options.delivery_budget == 0) throw std::invalid_argument("worker: delivery_budget must be at least 1");
    unsigned shares = 0;
    for (auto& q : options.queues) {
      validate_queue_name(q.name);
      if (q.share == 0) throw std::invalid_argument("worker: queue '" + q.name + "' has share 0");
      shares += q.share;
    }
    for (auto& q : options.queues) {
      auto state = std::make_unique<queue_state>(q, options.prefix);
      state->slots = std::max<std::size_t>(1, options.concurrency * q.share / shares);
      state->slot_freed = std::make_unique<asio::steady_timer>(strand);
      state->promoter_wake = std::make_unique<asio::steady_timer>(strand);
      queues.push_back(std::move(state));
    }
  }

  // `counter` (loops, or fetchers) counts the loop while it runs.
  void start_loop(awaitable<void> loop, std::string name, std::size_t impl::*counter = &impl::loops) {
    ++(this->*counter);
    asio::co_spawn(strand, std::move(loop), [self = shared_from_this(), name = std::move(name), counter](std::exception_ptr e) {
      --((*self).*counter);
      self->idle.cancel();
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        count_unhandled_exception();
        log::error("worker", name, " ended with an error: ", log::error_text(ex));
      }
    });
  }

  // Handler slots neither running nor promised to a fetched task.
  static std::size_t free_slots(const queue_state& q) {
    auto used = q.running + q.buffered();
    return q.slots > used ? q.slots - used : 0;
  }

  // --- fetching and scheduling ------------------------------------------------------------
  std::vector<std::size_t> fetch_order() {
    std::vector<std::size_t> order{0, 1, 2, 3};
    if (options.mode == priority_mode::weighted) {
      unsigned total = 0;
      for (auto w : options.weights) total += w;
      auto draw = static_cast<unsigned>(random.uniform() * total);
      std::size_t first = 0;
      for (unsigned acc = 0; first < priority_count; ++first) {
        acc += options.weights[first];
        if (draw < acc) break;
      }
      if (first >= priority_count) first = priority_count - 1;
      order.erase(order.begin() + static_cast<std::ptrdiff_t>(first));
      order.insert(order.begin(), first);
    }
    return order;
  }

  std::size_t stream_index(const queue_state& q, std::string_view stream) const {
    for (std::size_t p = 0; p < priority_count; ++p)
      if (q.keys.streams[p] == stream) return p;
    return priority_count;
  }

  void accept(queue_state& q, std::vector<transport::stream_batch>&& batches) {
    for (auto& b : batches) {
      auto p = stream_index(q, b.stream);
      if (p == priority_count) continue;
      for (auto& e : b.entries) {
        q.owned[p].insert(e.id);
        q.buffer[p].push_back({p, std::move(e)});
      }
    }
    // Posted: the fetcher asks for the next batch before this one runs, so Redis and the
    // handlers overlap instead of taking turns.
    asio::post(strand, [self = shared_from_this(), &q] { self->dispatch(q); });
  }

  void dispatch(queue_state& q) {
    while (q.running < q.slots && !stopping) {
      std::size_t p = 0;
      while (p < priority_count && q.buffer[p].empty()) ++p;
      if (p == priority_count) return;
      auto item = std::move(q.buffer[p].front());
      q.buffer[p].pop_front();
      ++q.running;
      ++running_total;
      asio::co_spawn(strand, execute(q, std::move(item)), [self = shared_from_this(), &q](std::exception_ptr e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            log::error("worker", "settling a task failed: ", log::error_text(ex));
          }
        }
        --q.running;
        --self->running_total;
        q.slot_freed->cancel();
        self->idle.cancel();
        self->dispatch(q);
      });
    }
  }

  awaitable<void> fetch_loop(queue_state& q) {
    std::string_view group = consumer_group;
    while (!stop.stop_requested()) {
      std::size_t free = free_slots(q);
      if (free == 0) {
        co_await wait_on(*q.slot_freed);
        continue;
      }
      try {
        auto order = fetch_order();
        std::vector<std::string_view> keys;
        for (auto p : order) keys.push_back(q.keys.streams[p]);
        std::string count = std::to_string(free);
        std::string_view args[] = {group, options.consumer, count};
        auto reply = co_await transport::evalsha(*commands, scripts::fetch(), keys, args);
        auto batches = transport::decode_stream_batches(std::move(reply));
        if (!batches.empty()) {
          accept(q, std::move(batches));
          continue;
        }
        // Nothing ready: block on all four streams until something arrives (or fetch_block).
        transport::stream_offset from[priority_count];
        for (std::size_t p = 0; p < priority_count; ++p) from[p] = {q.keys.streams[p], ">"};
        transport::xreadgroup_options block{.count = 1, .block = options.fetch_block};
        auto woken = co_await transport::xreadgroup(*q.blocking, group, options.consumer, from, block);
        accept(q, std::move(woken));
        continue;
      } catch (const std::exception& e) {
        if (stop.stop_requested()) break;
        log::warn("worker", "fetch from queue ", q.config.name, " failed: ", log::error_text(e), "; retrying");
      }
      co_await stop.sleep_for(milliseconds(500));  // only reached after a failure
    }
  }

  // --- running one task ---------------------------------------------------------------------
  awaitable<void> execute(queue_state& q, fetched item) {
    // Bad input never crashes a worker: each of these goes to the dead letters with its reason.
    std::size_t entry_bytes = 0;
    for (auto& [k, v] : item.entry.fields) entry_bytes += k.size() + v.size();
    if (entry_bytes > options.max_payload_bytes + envelope_allowance) {
      // Named, not a temporary in the co_await: GCC 12 mishandles those.
      std::string why = "entry of " + std::to_string(entry_bytes) + " bytes; this worker takes payloads up to " +
                        std::to_string(options.max_payload_bytes) + " bytes";
      co_await bury(q, item, nullptr, "oversized", why);
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
      co_await bury(q, item, nullptr, "undecodable", undecodable);
      co_return;
    }
    if (task.payload.data.size() > options.max_payload_bytes) {
      std::string why = "payload of " + std::to_string(task.payload.data.size()) +
                        " bytes; this worker takes payloads up to " + std::to_string(options.max_payload_bytes) + " bytes";
      co_await bury(q, item, &task, "oversized", why);
      co_return;
    }
    auto found = handlers.find(task.name);
    if (found == handlers.end()) {
      co_await no_handler(q, item, std::move(task));
      co_return;
    }
    ++stats.started;
    task_context ctx{task, item.entry.id, steady_clock::now() + task.timeout};
    std::string error;
    std::optional<milliseconds> requested_delay;
    bool permanent = false;
    try {
      co_await with_deadline(found->second(ctx), ctx.deadline);
    } catch (const permanent_error& e) {
      permanent = true;
      error = e.what();
    } catch (const retry_after& e) {
      requested_delay = e.delay();
      error = e.what();
    } catch (const boost::system::system_error& e) {
      error = e.code() == asio::error::timed_out ? "timed out after " + std::to_string(task.timeout.count()) + " ms"
                                                  : log::error_text(e);
      if (error.empty()) error = "system error";
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = "exception";
    } catch (...) {
      error = "non-standard exception";
    }
    if (error.empty() && !permanent && !requested_delay) {
      ++stats.succeeded;
      if (ctx.result) q.results.emplace_back(q.keys.result(task.id), boost::json::serialize(*ctx.result));
      q.to_ack[item.stream].push_back(item.entry.id);
      if (!flushing) asio::co_spawn(strand, flush_acks(), asio::detached);
      co_return;
    }
    if (permanent) {
      co_await bury(q, item, &task, "permanent error", error);
    } else if (task.attempt >= task.retry.max_attempts) {
      co_await bury(q, item, &task, "max attempts", error);
    } else {
      co_await retry(q, item, std::move(task), error, requested_delay);
    }
  }

  // No handler for this task's name here. During a rolling deploy a new task type reaches old
  // workers first, so the task goes back to its queue (no attempt used) until the grace since a
  // worker first saw it has passed; only then is it a dead letter.
  awaitable<void> no_handler(queue_state& q, const fetched& item, envelope task) {
    auto now = now_ms();
    if (task.unknown_since_ms == 0 || task.unknown_since_ms > now) task.unknown_since_ms = now;
    milliseconds waited(now - task.unknown_since_ms);
    if (waited >= options.unknown_task_grace) {
      std::string why = "no handler for task name '" + task.name + "'";
      if (waited.count()) why += " within " + std::to_string(waited.count()) + " ms";
      co_await bury(q, item, &task, "unknown task", why);
      co_return;
    }
    if (unknown_names.size() < 1024 && unknown_names.insert(task.name).second)
      log::warn("worker", "no handler for task name '", task.name, "' (queue ", q.config.name,
                "): such tasks go back to their queue for up to ", options.unknown_task_grace.count(),
                " ms, for a worker that has one, then to the dead letters");
    auto delay = std::min(options.unknown_task_delay, options.unknown_task_grace - waited);
    if (co_await schedule(q, item, task, delay)) ++stats.handed_back;
  }

  awaitable<void> retry(queue_state& q, const fetched& item, envelope task, const std::string& error,
                        std::optional<milliseconds> requested) {
    auto source = random_source::for_key(task.id, task.attempt);
    milliseconds delay = requested ? *requested : task.retry.backoff.delay(task.attempt, source, task.previous_delay);
    task.previous_delay = delay;
    task.last_error = error;
    task.attempt += 1;
    if (co_await schedule(q, item, task, delay)) {
      ++stats.retried;
      log::debug("worker", "task ", task.id, " (", task.name, ") attempt ", task.attempt - 1, " failed: ", error,
                 "; retry in ", delay.count(), " ms");
    }
  }

  // Moves the entry to the delayed set as `task`, due after `delay`; true when this worker did it.
  awaitable<bool> schedule(queue_state& q, const fetched& item, const envelope& task, milliseconds delay) {
    std::int64_t due = now_ms() + 1 + delay.count();  // +1: the clock is truncated to ms; never early
    std::string due_text = std::to_string(due);
    std::string member = task.to_delayed_member();
    std::string_view keys[] = {q.keys.streams[item.stream], q.keys.delayed};
    std::string_view args[] = {consumer_group, item.entry.id, due_text, member};
    std::string what = "scheduling the retry of task " + task.id;
    auto moved = co_await settle(q, item, scripts::retry(), keys, args, what);
    if (moved == 1) wake_promoter(q, steady_clock::now() + delay);
    co_return moved == 1;
  }

  awaitable<void> bury(queue_state& q, const fetched& item, const envelope* task, std::string_view reason,
                       const std::string& error) {
    std::vector<std::string> fields;
    if (task) {
      fields = task->to_fields();
    } else {
      for (auto& [k, v] : item.entry.fields) {
        fields.push_back(k);
        fields.push_back(v);
      }
    }
    std::string at = std::to_string(now_ms());
    std::string attempts = task ? std::to_string(task->attempt) : "0";
    for (std::string_view s : {std::string_view("dead.reason"), reason, std::string_view("dead.error"), std::string_view(error),
                               std::string_view("dead.attempts"), std::string_view(attempts), std::string_view("dead.at"),
                               std::string_view(at), std::string_view("dead.worker"), std::string_view(options.consumer),
                               std::string_view("dead.entry"), std::string_view(item.entry.id)})
      fields.emplace_back(s);
    std::vector<std::string_view> args{consumer_group, item.entry.id};
    for (auto& f : fields) args.push_back(f);
    std::string_view keys[] = {q.keys.streams[item.stream], q.keys.dead};
    std::string what = "dead-lettering entry " + item.entry.id;
    auto moved = co_await settle(q, item, scripts::dead(), keys, args, what);
    if (moved == 1) {
      ++stats.dead;
      log::warn("worker", "dead letter: task ", task ? task->id : item.entry.id, " (",
                task ? task->name : std::string("?"), ") in queue ", q.config.name, ": ", reason, ": ", error);
    }
  }

  // Runs a settlement script until Redis has taken it. A failure (Redis restarting or loading,
  // the connection lost) is retried with backoff, across reconnects: each script first XACKs and
  // changes nothing when the entry is no longer pending for the group, so running it again after
  // a reply was lost is harmless. After a lease's worth of failures the entry is let go instead
  // (no longer renewed) so that recovery takes it over: a task is never orphaned by its owner.
  // Returns the script's integer reply, or nothing when it was let go.
  awaitable<std::optional<std::int64_t>> settle(queue_state& q, const fetched& item, const transport::script& script,
                                                std::span<const std::string_view> keys,
                                                std::span<const std::string_view> args, const std::string& what) {
    auto give_up = steady_clock::now() + options.lease;
    auto random = random_source::from_entropy();
    milliseconds delay{0};
    std::optional<std::int64_t> outcome;
    for (std::uint32_t attempt = 1;; ++attempt) {
      try {
        auto reply = co_await transport::evalsha(*commands, script, keys, args);
        outcome = reply.integer;
        break;
      } catch (const std::exception& e) {
        delay = settle_backoff.delay(attempt, random, delay);
        if (is_closed(e) || steady_clock::now() + delay >= give_up) {
          ++stats.failed_to_settle;
          log::error("worker", what, " failed: ", log::error_text(e), "; it stays pending and is recovered after the lease");
          break;
        }
        ++stats.settle_retries;
        if (attempt == 1) log::warn("worker", what, " failed: ", log::error_text(e), "; retrying");
      }
      co_await sleep_for(delay);
    }
    release(q, item);
    co_return outcome;
  }

  static bool is_closed(const std::exception& e) {
    auto* se = dynamic_cast<const boost::system::system_error*>(&e);
    return se && se->code() == transport::error::closed;
  }

  void release(queue_state& q, const fetched& item) { q.owned[item.stream].erase(item.entry.id); }

  // Acknowledges and deletes completed entries: one pipelined XACK+XDEL per stream per batch,
  // results first (an acknowledged task's result is already readable). A failed batch is tried
  // again with backoff (XACK and XDEL are idempotent); after a lease's worth of failures its
  // entries are let go to recovery, which runs them again (at least once).
  awaitable<void> flush_acks() {
    if (flushing) co_return;
    flushing = true;
    auto random = random_source::from_entropy();
    milliseconds delay{0};
    std::uint32_t failures = 0;
    steady_clock::time_point failing_since;
    for (;;) {
      struct part {
        queue_state* q;
        std::size_t stream;
        std::vector<std::string> ids;
      };
      transport::request req;
      std::vector<part> parts;
      std::vector<std::pair<queue_state*, std::vector<std::pair<std::string, std::string>>>> results;
      std::string ttl = std::to_string(options.result_ttl.count());
      for (auto& q : queues) {
        if (q->results.empty()) continue;
        for (auto& [key, json] : q->results) req.push("SET", key, json, "PX", ttl);
        results.emplace_back(q.get(), std::move(q->results));
        q->results.clear();
      }
      for (auto& q : queues)
        for (std::size_t p = 0; p < priority_count; ++p) {
          if (q->to_ack[p].empty()) continue;
          part now{q.get(), p, {}};
          now.ids.swap(q->to_ack[p]);
          transport::add_xack(req, q->keys.streams[p], consumer_group, now.ids);
          transport::add_xdel(req, q->keys.streams[p], now.ids);
          parts.push_back(std::move(now));
        }
      if (parts.empty() && results.empty()) break;
      std::string failure;
      bool closed = false;
      try {
        auto replies = co_await commands->exec(std::move(req));
        for (auto& r : replies)
          if (r.is_error() && failure.empty()) failure = r.text;
      } catch (const std::exception& e) {
        closed = is_closed(e);
        failure = log::error_text(e);
        if (failure.empty()) failure = "unknown error";
      }
      if (failure.empty()) {
        failures = 0;
        delay = milliseconds(0);
        for (auto& part : parts)
          for (auto& id : part.ids) part.q->owned[part.stream].erase(id);
        continue;
      }
      if (failures++ == 0) failing_since = steady_clock::now();
      delay = settle_backoff.delay(failures, random, delay);
      if (closed || steady_clock::now() + delay >= failing_since + options.lease) {
        for (auto& part : parts) {
          stats.failed_to_settle += part.ids.size();
          for (auto& id : part.ids) part.q->owned[part.stream].erase(id);
        }
        log::error("worker", "acknowledging completed tasks failed: ", failure,
                   "; they are redelivered after the lease");
        failures = 0;
        continue;
      }
      ++stats.settle_retries;
      if (failures == 1) log::warn("worker", "acknowledging completed tasks failed: ", failure, "; retrying");
      // Put the batch back in front of what completed meanwhile, and try again after the delay.
      for (auto& [q, list] : results) q->results.insert(q->results.begin(), list.begin(), list.end());
      for (auto& part : parts) {
        auto& pending = part.q->to_ack[part.stream];
        pending.insert(pending.begin(), part.ids.begin(), part.ids.end());
      }
      co_await sleep_for(delay);
    }
    flushing = false;
    idle.cancel();
  }

  // --- promoter -----------------------------------------------------------------------------
  void wake_promoter(queue_state& q, steady_clock::time_point due) {
    if (due < q.promoter_next) {
      q.promoter_next = due;
      q.promoter_wake->cancel();
    }
  }

  awaitable<void> promoter_loop(queue_state& q) {
    std::string_view keys[] = {q.keys.delayed, q.keys.streams[0], q.keys.streams[1], q.keys.streams[2],
                               q.keys.streams[3], q.keys.dead};
    while (!stop.stop_requested()) {
      auto planned = steady_clock::now() + options.promoter_interval;
      try {
        std::string now = std::to_string(now_ms());
        std::string_view args[] = {now, "500"};
        auto reply = co_await transport::evalsha(*commands, scripts::promote(), keys, args);
        auto moved = transport::as_integer(reply.elements.at(0), "promote moved");
        auto next = std::stoll(reply.elements.at(1).text);
        if (moved == 500) continue;  // more are due
        if (next >= 0) {
          auto in = milliseconds(std::max<std::int64_t>(0, next - now_ms()));
          planned = std::min(planned, steady_clock::now() + in);
        }
      } catch (const std::exception& e) {
        log::warn("worker", "promoter of queue ", q.config.name, ": ", log::error_text(e));
      }
      q.promoter_next = planned;
      while (!stop.stop_requested() && steady_clock::now() < q.promoter_next) co_await wait_on(*q.promoter_wake, q.promoter_next);
      q.promoter_next = steady_clock::time_point::max();
    }
  }

  // --- leases ------------------------------------------------------------------------------
  // Renews until the worker has finished: handlers running in the grace keep their leases.
  awaitable<void> renew_loop() {
    while (!finished) {
      co_await wait_on(renew_timer, steady_clock::now() + options.lease / 3);
      if (finished) break;
      for (auto& q : queues)
        for (std::size_t p = 0; p < priority_count; ++p) {
          if (q->owned[p].empty()) continue;
          std::vector<std::string> ids(q->owned[p].begin(), q->owned[p].end());
          std::vector<std::string_view> args{consumer_group, options.consumer};
          for (auto& id : ids) args.push_back(id);
          std::string_view keys[] = {q->keys.streams[p]};
          try {
            co_await transport::evalsha(*commands, scripts::renew(), keys, args);
          } catch (const std::exception& e) {
            log::warn("worker", "renewing leases: ", log::error_text(e));
          }
        }
    }
  }

  awaitable<void> recover_loop() {
    while (!stop.stop_requested()) {
      for (auto& q : queues)
        for (std::size_t p = 0; p < priority_count && !stop.stop_requested(); ++p) {
          try {
            co_await recover(*q, p);
          } catch (const std::exception& e) {
            log::warn("worker", "recovering ", q->keys.streams[p], ": ", log::error_text(e));
          }
        }
      co_await wait_on(recover_timer, steady_clock::now() + options.recover_interval);
    }
  }

  // Takes over entries idle for longer than the lease (their worker is gone); an entry delivered
  // delivery_budget times already is dead-lettered instead: it keeps killing workers.
  awaitable<void> recover(queue_state& q, std::size_t p) {
    const std::string& stream = q.keys.streams[p];
    auto stale = co_await transport::xpending(*commands, stream, consumer_group,
                                          transport::pending_range{.count = 100, .min_idle = options.lease});
    // Take over no more than this worker can start now: a recovered task waiting in the local
    // buffer would hold back a more urgent task that the fetcher cannot read while the buffer
    // fills the free slots. What is left is taken on a later pass, here or by another worker.
    std::size_t can_start = free_slots(q);
    std::vector<std::string> take, poison;
    for (auto& e : stale) {
      if (q.owned[p].contains(e.id)) continue;
      if (e.deliveries >= static_cast<std::int64_t>(options.delivery_budget))
        poison.push_back(e.id);
      else if (take.size() < can_start)
        take.push_back(e.id);
    }
    if (!take.empty()) {
      auto claimed = co_await transport::xclaim(*commands, stream, consumer_group, options.consumer, options.lease, take);
      if (!claimed.empty()) {
        stats.recovered += claimed.size();
        log::info("worker", "took over ", claimed.size(), " task(s) of a silent worker from ", stream);
        std::vector<transport::stream_batch> batch{{stream, std::move(claimed)}};
        accept(q, std::move(batch));
      }
    }
    if (!poison.empty()) {
      auto claimed = co_await transport::xclaim(*commands, stream, consumer_group, options.consumer, options.lease, poison);
      for (auto& e : claimed) {
        fetched item{p, std::move(e)};
        q.owned[p].insert(item.entry.id);
        std::optional<envelope> task;
        try {
          task = envelope::from_fields(item.entry.fields);
        } catch (const std::invalid_argument&) {
        }
        co_await bury(q, item, task ? &*task : nullptr, "delivery limit",
                      "delivered " + std::to_string(options.delivery_budget) + " times without being settled");
      }
    }
  }

  // --- life --------------------------------------------------------------------------------
  // The worker's connections, and the consumer group on every stream it reads.
  awaitable<void> connect() {
    commands = transport::connection::create(strand, redis_config);
    co_await commands->connect();
    for (auto& q : queues) {
      q->blocking = transport::connection::create(strand, redis_config);
      co_await q->blocking->connect();
      for (auto& stream : q->keys.streams) co_await transport::xgroup_create(*commands, stream, consumer_group, "0");
    }
  }

  void close_connections() {
    if (commands) commands->close();
    for (auto& q : queues)
      if (q->blocking) q->blocking->close();
  }

  awaitable<void> run(stop_source s) {
    stop = s;
    bool connected = false;
    try {
      connected = co_await until_stopped(connect(), stop);
    } catch (...) {
      close_connections();
      throw;
    }
    if (!connected) {  // e.g. SIGTERM while Redis is still unreachable: a clean stop, not an error
      close_connections();
      log::info("worker", options.consumer, " stopped before it had connected");
      co_return;
    }
    log::info("worker", options.consumer, " started: queues ", describe_queues(), ", concurrency ", options.concurrency,
              ", ", options.mode == priority_mode::strict ? "strict" : "weighted", " priority");
    for (auto& q : queues) {
      start_loop(fetch_loop(*q), "fetcher of " + q->config.name, &impl::fetchers);
      start_loop(promoter_loop(*q), "promoter of " + q->config.name);
    }
    start_loop(renew_loop(), "lease renewer");
    start_loop(recover_loop(), "recoverer");

    co_await stop.wait();
    // Stopping, in this order: fetch no more (a blocking fetch ends when its connection closes);
    // hand back what was fetched but never started, at once, so that other workers run it while
    // this one finishes; let running handlers finish within the grace (their leases still
    // renewed); end the background loops; acknowledge the last completions; close.
    stopping = true;
    for (auto& q : queues) {
      q->blocking->close();
      q->slot_freed->cancel();
    }
    while (fetchers > 0) co_await wait_on(idle);
    co_await release_buffered();
    log::info("worker", options.consumer, " stopping: waiting up to ", options.grace.count(), " ms for ",
              running_total, " running task(s)");
    auto grace_end = steady_clock::now() + options.grace;
    while (running_total > 0 && steady_clock::now() < grace_end) co_await wait_on(idle, grace_end);
    if (running_total > 0)
      log::warn("worker", running_total, " task(s) still running after the grace period; they stay pending");
    finished = true;
    renew_timer.cancel();
    recover_timer.cancel();
    for (auto& q : queues) q->promoter_wake->cancel();
    while (loops > 0) co_await wait_on(idle);
    co_await release_buffered();  // what a last recovery pass took over after the first hand-back
    if (!flushing) co_await flush_acks();
    while (flushing) co_await wait_on(idle);
    close_connections();
    log::info("worker", options.consumer, " stopped: ", stats.succeeded.load(), " succeeded, ", stats.retried.load(),
              " retried, ", stats.dead.load(), " dead-lettered");
  }

  // Tasks fetched but never started go back to their stream now, not after the lease.
  // Also hands back entries Redis delivered to this consumer that the worker never saw (a
  // blocking read answered as its connection closed at stop, a reply lost with a connection):
  // anything pending for this consumer that is not running here.
  awaitable<void> release_buffered() {
    for (auto& q : queues)
      for (std::size_t p = 0; p < priority_count; ++p) {
        std::vector<std::string> ids;
        for (auto& item : q->buffer[p]) ids.push_back(item.entry.id);
        std::string_view keys[] = {q->keys.streams[p]};
        try {
          auto mine = co_await transport::xpending(*commands, keys[0], consumer_group,
                                               transport::pending_range{.count = 1000, .consumer = options.consumer});
          for (auto& e : mine)
            if (!q->owned[p].contains(e.id)) ids.push_back(e.id);
          if (ids.empty()) continue;
          std::vector<std::string_view> args{consumer_group};
          for (auto& id : ids) args.push_back(id);
          auto released = co_await transport::evalsha(*commands, scripts::release(), keys, args);
          log::info("worker", "handed ", released.integer, " unstarted task(s) back to ", q->keys.streams[p]);
          q->buffer[p].clear();
          for (auto& id : ids) q->owned[p].erase(id);
        } catch (const std::exception& e) {
          log::warn("worker", "could not hand back unstarted tasks (they return after the lease): ", log::error_text(e));
        }
      }
  }

  std::string describe_queues() const {
    std::string out;
    for (auto& q : queues) out += (out.empty() ? "" : ",") + q->config.name + "(" + std::to_string(q->slots) + ")";
    return out;
  }
};

worker::worker(asio::any_io_executor ex, transport::config redis, worker_options options)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(redis), std::move(options))) {}

worker::~worker() = default;

void worker::handle(std::string name, handler h) {
  if (name.empty() || !h) throw std::invalid_argument("worker::handle needs a task name and a handler");
  impl_->handlers[std::move(name)] = std::move(h);
}

awaitable<void> worker::run(stop_source stop) {
  co_await asio::co_spawn(impl_->strand, impl_->run(std::move(stop)), asio::use_awaitable);
}

const worker_stats& worker::stats() const noexcept { return impl_->stats; }
const std::string& worker::consumer() const noexcept { return impl_->options.consumer; }

}  // namespace sagaflow::tasks
