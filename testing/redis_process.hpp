// A private redis-server for the tests and the benchmark (never the system service): a child
// process on a free loopback port, in a temporary directory of its own, started, stopped,
// restarted and killed at will; and the one way both start child programs that die with them.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace sagaflow::testing {

// Where a child's standard output or error goes, besides a descriptor of ours.
inline constexpr int dev_null = -1;
inline constexpr int inherited = -2;

// Starts `argv` (argv[0]: a path, or a name looked up in PATH) with standard input from /dev/null
// and standard output and error to `out` and `err`. The child is killed (SIGKILL) when this
// process dies, so a crashed test or benchmark leaves nothing running. Throws std::runtime_error
// when the program is not found; one found that cannot run exits 127.
pid_t spawn(const std::vector<std::string>& argv, int out = dev_null, int err = dev_null);

class redis_process {
 public:
  // Starts redis-server (SAGAFLOW_REDIS_SERVER, else from PATH) and returns once it answers;
  // throws std::runtime_error quoting the end of its output otherwise. It saves nothing and logs
  // to log_file(); `options` follow these defaults on its command line, so they may override
  // them: {"--appendonly", "yes"}, {"--loglevel", "verbose"}.
  explicit redis_process(std::vector<std::string> options = {});
  // Kills the server (nothing of it is kept) and removes its directory.
  ~redis_process();
  redis_process(const redis_process&) = delete;
  redis_process& operator=(const redis_process&) = delete;

  // After stop() or kill(): the same server again, same port, options and directory (so it loads
  // what it saved there). Returns once it answers, which it may do while still loading (INFO
  // answers then, most commands say -LOADING). No-op while running.
  void start();
  void stop() noexcept;  // SIGTERM (saving what its options say), SIGKILL after 10 s; waits
  void kill() noexcept;  // SIGKILL; waits

  bool running() const noexcept { return pid_ > 0; }
  pid_t pid() const noexcept { return pid_; }  // -1 when not running
  std::uint16_t port() const noexcept { return port_; }
  std::string url() const;  // redis://127.0.0.1:<port>
  const std::filesystem::path& dir() const noexcept { return dir_; }
  std::filesystem::path log_file() const { return dir_ / "redis.log"; }

  // Sends `command` inline ("INFO persistence") on a connection of its own, bypassing any client
  // library (which would wait out a -LOADING), and returns the reply as the server wrote it:
  // "+PONG\r\n", "-LOADING ...\r\n", "$<n>\r\n<text>\r\n"; an array only up to its first line.
  // "" when nothing answered within 5 s.
  std::string ask(std::string_view command) const;

 private:
  enum class outcome { ready, exited };
  outcome start_on(std::uint16_t port);

  std::filesystem::path program_;
  std::vector<std::string> options_;
  std::filesystem::path dir_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// The value of `name` in the text of an INFO reply ("" when absent): info_field(info, "process_id").
std::string info_field(std::string_view info, std::string_view name);

}  // namespace sagaflow::testing
