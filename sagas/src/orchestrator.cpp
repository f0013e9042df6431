// The orchestrator: pulls saga runs from the run stream's consumer group, takes each saga (a new
// epoch), replays its journal and runs its body; renews its leases and takes over the sagas of
// orchestrators that went silent.
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

struct orchestrator::impl : std::enable_shared_from_this<orchestrator::impl> {
  impl(asio::any_io_executor ex, transport::config cfg, orchestrator_options opts)
      : strand(asio::make_strand(ex)), redis(std::move(cfg)), options(std::move(opts)),
        stream(run_stream(options.prefix)), sagas(strand), loops(strand), slot_freed(strand) {
    if (options.consumer.empty()) {
      char host[256] = "host";
      ::gethostname(host, sizeof host - 1);
      options.consumer = std::string(host) + "-" + std::to_string(::getpid()) + "-" + make_id().substr(16);
    }
    if (options.concurrency == 0) throw std::invalid_argument("orchestrator: concurrency must be at least 1");
    if (options.lease < milliseconds(100)) throw std::invalid_argument("orchestrator: lease must be at least 100 ms");
  }

  asio::strand<asio::any_io_executor> strand;
  transport::config redis;
  orchestrator_options options;
  std::string stream;
  std::unordered_map<std::string, definition> definitions;
  orchestrator_stats stats;
  std::shared_ptr<transport::connection> commands, blocking;
  std::unique_ptr<tasks::client> dispatcher;  // remote steps' tasks, on `commands`
  std::unordered_map<std::string, std::string> running;  // saga id -> its run entry id
  bool frozen = false;                                   // the crash hook fired
  bool stopping = false;
  wait_group sagas, loops;
  notifier slot_freed;

  // A Redis write: counted for the crash hook, refused once it fired.
  void wrote() {
    ++stats.writes;
    if (options.crash_after_writes && stats.writes >= options.crash_after_writes && !frozen) {
      frozen = true;
      log::warn("orchestrator", options.consumer, ": crash hook after ", stats.writes, " writes");
    }
    if (frozen) throw crash_hook();
  }
  void before_write() const {
    if (frozen) throw crash_hook();
  }

  awaitable<void> ack(const std::string& entry_id) {
    before_write();
    transport::request req;
    std::string ids[] = {entry_id};
    transport::add_xack(req, stream, run_group, ids);
    transport::add_xdel(req, stream, ids);
    co_await commands->exec(std::move(req));
    wrote();
  }

  awaitable<void> run(stop_source stop) {
    commands = transport::connection::create(strand, redis);
    blocking = transport::connection::create(strand, redis);
    co_await commands->connect();
    co_await blocking->connect();
    co_await transport::xgroup_create(*commands, stream, run_group, "0");
    tasks::client_options task_options;
    task_options.prefix = options.prefix;
    dispatcher = std::make_unique<tasks::client>(commands, task_options);
    log::info("orchestrator", options.consumer, " started: ", definitions.size(), " saga definition(s), concurrency ",
              options.concurrency);
    loops.spawn(read_loop(stop), "saga run reader");
    loops.spawn(lease_loop(stop), "saga lease keeper");
    co_await stop.wait();
    stopping = true;
    blocking->close();
    slot_freed.notify_all();
    co_await loops.wait();
    auto grace = steady_clock::now() + options.grace;
    while (sagas.running() > 0 && steady_clock::now() < grace) co_await sleep_for(milliseconds(10));
    if (sagas.running() > 0)
      log::warn("orchestrator", sagas.running(), " saga(s) still running after the grace; other orchestrators take them over");
    commands->close();
    co_await sagas.wait();
  }

  awaitable<void> read_loop(stop_source stop) {
    while (!stop.stop_requested() && !frozen) {
      if (running.size() >= options.concurrency) {
        co_await slot_freed.wait();
        continue;
      }
      std::vector<transport::stream_batch> got;
      bool failed = false;
      try {
        transport::stream_offset from[] = {{stream, ">"}};
        transport::xreadgroup_options read{.count = options.concurrency - running.size(), .block = options.block};
        got = co_await transport::xreadgroup(*blocking, run_group, options.consumer, from, read);
      } catch (const std::exception& e) {
        if (stop.stop_requested() || stopping) break;
        log::warn("orchestrator", "reading saga runs failed: ", log::error_text(e), "; retrying");
        failed = true;
      }
      if (failed) {
        co_await stop.sleep_for(milliseconds(500));
        continue;
      }
      for (auto& batch : got)
        for (auto& e : batch.entries) begin(e);
    }
  }

