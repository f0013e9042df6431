// redis-server started as a child process for one test (testing::redis_process), and how to reach it.
#include "redis_server.hpp"

namespace sagaflow::testing {

namespace {
std::vector<std::string> verbose(std::vector<std::string> options) {
  options.insert(options.begin(), {"--loglevel", "verbose"});
  return options;
}
}  // namespace

redis_server::redis_server(std::vector<std::string> options) : redis_process(verbose(std::move(options))) {}

transport::config redis_server::config() const {
  transport::config c;
  c.host = "127.0.0.1";
  c.port = port();
  c.connect_timeout = std::chrono::seconds(5);
  c.command_timeout = std::chrono::seconds(10);
  return c;
}

}  // namespace sagaflow::testing
