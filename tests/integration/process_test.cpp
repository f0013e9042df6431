// Real processes (examples/worker.cpp, examples/producer.cpp): their command lines; a worker
// stopped while connecting, when idle, and while Redis still owes it a fetch; killed and stopped
// mid-burst; three sharing 50,000 tasks; Redis restarted from its AOF under load. Each "record"
// task adds its id to a set and counts its runs (in total and per worker), so lost tasks,
// duplicates and idle workers all show.
#include "redis_server.hpp"

#include <sagaflow/tasks/client.hpp>
#include <sagaflow/transport/commands.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

namespace asio = boost::asio;
namespace transport = sagaflow::transport;
namespace tasks = sagaflow::tasks;
using namespace std::chrono_literals;
using sagaflow::awaitable;
using sagaflow::testing::redis_server;
using sagaflow::testing::run;
using sagaflow::testing::spawn;

#ifdef SAGAFLOW_WORKER_BIN

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

// The producer is built next to the worker (examples/).
std::string producer_bin() {
  return (std::filesystem::path(SAGAFLOW_WORKER_BIN).parent_path() / "sagaflow-producer").string();
}

// A child process running `args`, stdout and stderr to `log` (or to pipes the test reads). It
// never outlives a crashed test (testing::spawn).
class child_process {
 public:
  child_process(const std::vector<std::string>& args, const std::string& log) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot open " + log);
    try {
      pid_ = spawn(args, fd, fd);
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
  }
  child_process(const std::vector<std::string>& args, int out_fd, int err_fd) : pid_(spawn(args, out_fd, err_fd)) {}
  ~child_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const noexcept { return pid_; }
  void signal(int sig) { ::kill(pid_, sig); }
  // The exit status (128 + signal if killed), or -1 if it did not exit within `limit`. Polls
  // every 2 ms, so that a measured stop time is accurate to a few ms.
  int wait(std::chrono::seconds limit = 60s) {
    auto end = clock_type::now() + limit;
    int status = 0;
    for (;;) {  // checked at least once: wait(0s) polls
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (clock_type::now() >= end) return -1;
      std::this_thread::sleep_for(2ms);
    }
  }

 private:
  pid_t pid_ = -1;
};

// sagaflow-worker with a log file in the server's directory.
class worker_process : public child_process {
 public:
  worker_process(const redis_server& server, const std::vector<std::string>& flags)
      : worker_process(server.url(), server.dir(), flags) {}
  worker_process(const std::string& url, const std::filesystem::path& log_dir, const std::vector<std::string>& flags)
      : worker_process(url, log_dir / ("worker-" + std::to_string(counter_++) + ".log"), flags, 0) {}