  void begin(const transport::stream_entry& e) {
    auto* id = e.find(run_field);
    if (!id || id->empty()) {
      log::warn("orchestrator", "run entry ", e.id, " names no saga; dropped");
      sagas.spawn(ack(e.id), "dropping a malformed run entry");
      return;
    }
    if (running.contains(*id)) return;  // already running here (a duplicate run entry)
    running.emplace(*id, e.id);
    sagas.spawn(run_saga(e.id, *id), "saga " + *id);
  }

  // Every lease/3: reset the idle time of the runs held here (a killed orchestrator stops doing
  // it), and take over runs idle past the lease (their orchestrator is dead or stalled).
  awaitable<void> lease_loop(stop_source stop) {
    for (;;) {
      bool slept = co_await stop.sleep_for(options.lease / 3);
      if (!slept || frozen) co_return;
      try {
        if (!running.empty()) {
          std::vector<std::string> ids;
          for (auto& [saga, entry] : running) ids.push_back(entry);
          transport::request req;
          req.begin(6 + ids.size()).arg("XCLAIM").arg(stream).arg(run_group).arg(options.consumer).arg(0);
          for (auto& id : ids) req.arg(id);
          req.arg("JUSTID");
          co_await commands->exec(std::move(req));
        }
        if (running.size() < options.concurrency && !stopping) {
          auto claimed = co_await transport::xautoclaim(*commands, stream, run_group, options.consumer, options.lease,
                                                        "0-0", options.concurrency - running.size());
          for (auto& e : claimed.entries) {
            log::info("orchestrator", "taking over run ", e.id, " (its orchestrator was silent for the lease)");
            begin(e);
          }
        }
      } catch (const std::exception& e) {
        log::warn("orchestrator", "lease keeping failed: ", log::error_text(e));
      }
    }
  }

  awaitable<void> run_saga(std::string entry_id, std::string saga_id) {
    ++stats.started;
    try {
      co_await execute(entry_id, saga_id);
    } catch (const fenced&) {
      ++stats.fenced;
      log::warn("orchestrator", "saga ", saga_id, ": another orchestrator holds it now; dropped here");
    } catch (const crash_hook&) {
    } catch (const std::exception& e) {
      log::error("orchestrator", "saga ", saga_id, " stopped: ", log::error_text(e),
                 "; it is taken over after the lease");
    }
    running.erase(saga_id);
    slot_freed.notify_all();
  }

  // The reply with `key` in the saga's inbox, reading it (XREAD BLOCK, on a connection of its
  // own) from the start, so that a reply that came before a crash is found too.
  awaitable<std::optional<detail::remote_reply>> await_reply(saga_keys keys, std::string key,
                                                             steady_clock::time_point deadline) {
    auto conn = transport::connection::create(strand, redis);
    co_await conn->connect();
    std::optional<detail::remote_reply> out;
    std::string last = "0";
    while (!out) {
      if (frozen) {
        conn->close();
        throw crash_hook();
      }
      if (stopping) {
        conn->close();
        throw std::runtime_error("orchestrator stopping while the saga waits for a reply");
      }
      auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
      if (left.count() <= 0) break;
      auto block = std::min(left, milliseconds(500));  // stop and the crash hook are seen in time
      transport::request req;
      req.push("XREAD", "COUNT", "100", "BLOCK", std::to_string(block.count()), "STREAMS", keys.inbox, last);
      req.block_time = block;
      auto replies = co_await conn->exec(std::move(req));
      if (replies.empty() || replies[0].is_error()) break;
      for (auto& batch : transport::decode_stream_batches(std::move(replies[0])))
        for (auto& e : batch.entries) {
          last = e.id;
          auto* k = e.find("key");
          if (out || !k || *k != key) continue;
          detail::remote_reply r;
          auto* state = e.find("status");
          r.completed = state && *state == "completed";
          if (r.completed) {
            auto* result = e.find("result");
            boost::system::error_code ec;
            if (result && !result->empty()) r.result = boost::json::parse(*result, ec);
            if (ec) {
              r.completed = false;
              r.error = "the task's result is not JSON";
            }
          } else {
            auto* reason = e.find("reason");
            auto* error = e.find("error");
            r.error = (reason ? *reason : std::string("failed")) + (error ? ": " + *error : std::string());
          }
          out = std::move(r);
        }
    }
    conn->close();
    co_return out;
  }

