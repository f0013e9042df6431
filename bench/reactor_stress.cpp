// sagaflow-bench reactor-stress (see reactor_stress.hpp). Everything runs in this one process, on
// the runtime's io_contexts: task workers, a producer, timer churn and the miswritten worker's
// shared timer, so that one reactor carries all of it. Disconnects are counted from both sides:
// the library's log lines ("connection lost", "reconnected after") and the server's verbose log
// ("Client closed connection" means the server read end-of-file: the client closed).
#include "reactor_stress.hpp"

#include "flags.hpp"
#include "redis_process.hpp"
#include "sqe_trace.hpp"

#include <sagaflow/engine/coro.hpp>
#include <sagaflow/engine/id.hpp>
#include <sagaflow/engine/runtime.hpp>
#include <sagaflow/engine/stop.hpp>
#include <sagaflow/tasks/client.hpp>
#include <sagaflow/tasks/keys.hpp>
#include <sagaflow/tasks/worker.hpp>
#include <sagaflow/transport/commands.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/value.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace sagaflow::bench {

namespace {

namespace asio = boost::asio;
using testing::info_field;
using testing::redis_process;
using namespace std::chrono_literals;
using std::chrono::milliseconds;
using clock_type = std::chrono::steady_clock;

struct stress_options {
  std::uint64_t seconds = 30;
  std::uint64_t workers = 4;
  std::uint64_t queues = 3;
  std::uint64_t threads = 2;          // io_contexts ("loops") of the runtime
  std::uint64_t concurrency = 32;     // per worker
  std::uint64_t rate = 2000;          // tasks enqueued per second
  std::uint64_t timers = 4000;        // short timers started per second per io_context; half cancelled
  std::uint64_t shared_timer = 0;     // 1: the miswritten worker's shared timer, unpaced
  std::uint64_t conn_churn = 0;       // short-lived connections opened and closed per second
  std::uint64_t lease_ms = 1000;
  std::uint64_t drain_seconds = 20;
  std::uint64_t clear_stale = 0;      // io_uring build: clear the stale user_data of cancel entries
};

void write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    auto n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

// --- the library's log lines ---------------------------------------------------------------------

struct log_counts {
  std::uint64_t lost = 0;         // "connection lost: <why>": a link failed under a connection we had not closed
  std::uint64_t reconnected = 0;  // "reconnected after"
  std::uint64_t no_reply = 0;     // "got no reply in time": the watchdog dropped a stuck link
  std::uint64_t warnings = 0;
  std::uint64_t errors = 0;
  std::map<std::string, std::uint64_t> reasons;  // of "connection lost", without Boost's source location
};

log_counts minus(const log_counts& a, const log_counts& b) {
  log_counts d{a.lost - b.lost, a.reconnected - b.reconnected, a.no_reply - b.no_reply, a.warnings - b.warnings,
               a.errors - b.errors, {}};
  for (auto& [why, n] : a.reasons) {
    auto before = b.reasons.find(why);
    auto delta = n - (before == b.reasons.end() ? 0 : before->second);
    if (delta) d.reasons[why] = delta;
  }
  return d;
}

// Replaces stderr with a pipe and reads it on a thread: sagaflow's log lines are counted, the
// first `forward_limit` warnings and errors (and the runtime's line naming the reactor) go on to
// the console, other output passes unchanged.
class stderr_tap {
 public:
  explicit stderr_tap(std::size_t forward_limit) : limit_(forward_limit) {
    std::fflush(stderr);
    console_ = ::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    int fds[2];
    if (console_ < 0 || ::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("cannot redirect stderr");
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[1]);
    read_end_ = fds[0];
    reader_ = std::thread([this] { pump(); });
  }
  ~stderr_tap() { restore(); }
  stderr_tap(const stderr_tap&) = delete;
  stderr_tap& operator=(const stderr_tap&) = delete;

  void restore() {
    if (console_ < 0) return;
    std::fflush(stderr);
    ::dup2(console_, STDERR_FILENO);  // closes the pipe's last write end: the reader sees its end
    reader_.join();
    ::close(read_end_);
    ::close(console_);
    console_ = -1;
  }

  void say(std::string_view text) const { write_all(console_ >= 0 ? console_ : STDERR_FILENO, text); }

  log_counts snapshot() const {
    std::lock_guard lock(mutex_);
    return counts_;
  }

 private:
  void pump() {
    std::string pending;
    char buf[8192];
    for (;;) {
      auto n = ::read(read_end_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      pending.append(buf, static_cast<std::size_t>(n));
      std::size_t start = 0;
      for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n', start)) {
        line(std::string_view(pending).substr(start, nl + 1 - start));
        start = nl + 1;
      }
      pending.erase(0, start);
    }
    if (!pending.empty()) line(pending);
  }

