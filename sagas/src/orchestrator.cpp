// The orchestrator: pulls saga runs from the run stream's consumer group, takes each saga (a new
// epoch), replays its journal and runs its body; renews its leases and takes over the sagas of
// orchestrators that went silent. Remote steps' replies come to the inbox of the orchestrator
// that dispatched them (read with the run stream) and wake the saga in memory; a saga it no
// longer holds is resumed from its journal. A saga waiting past max_waiting (or a long sleep)
// leaves, and its timer or its reply brings it back. The inbox of an orchestrator that went
// silent is adopted: its replies move to the run stream.
#include "journal.hpp"
#include "scripts.hpp"

#include <sagaflow/engine/id.hpp>
#include <sagaflow/engine/log.hpp>
#include <sagaflow/engine/notifier.hpp>
#include <sagaflow/engine/wait_group.hpp>
#include <sagaflow/tasks/client.hpp>

#include <boost/asio/strand.hpp>
#include <boost/json/serialize.hpp>

#include <unistd.h>

#include <map>
#include <unordered_map>

namespace sagaflow::sagas {

namespace asio = boost::asio;
using std::chrono::milliseconds;

// Wakes every coroutine waiting on it; each waiter also wakes at its own deadline.
class signal {
 public:
  explicit signal(asio::any_io_executor ex) : ex_(std::move(ex)) {}
  void notify() {
    for (auto* t : waiters_) t->cancel();
  }
  awaitable<void> wait_until(steady_clock::time_point t) {
    asio::steady_timer timer(ex_, t);
    waiters_.push_back(&timer);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    std::erase(waiters_, &timer);
  }

 private:
  asio::any_io_executor ex_;
  std::vector<asio::steady_timer*> waiters_;
};

// A saga this orchestrator holds: the run entries it got for it (pending here until the saga
// ends or leaves) and the replies they carried that the saga has not taken yet.
struct entry_ref {
  bool inbox;  // else the run stream
  std::string id;
};
struct held {
  explicit held(const asio::any_io_executor& ex) : wake(ex) {}
  std::vector<entry_ref> entries;
  std::map<std::string, detail::remote_reply> replies;  // by reply key
  std::vector<transport::stream_entry> reply_entries;    // as received: handed on if this one is fenced
  signal wake;
  bool resumed = false;  // started by a reply or a timer: it may have left before (a timer to remove)
  std::size_t waiters = 0;  // its coroutines waiting (several inside ctx.all)
  bool counted = false;     // in orchestrator_stats::started
};

struct orchestrator::impl : std::enable_shared_from_this<orchestrator::impl> {
  impl(asio::any_io_executor ex, transport::config cfg, orchestrator_options opts)
      : strand(asio::make_strand(ex)), redis(std::move(cfg)), options(std::move(opts)),
        stream(run_stream(options.prefix)), timers(timers_key(options.prefix)), registry(registry_key(options.prefix)),
        sagas(strand), loops(strand), slot_freed(strand) {
    if (options.consumer.empty()) {
      char host[256] = "host";
      ::gethostname(host, sizeof host - 1);
      options.consumer = std::string(host) + "-" + std::to_string(::getpid()) + "-" + make_id().substr(16);
    }
    inbox = inbox_key(options.prefix, options.consumer);
    if (options.concurrency == 0) throw std::invalid_argument("orchestrator: concurrency must be at least 1");
    if (options.lease < milliseconds(100)) throw std::invalid_argument("orchestrator: lease must be at least 100 ms");
  }

  asio::strand<asio::any_io_executor> strand;
  transport::config redis;
  orchestrator_options options;
  std::string stream, timers, registry, inbox;
  std::unordered_map<std::string, definition> definitions;
  orchestrator_stats stats;
  std::shared_ptr<transport::connection> commands, blocking;
  std::unique_ptr<tasks::client> dispatcher;  // remote steps' tasks, on `commands`
  std::unordered_map<std::string, std::shared_ptr<held>> running;  // by saga id
  std::size_t waiting = 0;  // held sagas waiting for a reply or a timer
  bool frozen = false;      // the crash hook fired
  bool stopping = false;
  bool abandoning = false;  // the grace is over: waiting sagas are dropped (taken over after the lease)
  wait_group sagas, loops;
  notifier slot_freed;

  void wake_all() {
    for (auto& [id, h] : running) h->wake.notify();
  }

