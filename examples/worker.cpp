// A worker process to deploy (and copy): pulls tasks from Redis Streams consumer groups and runs
// them; several copies share the work. Stops gracefully on SIGTERM/SIGINT, also while it is still
// reaching Redis (a second signal ends it at once).
//   sagaflow-worker [--redis URL] [--queues default,emails:2] [--concurrency N] [--lease-ms N]
//                   [--grace-ms N] [--weighted]
// Built-in tasks, to try it out: "log" (prints its payload), "sleep" (payload: milliseconds),
// "record" (see help_text), "fail" (always fails: ends in the dead letters).
#include <sagaflow/engine/log.hpp>
#include <sagaflow/engine/runtime.hpp>
#include <sagaflow/engine/stop.hpp>
#include <sagaflow/tasks/worker.hpp>
#include <sagaflow/transport/commands.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <charconv>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <string>

namespace asio = boost::asio;
namespace tasks = sagaflow::tasks;
using sagaflow::awaitable;

namespace {

constexpr const char* usage_text =
    "usage: sagaflow-worker [--redis URL] [--queues name[:share],...] [--concurrency N]\n"
    "                       [--lease-ms N] [--grace-ms N] [--weighted]\n";

constexpr const char* help_text =
    "Runs tasks from Redis until SIGTERM or SIGINT, then lets running tasks finish (a second\n"
    "signal exits at once). Start several copies to share the work.\n"
    "\n"
    "  --redis URL            Redis to use (default: $SAGAFLOW_REDIS_URL, else redis://127.0.0.1:6379)\n"
    "  --queues LIST          queues to serve, name[:share] separated by commas; a queue's share of\n"
    "                         the concurrency is its share over the sum (default: default)\n"
    "  --concurrency N        tasks run at once by this process, N >= 1 (default: 32)\n"
    "  --lease-ms N           a silent worker's tasks are taken over after N ms (default: 30000)\n"
    "  --grace-ms N           at shutdown, how long running tasks may take to finish (default: 30000)\n"
    "  --weighted             weighted priorities (low still progresses) instead of strict\n"
    "  -h, --help             print this help and exit\n"
    "\n"
    "Built-in tasks, to try it out:\n"
    "  log      prints its payload\n"
    "  sleep    payload: milliseconds to sleep\n"
    "  record   payload: milliseconds of work, or {\"ms\": N, \"fail_attempts\": K} to fail its first\n"
    "           K attempts; on success adds its id to the set <queue>:done and counts runs in\n"
    "           <queue>:runs, runs of a retry in <queue>:retried and runs per worker in the hash\n"
    "           <queue>:by-worker (field: the worker's consumer name)\n"
    "  fail     always fails: ends in the dead letters\n"
    "\n"
    "Exit status: 0 stopped by a signal, 1 Redis failed, 2 bad arguments.\n";

// Bad arguments: say what is wrong, show the usage, exit 2 (the convention for usage errors).
[[noreturn]] void usage_error(const std::string& why) {
  std::cerr << "sagaflow-worker: " << why << "\n" << usage_text << "Try 'sagaflow-worker --help'.\n";
  std::exit(2);
}

// The whole text must be a decimal integer within [1, max]: "10x", "", " 5" and overflow are refused.
long number(const std::string& flag, const std::string& text, long max = std::numeric_limits<int>::max()) {
  long v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || v < 1 || v > max)
    usage_error(flag + " needs a whole number from 1 to " + std::to_string(max) + ", not '" + text + "'");
  return v;
}