  void line(std::string_view text) {
    // sagaflow's logger: "2025-01-31T12:00:00.000Z warn redis: ..."
    bool ours = text.size() > 25 && text[4] == '-' && text[10] == 'T' && text[23] == 'Z' && text[24] == ' ';
    if (!ours) {
      write_all(console_, text);
      return;
    }
    auto rest = text.substr(25);
    bool warn = rest.starts_with("warn "), error = rest.starts_with("error ");
    bool forward = false;
    {
      std::lock_guard lock(mutex_);
      counts_.warnings += warn;
      counts_.errors += error;
      if (auto at = text.find("connection lost: "); at != std::string_view::npos) {
        ++counts_.lost;
        auto why = text.substr(at + 17);
        why = why.substr(0, why.find_first_of("[\n"));
        while (!why.empty() && why.back() == ' ') why.remove_suffix(1);
        ++counts_.reasons[std::string(why)];
      }
      if (text.find(": reconnected after ") != std::string_view::npos) ++counts_.reconnected;
      if (text.find("got no reply in time") != std::string_view::npos) ++counts_.no_reply;
      forward = ((warn || error) && forwarded_++ < limit_) || text.find(" engine: runtime: ") != std::string_view::npos;
    }
    if (forward) write_all(console_, text);
  }

  std::size_t limit_;
  std::size_t forwarded_ = 0;
  int console_ = -1;
  int read_end_ = -1;
  std::thread reader_;
  mutable std::mutex mutex_;
  log_counts counts_;
};

// --- the server's log ------------------------------------------------------------------------------

struct server_counts {
  std::uint64_t accepted = 0;       // "Accepted": a new connection
  std::uint64_t client_closed = 0;  // "Client closed connection": the server read end-of-file
  std::uint64_t client_reset = 0;   // "Reading from client: ...": e.g. reset by the client
  std::uint64_t server_closed = 0;  // the server dropped the client (idle timeout, buffer limits, protocol error, write error)
  std::map<std::string, std::uint64_t> closed_by;  // client_closed, by client name without its number
};

// Counts the complete lines after `offset` and moves `offset` past them.
server_counts read_server_log(const std::filesystem::path& file, std::uint64_t& offset) {
  server_counts c;
  std::ifstream in(file, std::ios::binary);
  if (!in) return c;
  in.seekg(static_cast<std::streamoff>(offset));
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline yet: the server is still writing it
    offset += line.size() + 1;
    if (line.find(" Accepted ") != std::string::npos) ++c.accepted;
    if (auto at = line.find("Client closed connection"); at != std::string::npos) {
      ++c.client_closed;
      std::string name = "?";
      if (auto n = line.find(" name=", at); n != std::string::npos) {
        name = line.substr(n + 6, line.find(' ', n + 6) - (n + 6));
        while (!name.empty() && (std::isdigit(static_cast<unsigned char>(name.back())) || name.back() == '-'))
          name.pop_back();
        if (name.empty()) name = "(unnamed)";
      }
      ++c.closed_by[name];
    }
    if (line.find("Reading from client:") != std::string::npos) ++c.client_reset;
    for (const char* server_side : {"Closing idle client", "output buffer limits", "Protocol error",
                                    "Error writing to client", "max query buffer"})
      if (line.find(server_side) != std::string::npos) ++c.server_closed;
  }
  return c;
}

// --- the load ----------------------------------------------------------------------------------------

// Counters that every coroutine and handler may touch until the runtime is gone: declared before it.
struct counters {
  std::atomic<std::uint64_t> enqueued{0}, enqueue_failures{0};
  std::atomic<std::uint64_t> handler_runs{0}, flaky_failures{0}, retry_requests{0}, slow_runs{0};
  std::atomic<std::uint64_t> timers_started{0}, timers_cancelled{0}, timers_fired{0};
  std::atomic<std::uint64_t> shared_cancels{0}, loop_commands{0}, loop_failures{0};
  std::atomic<std::uint64_t> blocker_reads{0}, blocker_failures{0};
  std::atomic<std::uint64_t> ghost_taken{0}, ghost_failures{0}, churn_attempts{0}, churned{0}, churn_failures{0};

  // The first failure of each kind, for the report.
  void failed(const std::string& what, const std::exception& e) {
    std::lock_guard lock(mutex);
    first_failures.try_emplace(what, e.what());
  }
  std::mutex mutex;
  std::map<std::string, std::string> first_failures;
};

void add_handlers(tasks::worker& w, counters& k) {
  // A quarter sleeps briefly: handlers that wait on timers, as real ones wait on I/O.
  w.handle("ok", [&k](tasks::task_context&) -> awaitable<void> {
    auto n = k.handler_runs.fetch_add(1);
    if (n % 4 == 0) co_await sagaflow::sleep_for(std::chrono::microseconds(100 + (n * 7919) % 2000));
  });
  // The first attempt fails: the retry script, the delayed set and the promoter run.
  w.handle("flaky", [&k](tasks::task_context& ctx) -> awaitable<void> {
    k.handler_runs.fetch_add(1);
    if (ctx.task.attempt == 1) {
      k.flaky_failures.fetch_add(1);
      throw std::runtime_error("first attempt fails on purpose");
    }
    co_return;
  });
  w.handle("retry-after", [&k](tasks::task_context& ctx) -> awaitable<void> {
    k.handler_runs.fetch_add(1);
    if (ctx.task.attempt == 1) {
      k.retry_requests.fetch_add(1);
      throw tasks::retry_after(milliseconds(20));
    }
    co_return;
  });
  // Longer than a third of the lease: the lease renewer has entries to renew.
  w.handle("slow", [&k](tasks::task_context&) -> awaitable<void> {
    auto n = k.handler_runs.fetch_add(1);
    k.slow_runs.fetch_add(1);
    co_await sagaflow::sleep_for(milliseconds(300 + (n * 7919) % 400));
  });
}