  std::string log() const {
    std::ifstream in(log_);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  worker_process(const std::string& url, std::filesystem::path log, const std::vector<std::string>& flags, int)
      : child_process(args(url, flags), log.string()), log_(std::move(log)) {}
  std::filesystem::path log_;
  static std::vector<std::string> args(const std::string& url, const std::vector<std::string>& flags) {
    std::vector<std::string> out{SAGAFLOW_WORKER_BIN, "--redis", url};
    out.insert(out.end(), flags.begin(), flags.end());
    return out;
  }
  static inline int counter_ = 0;
};

struct program_result {
  int status = -1;
  std::string out, err;
};

// Runs a program to its end with stdout and stderr captured. The pipes are read while it runs:
// a child writing more than a pipe holds (a sanitizer report) would otherwise block for good.
program_result run_program(std::vector<std::string> args, std::chrono::seconds limit = 60s) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  program_result r;
  child_process child(std::move(args), out[1], err[1]);
  ::close(out[1]);
  ::close(err[1]);
  auto end = clock_type::now() + limit;
  pollfd fds[] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* texts[] = {&r.out, &r.err};
  int open_pipes = 2;
  while (open_pipes > 0 && clock_type::now() < end) {  // until both are closed: the child exited
    if (::poll(fds, 2, 100) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !fds[i].revents) continue;
      char buf[4096];
      auto n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        texts[i]->append(buf, static_cast<std::size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;  // poll ignores it
        --open_pipes;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  r.status = child.wait(std::chrono::duration_cast<std::chrono::seconds>(std::max(end - clock_type::now(), clock_type::duration(1s))));
  return r;
}

// A loopback port where Redis does not answer: connections are accepted (the client's TCP
// connect succeeds) and never answered, except the first `forward` ones, which are relayed to a
// real server. A test holds a worker at any connection of its start this way.
class silent_redis {
 public:
  explicit silent_redis(std::uint16_t target_port = 0, int forward = 0) : target_(target_port), forward_(forward) {
    if (::pipe2(wake_, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    thread_ = std::thread([this] { serve(); });
  }
  ~silent_redis() {
    char b = 0;
    (void)!::write(wake_[1], &b, 1);
    thread_.join();
    for (int fd : fds_) ::close(fd);
    ::close(wake_[0]);
    ::close(wake_[1]);
  }
  // Long timeouts: a worker that ignores a stop while connecting hangs instead of failing over.
  std::string url() const {
    return "redis://127.0.0.1:" + std::to_string(listener_.port()) + "?connect_timeout_ms=60000&command_timeout_ms=60000";
  }
  int accepted() const noexcept { return accepted_.load(); }

 private:
  void serve() {
    std::map<int, int> peer;  // relayed pairs, both directions
    for (;;) {
      std::vector<pollfd> polled{{wake_[0], POLLIN, 0}, {listener_.fd(), POLLIN, 0}};
      for (auto& [fd, other] : peer) polled.push_back({fd, POLLIN, 0});
      if (::poll(polled.data(), polled.size(), -1) < 0) continue;
      if (polled[0].revents) return;
      if (polled[1].revents & POLLIN) {
        int c = ::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          fds_.push_back(c);
          if (accepted_++ < forward_) {
            int up = sagaflow::testing::connect_loopback(target_);
            if (up >= 0) {
              fds_.push_back(up);
              peer[c] = up;
              peer[up] = c;
            }
          }
        }
      }
      for (std::size_t i = 2; i < polled.size(); ++i) {
        if (!polled[i].revents) continue;
        char buf[16384];
        auto n = ::read(polled[i].fd, buf, sizeof buf);
        if (n <= 0) {  // one side closed: stop relaying this pair (the fds close at the end)
          int other = peer[polled[i].fd];
          peer.erase(other);
          peer.erase(polled[i].fd);
          break;  // `polled` refers to erased pairs now
        }
        (void)!::write(peer[polled[i].fd], buf, static_cast<std::size_t>(n));
      }
    }
  }

  std::uint16_t target_;
  int forward_;
  sagaflow::testing::loopback_listener listener_;
  int wake_[2] = {-1, -1};
  std::atomic<int> accepted_{0};
  std::vector<int> fds_;  // touched by the serving thread only, until it is joined
  std::thread thread_;
};

// What a queue holds, read in one pipeline.
struct queue_state {
  std::int64_t done = 0;     // distinct record tasks that completed
  std::int64_t runs = 0;     // record runs, duplicates included
  std::int64_t retried = 0;  // record runs of an attempt > 1
  std::int64_t ready = 0;    // entries in the four priority streams
  std::int64_t pending = 0;  // delivered, not settled (XPENDING of the group, four streams)
  std::int64_t delayed = 0;
  std::int64_t dead = 0;
  std::map<std::string, std::int64_t> by_worker;  // consumer name -> record runs
  std::map<std::string, std::int64_t> pending_by_consumer;

  std::string describe() const {
    std::ostringstream s;
    s << "done " << done << ", runs " << runs << ", ready " << ready << ", pending " << pending << ", delayed "
      << delayed << ", dead " << dead;
    for (auto& [c, n] : pending_by_consumer) s << "; " << n << " pending for " << c;
    return s.str();
  }
};

queue_state inspect(const redis_server& server, std::string queue = "default") {
  return run([&]() -> awaitable<queue_state> {
    tasks::queue_keys keys("sf", queue);
    auto c = transport::connection::create(co_await asio::this_coro::executor, server.config());
    co_await c->connect();
    transport::request req;
    req.push("SCARD", queue + ":done").push("GET", queue + ":runs").push("GET", queue + ":retried");
    for (auto& s : keys.streams) req.push("XLEN", s);
    for (auto& s : keys.streams) req.push("XPENDING", s, tasks::consumer_group);
    req.push("ZCARD", keys.delayed).push("XLEN", keys.dead).push("HGETALL", queue + ":by-worker");
    auto replies = co_await c->exec(std::move(req));
    c->close();
    auto number = [](const transport::resp::value& v) -> std::int64_t {
      if (v.is_error()) throw std::runtime_error(v.text);
      return v.is_null() ? 0 : transport::as_integer(v, "reply");
    };
    queue_state q;
    std::size_t i = 0;
    q.done = number(replies[i++]);
    q.runs = number(replies[i++]);
    q.retried = number(replies[i++]);
    for (std::size_t p = 0; p < keys.streams.size(); ++p) q.ready += number(replies[i++]);
    for (std::size_t p = 0; p < keys.streams.size(); ++p) {
      auto& r = replies[i++];
      if (r.is_error()) continue;  // NOGROUP: no worker has served this stream yet
      q.pending += number(r.elements.at(0));
      if (r.elements.size() > 3)
        for (auto& owner : r.elements[3].elements) q.pending_by_consumer[owner.elements.at(0).text] += number(owner.elements.at(1));
    }
    q.delayed = number(replies[i++]);
    q.dead = number(replies[i++]);
    auto& hash = replies[i++].elements;
    for (std::size_t k = 0; k + 1 < hash.size(); k += 2) q.by_worker[hash[k].text] = number(hash[k + 1]);
    co_return q;
  }());
}

// While Redis restarts, a read fails: that is "not yet", not an error of the test.
std::optional<queue_state> try_inspect(const redis_server& server) {
  try {
    return inspect(server);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

void enqueue(const redis_server& server, std::vector<tasks::task_spec> specs) {
  run([&]() -> awaitable<void> {
    auto c = transport::connection::create(co_await asio::this_coro::executor, server.config());
    co_await c->connect();
    tasks::client client(c);
    for (std::size_t done = 0; done < specs.size();) {
      std::vector<tasks::task_spec> batch;
      for (; batch.size() < 1000 && done + batch.size() < specs.size();) batch.push_back(specs[done + batch.size()]);
      done += (co_await client.enqueue_bulk(std::move(batch))).size();
    }
    c->close();
  }());
}

// `count` record tasks, each `work_ms` of work.
void enqueue_records(const redis_server& server, int count, int work_ms) {
  std::vector<tasks::task_spec> specs(static_cast<std::size_t>(count), {"record", boost::json::value(work_ms), {}});
  enqueue(server, std::move(specs));
}

bool wait_for(std::function<bool()> done, std::chrono::seconds limit) {
  auto end = clock_type::now() + limit;
  while (!done()) {
    if (clock_type::now() > end) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// Record runs done by the worker process `pid` (consumer names are <host>-<pid>-<id>).
std::int64_t runs_of(const queue_state& q, pid_t pid) {
  std::int64_t n = 0;
  for (auto& [consumer, runs] : q.by_worker)
    if (consumer.find("-" + std::to_string(pid) + "-") != std::string::npos) n += runs;
  return n;
}

class process_test : public ::testing::Test {
 protected:
  std::int64_t done() { return inspect(server).done; }

  redis_server server;
};

// Both programs refuse bad arguments before touching Redis: the URL points at a closed port, so a
// program that went on would exit 1 (connection refused), not 2.
const std::string closed_port_url = "redis://127.0.0.1:1";

}  // namespace

// --- command lines --------------------------------------------------------------------------------

TEST(process_cli_test, help_prints_the_usage_to_stdout_and_exits_0) {
  for (const std::string& bin : {std::string(SAGAFLOW_WORKER_BIN), producer_bin()}) {
    if (!std::filesystem::exists(bin)) GTEST_SKIP() << bin << " is not built";
    auto name = std::filesystem::path(bin).filename().string();
    for (const char* flag : {"--help", "-h"}) {
      SCOPED_TRACE(name + " " + flag);
      auto r = run_program({bin, "--redis", closed_port_url, flag});
      EXPECT_EQ(r.status, 0) << r.err;
      EXPECT_NE(r.out.find("usage: " + name), std::string::npos) << r.out;
      EXPECT_NE(r.out.find("--redis URL"), std::string::npos) << "every flag is explained:\n" << r.out;
      EXPECT_EQ(r.err, "");
    }
  }
}

TEST(process_cli_test, bad_flags_exit_2_with_the_reason_and_the_usage) {
  struct bad {
    std::string bin;
    std::vector<std::string> args;
    std::string reason;
  };
  const std::string worker = SAGAFLOW_WORKER_BIN, producer = producer_bin();
  if (!std::filesystem::exists(producer)) GTEST_SKIP() << producer << " is not built";
  const std::vector<bad> cases{
      {worker, {"--bogus"}, "unknown flag '--bogus'"},
      {worker, {"--concurrency"}, "--concurrency needs a value"},
      {worker, {"--concurrency", "8x"}, "--concurrency needs a whole number"},
      {worker, {"--concurrency", "0"}, "--concurrency needs a whole number"},
      {worker, {"--lease-ms", "99999999999999999999"}, "--lease-ms needs a whole number"},
      {worker, {"--queues", "a,,b"}, "empty queue name"},
      {worker, {"--queues", "a:x"}, "--queues share needs a whole number"},
      {worker, {"--queues", "bad{name}"}, "queue"},
      {worker, {"--lease-ms", "50"}, "lease"},
      {producer, {"--bogus", "1"}, "unknown flag '--bogus'"},
      {producer, {"--count"}, "--count needs a value"},
      {producer, {"--count", "10x"}, "--count needs a whole number"},
      {producer, {"--count", "0"}, "--count needs a whole number of at least 1"},
      {producer, {"--count", ""}, "--count needs a whole number"},
      {producer, {"--delay-ms", "-5"}, "--delay-ms needs a whole number not below 0"},
      {producer, {"--delay-ms", "1e3"}, "--delay-ms needs a whole number"},
      {producer, {"--priority", "urgent"}, "--priority must be"},
      {producer, {"--payload", "{"}, "--payload is not JSON"},
      {producer, {"--queue", "a:b"}, "queue"},
  };
  for (auto& c : cases) {
    std::vector<std::string> args{c.bin, "--redis", closed_port_url};
    args.insert(args.end(), c.args.begin(), c.args.end());
    std::string shown;
    for (auto& a : c.args) shown += " '" + a + "'";
    SCOPED_TRACE(std::filesystem::path(c.bin).filename().string() + shown);
    auto r = run_program(args);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find(c.reason), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("usage: "), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

TEST(process_cli_test, an_unreachable_redis_exits_1_with_a_plain_reason) {
  for (const std::string& bin : {std::string(SAGAFLOW_WORKER_BIN), producer_bin()}) {
    if (!std::filesystem::exists(bin)) GTEST_SKIP() << bin << " is not built";
    SCOPED_TRACE(bin);
    auto r = run_program({bin, "--redis", closed_port_url});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_NE(r.err.find("Connection refused"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("[system:"), std::string::npos) << "Boost's source location belongs to debug logs:\n" << r.err;
  }
}

// --- stopping -------------------------------------------------------------------------------------

// Nothing answers: the worker is stuck in its first connection (the program's own, for "record")
// or, with the first relayed to Redis, in the worker's. SIGTERM must end it at once with status 0.
TEST(process_stop_test, sigterm_while_connecting_exits_0_promptly) {
  redis_server server;
  for (int answered : {0, 1}) {
    SCOPED_TRACE(std::to_string(answered) + " connection(s) answered");
    silent_redis silent(server.port(), answered);
    worker_process worker(silent.url(), server.dir(), {"--concurrency", "2"});
    ASSERT_TRUE(wait_for([&] { return silent.accepted() > answered; }, 30s)) << "the worker never connected";
    std::this_thread::sleep_for(200ms);  // its handshake is sent and unanswered now
    auto signalled = clock_type::now();
    worker.signal(SIGTERM);
    int status = worker.wait(10s);
    double took = seconds_since(signalled);
    std::cout << "[ report ] SIGTERM while connecting (" << answered << " answered): exit " << status << " after "
              << took << " s\n";
    EXPECT_EQ(status, 0) << "-1: still running 10 s after SIGTERM; 143: killed by it (no handler installed yet)";
    EXPECT_LT(took, 1.5) << "a stop while connecting must not wait for the connection";
  }
}

TEST_F(process_test, an_idle_worker_exits_promptly_after_sigterm) {
  enqueue_records(server, 1, 0);
  worker_process worker(server, {"--concurrency", "4"});
  ASSERT_TRUE(wait_for([&] { return done() == 1; }, 60s)) << "the worker did not start";
  std::this_thread::sleep_for(500ms);  // idle now: blocked in XREADGROUP, every loop asleep
  auto signalled = clock_type::now();
  worker.signal(SIGTERM);
  int status = worker.wait(30s);
  double took = seconds_since(signalled);
  std::cout << "[ report ] idle worker: SIGTERM to exit took " << took * 1000 << " ms (target: under 300 ms)\n";
  EXPECT_EQ(status, 0);
  // Generous for a loaded machine, yet the old shutdown (about 2 s: a 1 s blocking read, loops
  // sleeping their interval, the runtime waiting for the signal handler) fails it.
  EXPECT_LT(took, 1.5);
}

// --- crashes and graceful stops mid-burst ---------------------------------------------------------

TEST_F(process_test, a_worker_killed_mid_burst_loses_nothing_and_reruns_only_what_was_in_flight) {
  constexpr int total = 2000, concurrency = 8;
  enqueue_records(server, total, 5);
  const std::vector<std::string> flags{"--concurrency", std::to_string(concurrency), "--lease-ms", "1000"};
  std::int64_t pending_at_kill = 0;
  {
    worker_process first(server, flags);
    ASSERT_TRUE(wait_for([&] { return done() >= 200; }, 60s)) << "the first worker made no progress";
    first.signal(SIGKILL);
    EXPECT_EQ(first.wait(), 128 + SIGKILL);
    // Nothing settles the dead worker's tasks until the second starts: this is what was in
    // flight at the kill.
    auto at_kill = inspect(server);
    pending_at_kill = at_kill.pending;
    EXPECT_GT(pending_at_kill, 0) << "the kill must hit tasks in flight: " << at_kill.describe();
    EXPECT_LT(at_kill.done, total) << "the crash should come mid-burst";
  }
  worker_process second(server, flags);
  EXPECT_TRUE(wait_for([&] { return done() == total; }, 120s)) << "tasks lost: " << total - done();
  second.signal(SIGTERM);
  EXPECT_EQ(second.wait(), 0);
  auto end = inspect(server);
  EXPECT_EQ(end.done, total);
  EXPECT_EQ(end.ready, 0) << "streams must be empty: " << end.describe();
  EXPECT_EQ(end.pending, 0) << end.describe();
  EXPECT_EQ(end.delayed, 0);
  EXPECT_EQ(end.dead, 0);
  EXPECT_EQ(end.retried, 0) << "a crash must not use up a retry attempt";
  auto duplicates = end.runs - total;
  std::cout << "[ report ] SIGKILL: " << pending_at_kill << " task(s) pending at the kill (concurrency " << concurrency
            << "), " << duplicates << " ran again\n";
  // Only a task that was pending for the dead worker can run twice. It had at most `concurrency`
  // running and at most `concurrency` more fetched (a fetch asks for the free slots only); the
  // unstarted ones never ran. Acknowledgements in flight add completed ones: a handler here takes
  // 5 ms, much longer than an ack's round trip, so about one round of completions.
  EXPECT_LE(duplicates, pending_at_kill);
  EXPECT_LE(pending_at_kill, 3 * concurrency) << "more in flight than the worker's flags allow";
}

TEST_F(process_test, sigterm_mid_burst_finishes_running_tasks_hands_back_the_rest_and_runs_nothing_twice) {
  constexpr int total = 2000;
  enqueue_records(server, total, 2);
  {
    worker_process first(server, {"--concurrency", "8", "--lease-ms", "1000"});
    ASSERT_TRUE(wait_for([&] { return done() >= 200; }, 60s));
    first.signal(SIGTERM);
    EXPECT_EQ(first.wait(), 0) << "graceful stop exits 0";
  }
  auto after_stop = inspect(server);
  EXPECT_LT(after_stop.done, total);
  // Running tasks were finished and acknowledged, fetched ones handed back: none waits for a lease.
  EXPECT_EQ(after_stop.pending, 0) << after_stop.describe();
  EXPECT_EQ(after_stop.done + after_stop.ready, total) << after_stop.describe();
  worker_process second(server, {"--concurrency", "8", "--lease-ms", "1000"});
  EXPECT_TRUE(wait_for([&] { return done() == total; }, 120s)) << "tasks lost: " << total - done();
  second.signal(SIGTERM);
  EXPECT_EQ(second.wait(), 0);
  auto end = inspect(server);
  EXPECT_EQ(end.runs, total) << "a task that completed before SIGTERM ran again";
  EXPECT_EQ(end.pending + end.ready, 0) << end.describe();
}

// A worker fetches only what it can start, so a stop seldom finds tasks fetched but not started.
// Here it does: Redis is paused (SIGSTOP) under a burst of 2 ms tasks, the worker's handlers end
// and its next fetch waits in Redis; then SIGTERM, and Redis resumes and answers that fetch after
// the stop began. Those tasks must go back at once, not wait for the (long) lease.
TEST_F(process_test, tasks_fetched_as_the_worker_stops_are_handed_back_at_once) {
  constexpr int total = 3000;
  std::vector<tasks::task_spec> specs(total, {"sleep", boost::json::value(2), {}});
  enqueue(server, std::move(specs));
  worker_process worker(server, {"--concurrency", "8", "--lease-ms", "60000"});
  ASSERT_TRUE(wait_for([&] { return inspect(server).ready <= total - 200; }, 60s)) << "the worker made no progress";
  pid_t redis = server.pid();
  ::kill(redis, SIGSTOP);
  std::this_thread::sleep_for(300ms);  // the running handlers end; the next fetch waits in Redis
  worker.signal(SIGTERM);
  std::this_thread::sleep_for(300ms);
  ::kill(redis, SIGCONT);
  EXPECT_EQ(worker.wait(), 0);
  auto after = inspect(server);
  EXPECT_EQ(after.pending, 0) << "tasks fetched during the stop must not wait for the lease: " << after.describe();
  EXPECT_GT(after.ready, 0) << after.describe();
  auto log = worker.log();
  EXPECT_NE(log.find("unstarted task(s) back"), std::string::npos)
      << "the fetch answered after SIGTERM should have brought tasks to hand back; worker log:\n" << log;
}

// An idle worker waits in a blocking XREADGROUP. A task enqueued just before the worker stops is
// delivered to that read by Redis (pending for the worker from then on) while the worker is
// already closing the connection. Made certain here: Redis is paused (SIGSTOP) while the enqueue
// and the worker's close reach it, in that order. The worker must not leave the task pending.
// (Before the worker's stop swept its own pending entries, the task stayed pending for the
// lease: 3 of 3 runs.)
TEST_F(process_test, a_task_delivered_to_a_stopping_idle_worker_is_not_left_pending) {
  enqueue_records(server, 1, 0);
  worker_process worker(server, {"--concurrency", "4", "--lease-ms", "60000"});
  ASSERT_TRUE(wait_for([&] { return done() == 1; }, 60s)) << "the worker did not start";

  // A producer connected beforehand, so that its enqueue is one write that waits in Redis.
  std::atomic<int> stage{0};  // 1: connected, 2: go, 3: enqueued
  std::thread producer([&] {
    run([&]() -> awaitable<void> {
      auto c = transport::connection::create(co_await asio::this_coro::executor, server.config());
      co_await c->connect();
      tasks::client client(c);
      co_await client.enqueue("record", boost::json::value(0));  // loads the script
      stage = 1;
      asio::steady_timer tick(co_await asio::this_coro::executor);
      while (stage.load() < 2) {
        tick.expires_after(1ms);
        co_await tick.async_wait(asio::use_awaitable);
      }
      co_await client.enqueue("record", boost::json::value(0));
      stage = 3;
      c->close();
    }());
  });
  bool connected = wait_for([&] { return stage.load() >= 1; }, 30s);
  if (connected) {
    ASSERT_TRUE(wait_for([&] { return done() == 2; }, 60s));
    std::this_thread::sleep_for(300ms);  // idle again: blocked in XREADGROUP
    pid_t redis = server.pid();
    ::kill(redis, SIGSTOP);
    stage = 2;
    std::this_thread::sleep_for(100ms);  // the enqueue waits in Redis
    worker.signal(SIGTERM);
    std::this_thread::sleep_for(300ms);  // the worker's close waits behind it
    ::kill(redis, SIGCONT);
  }
  producer.join();
  ASSERT_TRUE(connected) << "the producer did not connect";
  EXPECT_EQ(worker.wait(), 0);
  auto after = inspect(server);
  EXPECT_EQ(after.pending, 0) << "a task delivered during the stop waits for the lease: " << after.describe();
  EXPECT_EQ(after.done + after.ready, 3) << after.describe();
}

TEST_F(process_test, three_worker_processes_share_fifty_thousand_tasks) {
  constexpr int total = 50'000;
  enqueue_records(server, total, 0);
  std::vector<std::unique_ptr<worker_process>> workers;
  for (int i = 0; i < 3; ++i) workers.push_back(std::make_unique<worker_process>(server, std::vector<std::string>{"--concurrency", "32"}));
  EXPECT_TRUE(wait_for([&] { return done() == total; }, 300s)) << "tasks not completed: " << total - done();
  std::vector<pid_t> pids;
  for (auto& w : workers) pids.push_back(w->pid());
  for (auto& w : workers) w->signal(SIGTERM);
  for (auto& w : workers) EXPECT_EQ(w->wait(), 0);
  auto end = inspect(server);
  std::cout << "[ report ] 3 workers, " << total << " tasks: runs per worker";
  for (auto pid : pids) std::cout << " " << runs_of(end, pid);
  std::cout << ", duplicate executions " << end.runs - total << "\n";
  EXPECT_EQ(end.runs, total) << "duplicates without a crash";
  EXPECT_EQ(end.ready + end.pending, 0) << end.describe();
  for (auto pid : pids) EXPECT_GT(runs_of(end, pid), 0) << "worker " << pid << " did no work";
  std::int64_t sum = 0;
  for (auto& [consumer, n] : end.by_worker) sum += n;
  EXPECT_EQ(sum, end.runs);
  EXPECT_EQ(end.by_worker.size(), 3u);
}

// --- Redis restarted under load -------------------------------------------------------------------

namespace {

// The loading times Redis logged ("DB loaded from append only file: 0.123 seconds").
std::string load_times(const redis_server& server) {
  std::ifstream log(server.log_file());
  std::string line, out;
  while (std::getline(log, line))
    if (auto at = line.find("DB loaded from"); at != std::string::npos) out += (out.empty() ? "" : "; ") + line.substr(at);
  return out;
}

// The first error (and LOADING) lines of every worker log in `dir`: why tasks got stuck.
std::string worker_errors(const std::filesystem::path& dir, std::size_t per_log = 6) {
  std::string out;
  for (auto& file : std::filesystem::directory_iterator(dir)) {
    auto name = file.path().filename().string();
    if (!name.starts_with("worker-")) continue;
    std::ifstream log(file.path());
    std::string line;
    std::size_t errors = 0;
    while (std::getline(log, line)) {
      if (line.find(" error ") == std::string::npos && line.find("LOADING") == std::string::npos) continue;
      if (++errors <= per_log) out += name + ": " + line + "\n";
    }
    if (errors > per_log) out += name + ": ... " + std::to_string(errors - per_log) + " more error line(s)\n";
  }
  return out;
}

}  // namespace

// The fault of issue 10: after a Redis restart, settlements failed with LOADING and the tasks
// stayed pending for good. Here three workers run 3000 record tasks (a fifth of them fail their
// first attempt, so retries are scheduled and promoted across the restarts) and 30 that always
// fail; Redis is killed (SIGKILL) once and stopped (SIGTERM) once while they run, and restarted
// from its AOF on the same port. Every task must end: completed, or dead-lettered if it always
// fails, with nothing pending.
TEST(process_restart_test, redis_restarted_twice_under_load_every_task_finishes) {
  constexpr int records = 3000, failing = 30, workers_count = 3;
  // appendfsync always: a write is on disk before Redis replies, so even a SIGKILL loses nothing
  // acknowledged. key-load-delay (per replayed command; negative: 1 us once in N) and events
  // processed every KiB keep a restarted Redis answering LOADING for a while.
  redis_server server({"--appendonly", "yes", "--appendfsync", "always", "--key-load-delay", "-2",
                       "--loading-process-events-interval-bytes", "1024"});
  std::vector<tasks::task_spec> specs;
  tasks::enqueue_options retried{.retry = {.max_attempts = 20,
                                           .backoff = {.base = 50ms, .multiplier = 2.0, .cap = 1000ms}}};
  tasks::enqueue_options fails{.retry = {.max_attempts = 2, .backoff = {.base = 50ms, .multiplier = 2.0, .cap = 1000ms}}};
  for (int i = 0; i < records; ++i) {
    boost::json::object flaky{{"ms", 10}, {"fail_attempts", 1}};
    specs.push_back({"record", i % 5 == 0 ? boost::json::value(flaky) : boost::json::value(10), retried});
  }
  for (int i = 0; i < failing; ++i) specs.push_back({"fail", boost::json::value(nullptr), fails});
  enqueue(server, std::move(specs));

  std::vector<std::unique_ptr<worker_process>> workers;
  for (int i = 0; i < workers_count; ++i)
    workers.push_back(std::make_unique<worker_process>(server, std::vector<std::string>{"--concurrency", "8", "--lease-ms", "1000"}));

  auto restart_at = [&](std::int64_t done_at_least, bool kill) {
    EXPECT_TRUE(wait_for([&] {
      auto q = try_inspect(server);
      return q && q->done >= done_at_least;
    }, 60s)) << "no progress before the restart";
    auto started = clock_type::now();
    kill ? server.kill() : server.stop();
    std::this_thread::sleep_for(300ms);  // the workers lose their connections and retry
    server.start();
    // Asked directly: a client library may hide LOADING.
    bool loading = server.ask("GET sagaflow-probe").starts_with("-LOADING");
    std::cout << "[ report ] Redis " << (kill ? "killed" : "stopped") << " at " << done_at_least
              << "+ done and restarted; answered LOADING: " << (loading ? "yes" : "no") << ", down for "
              << seconds_since(started) << " s\n";
  };
  restart_at(records / 5, true);
  restart_at(records * 3 / 5, false);

  std::optional<queue_state> last;
  bool finished = wait_for([&] {
    last = try_inspect(server);
    return last && last->done == records && last->dead == failing && last->pending == 0 && last->ready == 0 &&
           last->delayed == 0;
  }, 60s);
  EXPECT_TRUE(finished) << "tasks did not all finish: " << (last ? last->describe() : "Redis not answering") << "\n"
                        << worker_errors(server.dir());
  std::cout << "[ report ] Redis loads: " << load_times(server) << "\n";
  for (auto& w : workers) w->signal(SIGTERM);
  for (auto& w : workers) EXPECT_EQ(w->wait(), 0);

  auto end = inspect(server);
  EXPECT_EQ(end.done, records);
  EXPECT_EQ(end.pending, 0) << end.describe();
  EXPECT_EQ(end.ready + end.delayed, 0) << end.describe();
  EXPECT_GE(end.retried, records / 5) << "every fifth task succeeds only on a retry";
  // Only the tasks that always fail are dead letters, each after its last attempt.
  auto dead = run([&]() -> awaitable<std::vector<tasks::dead_letter>> {
    auto c = transport::connection::create(co_await asio::this_coro::executor, server.config());
    co_await c->connect();
    tasks::client client(c);
    auto list = co_await client.list_dead("default", 1000);
    c->close();
    co_return list;
  }());
  EXPECT_EQ(dead.size(), static_cast<std::size_t>(failing));
  for (auto& d : dead) {
    EXPECT_EQ(d.task.name, "fail") << d.reason << ": " << d.error;
    EXPECT_EQ(d.reason, "max attempts") << d.error;
  }
  std::cout << "[ report ] restart under load: " << end.runs << " runs for " << records << " tasks, "
            << end.retried << " on a retry\n";
}

#else
TEST(process_test, needs_the_worker_program) { GTEST_SKIP() << "built without examples (SAGAFLOW_BUILD_EXAMPLES=OFF)"; }
#endif
