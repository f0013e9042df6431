// The smallest durable flow: a producer appends jobs to a Redis stream, a consumer group member
// reads them, handles them and acknowledges them; nothing is left pending.
// Run: SAGAFLOW_REDIS_URL=redis://127.0.0.1:6379 ./stream-roundtrip [count]
#include <sagaflow/engine/id.hpp>
#include <sagaflow/engine/runtime.hpp>
#include <sagaflow/transport/commands.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>

#include <iostream>
#include <string>

namespace transport = sagaflow::transport;

sagaflow::awaitable<void> roundtrip(std::shared_ptr<transport::connection> conn, int count) {
  co_await conn->connect();
  std::cout << "connected to " << conn->config().describe() << " (RESP" << conn->protocol() << ")\n";

  const std::string stream = "sf:example:jobs:" + sagaflow::make_id();
  const std::string group = "workers";
  co_await transport::xgroup_create(*conn, stream, group, "0");

  // Producer: one pipeline of XADDs, one write, one round trip.
  transport::request batch;
  for (int i = 0; i < count; ++i) {
    std::string job = "job-" + std::to_string(i);
    transport::field_view fields[] = {{"name", "resize-image"}, {"payload", job}};
    transport::add_xadd(batch, stream, fields);
  }
  auto ids = co_await conn->exec(batch);
  std::cout << "producer: added " << ids.size() << " jobs to " << stream << "\n";

  // Consumer: read what is new for this group, handle, acknowledge.
  transport::stream_offset from[] = {{stream, ">"}};
  auto batches = co_await transport::xreadgroup(*conn, group, "consumer-1", from, {.count = static_cast<std::size_t>(count)});
  std::vector<std::string> done;
  for (auto& b : batches)
    for (auto& entry : b.entries) {
      std::cout << "consumer: handling " << entry.id << " " << *entry.find("name") << " "
                << *entry.find("payload") << "\n";
      done.push_back(entry.id);
    }
  auto acked = co_await transport::xack(*conn, stream, group, done);
  auto pending = co_await transport::xpending(*conn, stream, group);
  std::cout << "consumer: acknowledged " << acked << "; still pending: " << pending.count << "\n";

  co_await conn->call("DEL", stream);
  conn->close();
  if (acked != count || pending.count != 0) throw std::runtime_error("round trip lost jobs");
}

int main(int argc, char** argv) {
  int count = argc > 1 ? std::stoi(argv[1]) : 5;
  try {
    sagaflow::runtime rt({.threads = 1});
    rt.start();
    auto conn = transport::connection::create(rt.executor(), transport::config::from_env());
    boost::asio::co_spawn(conn->get_executor(), roundtrip(conn, count), boost::asio::use_future).get();
    std::cout << "done: every job was handled and acknowledged\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "stream-roundtrip: " << e.what() << "\n";
    return 1;
  }
}
