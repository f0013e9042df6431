// Built against the installed package: enqueues a task with sagaflow::tasks and runs it through a
// worker, as a user's producer and worker would. Needs SAGAFLOW_REDIS_URL (without it: 77, skipped).
#include <sagaflow/engine/id.hpp>
#include <sagaflow/engine/runtime.hpp>
#include <sagaflow/engine/stop.hpp>
#include <sagaflow/tasks/client.hpp>
#include <sagaflow/tasks/worker.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <cstdlib>
#include <iostream>

namespace tasks = sagaflow::tasks;
namespace transport = sagaflow::transport;
using sagaflow::awaitable;
using namespace std::chrono_literals;

int main() {
  const char* url = std::getenv("SAGAFLOW_REDIS_URL");
  if (!url || !*url) {
    std::cout << "no SAGAFLOW_REDIS_URL: skipped\n";
    return 77;
  }
  auto config = transport::config::from_url(url);
  std::string queue = "package-" + sagaflow::make_id();  // its own queue on a shared server

  sagaflow::runtime rt({.threads = 2});
  rt.start();
  auto conn = transport::connection::create(rt.executor(), config);
  sagaflow::stop_source stop;
  tasks::worker worker(rt.executor(), config,
                       {.queues = {{.name = queue}}, .concurrency = 2, .fetch_block = 100ms});
  std::string seen;  // written by the handler, read after the worker returned
  worker.handle("greet", [&](tasks::task_context& ctx) -> awaitable<void> {
    seen = boost::json::value_to<std::string>(ctx.json().at("to"));
    ctx.set_result(boost::json::value{{"greeted", seen}});
    stop.request_stop();  // the task in flight is still settled before run() returns
    co_return;
  });

  auto scenario = [&]() -> awaitable<std::string> {
    co_await conn->connect();
    tasks::client client(conn);
    boost::json::value payload{{"to", "a@b.c"}};
    tasks::enqueue_options options{.queue = queue};
    auto id = co_await client.enqueue("greet", payload, options);
    co_await worker.run(stop);
    auto result = co_await client.result(queue, id);
    conn->close();
    co_return result ? boost::json::serialize(*result) : std::string("(no result)");
  };
  auto done = boost::asio::co_spawn(conn->get_executor(), scenario(), boost::asio::use_future);
  if (done.wait_for(60s) != std::future_status::ready) {
    std::cerr << "the task did not run within 60 s\n";
    std::_Exit(4);  // threads are blocked in the worker: no orderly teardown
  }
  auto result = done.get();
  if (seen != "a@b.c" || result != R"({"greeted":"a@b.c"})" || worker.stats().succeeded != 1) {
    std::cerr << "handler saw '" << seen << "', result " << result << ", succeeded "
              << worker.stats().succeeded << "\n";
    return 5;
  }
  std::cout << "find_package(sagaflow) tasks consumer: ok (" << result << ")\n";
  return 0;
}