template <typename T>
T run_on(const asio::any_io_executor& ex, awaitable<T> op) {
  return asio::co_spawn(ex, std::move(op), asio::use_future).get();
}

// The objects of one run: destroyed before the runtime whose io_contexts they use.
class stress {
 public:
  stress(const stress_options& o, std::uint16_t port, counters& k, sagaflow::runtime& rt, const stderr_tap& tap)
      : o_(o), port_(port), k_(k), rt_(rt), tap_(tap) {
    for (std::uint64_t q = 0; q < o.queues; ++q) queue_names_.push_back("stress" + std::to_string(q));
  }

  struct phase {
    log_counts client;
    server_counts server;
    std::uint64_t new_connections = 0;  // total_connections_received grew by this much...
    std::uint64_t reconnections = 0;    // ... less the short-lived connections of --conn-churn
    std::uint64_t long_lived_closed = 0;  // 'Client closed connection' of connections other than those
    std::uint64_t own_reconnects = 0;   // reconnects() of the connections this mode opened itself
  };

  struct outcome {
    phase run, shutdown;
    bool drained = false;
    std::int64_t left = -1;  // entries in streams and delayed sets after draining
    std::int64_t dead_letters = 0;
    std::uint64_t started = 0, succeeded = 0, retried = 0, dead = 0, recovered = 0, failed_to_settle = 0;
    double seconds = 0;
    std::uint64_t expected_clients = 0;
    std::vector<std::string> hung;  // coroutines that did not end when asked to (30 s for workers, 15 s else)
    sqe_trace_counts sqes;
  };

  outcome run(const std::filesystem::path& server_log) {
    outcome out;
    rt_.start();
    admin_ = open(rt_.context(0).get_executor(), "stress-admin");
    for (std::size_t i = 0; i < rt_.size(); ++i) {
      auto ex = rt_.context(i).get_executor();
      loops_.push_back(open(ex, "stress-loops-" + std::to_string(i)));
      blockers_.push_back(open(ex, "stress-blocker-" + std::to_string(i)));
      run_on(ex, create_probe_group(probe_stream(i)));
    }
    producer_ = open(rt_.context(0).get_executor(), "stress-producer");
    start_workers();
    out.expected_clients = 1 + 2 * rt_.size() + 1 + o_.workers * (1 + o_.queues);
    wait_for_clients(out.expected_clients);

    // Baseline: everything is connected; from here on a new connection is a reconnection.
    std::uint64_t log_offset = std::filesystem::file_size(server_log);
    auto received_before = total_connections_received();
    auto client_before = tap_.snapshot();
    auto t0 = clock_type::now();

    std::vector<std::pair<std::string, std::future<void>>> load;
    load.emplace_back("producer", asio::co_spawn(rt_.context(0).get_executor(), produce(), asio::use_future));
    load.emplace_back("ghost", asio::co_spawn(admin_->get_executor(), ghost(), asio::use_future));
    for (std::size_t i = 0; i < rt_.size(); ++i) {
      auto ex = rt_.context(i).get_executor();
      auto n = std::to_string(i);
      load.emplace_back("timer churn " + n, asio::co_spawn(ex, churn_timers(), asio::use_future));
      auto shared = std::make_shared<asio::steady_timer>(ex);
      load.emplace_back("shared timer loop A" + n, asio::co_spawn(ex, shared_timer_loop(shared, loops_[i], i, 0), asio::use_future));
      load.emplace_back("shared timer loop B" + n, asio::co_spawn(ex, shared_timer_loop(shared, loops_[i], i, 1), asio::use_future));
      load.emplace_back("blocking reader " + n, asio::co_spawn(ex, blocker(blockers_[i], i), asio::use_future));
    }
    if (o_.conn_churn > 0)
      load.emplace_back("connection churn", asio::co_spawn(rt_.context(0).get_executor(), churn_connections(), asio::use_future));

    for (std::uint64_t s = 1; s <= o_.seconds; ++s) {
      std::this_thread::sleep_until(t0 + std::chrono::seconds(s));
      if (s % 5 == 0 || s == o_.seconds) progress(s, minus(tap_.snapshot(), client_before));
    }
    load_stop_.request_stop();
    // A coroutine that never resumes is a finding (a lost completion), not a reason to stop.
    auto load_deadline = clock_type::now() + 15s;
    for (auto& [name, f] : load) {
      if (f.wait_until(load_deadline) != std::future_status::ready)
        out.hung.push_back(name);
      else
        f.get();
    }
    out.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();

    // Every task enqueued must finish: ghost-held ones after the lease, retried ones after their delay.
    auto drain_end = clock_type::now() + std::chrono::seconds(o_.drain_seconds);
    for (;;) {
      out.left = run_on(admin_->get_executor(), backlog());
      if (out.left == 0 || clock_type::now() > drain_end) break;
      std::this_thread::sleep_for(200ms);
    }
    out.drained = out.left == 0;
    out.dead_letters = run_on(admin_->get_executor(), dead_letters());

    out.run.client = minus(tap_.snapshot(), client_before);
    out.run.server = read_server_log(server_log, log_offset);
    out.run.new_connections = total_connections_received() - received_before;
    out.run.reconnections = out.run.new_connections - k_.churn_attempts.load();
    out.run.long_lived_closed = out.run.server.client_closed;
    if (auto churn = out.run.server.closed_by.find("stress-churn"); churn != out.run.server.closed_by.end())
      out.run.long_lived_closed -= churn->second;
    out.run.own_reconnects = own_reconnects();
    auto client_at_end = tap_.snapshot();

    // Shutdown, as a process ends: the workers stop, then the other connections close.
    worker_stop_.request_stop();
    auto worker_deadline = clock_type::now() + 30s;
    for (std::size_t i = 0; i < worker_runs_.size(); ++i) {
      if (worker_runs_[i].wait_until(worker_deadline) != std::future_status::ready)
        out.hung.push_back("worker " + std::to_string(i));
      else
        worker_runs_[i].get();
    }
    for (auto& w : workers_) {
      auto& s = w->stats();
      out.started += s.started;
      out.succeeded += s.succeeded;
      out.retried += s.retried;
      out.dead += s.dead;
      out.recovered += s.recovered;
      out.failed_to_settle += s.failed_to_settle;
    }
    auto own_before_close = own_reconnects();
    for (auto& c : loops_) c->close();
    for (auto& c : blockers_) c->close();
    producer_->close();
    std::this_thread::sleep_for(200ms);
    admin_->close();
    std::this_thread::sleep_for(300ms);  // let the last log lines through
    out.shutdown.client = minus(tap_.snapshot(), client_at_end);
    out.shutdown.server = read_server_log(server_log, log_offset);
    out.shutdown.own_reconnects = own_reconnects() - own_before_close;
    out.sqes = sqe_trace_read();
    return out;
  }

