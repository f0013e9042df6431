// Real worker processes (examples/worker.cpp): killed with SIGKILL mid-burst, stopped with
// SIGTERM mid-burst, and three sharing 50,000 tasks. Each task records its id in a set and counts
// its runs, so lost tasks and duplicate executions are both visible.
#include "redis_server.hpp"

#include <sagaflow/tasks/client.hpp>
#include <sagaflow/transport/commands.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

namespace asio = boost::asio;
namespace redis = sagaflow::redis;
namespace tasks = sagaflow::tasks;
using namespace std::chrono_literals;
using sagaflow::awaitable;
using sagaflow::testing::redis_server;
using sagaflow::testing::run;

#ifdef SAGAFLOW_WORKER_BIN

namespace {

class worker_process {
 public:
  worker_process(const redis_server& server, std::vector<std::string> flags) {
    std::vector<std::string> args{SAGAFLOW_WORKER_BIN, "--redis", server.url()};
    args.insert(args.end(), flags.begin(), flags.end());
    std::string log = (server.dir() / ("worker-" + std::to_string(counter_++) + ".log")).string();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~worker_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  void signal(int sig) { ::kill(pid_, sig); }
  // The exit status, or -1 if it did not exit within `limit`.
  int wait(std::chrono::seconds limit = 60s) {
    auto end = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (std::chrono::steady_clock::now() < end) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

 private:
  static inline int counter_ = 0;
  pid_t pid_ = -1;
};

std::int64_t integer(const redis_server& server, std::string_view cmd, std::string_view key) {
  return run([&]() -> awaitable<std::int64_t> {
    auto c = redis::connection::create(co_await asio::this_coro::executor, server.config());
    co_await c->connect();
    auto v = co_await c->call(cmd, key);
    c->close();
    co_return v.is_null() ? 0 : redis::as_integer(v, cmd);
  }());
}

// Enqueues `count` record tasks (payload: ms of work each) in bulk.
void enqueue_records(const redis_server& server, int count, int work_ms) {
  run([&]() -> awaitable<void> {
    auto c = redis::connection::create(co_await asio::this_coro::executor, server.config());
    co_await c->connect();
    tasks::client client(c);
    for (int done = 0; done < count;) {
      std::vector<tasks::task_spec> batch;
      for (int i = 0; i < 1000 && done + static_cast<int>(batch.size()) < count; ++i)
        batch.push_back({"record", boost::json::value(work_ms), {}});
      done += static_cast<int>((co_await client.enqueue_bulk(std::move(batch))).size());
    }
    c->close();
  }());
}

bool wait_for(std::function<bool()> done, std::chrono::seconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

class process_test : public ::testing::Test {
 protected:
  std::int64_t done() { return call_on("SCARD", "default:done"); }
  std::int64_t runs() { return call_on("GET", "default:runs"); }
  std::int64_t call_on(std::string_view cmd, std::string_view key) { return integer(server, cmd, key); }

  redis_server server;
};

}  // namespace

TEST_F(process_test, a_worker_killed_mid_burst_loses_nothing_and_uses_no_retry_attempt) {
  constexpr int total = 2000;
  enqueue_records(server, total, 2);
  {
    worker_process first(server, {"--concurrency", "8", "--lease-ms", "1000"});
    ASSERT_TRUE(wait_for([&] { return done() >= 200; }, 60s)) << "the first worker made no progress";
    first.signal(SIGKILL);
    EXPECT_EQ(first.wait(), 128 + SIGKILL);
  }
  auto at_crash = done();
  EXPECT_LT(at_crash, total) << "the crash should come mid-burst";
  worker_process second(server, {"--concurrency", "8", "--lease-ms", "1000"});
  EXPECT_TRUE(wait_for([&] { return done() == total; }, 120s)) << "tasks lost: " << total - done();
  second.signal(SIGTERM);
  EXPECT_EQ(second.wait(), 0);
  EXPECT_EQ(done(), total);
  std::cout << "[ report ] duplicate executions after SIGKILL: " << runs() - total << " (tasks in flight at the crash)\n";
  EXPECT_EQ(call_on("GET", "default:retried"), 0) << "a crash must not use up a retry attempt";
  EXPECT_EQ(call_on("XLEN", "sf:{q:default}:dead"), 0);
  EXPECT_EQ(call_on("ZCARD", "sf:{q:default}:delayed"), 0);
}

TEST_F(process_test, sigterm_mid_burst_finishes_running_tasks_and_runs_nothing_twice) {
  constexpr int total = 2000;
  enqueue_records(server, total, 2);
  {
    worker_process first(server, {"--concurrency", "8", "--lease-ms", "1000"});
    ASSERT_TRUE(wait_for([&] { return done() >= 200; }, 60s));
    first.signal(SIGTERM);
    EXPECT_EQ(first.wait(), 0) << "graceful stop exits 0";
  }
  EXPECT_LT(done(), total);
  worker_process second(server, {"--concurrency", "8", "--lease-ms", "1000"});
  EXPECT_TRUE(wait_for([&] { return done() == total; }, 120s)) << "tasks lost: " << total - done();
  second.signal(SIGTERM);
  EXPECT_EQ(second.wait(), 0);
  EXPECT_EQ(runs(), total) << "a task that completed before SIGTERM ran again";
}

TEST_F(process_test, three_worker_processes_drain_fifty_thousand_tasks) {
  constexpr int total = 50'000;
  enqueue_records(server, total, 0);
  std::vector<std::unique_ptr<worker_process>> workers;
  for (int i = 0; i < 3; ++i) workers.push_back(std::make_unique<worker_process>(server, std::vector<std::string>{"--concurrency", "32"}));
  EXPECT_TRUE(wait_for([&] { return done() == total; }, 300s)) << "tasks not completed: " << total - done();
  for (auto& w : workers) w->signal(SIGTERM);
  for (auto& w : workers) EXPECT_EQ(w->wait(), 0);
  std::cout << "[ report ] 3 workers, " << total << " tasks: duplicate executions " << runs() - total << "\n";
  EXPECT_EQ(runs(), total) << "duplicates without a crash";
  EXPECT_EQ(call_on("XLEN", "sf:{q:default}:p2"), 0);
}

#else
TEST(process_test, needs_the_worker_program) { GTEST_SKIP() << "built without examples (SAGAFLOW_BUILD_EXAMPLES=OFF)"; }
#endif