  // A Redis write: counted for the crash hook, refused once it fired.
  void wrote() {
    ++stats.writes;
    if (options.crash_after_writes && stats.writes >= options.crash_after_writes && !frozen) {
      frozen = true;
      log::warn("orchestrator", options.consumer, ": crash hook after ", stats.writes, " writes");
      wake_all();
    }
    if (frozen) throw crash_hook();
  }
  void before_write() const {
    if (frozen) throw crash_hook();
  }

  awaitable<void> ack(std::span<const entry_ref> entries) {
    before_write();
    transport::request req;
    add_acks(req, entries);
    co_await commands->exec(std::move(req));
    wrote();
  }

  // Acknowledges and deletes run entries, each in the stream it came from.
  void add_acks(transport::request& req, std::span<const entry_ref> entries) const {
    std::vector<std::string> run_ids, inbox_ids;
    for (auto& e : entries) (e.inbox ? inbox_ids : run_ids).push_back(e.id);
    if (!run_ids.empty()) {
      transport::add_xack(req, stream, run_group, run_ids);
      transport::add_xdel(req, stream, run_ids);
    }
    if (!inbox_ids.empty()) {
      transport::add_xack(req, inbox, run_group, inbox_ids);
      transport::add_xdel(req, inbox, inbox_ids);
    }
  }

  // Its inbox's group (again after an adoption deleted it while this one stalled) and its
  // heartbeat in the registry.
  awaitable<void> register_here() {
    co_await transport::xgroup_create(*commands, inbox, run_group, "0");
    transport::scored_member me[] = {{static_cast<double>(unix_now_ms()), options.consumer}};
    co_await transport::zadd(*commands, registry, me);
  }

  awaitable<void> run(stop_source stop) {
    commands = transport::connection::create(strand, redis);
    blocking = transport::connection::create(strand, redis);
    co_await commands->connect();
    co_await blocking->connect();
    co_await transport::xgroup_create(*commands, stream, run_group, "0");
    co_await register_here();
    tasks::client_options task_options;
    task_options.prefix = options.prefix;
    dispatcher = std::make_unique<tasks::client>(commands, task_options);
    log::info("orchestrator", options.consumer, " started: ", definitions.size(), " saga definition(s), concurrency ",
              options.concurrency);
    loops.spawn(read_loop(stop), "saga run reader");
    loops.spawn(lease_loop(stop), "saga lease keeper");
    loops.spawn(timer_loop(stop), "saga timers");
    co_await stop.wait();
    stopping = true;
    blocking->close();
    wake_all();  // waiting sagas leave now: their replies or timers resume them elsewhere
    slot_freed.notify_all();
    co_await loops.wait();
    auto grace = steady_clock::now() + options.grace;
    while (sagas.running() > 0 && steady_clock::now() < grace) co_await sleep_for(milliseconds(10));
    if (sagas.running() > 0)
      log::warn("orchestrator", sagas.running(), " saga(s) still running after the grace; other orchestrators take them over");
    try {  // silent from now on: the others adopt the inbox (replies still to come) at once
      transport::scored_member gone[] = {{static_cast<double>(unix_now_ms() - 10 * options.lease.count()), options.consumer}};
      if (!frozen) co_await transport::zadd(*commands, registry, gone);
    } catch (const std::exception& e) {
      log::warn("orchestrator", "leaving the registry failed: ", log::error_text(e));
    }
    abandoning = true;
    commands->close();
    wake_all();
    co_await sagas.wait();
  }

  awaitable<void> read_loop(stop_source stop) {
    while (!stop.stop_requested() && !frozen) {
      if (running.size() - waiting >= options.concurrency) {
        co_await slot_freed.wait();
        continue;
      }
      std::vector<transport::stream_batch> got;
      bool failed = false;
      bool lost_group = false;
      try {
        transport::stream_offset from[] = {{stream, ">"}, {inbox, ">"}};
        transport::xreadgroup_options read{.count = options.concurrency - (running.size() - waiting), .block = options.block};
        got = co_await transport::xreadgroup(*blocking, run_group, options.consumer, from, read);
      } catch (const std::exception& e) {
        if (stop.stop_requested() || stopping) break;
        lost_group = std::string_view(e.what()).find("NOGROUP") != std::string_view::npos;
        if (!lost_group) log::warn("orchestrator", "reading saga runs failed: ", log::error_text(e), "; retrying");
        failed = true;
      }
      if (lost_group) {  // its inbox was adopted while it stalled
        try {
          co_await register_here();
          co_await transport::xgroup_create(*commands, stream, run_group, "0");
          continue;
        } catch (const std::exception& e) {
          log::warn("orchestrator", "recreating the inbox failed: ", log::error_text(e));
        }
      }
      if (failed) {
        co_await stop.sleep_for(milliseconds(500));
        continue;
      }
      for (auto& batch : got)
        for (auto& e : batch.entries) begin(e, batch.stream == inbox);
    }
  }