 private:
  std::string probe_stream(std::size_t i) const { return "stress:probe:" + std::to_string(i); }

  transport::config config(std::string name) const {
    transport::config cfg;
    cfg.host = "127.0.0.1";
    cfg.port = port_;
    cfg.client_name = std::move(name);
    return cfg;
  }

  std::shared_ptr<transport::connection> open(const asio::any_io_executor& ex, std::string name) {
    auto c = transport::connection::create(ex, config(std::move(name)));
    run_on(ex, c->connect());
    return c;
  }

  void start_workers() {
    for (std::uint64_t i = 0; i < o_.workers; ++i) {
      tasks::worker_options wo;
      wo.queues.clear();
      for (auto& q : queue_names_) wo.queues.push_back(tasks::queue_config{.name = q, .share = 1});
      wo.concurrency = static_cast<std::size_t>(o_.concurrency);
      wo.lease = milliseconds(o_.lease_ms);
      wo.promoter_interval = 100ms;
      wo.fetch_block = 250ms;
      wo.recover_interval = 500ms;
      wo.grace = 5s;
      wo.consumer = "stress-w" + std::to_string(i);
      auto ex = rt_.context(i % rt_.size()).get_executor();
      auto w = std::make_unique<tasks::worker>(ex, config("stress-worker-" + std::to_string(i)), wo);
      add_handlers(*w, k_);
      worker_runs_.push_back(asio::co_spawn(ex, w->run(worker_stop_), asio::use_future));
      workers_.push_back(std::move(w));
    }
  }

  std::uint64_t total_connections_received() {
    auto text = run_on(admin_->get_executor(), info("stats"));
    return std::stoull(info_field(text, "total_connections_received"));
  }

  void wait_for_clients(std::uint64_t expected) {
    auto give_up = clock_type::now() + 15s;
    for (;;) {
      auto text = run_on(admin_->get_executor(), info("clients"));
      auto connected = std::stoull(info_field(text, "connected_clients"));
      if (connected >= expected) return;
      for (auto& f : worker_runs_)
        if (f.wait_for(0s) == std::future_status::ready) f.get();  // a worker that failed to start throws here
      if (clock_type::now() > give_up)
        throw std::runtime_error(std::to_string(connected) + " clients connected after 15 s, expected " +
                                 std::to_string(expected));
      std::this_thread::sleep_for(50ms);
    }
  }

