// orders-orchestrator: runs the order saga (validate, reserve stock, charge, ship; the last three
// on the inventory, payments and shipping services) until SIGTERM or SIGINT. Start several to
// share the sagas; a killed one's sagas are taken over by the others after the lease.
#include "common.hpp"

#include <sagaflow/engine/log.hpp>
#include <sagaflow/sagas/saga.hpp>
#include <sagaflow/tasks/task.hpp>

#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>

#include <iostream>

namespace sagas = sagaflow::sagas;
using json = boost::json::value;
using sagaflow::awaitable;

namespace {

const orders::program me{"orders-orchestrator",
                         "usage: orders-orchestrator [--redis URL] [--concurrency N] [--lease-ms N] [--grace-ms N]\n"
                         "                           [--consumer NAME]\n"};

constexpr const char* help_text =
    "Runs order sagas (started by orders-client) until SIGTERM or SIGINT, then lets running sagas\n"
    "finish within the grace (a second signal exits at once). Each saga: validate the order here,\n"
    "then reserve stock (queue inventory), charge (payments) and book a shipment (shipping); when a\n"
    "step fails for good, the completed ones are undone in reverse order (release, refund, cancel).\n"
    "\n"
    "  --redis URL            Redis to use (default: $SAGAFLOW_REDIS_URL, else redis://127.0.0.1:6379)\n"
    "  --concurrency N        sagas run at once, N >= 1 (default: 1024)\n"
    "  --lease-ms N           a silent orchestrator's sagas are taken over after N ms, N >= 100\n"
    "                         (default: 30000); every orchestrator of a deployment should use the same\n"
    "  --grace-ms N           at shutdown, how long running sagas may take to finish (default: 30000)\n"
    "  --consumer NAME        this orchestrator's name in Redis (default: <host>-<pid>-<random>)\n"
    "  -h, --help             print this help and exit\n"
    "\n"
    "At exit it prints what it did: sagas started, completed, compensated, ..., and fenced (taken\n"
    "over by another orchestrator while this one was silent).\n"
    "\n"
    "Exit status: 0 stopped by a signal, 1 Redis failed, 2 bad arguments.\n";

// Remote steps: the task's own retries are the step's attempts; a transient failure is retried
// after a short backoff, a permanent one fails the step at once.
sagas::step_options step_options() {
  sagas::step_options o;
  o.max_attempts = 4;
  o.backoff = {.base = std::chrono::milliseconds(50), .multiplier = 2.0, .cap = std::chrono::milliseconds(1000),
               .jitter = sagaflow::jitter::full};
  o.timeout = std::chrono::seconds(10);
  return o;
}

// The saga's input is the order: {"order": id, "sku": ..., "qty": n, "amount_cents": n}; each
// service step gets the validated order and returns its record (reservation, payment, shipment).
sagas::definition order_saga() {
  sagas::definition d;
  d.name = "order";
  d.run = [](sagas::context& ctx) -> awaitable<json> {
    sagas::action validate = [](const json& in) -> awaitable<json> {
      auto* o = in.if_object();
      auto* qty = o ? o->if_contains("qty") : nullptr;
      auto* amount = o ? o->if_contains("amount_cents") : nullptr;
      if (!o || !o->contains("order") || !o->contains("sku") || !qty || !qty->is_int64() || qty->as_int64() < 1 ||
          !amount || !amount->is_int64() || amount->as_int64() < 1)
        throw sagaflow::tasks::permanent_error("invalid order: needs order, sku, qty >= 1 and amount_cents >= 1");
      co_return in;
    };
    sagas::compensation nothing_to_undo;
    auto options = step_options();
    auto order = co_await ctx.step("validate", validate, nothing_to_undo, ctx.input(), options);
    sagas::remote_step reserve{.queue = "inventory", .task = "reserve", .undo_task = "release"};
    auto reservation = co_await ctx.remote("reserve", reserve, order, options);
    sagas::remote_step charge{.queue = "payments", .task = "charge", .undo_task = "refund"};
    auto payment = co_await ctx.remote("charge", charge, order, options);
    sagas::remote_step ship{.queue = "shipping", .task = "book", .undo_task = "cancel"};
    auto shipment = co_await ctx.remote("ship", ship, order, options);
    json result = {{"order", order.at("order")}, {"reservation", reservation}, {"payment", payment}, {"shipment", shipment}};
    co_return result;
  };
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url = orders::redis_url_from_env();
  sagas::orchestrator_options options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << me.usage << "\n" << help_text;
      return 0;
    }
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) me.usage_error(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--redis") url = value();
    else if (flag == "--concurrency") options.concurrency = static_cast<std::size_t>(me.number(flag, value(), 1, 100'000));
    else if (flag == "--lease-ms") options.lease = std::chrono::milliseconds(me.number(flag, value(), 100, 86'400'000));
    else if (flag == "--grace-ms") options.grace = std::chrono::milliseconds(me.number(flag, value(), 1, 86'400'000));
    else if (flag == "--consumer") {
      options.consumer = value();
      if (options.consumer.empty()) me.usage_error("--consumer needs a name");
    } else me.usage_error("unknown flag '" + flag + "'");
  }
  // Blocking reads end within a third of the lease, so that a short lease is renewed in time.
  options.block = std::min(options.block, options.lease / 3);
  auto cfg = me.redis(url);

  sagas::orchestrator_stats stats;
  bool ran = false;  // Redis was reached: there is something to report
  int status = orders::run_until_signal(me, [&](sagaflow::stop_source stop) -> awaitable<void> {
    auto ex = co_await boost::asio::this_coro::executor;
    // Redis reached first, on a connection that a stop interrupts: a SIGTERM while Redis does not
    // answer must end the program at once, and a refused connection must exit 1 quickly.
    auto probe = sagaflow::transport::connection::create(ex, cfg);
    bool connected = co_await sagaflow::until_stopped(probe->connect(), stop);
    probe->close();
    if (!connected) co_return;
    sagas::orchestrator o(ex, cfg, options);
    o.add(order_saga());
    ran = true;
    sagaflow::log::info(me.name, "running the order saga");
    try {
      co_await o.run(stop);
    } catch (...) {
      stats = o.stats();
      throw;
    }
    stats = o.stats();
  });
  if (ran)
    std::cout << me.name << ": sagas started " << stats.started << ", completed " << stats.completed << ", compensated "
              << stats.compensated << ", compensation_failed " << stats.compensation_failed << ", parked "
              << stats.parked << ", cancelled " << stats.cancelled << ", fenced " << stats.fenced << std::endl;
  return status;
}