std::vector<tasks::queue_config> parse_queues(const std::string& list) {
  std::vector<tasks::queue_config> out;
  std::size_t start = 0;
  for (;;) {
    auto comma = list.find(',', start);
    std::string item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    tasks::queue_config q;
    auto colon = item.find(':');
    q.name = item.substr(0, colon);
    if (q.name.empty()) usage_error("empty queue name in --queues '" + list + "'");
    if (colon != std::string::npos) q.share = static_cast<unsigned>(number("--queues share", item.substr(colon + 1), 1000));
    out.push_back(q);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// The "record" task: optional work, optional planned failures, then its traces in Redis (see
// help_text). Process tests count lost tasks, duplicates and who ran what from these keys.
tasks::handler record_handler(std::shared_ptr<sagaflow::transport::connection> results, std::string consumer) {
  return [results = std::move(results), consumer = std::move(consumer)](tasks::task_context& ctx) -> awaitable<void> {
    auto payload = ctx.json();
    std::int64_t ms = 0, fail_attempts = 0;
    if (payload.is_int64()) {
      ms = payload.as_int64();
    } else if (payload.is_object()) {
      auto& o = payload.as_object();
      if (auto* v = o.if_contains("ms"); v && v->is_int64()) ms = v->as_int64();
      if (auto* v = o.if_contains("fail_attempts"); v && v->is_int64()) fail_attempts = v->as_int64();
    }
    if (ms > 0) co_await sagaflow::sleep_for(std::chrono::milliseconds(ms));
    if (ctx.task.attempt <= fail_attempts)
      throw std::runtime_error("planned failure of attempt " + std::to_string(ctx.task.attempt));
    sagaflow::transport::request req;
    const auto& queue = ctx.task.queue;
    req.push("SADD", queue + ":done", ctx.task.id).push("INCR", queue + ":runs");
    req.push("HINCRBY", queue + ":by-worker", consumer, 1);
    if (ctx.task.attempt != 1) req.push("INCR", queue + ":retried");
    auto replies = co_await results->exec(std::move(req));
    sagaflow::transport::throw_on_error(req, replies);
  };
}

}  // namespace

int main(int argc, char** argv) {
  std::string url = std::getenv("SAGAFLOW_REDIS_URL") ? std::getenv("SAGAFLOW_REDIS_URL") : "";
  tasks::worker_options options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << usage_text << "\n" << help_text;
      return 0;
    }
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--redis") url = value();
    else if (flag == "--queues") options.queues = parse_queues(value());
    else if (flag == "--concurrency") options.concurrency = static_cast<std::size_t>(number(flag, value(), 100'000));
    else if (flag == "--lease-ms") options.lease = std::chrono::milliseconds(number(flag, value()));
    else if (flag == "--grace-ms") options.grace = std::chrono::milliseconds(number(flag, value()));
    else if (flag == "--weighted") options.mode = tasks::priority_mode::weighted;
    else usage_error("unknown flag '" + flag + "'");
  }
  if (options.lease < std::chrono::seconds(3)) options.recover_interval = options.lease / 2;

  // Everything that can be checked without Redis is checked before starting, so that a bad
  // URL, queue name or lease exits 2 with the reason.
  sagaflow::transport::config cfg;
  std::optional<sagaflow::runtime> rt;
  std::optional<tasks::worker> worker;
  std::shared_ptr<sagaflow::transport::connection> results;  // for the "record" task
  try {
    if (!url.empty()) cfg = sagaflow::transport::config::from_url(url);
    rt.emplace(sagaflow::runtime_options{.threads = 1});
    worker.emplace(rt->executor(), cfg, options);
    results = sagaflow::transport::connection::create(rt->executor(), cfg);
  } catch (const std::invalid_argument& e) {
    usage_error(sagaflow::log::error_text(e));
  }

  worker->handle("log", [](tasks::task_context& ctx) -> awaitable<void> {
    std::cout << "task " << ctx.task.id << ": " << ctx.bytes() << std::endl;
    co_return;
  });
  worker->handle("sleep", [](tasks::task_context& ctx) -> awaitable<void> {
    co_await sagaflow::sleep_for(std::chrono::milliseconds(ctx.json().as_int64()));
  });
  worker->handle("record", record_handler(results, worker->consumer()));
  worker->handle("fail", [](tasks::task_context&) -> awaitable<void> {
    throw std::runtime_error("this task always fails");
    co_return;
  });

  auto ex = rt->executor();
  rt->start();
  // Signals first: a SIGTERM that arrives while Redis is still being reached (or not answering)
  // must stop the worker cleanly, not kill it. One thread: this coroutine has installed the
  // handlers before the one below starts connecting.
  sagaflow::stop_source stop;
  asio::co_spawn(ex, sagaflow::stop_on_signals(stop, {SIGINT, SIGTERM}), asio::detached);
  // A failure comes back as text, caught on the runtime's thread: an exception handed over
  // through the future would be shared by two threads under a reference count inside libstdc++,
  // which TSan cannot see (it reports a race on the message).
  std::string failure;
  asio::co_spawn(ex, [&]() -> awaitable<void> {
    try {
      // The program's own connection must not hold up a stop either.
      bool connected = co_await sagaflow::until_stopped(results->connect(), stop);
      if (connected) co_await worker->run(stop);
    } catch (const std::exception& e) {
      failure = sagaflow::log::error_text(e);  // without Boost's source location
    }
  }(), asio::use_future).get();
  results->close();
  if (failure.empty()) return 0;
  std::cerr << "sagaflow-worker: " << failure << "\n";
  stop.request_stop();  // ends the wait for signals, which would keep the runtime from stopping
  return 1;
}