  std::uint64_t own_reconnects() const {
    std::uint64_t n = admin_->reconnects() + producer_->reconnects();
    for (auto& c : loops_) n += c->reconnects();
    for (auto& c : blockers_) n += c->reconnects();
    return n;
  }

  void progress(std::uint64_t s, const log_counts& client) {
    std::ostringstream line;
    line << "  " << s << " s: enqueued " << k_.enqueued.load() << ", handler runs " << k_.handler_runs.load()
         << ", timers " << k_.timers_started.load() << " (cancelled " << k_.timers_cancelled.load()
         << "), shared timer cancelled " << k_.shared_cancels.load() << " times, loop commands "
         << k_.loop_commands.load() << "; connection lost " << client.lost << ", reconnected " << client.reconnected
         << "\n";
    tap_.say(line.str());
  }

  awaitable<void> create_probe_group(std::string stream) {
    co_await transport::xgroup_create(*admin_, stream, "probe", "$");
  }

  awaitable<std::string> info(std::string section) {
    co_return transport::as_string(co_await admin_->call("INFO", section), "INFO");
  }

  // Entries not yet finished: in the streams (pending or not) and in the delayed sets.
  awaitable<std::int64_t> backlog() {
    std::int64_t left = 0;
    for (auto& q : queue_names_) {
      tasks::queue_keys keys("sf", q);
      transport::request req;
      for (auto& s : keys.streams) req.push("XLEN", s);
      req.push("ZCARD", keys.delayed);
      auto replies = co_await admin_->exec(std::move(req));
      for (auto& r : replies) left += transport::as_integer(r, "XLEN/ZCARD");
    }
    co_return left;
  }

  awaitable<std::int64_t> dead_letters() {
    std::int64_t n = 0;
    for (auto& q : queue_names_) {
      tasks::queue_keys keys("sf", q);
      n += co_await transport::xlen(*admin_, keys.dead);
    }
    co_return n;
  }