  // A run entry: starts the saga here, or hands what it carries (a reply, a wake-up) to the
  // saga already held here.
  void begin(const transport::stream_entry& e, bool from_inbox) {
    auto* id = e.find(run_field);
    if (!id || id->empty()) {
      log::warn("orchestrator", "run entry ", e.id, " names no saga; dropped");
      auto drop = [](std::shared_ptr<impl> self, entry_ref entry) -> awaitable<void> {
        entry_ref one[] = {entry};
        co_await self->ack(one);
      };
      sagas.spawn(drop(shared_from_this(), entry_ref{from_inbox, e.id}), "dropping a malformed run entry");
      return;
    }
    auto& h = running[*id];
    bool fresh = !h;
    if (fresh) h = std::make_shared<held>(strand);
    h->entries.push_back({from_inbox, e.id});
    auto* key = e.find("key");
    if (key) {
      h->replies.try_emplace(*key, detail::decode_reply(e));
      h->reply_entries.push_back(e);
    }
    if (fresh) {
      h->resumed = key || e.find("timer");
      sagas.spawn(run_saga(*id, h), "saga " + *id);
    } else {
      h->wake.notify();
    }
  }

  // Every lease/3: reset the idle time of the run entries held here (a killed orchestrator stops
  // doing it), and take over entries idle past the lease (their orchestrator is dead or stalled).
  awaitable<void> lease_loop(stop_source stop) {
    for (;;) {
      bool slept = co_await stop.sleep_for(options.lease / 3);
      if (!slept || frozen) co_return;
      try {
        co_await heartbeat();
        std::vector<std::string> run_ids, inbox_ids;
        for (auto& [saga, h] : running)
          for (auto& e : h->entries) (e.inbox ? inbox_ids : run_ids).push_back(e.id);
        std::vector<std::string>* lists[] = {&run_ids, &inbox_ids};
        for (auto* ids : lists)
          for (std::size_t from = 0; from < ids->size(); from += 1000) {
            auto n = std::min<std::size_t>(1000, ids->size() - from);
            transport::request req;
            req.begin(6 + n).arg("XCLAIM").arg(ids == &run_ids ? stream : inbox).arg(run_group).arg(options.consumer).arg(0);
            for (std::size_t i = from; i < from + n; ++i) req.arg((*ids)[i]);
            req.arg("JUSTID");
            co_await commands->exec(std::move(req));
          }
        if (running.size() - waiting < options.concurrency && !stopping) {
          auto claimed = co_await transport::xautoclaim(*commands, stream, run_group, options.consumer, options.lease,
                                                        "0-0", options.concurrency - (running.size() - waiting));
          for (auto& e : claimed.entries) {
            log::info("orchestrator", "taking over run ", e.id, " (its orchestrator was silent for the lease)");
            begin(e, false);
          }
        }
      } catch (const std::exception& e) {
        log::warn("orchestrator", "lease keeping failed: ", log::error_text(e));
      }
    }
  }

  // Its own heartbeat; and the inboxes of orchestrators silent for two leases move to the run
  // stream (adopt.lua), so that the replies sent to a dead orchestrator resume their sagas.
  awaitable<void> heartbeat() {
    auto now = unix_now_ms();
    transport::scored_member me[] = {{static_cast<double>(now), options.consumer}};
    co_await transport::zadd(*commands, registry, me);
    auto silent_since = std::to_string(now - 2 * options.lease.count());
    auto silent = co_await transport::zrange_by_score(*commands, registry, "-inf", silent_since);
    std::vector<std::string> keys{stream, registry};
    for (auto& m : silent)
      if (m.member != options.consumer) keys.push_back(inbox_key(options.prefix, m.member));
    if (keys.size() == 2) co_return;
    std::vector<std::string_view> key_views(keys.begin(), keys.end());
    auto forget = std::to_string(now - options.retention.count());
    std::string_view args[] = {forget};
    auto moved = co_await transport::evalsha(*commands, scripts::adopt(), key_views, args);
    if (moved.integer > 0)
      log::info("orchestrator", "adopted ", moved.integer, " repl", moved.integer == 1 ? "y" : "ies",
                " from the inbox of silent orchestrators");
  }