  awaitable<void> execute(const std::string& entry_id, const std::string& saga_id) {
    saga_keys keys(options.prefix, saga_id);
    before_write();
    std::string_view take_keys[] = {keys.snapshot};
    std::string_view take_args[] = {options.consumer};
    auto taken = co_await transport::evalsha(*commands, scripts::take(), take_keys, take_args);
    wrote();
    if (taken.elements.size() != 2) throw std::runtime_error("take script: unexpected reply");
    std::int64_t epoch = transport::as_integer(taken.elements[0], "take script");
    if (epoch == 0 || taken.elements[1].text != to_string(status::running)) {  // gone, or finished
      co_await ack(entry_id);
      co_return;
    }
    auto snapshot = co_await transport::hgetall(*commands, keys.snapshot);
    std::string name, correlation, input_text, version_text;
    bool cancel = false;
    for (auto& [k, v] : snapshot) {
      if (k == "cancel") cancel = v == "1";
      if (k == "name") name = v;
      else if (k == "correlation_id") correlation = v;
      else if (k == "input") input_text = v;
      else if (k == "version") version_text = v;
    }
    auto found = definitions.find(name);
    std::uint32_t version = found == definitions.end() ? 0 : found->second.version;
    auto self = shared_from_this();
    detail::services services;
    services.write = [self, keys, epoch, version](fields entry, fields snapshot, bool final) -> awaitable<bool> {
      self->before_write();
      snapshot.emplace_back("version", std::to_string(version));
      snapshot.emplace_back("updated_ms", std::to_string(unix_now_ms()));
      auto ttl = final ? self->options.retention : milliseconds(0);
      auto cancel = co_await append(*self->commands, keys, epoch, entry, snapshot, ttl);
      if (!cancel) throw fenced();
      self->wrote();
      co_return *cancel;
    };
    services.dispatch = [self, keys, saga_id, correlation](std::string queue, std::string task, json input,
                                                           std::string key, step_options o) -> awaitable<void> {
      self->before_write();
      std::map<std::string, std::string> headers{{std::string(tasks::reply_to_header), keys.inbox},
                                                 {std::string(tasks::reply_key_header), key}};
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
      co_await self->dispatcher->enqueue(std::move(task), std::move(body), e);
      self->wrote();
    };
    services.await_reply = [self, keys](std::string key, steady_clock::time_point deadline)
        -> awaitable<std::optional<detail::remote_reply>> {
      co_return co_await self->await_reply(keys, key, deadline);
    };
    boost::system::error_code ec;
    auto input = boost::json::parse(input_text, ec);
    detail::run r(saga_id, correlation, ec ? json() : input, services);
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
        auto history = co_await read_journal(*commands, keys);
        r.replay(history);
      } catch (const unreplayable& e) {
        why_parked = e.what();
      }
    }
    if (!why_parked.empty()) {
      log::warn("orchestrator", "saga ", saga_id, " (", name, ") parked: ", why_parked);
      co_await r.finish(status::parked, "", "", why_parked);
      ++stats.parked;
      co_await ack(entry_id);
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
      log::warn("orchestrator", "saga ", saga_id, " (", name, ") parked: ", why_parked);
      co_await r.finish(status::parked, "", "", why_parked);
      ++stats.parked;
    } else if (!failure && !cancelled) {
      co_await r.finish(status::completed, boost::json::serialize(result), "", "");
      ++stats.completed;
    } else {
      auto stuck = co_await r.compensate();
      if (stuck) {
        log::error("orchestrator", "saga ", saga_id, " (", name, "): compensation of step '", stuck->first,
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
    co_await ack(entry_id);
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
