// A worker process to deploy (and copy): pulls tasks from Redis Streams consumer groups and runs
// them; several copies share the work. Stops gracefully on SIGTERM/SIGINT (a second signal ends
// it at once).
//   sagaflow-worker [--redis URL] [--queues default,emails:2] [--concurrency N] [--lease-ms N]
//                   [--grace-ms N] [--weighted]
// Built-in tasks, to try it out: "log" (prints its payload), "sleep" (payload: milliseconds),
// "record" (payload: optional milliseconds of work; adds its id to the set <queue>:done, counts
// runs in <queue>:runs and runs of a retry attempt in <queue>:retried), "fail"
// (always fails: ends in the dead letters).
#include <sagaflow/engine/runtime.hpp>
#include <sagaflow/engine/stop.hpp>
#include <sagaflow/tasks/worker.hpp>
#include <sagaflow/transport/commands.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>

namespace asio = boost::asio;
namespace tasks = sagaflow::tasks;
using sagaflow::awaitable;

namespace {

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "sagaflow-worker: " << why << "\n"
            << "usage: sagaflow-worker [--redis URL] [--queues name[:share],...] [--concurrency N]\n"
            << "                       [--lease-ms N] [--grace-ms N] [--weighted]\n";
  std::exit(2);
}

long number(const std::string& flag, const char* text) {
  char* end = nullptr;
  long v = std::strtol(text, &end, 10);
  if (!*text || *end || v <= 0) usage(flag + " needs a positive number, not '" + text + "'");
  return v;
}

std::vector<tasks::queue_config> parse_queues(const std::string& list) {
  std::vector<tasks::queue_config> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    auto comma = list.find(',', start);
    std::string item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (item.empty()) usage("empty queue name in --queues");
    tasks::queue_config q;
    if (auto colon = item.find(':'); colon != std::string::npos) {
      q.name = item.substr(0, colon);
      q.share = static_cast<unsigned>(number("--queues share", item.c_str() + colon + 1));
    } else {
      q.name = item;
    }
    out.push_back(q);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url = std::getenv("SAGAFLOW_REDIS_URL") ? std::getenv("SAGAFLOW_REDIS_URL") : "";
  tasks::worker_options options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--redis") url = value();
    else if (flag == "--queues") options.queues = parse_queues(value());
    else if (flag == "--concurrency") options.concurrency = static_cast<std::size_t>(number(flag, value()));
    else if (flag == "--lease-ms") options.lease = std::chrono::milliseconds(number(flag, value()));
    else if (flag == "--grace-ms") options.grace = std::chrono::milliseconds(number(flag, value()));
    else if (flag == "--weighted") options.mode = tasks::priority_mode::weighted;
    else usage("unknown flag " + flag);
  }
  if (options.lease < std::chrono::seconds(3)) options.recover_interval = options.lease / 2;
  try {
    auto cfg = url.empty() ? sagaflow::redis::config{} : sagaflow::redis::config::from_url(url);
    sagaflow::runtime rt({.threads = 1});
    rt.start();
    auto ex = rt.executor();
    auto results = sagaflow::redis::connection::create(ex, cfg);
    asio::co_spawn(ex, results->connect(), asio::use_future).get();

    tasks::worker worker(ex, cfg, options);
    worker.handle("log", [](tasks::task_context& ctx) -> awaitable<void> {
      std::cout << "task " << ctx.task.id << ": " << ctx.bytes() << std::endl;
      co_return;
    });
    worker.handle("sleep", [](tasks::task_context& ctx) -> awaitable<void> {
      co_await sagaflow::sleep_for(std::chrono::milliseconds(ctx.json().as_int64()));
    });
    worker.handle("record", [results](tasks::task_context& ctx) -> awaitable<void> {
      auto payload = ctx.json();  // optional: milliseconds of work before recording
      if (payload.is_int64() && payload.as_int64() > 0)
        co_await sagaflow::sleep_for(std::chrono::milliseconds(payload.as_int64()));
      sagaflow::redis::request req;
      req.push("SADD", ctx.task.queue + ":done", ctx.task.id).push("INCR", ctx.task.queue + ":runs");
      if (ctx.task.attempt != 1) req.push("INCR", ctx.task.queue + ":retried");
      auto replies = co_await results->exec(std::move(req));
      sagaflow::redis::throw_on_error(req, replies);
    });
    worker.handle("fail", [](tasks::task_context&) -> awaitable<void> {
      throw std::runtime_error("this task always fails");
      co_return;
    });

    sagaflow::stop_source stop;
    asio::co_spawn(ex, sagaflow::stop_on_signals(stop, {SIGINT, SIGTERM}), asio::detached);
    asio::co_spawn(ex, worker.run(stop), asio::use_future).get();
    results->close();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "sagaflow-worker: " << e.what() << "\n";
    return 1;
  }
}