  // Moves the due timers of sagas that left into the run stream (any orchestrator may do it).
  awaitable<void> timer_loop(stop_source stop) {
    for (;;) {
      bool slept = co_await stop.sleep_for(milliseconds(100));
      if (!slept || frozen) co_return;
      try {
        std::string_view keys[] = {timers, stream};
        std::string now = std::to_string(unix_now_ms());
        std::string_view args[] = {now, "100"};
        co_await transport::evalsha(*commands, scripts::due(), keys, args);
      } catch (const std::exception& e) {
        log::warn("orchestrator", "waking due sagas failed: ", log::error_text(e));
      }
    }
  }

  awaitable<void> run_saga(std::string saga_id, std::shared_ptr<held> h) {
    for (;;) {
      std::optional<std::int64_t> left;
      bool dropped = true, hand_on = false;
      try {
        co_await execute(saga_id, h);
        dropped = false;
      } catch (const saga_left& e) {
        left = e.due_ms;
        dropped = false;
      } catch (const fenced&) {
        ++stats.fenced;
        log::warn("orchestrator", "saga ", saga_id, ": another orchestrator holds it now; dropped here");
        hand_on = true;
      } catch (const crash_hook&) {
      } catch (const std::exception& e) {
        log::error("orchestrator", "saga ", saga_id, " stopped: ", log::error_text(e),
                   "; it is taken over after the lease");
      }
      if (hand_on) {
        co_await hand_on_replies(saga_id, *h);
        break;
      }
      if (dropped) break;  // its entries stay pending: recovered after the lease
      try {
        if (left) {
          // The timer before the acknowledgement: a crash between the two leaves the entries
          // pending (taken over), never the saga without a way back.
          before_write();
          transport::scored_member timer[] = {{static_cast<double>(*left), saga_id}};
          co_await transport::zadd(*commands, timers, timer);
          wrote();
          ++stats.left;
        }
        std::vector<entry_ref> done(h->entries.begin(), h->entries.end());
        co_await ack(done);
        h->entries.erase(h->entries.begin(), h->entries.begin() + static_cast<std::ptrdiff_t>(done.size()));
      } catch (const std::exception& e) {
        if (!frozen) log::warn("orchestrator", "saga ", saga_id, ": acknowledging its runs failed: ", log::error_text(e));
        break;
      }
      if (h->entries.empty() || stopping) break;
      h->resumed = true;  // more came meanwhile (a reply while it left): resume it now
    }
    running.erase(saga_id);
    slot_freed.notify_all();
  }

  // The saga is held elsewhere now (this one was fenced): the replies this one received (maybe
  // taken but not journaled) go to the run stream for the holder to find, and every entry held
  // here is acknowledged; the holder has entries of its own. A reply it already journaled is
  // ignored there.
  awaitable<void> hand_on_replies(const std::string& saga_id, held& h) {
    try {
      before_write();
      transport::request req;
      for (auto& e : h.reply_entries) {
        std::vector<transport::field_view> fields;
        for (auto& [k, v] : e.fields) fields.push_back({k, v});
        transport::add_xadd(req, stream, fields);
      }
      add_acks(req, h.entries);
      auto replies = co_await commands->exec(std::move(req));
      for (auto& r : replies)
        if (r.is_error()) throw transport::server_error("handing on replies", r.text);
      wrote();
    } catch (const std::exception& e) {
      if (!frozen)
        log::warn("orchestrator", "saga ", saga_id, ": handing on its replies failed: ", log::error_text(e),
                  "; they are recovered after the lease");
    }
  }

  awaitable<std::optional<detail::remote_reply>> await_reply(std::shared_ptr<held> h, std::string key,
                                                             std::int64_t deadline_ms, bool may_leave) {
    for (;;) {
      if (frozen) throw crash_hook();
      if (abandoning) throw std::runtime_error("the orchestrator stopped while the saga waited");
      if (auto it = h->replies.find(key); it != h->replies.end()) {
        auto reply = std::move(it->second);
        h->replies.erase(it);
        co_return reply;
      }
      auto left = deadline_ms - unix_now_ms();
      if (left <= 0) co_return std::nullopt;
      if (may_leave && (stopping || waiting >= options.max_waiting)) throw saga_left(deadline_ms);
      co_await wait(h, left);
    }
  }

