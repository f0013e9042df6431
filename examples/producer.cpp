// A producer to copy: enqueues tasks in bulk and says how long it took.
//   sagaflow-producer [--redis URL] [--queue NAME] [--name TASK] [--count N] [--priority critical|high|normal|low]
//                     [--payload JSON] [--delay-ms N]
#include <sagaflow/engine/log.hpp>
#include <sagaflow/engine/runtime.hpp>
#include <sagaflow/tasks/client.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <charconv>
#include <cstdlib>
#include <iostream>
#include <limits>

namespace asio = boost::asio;
namespace tasks = sagaflow::tasks;
using sagaflow::awaitable;

namespace {

constexpr const char* usage_text =
    "usage: sagaflow-producer [--redis URL] [--queue NAME] [--name TASK] [--count N]\n"
    "                         [--priority critical|high|normal|low] [--payload JSON] [--delay-ms N]\n";

constexpr const char* help_text =
    "Enqueues N tasks of one name on a queue (in pipelines of 1000) and says how long it took.\n"
    "\n"
    "  --redis URL        Redis to use (default: $SAGAFLOW_REDIS_URL, else redis://127.0.0.1:6379)\n"
    "  --queue NAME       queue to enqueue on (default: default)\n"
    "  --name TASK        task name, i.e. which handler runs it (default: log)\n"
    "  --count N          how many tasks, N >= 1 (default: 1)\n"
    "  --priority P       critical, high, normal or low (default: normal)\n"
    "  --payload JSON     the payload of every task (default: {\"hello\":\"world\"})\n"
    "  --delay-ms N       run no earlier than N ms from now, N >= 0 (default: 0)\n"
    "  -h, --help         print this help and exit\n"
    "\n"
    "Exit status: 0 enqueued, 1 Redis failed, 2 bad arguments.\n";

// Bad arguments: say what is wrong, show the usage, exit 2 (the convention for usage errors).
[[noreturn]] void usage_error(const std::string& why) {
  std::cerr << "sagaflow-producer: " << why << "\n" << usage_text << "Try 'sagaflow-producer --help'.\n";
  std::exit(2);
}

// The whole text must be a decimal integer within [min, max]: "10x", "", " 5" and overflow are
// refused (std::atol would read them as 10, 0, 5 and garbage).
long number(const std::string& flag, const std::string& text, long min, long max = std::numeric_limits<long>::max()) {
  long v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || v < min || v > max)
    usage_error(flag + " needs a whole number " + (min > 0 ? "of at least " : "not below ") + std::to_string(min) +
                ", not '" + text + "'");
  return v;
}

tasks::priority parse_priority(const std::string& text) {
  if (text == "critical") return tasks::priority::critical;
  if (text == "high") return tasks::priority::high;
  if (text == "normal") return tasks::priority::normal;
  if (text == "low") return tasks::priority::low;
  usage_error("--priority must be critical, high, normal or low, not '" + text + "'");
}

}  // namespace

int main(int argc, char** argv) {
  std::string url = std::getenv("SAGAFLOW_REDIS_URL") ? std::getenv("SAGAFLOW_REDIS_URL") : "";
  std::string queue = "default", name = "log", payload_text = "{\"hello\":\"world\"}";
  long count = 1, delay_ms = 0;
  tasks::priority prio = tasks::priority::normal;
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
    else if (flag == "--queue") queue = value();
    else if (flag == "--name") name = value();
    else if (flag == "--count") count = number(flag, value(), 1);
    else if (flag == "--payload") payload_text = value();
    else if (flag == "--delay-ms") delay_ms = number(flag, value(), 0);
    else if (flag == "--priority") prio = parse_priority(value());
    else usage_error("unknown flag '" + flag + "'");
  }
  // Everything that can be checked without Redis is checked here, so that a typo exits 2.
  boost::system::error_code ec;
  auto payload = boost::json::parse(payload_text, ec);
  if (ec) usage_error("--payload is not JSON: " + ec.message());
  if (name.empty()) usage_error("--name must not be empty");
  sagaflow::transport::config cfg;
  sagaflow::runtime rt({.threads = 1});
  std::shared_ptr<sagaflow::transport::connection> conn;
  try {
    tasks::validate_queue_name(queue);
    if (!url.empty()) cfg = sagaflow::transport::config::from_url(url);
    conn = sagaflow::transport::connection::create(rt.executor(), cfg);  // checks TLS files
  } catch (const std::invalid_argument& e) {
    usage_error(sagaflow::log::error_text(e));
  }
  rt.start();
  auto started = std::chrono::steady_clock::now();
  // A failure comes back as text, caught on the runtime's thread: an exception handed over
  // through the future would be shared by two threads under a reference count inside libstdc++,
  // which TSan cannot see (it reports a race on the message).
  std::string failure;
  // On the runtime's executor, not the connection's strand: a strand inside any_io_executor is a
  // shared target whose last copy may die on either thread, a count TSan cannot follow.
  auto enqueued = asio::co_spawn(rt.executor(), [&]() -> awaitable<std::size_t> {
    std::size_t done = 0;
    try {
      co_await conn->connect();
      tasks::client client(conn);
      tasks::enqueue_options options{.queue = queue, .priority = prio, .delay = std::chrono::milliseconds(delay_ms)};
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
    } catch (const std::exception& e) {
      failure = sagaflow::log::error_text(e);  // without Boost's source location
    }
    conn->close();
    co_return done;
  }(), asio::use_future).get();
  if (!failure.empty()) {
    std::cerr << "sagaflow-producer: " << failure << " (" << enqueued << " task(s) enqueued before)\n";
    return 1;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << "enqueued " << enqueued << " '" << name << "' task(s) on queue " << queue << " in " << secs << " s\n";
  return 0;
}
