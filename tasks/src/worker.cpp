// The worker: builds its roles (tasks/src: fetcher, processor, settler, promoter, lease_renewer,
// recoverer) over one shared state on one strand, starts them, and stops them in order.
#include "fetcher.hpp"
#include "lease_renewer.hpp"
#include "promoter.hpp"
#include "recoverer.hpp"

#include <sagaflow/engine/id.hpp>
#include <sagaflow/engine/log.hpp>
#include <sagaflow/engine/wait_group.hpp>
#include <sagaflow/tasks/client.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

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

std::int64_t unix_now_ms() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

namespace {

std::string default_consumer() {
  char host[256] = "host";
  ::gethostname(host, sizeof host - 1);
  return std::string(host) + "-" + std::to_string(::getpid()) + "-" + make_id().substr(16);
}

}  // namespace

worker_state::worker_state(const asio::any_io_executor& ex, transport::config cfg, worker_options opts)
    : strand(asio::make_strand(ex)), redis_config(std::move(cfg)), options(std::move(opts)) {
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
    auto slots = std::max<std::size_t>(1, options.concurrency * q.share / shares);
    auto prefetch = options.prefetch * q.share / shares;
    queues.push_back(std::make_unique<queue_state>(q, options.prefix, slots, prefetch, strand));
  }
}

struct worker::impl : std::enable_shared_from_this<worker::impl> {
  impl(asio::any_io_executor ex, transport::config cfg, worker_options opts)
      : state(ex, std::move(cfg), std::move(opts)),
        settle(state),
        process(state, settle),
        renewer(state),
        recover(state, process, settle),
        intake(state.strand),
        renewal(state.strand) {
    for (auto& q : state.queues) {
      fetchers.push_back(std::make_unique<fetcher>(state, *q, process));
      promoters.push_back(std::make_unique<promoter>(state, *q));
    }
  }

  worker_state state;
  settler settle;
  processor process;
  lease_renewer renewer;
  recoverer recover;
  std::vector<std::unique_ptr<fetcher>> fetchers;
  std::vector<std::unique_ptr<promoter>> promoters;
  wait_group intake;   // fetchers, promoters, recoverer: stopped first
  wait_group renewal;  // the lease renewer: stopped after the grace
  std::shared_ptr<transport::connection> commands;

  // The commands connection (scripts, acks, renewals, recovery), a blocking connection per
  // fetcher, and the consumer group on every stream the worker reads.
  awaitable<void> connect() {
    commands = transport::connection::create(state.strand, state.redis_config);
    state.broker = std::make_unique<broker>(commands);
    co_await commands->connect();
    for (auto& f : fetchers) co_await f->connect();
    for (auto& q : state.queues) co_await state.broker->create_groups(q->keys);
  }

  void close_connections() {
    if (commands) commands->close();
    for (auto& f : fetchers) f->stop();
  }

  awaitable<void> run(stop_source stop) {
    bool connected = false;
    try {
      connected = co_await until_stopped(connect(), stop);
    } catch (...) {
      close_connections();
      throw;
    }
    if (!connected) {  // e.g. SIGTERM while Redis is still unreachable: a clean stop, not an error
      close_connections();
      log::info("worker", state.options.consumer, " stopped before it had connected");
      co_return;
    }
    auto& options = state.options;
    log::info("worker", options.consumer, " started: queues ", describe_queues(), ", concurrency ", options.concurrency,
              ", ", options.mode == priority_mode::strict ? "strict" : "weighted", " priority");
    for (std::size_t i = 0; i < fetchers.size(); ++i) {
      auto& name = state.queues[i]->config.name;
      intake.spawn(fetchers[i]->run(), "fetcher of " + name);
      intake.spawn(promoters[i]->run(), "promoter of " + name);
    }
    intake.spawn(recover.run(), "recoverer");
    renewal.spawn(renewer.run(), "lease renewer");

    co_await stop.wait();
    // Stopping, in this order:
    // 1. start and take in nothing more: fetchers (a blocking read ends as its connection closes),
    //    promoters and the recoverer end;
    // 2. hand back what was fetched but never started, at once, so that other workers run it
    //    while this one finishes;
    // 3. let running handlers finish within the grace, their leases still renewed;
    // 4. stop renewing: what still runs is left to other workers' recovery after the lease;
    // 5. hand back anything else pending for this consumer and not running here, acknowledge
    //    the last completions, close.
    process.stop_starting();
    for (auto& f : fetchers) f->stop();
    for (auto& p : promoters) p->stop();
    recover.stop();
    co_await intake.wait();
    co_await process.hand_back();
    log::info("worker", options.consumer, " stopping: waiting up to ", options.grace.count(), " ms for ",
              process.running(), " running task(s)");
    co_await process.drain(steady_clock::now() + options.grace);
    if (process.running() > 0)
      log::warn("worker", process.running(), " task(s) still running after the grace period; they stay pending");
    renewer.stop();
    co_await renewal.wait();
    co_await process.hand_back();
    co_await settle.flush();
    close_connections();
    auto& stats = state.stats;
    log::info("worker", options.consumer, " stopped: ", stats.succeeded.load(), " succeeded, ", stats.retried.load(),
              " retried, ", stats.dead.load(), " dead-lettered");
  }

  std::string describe_queues() const {
    std::string out;
    for (auto& q : state.queues) out += (out.empty() ? "" : ",") + q->config.name + "(" + std::to_string(q->slots) + ")";
    return out;
  }
};

worker::worker(asio::any_io_executor ex, transport::config redis, worker_options options)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(redis), std::move(options))) {
  impl_->state.owner = impl_;
}

worker::~worker() = default;

void worker::handle(std::string name, handler h) {
  if (name.empty() || !h) throw std::invalid_argument("worker::handle needs a task name and a handler");
  impl_->state.handlers[std::move(name)] = std::move(h);
}

awaitable<void> worker::run(stop_source stop) {
  co_await asio::co_spawn(impl_->state.strand, impl_->run(std::move(stop)), asio::use_awaitable);
}

const worker_stats& worker::stats() const noexcept { return impl_->state.stats; }
const std::string& worker::consumer() const noexcept { return impl_->state.options.consumer; }

}  // namespace sagaflow::tasks