  // Enqueues `rate` tasks per second in batches every 10 ms, across queues and priorities: most
  // succeed, some fail once (retry script, promoter), some ask for a later retry, some are slow
  // (lease renewal), some are delayed.
  awaitable<void> produce() {
    tasks::client client(producer_);
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer tick(ex);
    std::minstd_rand rng(42);
    const std::uint64_t per_tick = std::max<std::uint64_t>(1, o_.rate / 100);
    tasks::retry_policy retry;
    retry.max_attempts = 3;
    retry.backoff = backoff_policy{.base = 5ms, .multiplier = 2.0, .cap = 1s, .jitter = jitter::none};
    std::int64_t seq = 0;
    auto next = clock_type::now();
    std::vector<tasks::task_spec> delayed;
    while (!load_stop_.stop_requested()) {
      std::vector<tasks::task_spec> batch;
      for (std::uint64_t i = 0; i < per_tick; ++i) {
        auto r = rng() % 100;
        tasks::task_spec t;
        t.name = r < 70 ? "ok" : r < 88 ? "flaky" : r < 95 ? "retry-after" : "slow";
        t.payload = tasks::payload(boost::json::value(seq++));
        t.options.queue = queue_names_[rng() % queue_names_.size()];
        t.options.priority = static_cast<tasks::priority>(rng() % tasks::priority_count);
        t.options.retry = retry;
        t.options.timeout = 10s;
        if (rng() % 20 == 0) {
          t.options.delay = 50ms;
          delayed.push_back(std::move(t));
        } else {
          batch.push_back(std::move(t));
        }
      }
      try {
        auto ids = co_await client.enqueue_bulk(std::move(batch));
        k_.enqueued += ids.size();
        for (auto& t : delayed) {  // enqueue_bulk takes tasks due now only
          co_await client.enqueue(t.name, std::move(t.payload), t.options);
          ++k_.enqueued;
        }
      } catch (const std::exception& e) {
        ++k_.enqueue_failures;
        k_.failed("enqueue", e);
      }
      delayed.clear();
      next += 10ms;
      if (auto now = clock_type::now(); next < now - 100ms) next = now;  // fell behind: no burst
      tick.expires_at(next);
      boost::system::error_code ec;
      co_await tick.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  // Starts `timers` short timers per second on this io_context, cancelling every other one.
  awaitable<void> churn_timers() {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer tick(ex);
    const std::uint64_t per_ms = std::max<std::uint64_t>(1, o_.timers / 1000);
    std::uint64_t n = 0;
    auto next = clock_type::now();
    auto* k = &k_;
    while (!load_stop_.stop_requested()) {
      for (std::uint64_t i = 0; i < per_ms; ++i, ++n) {
        auto t = std::make_shared<asio::steady_timer>(ex, std::chrono::microseconds(200 + (n * 7919) % 3000));
        t->async_wait([t, k](boost::system::error_code ec) {
          if (!ec) ++k->timers_fired;
        });
        ++k_.timers_started;
        if (i % 2 == 0) {
          t->cancel();
          ++k_.timers_cancelled;
        }
      }
      next += 1ms;
      if (auto now = clock_type::now(); next < now - 10ms) next = now;
      tick.expires_at(next);
      boost::system::error_code ec;
      co_await tick.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  // The miswritten worker: its lease renewer and its recoverer waited on one timer. Setting a
  // timer's expiry cancels every wait on it, so each loop's re-arm woke the other, which re-armed
  // it in turn: thousands of cancellations per second, each followed by a command (a script for
  // role 0, XPENDING for role 1). With --shared-timer 0 each loop pauses 1 ms after waking.
  awaitable<void> shared_timer_loop(std::shared_ptr<asio::steady_timer> shared, std::shared_ptr<transport::connection> c,
                                    std::size_t index, int role) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer pause(ex);
    static const transport::script feed(
        "redis.call('XADD', KEYS[1], 'MAXLEN', '~', '1000', '*', 'n', ARGV[1]) return 1");
    const std::string stream = probe_stream(index);
    const tasks::queue_keys keys("sf", queue_names_[index % queue_names_.size()]);
    std::uint64_t n = 0;
    while (!load_stop_.stop_requested()) {
      shared->expires_after(50ms);
      boost::system::error_code ec;
      co_await shared->async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (ec == asio::error::operation_aborted) ++k_.shared_cancels;
      try {
        if (role == 0) {
          std::string count = std::to_string(++n);
          std::string_view script_keys[] = {stream};
          std::string_view script_args[] = {count};
          co_await transport::evalsha(*c, feed, script_keys, script_args);
        } else {
          transport::pending_range range{.count = 10, .min_idle = milliseconds(o_.lease_ms)};
          co_await transport::xpending(*c, keys.streams[n++ % tasks::priority_count], tasks::consumer_group, range);
        }
        ++k_.loop_commands;
      } catch (const std::exception& e) {
        ++k_.loop_failures;
        k_.failed("loop command", e);
      }
      if (o_.shared_timer == 0) {
        pause.expires_after(1ms);
        co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
    }
    shared->cancel();  // the other loop may be waiting for the 50 ms
  }

  // A blocking XREADGROUP connection of our own (the workers' are internal), fed by role 0 above.
  awaitable<void> blocker(std::shared_ptr<transport::connection> c, std::size_t index) {
    const std::string stream = probe_stream(index);
    transport::stream_offset from[] = {{stream, ">"}};
    transport::xreadgroup_options block{.count = 100, .block = milliseconds(100), .noack = true};
    while (!load_stop_.stop_requested()) {
      bool failed = false;
      try {
        co_await transport::xreadgroup(*c, "probe", "blocker", from, block);
        ++k_.blocker_reads;
      } catch (const std::exception& e) {
        ++k_.blocker_failures;
        k_.failed("blocking read", e);
        failed = true;
      }
      if (failed) co_await sagaflow::sleep_for(50ms);
    }
  }

  // Every 500 ms a consumer that then vanishes takes a task: one XADD and one XREADGROUP in a
  // MULTI, so that no worker reads the entry first. The workers' recoverers take it over after
  // the lease.
  awaitable<void> ghost() {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer tick(ex);
    for (std::size_t i = 0; !load_stop_.stop_requested(); ++i) {
      tick.expires_after(500ms);
      boost::system::error_code ec;
      co_await tick.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      tasks::queue_keys keys("sf", queue_names_[i % queue_names_.size()]);
      auto p = (i / queue_names_.size()) % tasks::priority_count;
      tasks::envelope task;
      task.id = make_id();
      task.name = "ok";
      task.queue = queue_names_[i % queue_names_.size()];
      task.priority = static_cast<tasks::priority>(p);
      task.payload = tasks::payload(boost::json::value("ghost"));
      task.correlation_id = task.id;
      task.enqueued_ms = std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
      auto fields = task.to_fields();
      std::vector<transport::field_view> views;
      for (std::size_t f = 0; f + 1 < fields.size(); f += 2) views.push_back({fields[f], fields[f + 1]});
      transport::request commands;
      transport::add_xadd(commands, keys.streams[p], views);
      transport::stream_offset from[] = {{keys.streams[p], ">"}};
      transport::xreadgroup_options opts{.count = 1};
      transport::add_xreadgroup(commands, tasks::consumer_group, "ghost", from, opts);
      try {
        auto replies = co_await transport::transaction(*admin_, commands);
        ++k_.enqueued;
        if (replies.size() == 2)
          for (auto& b : transport::decode_stream_batches(std::move(replies[1]))) k_.ghost_taken += b.entries.size();
      } catch (const std::exception& e) {
        ++k_.ghost_failures;
        k_.failed("ghost read", e);
      }
    }
  }

  // Short-lived connections, as producers that connect per request make: each close cancels the
  // read in flight on that socket.
  awaitable<void> churn_connections() {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer tick(ex);
    auto period = std::chrono::microseconds(1'000'000 / o_.conn_churn);
    while (!load_stop_.stop_requested()) {
      tick.expires_after(period);
      boost::system::error_code ec;
      co_await tick.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      auto c = transport::connection::create(rt_.executor(), config("stress-churn"));
      ++k_.churn_attempts;
      try {
        co_await c->connect();
        co_await c->call("PING");
        ++k_.churned;
      } catch (const std::exception& e) {
        ++k_.churn_failures;
        k_.failed("short-lived connection", e);
      }
      c->close();
    }
  }

  const stress_options& o_;
  std::uint16_t port_;
  counters& k_;
  sagaflow::runtime& rt_;
  const stderr_tap& tap_;
  std::vector<std::string> queue_names_;
  stop_source load_stop_;
  stop_source worker_stop_;
  std::shared_ptr<transport::connection> admin_, producer_;
  std::vector<std::shared_ptr<transport::connection>> loops_, blockers_;
  std::vector<std::unique_ptr<tasks::worker>> workers_;
  std::vector<std::future<void>> worker_runs_;
};

std::string reasons_text(const std::map<std::string, std::uint64_t>& reasons) {
  std::string out;
  for (auto& [why, n] : reasons) out += (out.empty() ? "" : ", ") + why + ": " + std::to_string(n);
  return out.empty() ? "-" : out;
}

std::string reasons_json(const std::map<std::string, std::uint64_t>& reasons) {
  std::string out = "{";
  for (auto& [why, n] : reasons) {
    if (out.size() > 1) out += ",";
    out += "\"";
    for (char c : why) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += "\":" + std::to_string(n);
  }
  return out + "}";
}

}  // namespace

int run_reactor_stress(std::span<const std::string_view> args) {
  stress_options o;
  const flag flags[] = {
      {"seconds", &o.seconds, 1, 3600, "how long the load runs"},
      {"workers", &o.workers, 1, 64, "tasks::worker instances in this process"},
      {"queues", &o.queues, 1, 16, "queues; every worker serves all of them (one blocking connection each)"},
      {"threads", &o.threads, 1, 16, "io_contexts of the runtime, one thread each"},
      {"concurrency", &o.concurrency, 1, 100000, "worker_options::concurrency of each worker"},
      {"rate", &o.rate, 1, 1000000, "tasks enqueued per second"},
      {"timers", &o.timers, 0, 1000000, "short timers started per second per io_context (every other one cancelled)"},
      {"shared-timer", &o.shared_timer, 0, 1, "1: two loops cancel one shared timer without pause (the miswritten worker)"},
      {"conn-churn", &o.conn_churn, 0, 1000, "short-lived connections opened and closed per second"},
      {"lease-ms", &o.lease_ms, 100, 600000, "worker_options::lease"},
      {"drain-seconds", &o.drain_seconds, 1, 600, "how long to wait for the queues to empty after the load"},
      {"clear-stale", &o.clear_stale, 0, 1,
       "io_uring build: submit cancel entries with user_data 0, as Asio 1.27 (Boost 1.82) does"},
  };
  if (!parse_flags("reactor-stress", args, flags)) return 0;
  if (o.clear_stale && !sqe_trace_available())
    throw std::invalid_argument("--clear-stale works in the io_uring build only (-DSAGAFLOW_IO_BACKEND=io_uring)");

  std::string variant = o.shared_timer ? "shared-timer" : "mix";
  if (o.conn_churn) variant += "+conn-churn";
  if (o.clear_stale) variant += "+clear-stale";
  const std::string reactor(sagaflow::runtime::backend());

  redis_process server({"--loglevel", "verbose"});
  stderr_tap tap(40);
  if (sqe_trace_available()) sqe_trace_start(o.clear_stale != 0);
  tap.say("reactor-stress: reactor " + reactor + ", variant " + variant + ", " + std::to_string(o.seconds) + " s, " +
          std::to_string(o.workers) + " workers x " + std::to_string(o.queues) + " queues, " +
          std::to_string(o.threads) + " io_contexts, " + std::to_string(o.rate) + " tasks/s, redis-server port " +
          std::to_string(server.port()) + "\n");

  counters k;
  stress::outcome r;
  {
    sagaflow::runtime rt({.threads = static_cast<std::size_t>(o.threads)});
    stress s(o, server.port(), k, rt, tap);
    r = s.run(server.log_file());
    // Coroutines that hung still use the objects of `s`: stop the threads before it goes.
    rt.stop();
    rt.join();
  }
  tap.restore();

  // Any link that failed under a connection we had not closed is a disconnect: the server is
  // never told to drop a client here, and its log says whether it did.
  const auto& run = r.run;
  const auto& end = r.shutdown;
  std::uint64_t not_server = run.client.lost + end.client.lost;
  bool ok = not_server == 0 && run.reconnections == 0 && run.long_lived_closed == 0 && r.drained && r.dead == 0 &&
            r.hung.empty();

  std::ostringstream text;
  text << "reactor-stress: reactor " << reactor << ", variant " << variant << ", " << std::fixed;
  text.precision(1);
  text << r.seconds << " s of load, " << o.workers << " workers x " << o.queues << " queues on " << o.threads
       << " io_contexts, " << r.expected_clients << " connections\n";
  text << "  tasks: enqueued " << k.enqueued.load() << " (enqueue failures " << k.enqueue_failures.load()
       << "), handler runs " << k.handler_runs.load() << "; workers: started " << r.started << ", succeeded "
       << r.succeeded << ", retried " << r.retried << ", recovered " << r.recovered << " (ghost took "
       << k.ghost_taken.load() << "), dead " << r.dead << ", failed to settle " << r.failed_to_settle << "; "
       << (r.drained ? "drained" : "NOT drained: " + std::to_string(r.left) + " left") << "\n";
  text << "  timers: started " << k.timers_started.load() << ", cancelled " << k.timers_cancelled.load()
       << "; shared timer cancelled " << k.shared_cancels.load() << " times ("
       << static_cast<std::uint64_t>(static_cast<double>(k.shared_cancels.load()) / r.seconds) << "/s), "
       << k.loop_commands.load() << " commands after wake-ups (" << k.loop_failures.load()
       << " failed); blocking reads " << k.blocker_reads.load() << " (" << k.blocker_failures.load() << " failed)";
  if (o.conn_churn) text << "; short-lived connections " << k.churned.load() << " (" << k.churn_failures.load() << " failed)";
  text << "\n";
  auto phase_text = [&](const char* name, const stress::phase& p) {
    text << "  " << name << ": client: connection lost " << p.client.lost << " (" << reasons_text(p.client.reasons)
         << "), reconnected " << p.client.reconnected << ", no reply in time " << p.client.no_reply
         << ", own connections reconnected " << p.own_reconnects << "; server: 'Client closed connection' "
         << p.server.client_closed;
    if (!p.server.closed_by.empty()) text << " (" << reasons_text(p.server.closed_by) << ")";
    text << ", reset by client " << p.server.client_reset << ", closed by server " << p.server.server_closed;
    if (&p == &run)
      text << ", new connections " << p.new_connections << " (reconnections " << p.reconnections
           << "; closed by a client that we had not closed: " << p.long_lived_closed << ")";
    text << "\n";
  };
  phase_text("during the run", run);
  phase_text("at shutdown", end);
  if (sqe_trace_available())
    text << "  io_uring entries: " << r.sqes.submitted << " submitted, " << r.sqes.cancels << " cancels; user_data left unset: "
         << r.sqes.unset << " (" << r.sqes.unset_cancels << " cancels), whose stale value named another socket's queue "
         << r.sqes.stale_other_io << ", the cancelled queue itself " << r.sqes.stale_own_io << ", an internal entry "
         << r.sqes.stale_internal << (o.clear_stale ? " (all set to 0 before submission)" : "") << "\n";
  if (!r.hung.empty()) {
    text << "  never resumed after stop (hung):";
    for (auto& h : r.hung) text << " " << h << ";";
    text << "\n";
  }
  for (auto& [what, first] : k.first_failures) text << "  first " << what << " failure: " << first << "\n";
  text << "  verdict: " << (ok ? "clean" : "NOT clean") << " (" << not_server << " disconnect(s) the server did not initiate)\n";

  std::ostringstream json;
  json << "{\"bench\":\"reactor-stress\",\"reactor\":\"" << reactor << "\",\"variant\":\"" << variant
       << "\",\"seconds\":" << o.seconds << ",\"enqueued\":" << k.enqueued.load()
       << ",\"handler_runs\":" << k.handler_runs.load() << ",\"drained\":" << (r.drained ? "true" : "false")
       << ",\"dead\":" << r.dead << ",\"failed_to_settle\":" << r.failed_to_settle
       << ",\"timers_started\":" << k.timers_started.load() << ",\"timers_cancelled\":" << k.timers_cancelled.load()
       << ",\"shared_timer_cancels\":" << k.shared_cancels.load()
       << ",\"run_connection_lost\":" << run.client.lost << ",\"run_reasons\":" << reasons_json(run.client.reasons)
       << ",\"run_reconnected\":" << run.client.reconnected << ",\"run_no_reply\":" << run.client.no_reply
       << ",\"run_server_client_closed\":" << run.server.client_closed
       << ",\"run_server_closed\":" << run.server.server_closed << ",\"run_new_connections\":" << run.new_connections << ",\"run_reconnections\":" << run.reconnections
       << ",\"run_long_lived_closed\":" << run.long_lived_closed
       << ",\"shutdown_connection_lost\":" << end.client.lost << ",\"shutdown_reasons\":" << reasons_json(end.client.reasons)
       << ",\"sqe_cancels\":" << r.sqes.cancels << ",\"sqe_unset\":" << r.sqes.unset
       << ",\"sqe_stale_other_io\":" << r.sqes.stale_other_io << ",\"hung\":" << r.hung.size() << ",\"clean\":" << (ok ? "true" : "false") << "}";
  std::cout << text.str() << "\n" << json.str() << std::endl;
  return ok ? 0 : 1;
}

}  // namespace sagaflow::bench