  awaitable<void> await_until(std::shared_ptr<held> h, std::int64_t due_ms, bool may_leave) {
    for (;;) {
      if (frozen) throw crash_hook();
      if (abandoning) throw std::runtime_error("the orchestrator stopped while the saga waited");
      auto left = due_ms - unix_now_ms();
      if (left <= 0) co_return;
      if (may_leave && (stopping || waiting >= options.max_waiting || milliseconds(left) > options.lease))
        throw saga_left(due_ms);
      co_await wait(h, left);
    }
  }

  // A held saga waits (it does not count against the concurrency meanwhile).
  awaitable<void> wait(const std::shared_ptr<held>& h, std::int64_t ms) {
    if (h->waiters++ == 0) {
      ++waiting;
      slot_freed.notify_all();
    }
    co_await h->wake.wait_until(steady_clock::now() + milliseconds(ms));
    if (--h->waiters == 0) --waiting;
  }

  awaitable<void> execute(const std::string& saga_id, const std::shared_ptr<held>& h) {
    saga_keys keys(options.prefix, saga_id);
    if (h->resumed) {  // its timer, if it left, is not needed any more
      before_write();
      std::string member[] = {saga_id};
      co_await transport::zrem(*commands, timers, member);
    }
    before_write();
    std::string_view take_keys[] = {keys.snapshot, keys.log};
    std::string_view take_args[] = {options.consumer};
    auto taken = co_await transport::evalsha(*commands, scripts::take(), take_keys, take_args);
    wrote();
    if (taken.elements.size() < 2) throw std::runtime_error("take script: unexpected reply");
    std::int64_t epoch = transport::as_integer(taken.elements[0], "take script");
    if (epoch == 0 || taken.elements.size() != 4) co_return;  // gone, or finished: its entries are acknowledged
    if (!h->counted) {  // a late duplicate reply for a finished saga starts nothing
      h->counted = true;
      ++stats.started;
    }
    std::string name, correlation, input_text, version_text;
    bool cancel = false;
    auto& flat = taken.elements[2].elements;
    // Decoded now, and the reply released: a saga that waits keeps its frame for long.
    auto history = decode_journal(taken.elements[3]);
    for (std::size_t i = 0; i + 1 < flat.size(); i += 2) {
      auto& k = flat[i].text;
      auto& v = flat[i + 1].text;
      if (k == "cancel") cancel = v == "1";
      else if (k == "name") name = v;
      else if (k == "correlation_id") correlation = v;
      else if (k == "input") input_text = v;
      else if (k == "version") version_text = v;
    }
    auto found = definitions.find(name);
    std::uint32_t version = found == definitions.end() ? 0 : found->second.version;
    auto self = shared_from_this();
    detail::services services;
    services.write = [self, keys, epoch, version](std::vector<fields> entries, fields snapshot,
                                                  bool final) -> awaitable<bool> {
      self->before_write();
      snapshot.emplace_back("version", std::to_string(version));
      snapshot.emplace_back("updated_ms", std::to_string(unix_now_ms()));
      auto ttl = final ? self->options.retention : milliseconds(0);
      std::optional<bool> cancel;
      std::string failure;
      try {
        cancel = co_await append(*self->commands, keys, epoch, entries, snapshot, ttl);
      } catch (const std::exception& e) {
        failure = e.what();
      }
      if (!failure.empty()) throw engine_failure("journal append failed: " + failure);
      if (!cancel) throw fenced();
      self->wrote();
      co_return *cancel;
    };
    services.dispatch = [self, saga_id, correlation](std::string queue, std::string task, json input, std::string key,
                                                     step_options o) -> awaitable<void> {
      self->before_write();
      std::map<std::string, std::string> headers{{std::string(tasks::reply_to_header), self->inbox},
                                                 {std::string(tasks::reply_key_header), key},
                                                 {std::string(tasks::reply_field_prefix) + std::string(run_field), saga_id}};
      std::string idempotency = saga_id + "/" + key;
      tasks::enqueue_options e;
      e.queue = queue;
      e.retry.max_attempts = o.max_attempts;
      e.retry.backoff = o.backoff;
      e.timeout = o.timeout;
      e.idempotency_key = idempotency;
      e.idempotency_ttl = self->options.retention;
      e.correlation_id = correlation;
      e.headers = &headers;
      tasks::payload body(input);
      std::string failure;
      try {
        co_await self->dispatcher->enqueue(std::move(task), std::move(body), e);
      } catch (const std::exception& ex) {
        failure = ex.what();
      }
      if (!failure.empty()) throw engine_failure("dispatching a remote step failed: " + failure);
      self->wrote();
    };
    services.has_reply = [h](const std::string& key) { return h->replies.contains(key); };
    services.await_reply = [self, h](std::string key, std::int64_t deadline_ms,
                                     bool may_leave) -> awaitable<std::optional<detail::remote_reply>> {
      co_return co_await self->await_reply(h, std::move(key), deadline_ms, may_leave);
    };
    services.await_until = [self, h](std::int64_t due_ms, bool may_leave) -> awaitable<void> {
      co_await self->await_until(h, due_ms, may_leave);
    };
    boost::system::error_code ec;
    auto input = boost::json::parse(input_text, ec);
    taken = transport::resp::value{};
    detail::run r(saga_id, correlation, ec ? json() : std::move(input), std::move(services));
    r.cancel_requested = cancel;

    std::string why_parked;
    if (found == definitions.end()) {
      why_parked = "no saga definition named '" + name + "' in this orchestrator";
    } else if (ec) {
      why_parked = "input is not valid JSON: " + ec.message();
    } else if (auto recorded = std::strtoul(version_text.c_str(), nullptr, 10);
               recorded != 0 && recorded != version) {
      auto& compatible = found->second.compatible_versions;
      if (std::find(compatible.begin(), compatible.end(), recorded) == compatible.end())
        why_parked = "journal written by version " + std::to_string(recorded) + ", this orchestrator runs version " +
                     std::to_string(version) + " (not declared compatible)";
    }
    if (why_parked.empty()) {
      try {
        r.replay(history);
      } catch (const unreplayable& e) {
        why_parked = e.what();
      }
    }
    std::vector<journal_entry>().swap(history);
    if (!why_parked.empty()) {
      log::warn("orchestrator", "saga ", saga_id, " (", name, ", correlation ", correlation, ") parked: ", why_parked);
      co_await r.finish(status::parked, "", "", why_parked);
      ++stats.parked;
      co_return;
    }

    context ctx(r);
    json result;
    std::optional<std::pair<std::string, std::string>> failure;  // step, error
    bool cancelled = false;
    try {
      result = co_await found->second.run(ctx);
    } catch (const fenced&) {
      throw;
    } catch (const crash_hook&) {
      throw;
    } catch (const saga_left&) {
      throw;
    } catch (const engine_failure&) {
      throw;
    } catch (const unreplayable& e) {
      why_parked = e.what();
    } catch (const saga_cancelled&) {
      cancelled = true;
    } catch (const step_failed& e) {
      failure.emplace(e.step(), e.error());
    } catch (const std::exception& e) {
      failure.emplace("(body)", e.what());
    }
    if (!why_parked.empty()) {
      log::warn("orchestrator", "saga ", saga_id, " (", name, ", correlation ", correlation, ") parked: ", why_parked);
      co_await r.finish(status::parked, "", "", why_parked);
      ++stats.parked;
    } else if (!failure && !cancelled) {
      co_await r.finish(status::completed, boost::json::serialize(result), "", "");
      ++stats.completed;
    } else {
      auto stuck = co_await r.compensate();
      if (stuck) {
        log::error("orchestrator", "saga ", saga_id, " (", name, ", correlation ", correlation, "): compensation of step '", stuck->first,
                   "' failed for good: ", stuck->second, "; parked as compensation_failed");
        co_await r.finish(status::compensation_failed, "", stuck->first, stuck->second);
        ++stats.compensation_failed;
      } else if (cancelled) {
        co_await r.finish(status::cancelled, "", "", "cancelled");
        ++stats.cancelled;
      } else {
        co_await r.finish(status::compensated, "", failure->first, failure->second);
        ++stats.compensated;
      }
    }
  }
};

orchestrator::orchestrator(asio::any_io_executor ex, transport::config redis, orchestrator_options options)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(redis), std::move(options))) {}

orchestrator::~orchestrator() = default;

void orchestrator::add(definition d) {
  if (d.name.empty() || !d.run) throw std::invalid_argument("orchestrator::add needs a saga name and a body");
  if (d.version == 0) throw std::invalid_argument("orchestrator::add: versions start at 1");
  auto name = d.name;
  impl_->definitions[name] = std::move(d);
}

awaitable<void> orchestrator::run(stop_source stop) {
  co_await asio::co_spawn(impl_->strand, impl_->run(std::move(stop)), asio::use_awaitable);
}

const orchestrator_stats& orchestrator::stats() const noexcept { return impl_->stats; }
bool orchestrator::crashed() const noexcept { return impl_->frozen; }

}  // namespace sagaflow::sagas
