// The service program shared by orders-inventory, orders-payments and orders-shipping (service.hpp):
// flags, the action and undo handlers with their bookkeeping, injected failures, graceful stop.
#include "service.hpp"

#include "common.hpp"

#include <sagaflow/engine/log.hpp>
#include <sagaflow/tasks/worker.hpp>
#include <sagaflow/transport/commands.hpp>
#include <sagaflow/transport/connection.hpp>

#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>

#include <iostream>

namespace orders {

namespace tasks = sagaflow::tasks;
namespace transport = sagaflow::transport;
using json = boost::json::value;
using sagaflow::awaitable;

namespace {

struct service_flags {
  std::string url = redis_url_from_env();
  tasks::worker_options worker;
  double fail_rate = 0, transient_rate = 0;
  long work_ms = 0;
};

std::string help_text(const service_definition& s) {
  return "Serves the '" + s.name + "' queue of the order saga: the task '" + s.action + "' and its undo '" + s.undo +
         "'.\n"
         "Runs until SIGTERM or SIGINT, then lets running tasks finish (a second signal exits at once).\n"
         "\n"
         "  --redis URL            Redis to use (default: $SAGAFLOW_REDIS_URL, else redis://127.0.0.1:6379)\n"
         "  --concurrency N        tasks run at once, N >= 1 (default: 32)\n"
         "  --lease-ms N           a silent worker's tasks are taken over after N ms (default: 30000)\n"
         "  --grace-ms N           at shutdown, how long running tasks may take to finish (default: 30000)\n"
         "  --fail-rate R          fraction of orders (0 to 1) failing here for good (" + s.failure + "):\n"
         "                         the saga compensates; chosen by the order id, the same in every run\n"
         "  --transient-rate R     fraction of orders whose first attempt here fails (then retried)\n"
         "  --work-ms N            time one action takes, N >= 0 (default: 0)\n"
         "  -h, --help             print this help and exit\n"
         "\n"
         "State in Redis: orders:" + s.name + ":done and :undone (hash: order id -> runs that took effect),\n"
         ":attempts and :retries (counters), :failed (set of orders failed for good), and the service's records.\n"
         "\n"
         "Exit status: 0 stopped by a signal, 1 Redis failed, 2 bad arguments.\n";
}

service_flags parse(int argc, char** argv, const program& p, const service_definition& s) {
  service_flags f;
  f.worker.queues = {tasks::queue_config{s.name, 1}};
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << p.usage << "\n" << help_text(s);
      std::exit(0);
    }
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) p.usage_error(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--redis") f.url = value();
    else if (flag == "--concurrency") f.worker.concurrency = static_cast<std::size_t>(p.number(flag, value(), 1, 100'000));
    else if (flag == "--lease-ms") f.worker.lease = std::chrono::milliseconds(p.number(flag, value(), 100, 86'400'000));
    else if (flag == "--grace-ms") f.worker.grace = std::chrono::milliseconds(p.number(flag, value(), 1, 86'400'000));
    else if (flag == "--fail-rate") f.fail_rate = p.rate(flag, value());
    else if (flag == "--transient-rate") f.transient_rate = p.rate(flag, value());
    else if (flag == "--work-ms") f.work_ms = p.number(flag, value(), 0, 60'000);
    else p.usage_error("unknown flag '" + flag + "'");
  }
  if (f.worker.lease < std::chrono::seconds(3)) f.worker.recover_interval = f.worker.lease / 2;
  return f;
}

// The order a task is about: the step's input, or for an undo {"input": the step's input, ...}.
const boost::json::object& order_of(const json& v) {
  if (!v.is_object()) throw tasks::permanent_error("the payload is not an order");
  auto& o = v.as_object();
  auto* id = o.if_contains("order");
  if (!id || !id->is_string()) throw tasks::permanent_error("the payload names no order");
  return o;
}

std::string order_id(const boost::json::object& order) { return std::string(order.at("order").as_string()); }

}  // namespace

int service_main(int argc, char** argv, const service_definition& s) {
  program p{"orders-" + s.name,
            "usage: orders-" + s.name + " [--redis URL] [--concurrency N] [--lease-ms N] [--grace-ms N]\n"
            "       " + std::string(s.name.size() + 7, ' ') + " [--fail-rate R] [--transient-rate R] [--work-ms N]\n"};
  auto flags = parse(argc, argv, p, s);
  auto cfg = p.redis(flags.url);

  return run_until_signal(p, [&](sagaflow::stop_source stop) -> awaitable<void> {
    auto ex = co_await boost::asio::this_coro::executor;
    tasks::worker worker(ex, cfg, flags.worker);
    auto records = transport::connection::create(ex, cfg);  // the handlers' writes
    const auto done = service_key(s.name, "done"), undone = service_key(s.name, "undone"),
               attempts = service_key(s.name, "attempts"), retries = service_key(s.name, "retries"),
               failed = service_key(s.name, "failed");

    worker.handle(s.action, [&](tasks::task_context& ctx) -> awaitable<void> {
      auto input = ctx.json();
      auto& order = order_of(input);
      auto id = order_id(order);
      transport::request req;
      req.push("INCR", attempts);
      if (ctx.task.attempt > 1) req.push("INCR", retries);
      if (flags.work_ms > 0) co_await sagaflow::sleep_for(std::chrono::milliseconds(flags.work_ms));
      if (fails(s.name + ":permanent", id, flags.fail_rate)) {
        req.push("SADD", failed, id);
        auto replies = co_await records->exec(std::move(req));
        transport::throw_on_error(req, replies);
        throw tasks::permanent_error(s.failure + " (order " + id + ")");
      }
      if (ctx.task.attempt == 1 && fails(s.name + ":transient", id, flags.transient_rate)) {
        auto replies = co_await records->exec(std::move(req));
        transport::throw_on_error(req, replies);
        throw std::runtime_error(s.name + " is briefly unavailable (order " + id + ", first attempt)");
      }
      auto result = s.apply(order, req);
      req.push("HINCRBY", done, id, 1);
      auto replies = co_await records->exec(std::move(req));
      transport::throw_on_error(req, replies);
      ctx.set_result(std::move(result));
    });
    worker.handle(s.undo, [&](tasks::task_context& ctx) -> awaitable<void> {
      auto args = ctx.json();
      if (!args.is_object() || !args.as_object().contains("input")) throw tasks::permanent_error("an undo needs {\"input\", \"result\"}");
      auto& order = order_of(args.as_object().at("input"));
      auto* result = args.as_object().if_contains("result");
      transport::request req;
      s.revert(order, result ? *result : json(nullptr), req);
      req.push("HINCRBY", undone, order_id(order), 1);
      auto replies = co_await records->exec(std::move(req));
      transport::throw_on_error(req, replies);
    });

    // The program's own connection must not hold up a stop either (see examples/worker.cpp).
    bool connected = co_await sagaflow::until_stopped(records->connect(), stop);
    if (connected) {
      sagaflow::log::info(p.name, "serving queue '", s.name, "' (fail rate ", flags.fail_rate, ", transient rate ",
                          flags.transient_rate, ")");
      try {
        co_await worker.run(stop);
      } catch (...) {
        records->close();
        throw;
      }
      auto& st = worker.stats();
      sagaflow::log::info(p.name, "stopped: ", st.succeeded.load(), " task(s) succeeded, ", st.retried.load(),
                          " retried, ", st.dead.load(), " dead");
    }
    records->close();
  });
}

}  // namespace orders
