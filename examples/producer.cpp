// A producer to copy: enqueues tasks in bulk and says how long it took.
//   sagaflow-producer [--redis URL] [--queue NAME] [--name TASK] [--count N] [--priority critical|high|normal|low]
//                     [--payload JSON] [--delay-ms N]
#include <sagaflow/engine/runtime.hpp>
#include <sagaflow/tasks/client.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <cstdlib>
#include <iostream>

namespace asio = boost::asio;
namespace tasks = sagaflow::tasks;
using sagaflow::awaitable;

int main(int argc, char** argv) {
  std::string url = std::getenv("SAGAFLOW_REDIS_URL") ? std::getenv("SAGAFLOW_REDIS_URL") : "";
  std::string queue = "default", name = "log", payload_text = "{\"hello\":\"world\"}";
  long count = 1, delay_ms = 0;
  tasks::priority prio = tasks::priority::normal;
  for (int i = 1; i + 1 < argc + 1; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "sagaflow-producer: " << flag << " needs a value\n";
      return 2;
    }
    std::string value = argv[++i];
    if (flag == "--redis") url = value;
    else if (flag == "--queue") queue = value;
    else if (flag == "--name") name = value;
    else if (flag == "--count") count = std::atol(value.c_str());
    else if (flag == "--payload") payload_text = value;
    else if (flag == "--delay-ms") delay_ms = std::atol(value.c_str());
    else if (flag == "--priority") {
      if (value == "critical") prio = tasks::priority::critical;
      else if (value == "high") prio = tasks::priority::high;
      else if (value == "normal") prio = tasks::priority::normal;
      else if (value == "low") prio = tasks::priority::low;
      else {
        std::cerr << "sagaflow-producer: unknown priority " << value << "\n";
        return 2;
      }
    } else {
      std::cerr << "sagaflow-producer: unknown flag " << flag << "\n";
      return 2;
    }
  }
  if (count <= 0 || delay_ms < 0) {
    std::cerr << "sagaflow-producer: --count must be positive and --delay-ms not negative\n";
    return 2;
  }
  try {
    boost::system::error_code ec;
    auto payload = boost::json::parse(payload_text, ec);
    if (ec) throw std::invalid_argument("--payload is not JSON: " + ec.message());
    auto cfg = url.empty() ? sagaflow::redis::config{} : sagaflow::redis::config::from_url(url);
    sagaflow::runtime rt({.threads = 1});
    rt.start();
    auto conn = sagaflow::redis::connection::create(rt.executor(), cfg);
    auto started = std::chrono::steady_clock::now();
    auto enqueued = asio::co_spawn(conn->get_executor(), [&]() -> awaitable<std::size_t> {
      co_await conn->connect();
      tasks::client client(conn);
      tasks::enqueue_options options{.queue = queue, .priority = prio, .delay = std::chrono::milliseconds(delay_ms)};
      std::size_t done = 0;
      if (delay_ms > 0) {
        for (long i = 0; i < count; ++i, ++done) co_await client.enqueue(name, payload, options);
      } else {
        while (done < static_cast<std::size_t>(count)) {  // bulk, 1000 per pipeline
          std::vector<tasks::task_spec> batch;
          for (long i = 0; i < 1000 && done + batch.size() < static_cast<std::size_t>(count); ++i)
            batch.push_back({name, payload, options});
          done += (co_await client.enqueue_bulk(std::move(batch))).size();
        }
      }
      conn->close();
      co_return done;
    }(), asio::use_future).get();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::cout << "enqueued " << enqueued << " '" << name << "' task(s) on queue " << queue << " in " << secs << " s\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "sagaflow-producer: " << e.what() << "\n";
    return 1;
  }
}
