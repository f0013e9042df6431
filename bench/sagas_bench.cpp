// sagaflow-bench sagas: the saga engine measured whole — sagas::client starting sagas, redis-server,
// one orchestrator in a process of its own ("sagas-orchestrator", this executable again) and, for
// remote steps, one task worker process ("sagas-worker") — next to redis-benchmark's pipelined
// XADD rate on the same private server, and the targets.
#include "sagas_bench.hpp"

#include "flags.hpp"
#include "programs.hpp"
#include "redis_process.hpp"

#include <sagaflow/engine/log.hpp>
#include <sagaflow/engine/runtime.hpp>
#include <sagaflow/engine/stop.hpp>
#include <sagaflow/sagas/saga.hpp>
#include <sagaflow/tasks/keys.hpp>
#include <sagaflow/tasks/worker.hpp>
#include <sagaflow/transport/commands.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace sagaflow::bench {

using namespace measure;

namespace {

namespace asio = boost::asio;
using testing::info_field;
using testing::redis_process;
using clock_type = std::chrono::steady_clock;
using json = boost::json::value;
using namespace std::chrono_literals;

constexpr std::string_view local_saga = "local3";
constexpr std::string_view remote_saga = "remote3";
constexpr std::string_view remote_queues[] = {"saga-s1", "saga-s2", "saga-s3"};
constexpr std::string_view remote_task = "noop";
constexpr std::string_view orchestrator_name = "sagaflow-bench-orchestrator";  // its connections' CLIENT SETNAME
constexpr std::string_view worker_name = "sagaflow-bench-sagas-worker";

// Targets from the issue; the table says for each whether the run met it.
constexpr double local3_target = 20'000;      // sagas/s, at least
constexpr double local3_aof_target = 15'000;  // sagas/s, at least
constexpr double remote3_target = 8'000;      // sagas/s, at least
constexpr double p99_target_ms = 5.0;         // below
constexpr double rss_target_mb = 100;         // below

// ============================================================================================
// The stats board: the orchestrator process's stats, in a file both processes map
// ============================================================================================

// Written by the orchestrator process only (its publisher, every millisecond), read by the
// parent. `finished` is stored last (release), so a reader that sees it sees the rest at least as
// new; `finished_at_ns` is when the orchestrator first saw that count.
struct board {
  std::atomic<std::uint64_t> started{0}, completed{0}, compensated{0}, compensation_failed{0}, parked{0},
      cancelled{0}, fenced{0}, writes{0};
  std::atomic<std::int64_t> finished_at_ns{0};
  std::atomic<std::uint64_t> finished{0};  // completed + compensated + compensation_failed + parked + cancelled
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "the board is shared between processes");

struct board_values {
  std::uint64_t started = 0, completed = 0, other_outcomes = 0, fenced = 0, writes = 0, finished = 0;
  std::int64_t finished_at_ns = 0;
};

class board_file {
 public:
  static std::filesystem::path path_for(std::uint64_t id) {
    return std::filesystem::temp_directory_path() / ("sagaflow-bench-board-" + std::to_string(id));
  }

  // The parent creates it (before the child starts); the child opens it.
  board_file(std::uint64_t id, bool create) : path_(path_for(id)), owner_(create) {
    fd_ = ::open(path_.c_str(), create ? O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC : O_RDWR | O_CLOEXEC, 0600);
    if (fd_ < 0) throw std::runtime_error("cannot open " + path_.string() + ": " + std::strerror(errno));
    if (create && ::ftruncate(fd_, sizeof(board)) != 0) {
      ::close(fd_);
      throw std::runtime_error("cannot size " + path_.string() + ": " + std::strerror(errno));
    }
    void* p = ::mmap(nullptr, sizeof(board), PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) {
      ::close(fd_);
      throw std::runtime_error("cannot map " + path_.string() + ": " + std::strerror(errno));
    }
    board_ = create ? new (p) board() : static_cast<board*>(p);
  }
  ~board_file() {
    ::munmap(board_, sizeof(board));
    ::close(fd_);
    if (owner_) ::unlink(path_.c_str());
  }
  board_file(const board_file&) = delete;
  board_file& operator=(const board_file&) = delete;

  board& get() noexcept { return *board_; }

  board_values read() const {
    board_values v;
    v.finished = board_->finished.load(std::memory_order_acquire);
    v.finished_at_ns = board_->finished_at_ns.load(std::memory_order_relaxed);
    v.started = board_->started.load(std::memory_order_relaxed);
    v.completed = board_->completed.load(std::memory_order_relaxed);
    v.other_outcomes = v.finished >= v.completed ? v.finished - v.completed : 0;
    v.fenced = board_->fenced.load(std::memory_order_relaxed);
    v.writes = board_->writes.load(std::memory_order_relaxed);
    return v;
  }

 private:
  std::filesystem::path path_;
  bool owner_;
  int fd_ = -1;
  board* board_ = nullptr;
};

// ============================================================================================
// The sagas
// ============================================================================================

sagas::definition local3_definition() {
  sagas::action act = [](const json& in) -> awaitable<json> { co_return in; };
  sagas::compensation undo = [](const json&, const json&) -> awaitable<void> { co_return; };
  std::vector<sagas::declared_step> steps;
  for (const char* name : {"reserve", "charge", "ship"}) steps.push_back({name, act, undo, {}});
  return sagas::sequence(std::string(local_saga), std::move(steps));
}

sagas::definition remote3_definition() {
  sagas::definition d;
  d.name = std::string(remote_saga);
  d.run = [](sagas::context& ctx) -> awaitable<json> {
    static const std::string names[] = {"reserve", "charge", "ship"};
    json value = ctx.input();
    for (std::size_t i = 0; i < 3; ++i) {
      sagas::remote_step where{.queue = remote_queues[i], .task = remote_task, .undo_task = {}};
      std::string name = names[i];
      json input = value;
      value = co_await ctx.remote(std::move(name), where, std::move(input));
    }
    co_return value;
  };
  return d;
}

struct process_options {
  std::uint64_t port = 6379;
  std::uint64_t concurrency = 1024;
  std::uint64_t board = 0;  // the stats board's id (orchestrator only)
};

// Runs `op` (an orchestrator or a worker) on a one-thread runtime until SIGTERM or SIGINT.
template <typename Run>
void run_until_signal(sagaflow::runtime& rt, Run start) {
  auto ex = rt.executor();
  sagaflow::stop_source stop;
  asio::signal_set signals(ex, SIGTERM, SIGINT);
  signals.async_wait([stop](const boost::system::error_code& ec, int) mutable {
    if (!ec) stop.request_stop();
  });
  auto finished = start(ex, stop);
  rt.start();
  std::exception_ptr failure;
  try {
    finished.get();
  } catch (...) {
    failure = std::current_exception();
  }
  rt.stop();
  rt.join();
  if (failure) std::rethrow_exception(failure);
}

// Copies the orchestrator's stats to the board every millisecond. On the orchestrator's own
// (single) thread, so reading its stats races with nothing.
awaitable<void> publish(const sagas::orchestrator& o, board& b, sagaflow::stop_source stop) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  std::uint64_t last_finished = 0;
  for (;;) {
    auto& s = o.stats();
    std::uint64_t finished = s.completed + s.compensated + s.compensation_failed + s.parked + s.cancelled;
    b.started.store(s.started, std::memory_order_relaxed);
    b.completed.store(s.completed, std::memory_order_relaxed);
    b.compensated.store(s.compensated, std::memory_order_relaxed);
    b.compensation_failed.store(s.compensation_failed, std::memory_order_relaxed);
    b.parked.store(s.parked, std::memory_order_relaxed);
    b.cancelled.store(s.cancelled, std::memory_order_relaxed);
    b.fenced.store(s.fenced, std::memory_order_relaxed);
    b.writes.store(s.writes, std::memory_order_relaxed);
    if (finished != last_finished) {
      b.finished_at_ns.store(unix_ns(), std::memory_order_relaxed);
      b.finished.store(finished, std::memory_order_release);
      last_finished = finished;
    }
    if (stop.stop_requested()) co_return;
    timer.expires_after(1ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
}

}  // namespace

int run_sagas_orchestrator(std::span<const std::string_view> args) {
  process_options o;
  const flag flags[] = {
      {"port", &o.port, 1, 65535, "redis-server port on 127.0.0.1"},
      {"concurrency", &o.concurrency, 1, 10'000'000, "orchestrator_options::concurrency (sagas run at once)"},
      {"board", &o.board, 0, UINT64_MAX, "id of the stats board file the parent created"},
  };
  if (!parse_flags("sagas-orchestrator", args, flags)) return 0;
  log::set_level(log::level::warn);  // the parent's stderr is the benchmark's progress report

  board_file shared(o.board, false);
  auto cfg = local_config(static_cast<std::uint16_t>(o.port), std::string(orchestrator_name));
  sagaflow::runtime rt({.threads = 1});
  sagas::orchestrator_options oo;
  oo.concurrency = static_cast<std::size_t>(o.concurrency);
  oo.grace = 5s;
  sagas::orchestrator orch(rt.executor(), cfg, oo);
  orch.add(local3_definition());
  orch.add(remote3_definition());
  run_until_signal(rt, [&](asio::any_io_executor ex, sagaflow::stop_source stop) {
    asio::co_spawn(ex, publish(orch, shared.get(), stop), asio::detached);
    return asio::co_spawn(ex, orch.run(stop), asio::use_future);
  });

  auto& s = orch.stats();
  std::cout << "started " << s.started << "\ncompleted " << s.completed << "\ncompensated " << s.compensated
            << "\ncompensation_failed " << s.compensation_failed << "\nparked " << s.parked << "\ncancelled "
            << s.cancelled << "\nfenced " << s.fenced << "\nwrites " << s.writes << "\n"
            << std::flush;
  return 0;
}

int run_sagas_worker(std::span<const std::string_view> args) {
  process_options o;
  o.concurrency = 512;
  const flag flags[] = {
      {"port", &o.port, 1, 65535, "redis-server port on 127.0.0.1"},
      {"concurrency", &o.concurrency, 1, 1'000'000, "worker_options::concurrency (handlers in flight)"},
  };
  if (!parse_flags("sagas-worker", args, flags)) return 0;
  log::set_level(log::level::warn);

  auto cfg = local_config(static_cast<std::uint16_t>(o.port), std::string(worker_name));
  sagaflow::runtime rt({.threads = 1});
  tasks::worker_options wo;
  wo.queues.clear();
  for (auto q : remote_queues) wo.queues.push_back(tasks::queue_config{.name = std::string(q), .share = 1});
  wo.concurrency = static_cast<std::size_t>(o.concurrency);
  tasks::worker worker(rt.executor(), cfg, wo);
  std::uint64_t noop = 0;  // handlers run on the worker's strand
  worker.handle(std::string(remote_task), [&noop](tasks::task_context&) -> awaitable<void> {
    ++noop;
    co_return;
  });
  run_until_signal(rt, [&](asio::any_io_executor ex, sagaflow::stop_source stop) {
    return asio::co_spawn(ex, worker.run(stop), asio::use_future);
  });
  auto& s = worker.stats();
  std::cout << "noop " << noop << "\nsucceeded " << s.succeeded.load() << "\ndead " << s.dead.load()
            << "\nfailed_to_settle " << s.failed_to_settle.load() << "\n"
            << std::flush;
  return 0;
}

// ============================================================================================
// The benchmark (parent) process
// ============================================================================================

namespace {

struct sagas_options {
  std::uint64_t sagas = 20'000;         // local sagas per round (plain and AOF)
  std::uint64_t remote_sagas = 10'000;  // remote sagas per round
  std::uint64_t inflight = 512;         // start() calls in flight (pipelined on one connection)
  std::uint64_t concurrency = 1024;     // the orchestrator's orchestrator_options::concurrency
  std::uint64_t worker_concurrency = 512;
  std::uint64_t latency_rate = 1000;    // sagas/s in the latency run
  std::uint64_t latency_seconds = 5;
  std::uint64_t rss_sagas = 10'000;     // remote sagas in flight for the RSS figure
  std::uint64_t repeat = 3;             // rounds of the throughput runs; the best is reported
  std::uint64_t reference_n = 1'000'000;  // redis-benchmark XADDs per round
  std::uint64_t aof = 1;                // 0: skip the appendonly server
};

// What one measured run did, and who used the CPU meanwhile (the two cores are shared by this
// process, the orchestrator, the worker and redis-server: the shares say which was the limit).
struct phase_result {
  std::string name;
  std::uint64_t sagas = 0;
  double seconds = 0;
  double start_seconds = 0;  // until the last start() returned
  double client_cpu = 0, orchestrator_cpu = 0, worker_cpu = 0, server_cpu = 0;
  double orchestrator_wait = 0, server_wait = 0;  // runnable but waiting for a CPU (schedstat)
  double commands_per_saga = 0;   // every Redis command, scripts' inner commands included
  double writes_per_saga = 0;     // the orchestrator's journal writes (orchestrator_stats::writes)
  std::string server_detail;      // redis-server's time per saga by command (INFO commandstats)
  double per_sec() const { return seconds > 0 ? static_cast<double>(sagas) / seconds : 0; }
};

void report(const phase_result& r) {
  std::fprintf(stderr, "  %-44s %7llu in %6.3f s = %8.0f /s (started in %.3f s)", r.name.c_str(),
               static_cast<unsigned long long>(r.sagas), r.seconds, r.per_sec(), r.start_seconds);
  if (r.seconds > 0)
    std::fprintf(stderr, "; CPU: client %3.0f%%, orchestrator %3.0f%%, worker %3.0f%%, redis-server %3.0f%%\n",
                 100 * r.client_cpu / r.seconds, 100 * r.orchestrator_cpu / r.seconds, 100 * r.worker_cpu / r.seconds,
                 100 * r.server_cpu / r.seconds);
  else
    std::fprintf(stderr, "\n");
  if (r.seconds > 0 && r.orchestrator_cpu > 0)
    std::fprintf(stderr, "      runnable but waiting for a CPU (other processes on the 2 cores): orchestrator %3.0f%%, "
                 "redis-server %3.0f%% of the time\n", 100 * r.orchestrator_wait / r.seconds, 100 * r.server_wait / r.seconds);
  if (r.sagas > 0 && r.orchestrator_cpu > 0)
    std::fprintf(stderr,
                 "      per saga: redis-server %.1f us CPU, %.1f commands, %.1f journal writes; orchestrator %.1f us "
                 "CPU; client %.1f us CPU\n",
                 1e6 * r.server_cpu / static_cast<double>(r.sagas), r.commands_per_saga, r.writes_per_saga,
                 1e6 * r.orchestrator_cpu / static_cast<double>(r.sagas),
                 1e6 * r.client_cpu / static_cast<double>(r.sagas));
  if (!r.server_detail.empty()) std::fprintf(stderr, "      redis-server per saga: %s\n", r.server_detail.c_str());
}

// One line of at most `max` characters, for a child's report or an error in the table.
std::string shorten(std::string text, std::size_t max) {
  for (auto& c : text)
    if (c == '\n') c = ' ';
  if (text.size() > max) text = text.substr(0, max - 3) + "...";
  return text;
}

void keep_best(phase_result& best, phase_result r) {
  if (r.per_sec() > best.per_sec()) best = std::move(r);
}

struct cpu_mark {
  double client = 0, orchestrator = 0, worker = 0, server = 0;
  double orchestrator_wait = 0, server_wait = 0;
  command_stats commands;
};

// A failed figure: why, as the table prints it.
struct figure_failure {
  std::string why;
};

// The parent's connections to one server: `control` for checks and INFO (never measured
// traffic), `producer` for the saga client.
struct session {
  sagaflow::runtime& rt;
  transport::config cfg;
  std::shared_ptr<transport::connection> control, producer;
  std::shared_ptr<sagas::client> client;
  pid_t orchestrator_pid = -1, worker_pid = -1, server_pid = -1;

  session(sagaflow::runtime& r, std::uint16_t port, pid_t server) : rt(r), cfg(local_config(port, "sagaflow-bench")), server_pid(server) {
    control = open();
    producer = open();
    client = std::make_shared<sagas::client>(producer, cfg);
  }
  ~session() {
    for (auto& c : {control, producer}) c->close();
  }

  std::shared_ptr<transport::connection> open() {
    auto c = transport::connection::create(rt.executor(), cfg);
    run_on(c->get_executor(), c->connect());
    return c;
  }
  transport::resp::value call(transport::request req) {
    auto c = control;
    return run_on(c->get_executor(), c->call(std::move(req)));
  }
  std::int64_t integer(transport::request req) {
    auto name = std::string(req.command_name(0));
    return transport::as_integer(call(std::move(req)), name);
  }
  std::string info(std::string_view section) {
    transport::request req;
    req.push("INFO", section);
    return transport::as_string(call(std::move(req)), "INFO");
  }
  std::string client_list() { return transport::as_string(call(transport::request().push("CLIENT", "LIST")), "CLIENT LIST"); }
  double server_cpu() {
    auto text = info("cpu");
    return std::stod(info_field(text, "used_cpu_user")) + std::stod(info_field(text, "used_cpu_sys"));
  }
  cpu_mark mark() {
    return {cpu_seconds(RUSAGE_SELF),
            orchestrator_pid > 0 ? cpu_seconds_of(orchestrator_pid) : 0,
            worker_pid > 0 ? cpu_seconds_of(worker_pid) : 0,
            server_cpu(),
            orchestrator_pid > 0 ? cpu_wait_seconds_of(orchestrator_pid) : 0,
            server_pid > 0 ? cpu_wait_seconds_of(server_pid) : 0,
            parse_commandstats(info("commandstats"))};
  }
  void charge(phase_result& r, const cpu_mark& before) {
    auto after = mark();
    r.client_cpu = after.client - before.client;
    r.orchestrator_cpu = after.orchestrator - before.orchestrator;
    r.worker_cpu = after.worker - before.worker;
    r.server_cpu = after.server - before.server;
    r.orchestrator_wait = after.orchestrator_wait - before.orchestrator_wait;
    r.server_wait = after.server_wait - before.server_wait;
    auto per = static_cast<double>(r.sagas);
    r.server_detail = top_commands(before.commands, after.commands, per, 8);
    r.commands_per_saga = calls_per(before.commands, after.commands, per);
  }

  // n client::start() calls of saga `name`, `inflight` at a time on the producer connection
  // (which pipelines them); returns when the last one returned.
  void start_bulk(std::string_view name, std::uint64_t n, std::uint64_t inflight) {
    std::atomic<std::int64_t> budget{static_cast<std::int64_t>(n)};
    std::atomic<std::uint64_t> started{0};
    std::vector<std::future<void>> loops;
    for (std::uint64_t i = 0; i < inflight; ++i)
      loops.push_back(asio::co_spawn(producer->get_executor(), starter(client, std::string(name), budget, started),
                                     asio::use_future));
    wait_all(loops);
    if (started.load() != n)
      throw std::runtime_error("started " + std::to_string(started.load()) + " of " + std::to_string(n) + " sagas");
  }

  static awaitable<void> starter(std::shared_ptr<sagas::client> client, std::string name,
                                 std::atomic<std::int64_t>& budget, std::atomic<std::uint64_t>& started) {
    const json input(1);
    for (;;) {
      if (claim(budget, 1) == 0) co_return;
      auto id = co_await client->start(name, input);
      if (id.empty()) throw std::runtime_error("client::start returned no id");
      started.fetch_add(1, std::memory_order_relaxed);
    }
  }
};

// The orchestrator process with its stats board.
class orchestrator_child {
 public:
  orchestrator_child(std::uint16_t port, std::uint64_t concurrency)
      : id_(static_cast<std::uint64_t>(::getpid()) * 1000 + next_id()), board_(id_, true),
        process_(command(port, concurrency, id_)) {}

  pid_t pid() const noexcept { return process_.pid(); }
  bool running() { return process_.running(); }
  board_values values() const { return board_.read(); }

  // Waits until its connection blocks reading the run stream, so that the first measured saga
  // does not wait for the orchestrator's start. Not fatal when it never shows (a reworked
  // orchestrator may read differently): the run then includes its start.
  void wait_ready(session& s) {
    try {
      wait_until_blocked([&s] { return s.client_list(); }, process_, orchestrator_name, "xreadgroup", 10s);
    } catch (const std::exception& e) {
      if (!process_.running()) throw;
      std::fprintf(stderr, "  (orchestrator readiness not seen: %s; going on)\n", e.what());
    }
  }

  // Waits until the orchestrator has finished `target` sagas in all (over its life); returns the
  // unix ns at which it saw that count. Throws after `limit`, saying how far it got.
  std::int64_t wait_finished(std::uint64_t target, std::chrono::milliseconds limit) {
    auto give_up = clock_type::now() + limit;
    for (std::uint64_t polls = 0;; ++polls) {
      auto v = board_.read();
      if (v.finished >= target) return v.finished_at_ns;
      if (polls % 100 == 0 && !process_.running())
        throw std::runtime_error("the orchestrator process died (wait status " + std::to_string(process_.exit_status()) +
                                 ") with " + std::to_string(v.finished) + " of " + std::to_string(target) +
                                 " sagas finished");
      if (clock_type::now() > give_up)
        throw std::runtime_error("only " + std::to_string(v.finished) + " of " + std::to_string(target) +
                                 " sagas finished within " + std::to_string(limit.count() / 1000) + " s (" +
                                 std::to_string(v.started) + " started by the orchestrator)");
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  }

  // Sagas the benchmark started for this orchestrator so far; a measured round first waits until
  // all of them finished, so that a late finish of the previous phase (the orchestrator may lag
  // behind what a client already sees, on loaded cores) is not counted in the next.
  std::uint64_t started_here = 0;
  void settle() { wait_finished(started_here, 60s); }

  // SIGTERM, then its report (its stats as it printed them).
  std::string stop() {
    process_.signal(SIGTERM);
    return process_.finish(30s);
  }

 private:
  // SAGAFLOW_BENCH_ORCHESTRATOR_PREFIX puts words before it, e.g. "valgrind --tool=massif" to see
  // what the orchestrator's memory holds (the figures are then valgrind's, not the orchestrator's).
  static std::vector<std::string> command(std::uint16_t port, std::uint64_t concurrency, std::uint64_t id) {
    std::vector<std::string> argv;
    if (const char* prefix = std::getenv("SAGAFLOW_BENCH_ORCHESTRATOR_PREFIX"); prefix && *prefix) {
      std::istringstream words(prefix);
      for (std::string w; words >> w;) argv.push_back(w);
    }
    for (std::string a : {self_executable(), std::string("sagas-orchestrator"), std::string("--port"), std::to_string(port),
                          std::string("--concurrency"), std::to_string(concurrency), std::string("--board"),
                          std::to_string(id)})
      argv.push_back(std::move(a));
    return argv;
  }
  static std::uint64_t next_id() {
    static std::uint64_t n = 0;
    return ++n;
  }
  std::uint64_t id_;
  board_file board_;
  child_process process_;
};

std::unique_ptr<child_process> start_worker(session& s, std::uint16_t port, const sagas_options& o) {
  auto w = std::make_unique<child_process>(std::vector<std::string>{self_executable(), "sagas-worker", "--port",
                                                                     std::to_string(port), "--concurrency",
                                                                     std::to_string(o.worker_concurrency)});
  wait_until_blocked([&s] { return s.client_list(); }, *w, worker_name, "xreadgroup", 30s);
  s.worker_pid = w->pid();
  return w;
}

// One round: n sagas of `saga` started (pipelined) and finished, from the first start() call to
// the orchestrator seeing the n-th finish. Every one must complete.
phase_result saga_round(session& s, orchestrator_child& orch, std::string name, std::string_view saga, std::uint64_t n,
                        const sagas_options& o) {
  orch.settle();
  auto base = orch.values();
  auto before = s.mark();
  auto t0 = unix_ns();
  orch.started_here += n;
  s.start_bulk(saga, n, o.inflight);
  auto started = unix_ns();
  auto end = orch.wait_finished(base.finished + n, 180s);
  auto after = orch.values();
  phase_result r{std::move(name), n, static_cast<double>(end - t0) / 1e9, static_cast<double>(started - t0) / 1e9};
  s.charge(r, before);
  r.writes_per_saga = static_cast<double>(after.writes - base.writes) / static_cast<double>(n);
  if (after.completed - base.completed != n)
    throw std::runtime_error(r.name + ": " + std::to_string(after.completed - base.completed) + " of " +
                             std::to_string(n) + " sagas completed; " +
                             std::to_string(after.other_outcomes - base.other_outcomes) + " ended otherwise");
  report(r);
  std::fprintf(stderr, "      after it: orchestrator VmRSS %.1f MB; redis-server used_memory %s, %s keys\n",
               proc_status_kb(orch.pid(), "VmRSS") / 1024, info_field(s.info("memory"), "used_memory_human").c_str(),
               std::to_string(s.integer(transport::request().push("DBSIZE"))).c_str());
  return r;
}

phase_result reference_xadd(session& s, const sagas_options& o, std::string label) {
  const std::string key = "sfbench:rb";
  s.call(transport::request().push("DEL", key));
  auto server_before = s.server_cpu();
  double children_before = cpu_seconds(RUSAGE_CHILDREN);
  auto start = clock_type::now();
  double rps = redis_benchmark({.port = s.cfg.port, .requests = o.reference_n, .pipeline = 64, .clients = 50,
                                .command = {"XADD", key, "*", "f", "v"}});
  double wall = std::chrono::duration<double>(clock_type::now() - start).count();
  phase_result r{std::move(label), o.reference_n, static_cast<double>(o.reference_n) / rps};
  // Over redis-benchmark's whole life (connect, warm-up), scaled to its measured time.
  r.client_cpu = (cpu_seconds(RUSAGE_CHILDREN) - children_before) * r.seconds / wall;
  r.server_cpu = (s.server_cpu() - server_before) * r.seconds / wall;
  s.call(transport::request().push("DEL", key));
  report(r);
  return r;
}

struct latency_result {
  std::vector<std::int64_t> samples_ns;  // sorted
  std::uint64_t failures = 0;
  double at(double q) const {  // nearest rank, in ms
    if (samples_ns.empty()) return 0;
    auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(samples_ns.size())));
    return static_cast<double>(samples_ns[std::clamp<std::size_t>(rank, 1, samples_ns.size()) - 1]) / 1e6;
  }
};

// One saga of the latency run: start() then wait() (a connection of its own, blocking on the
// journal), timed at the client.
awaitable<void> timed_saga(std::shared_ptr<sagas::client> client, latency_result& out) {
  const std::string name(local_saga);
  const json input(1);
  auto t0 = clock_type::now();
  auto id = co_await client->start(name, input);
  auto outcome = co_await client->wait(id, 30s);
  auto took = std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t0).count();
  if (!outcome || outcome->state != sagas::status::completed) {
    ++out.failures;
    co_return;
  }
  out.samples_ns.push_back(took);
}

// `count` sagas at `rate` per second on an absolute schedule (a late one does not push the later
// ones back), each its own coroutine: at this rate only a few are in flight.
awaitable<void> paced_sagas(std::shared_ptr<sagas::client> client, std::uint64_t rate, std::uint64_t count,
                            latency_result& out) {
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex);
  auto start = clock_type::now() + 10ms;
  auto period = std::chrono::nanoseconds(std::chrono::seconds(1)) / static_cast<std::int64_t>(rate);
  std::uint64_t in_flight = 0, errors = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    timer.expires_at(start + period * static_cast<std::int64_t>(i));
    co_await timer.async_wait(asio::use_awaitable);
    ++in_flight;
    asio::co_spawn(ex, timed_saga(client, out), [&in_flight, &errors](std::exception_ptr e) {
      --in_flight;
      if (e) ++errors;
    });
  }
  for (int waited = 0; in_flight > 0 && waited < 60'000; ++waited) co_await sagaflow::sleep_for(1ms);
  out.failures += errors + in_flight;
}

// The same schedule, but the outcome is seen by one poller for all sagas in flight (every 100 us,
// one pipeline of HGET <snapshot> status; at this rate a few are in flight) instead of a
// client::wait each, whose own connection per call costs the client and redis-server more than
// the saga does: what the engine takes, without the cost of the way a client usually waits.
struct polled_saga {
  std::string snapshot;  // sf:{saga:<id>} (docs/design.md, "Redis keys")
  clock_type::time_point t0;
};

struct polled_run {
  std::vector<polled_saga> pending;  // started, outcome not seen yet
  std::uint64_t starting = 0, errors = 0;
  bool scheduled_all = false, poller_done = false;
};

awaitable<void> start_polled(std::shared_ptr<sagas::client> client, polled_run& run) {
  const std::string name(local_saga);
  const json input(1);
  auto t0 = clock_type::now();
  auto id = co_await client->start(name, input);
  run.pending.push_back(polled_saga{"sf:{saga:" + id + "}", t0});
}

awaitable<void> poll_outcomes(std::shared_ptr<transport::connection> poll, polled_run& run, latency_result& out) {
  asio::steady_timer tick(co_await asio::this_coro::executor);
  while (!run.scheduled_all || run.starting > 0 || !run.pending.empty()) {
    if (!run.pending.empty()) {
      transport::request req;
      for (auto& p : run.pending) req.push("HGET", p.snapshot, "status");
      std::size_t asked = run.pending.size();
      auto replies = co_await poll->exec(std::move(req));
      auto now = clock_type::now();
      std::vector<polled_saga> still;
      for (std::size_t i = 0; i < asked; ++i) {
        if (i >= replies.size()) throw std::runtime_error("HGET status: missing replies");
        auto& r = replies[i];
        if (r.is_error()) throw std::runtime_error("HGET status: " + r.text);
        if (r.text.empty() || r.text == "running")
          still.push_back(std::move(run.pending[i]));
        else if (r.text == "completed")
          out.samples_ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(now - run.pending[i].t0).count());
        else
          ++out.failures;
      }
      for (std::size_t i = asked; i < run.pending.size(); ++i) still.push_back(std::move(run.pending[i]));  // started meanwhile
      run.pending = std::move(still);
    }
    tick.expires_after(100us);
    co_await tick.async_wait(asio::use_awaitable);
  }
}

awaitable<void> paced_polled(std::shared_ptr<sagas::client> client, std::shared_ptr<transport::connection> poll,
                             std::uint64_t rate, std::uint64_t count, latency_result& out) {
  auto ex = co_await asio::this_coro::executor;
  polled_run run;
  asio::co_spawn(ex, poll_outcomes(poll, run, out), [&run](std::exception_ptr e) {
    run.poller_done = true;
    if (e) ++run.errors;
  });
  asio::steady_timer timer(ex);
  auto start = clock_type::now() + 10ms;
  auto period = std::chrono::nanoseconds(std::chrono::seconds(1)) / static_cast<std::int64_t>(rate);
  for (std::uint64_t i = 0; i < count; ++i) {
    timer.expires_at(start + period * static_cast<std::int64_t>(i));
    co_await timer.async_wait(asio::use_awaitable);
    ++run.starting;
    asio::co_spawn(ex, start_polled(client, run), [&run](std::exception_ptr e) {
      --run.starting;
      if (e) ++run.errors;
    });
  }
  run.scheduled_all = true;
  for (int waited = 0; !run.poller_done && waited < 60'000; ++waited) co_await sagaflow::sleep_for(1ms);
  out.failures += run.errors + run.pending.size();
}

phase_result latency_run(session& s, const sagas_options& o, latency_result& latency, bool polled) {
  std::uint64_t count = o.latency_rate * o.latency_seconds;
  auto before = s.mark();
  auto start = clock_type::now();
  if (polled)
    run_on(s.producer->get_executor(), paced_polled(s.client, s.producer, o.latency_rate, count, latency));
  else
    run_on(s.producer->get_executor(), paced_sagas(s.client, o.latency_rate, count, latency));
  phase_result r{"latency run (" + std::to_string(o.latency_rate) + " sagas/s, " +
                     (polled ? "start, one poller for all" : "start + wait each") + ")",
                 count, std::chrono::duration<double>(clock_type::now() - start).count()};
  s.charge(r, before);
  report(r);
  std::sort(latency.samples_ns.begin(), latency.samples_ns.end());
  if (latency.failures > 0)
    throw std::runtime_error(std::to_string(latency.failures) + " of " + std::to_string(count) +
                             " latency sagas did not complete");
  std::fprintf(stderr, "  latency: %zu samples, p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms\n",
               latency.samples_ns.size(), latency.at(0.5), latency.at(0.9), latency.at(0.99), latency.at(0.999),
               latency.at(1.0));
  return r;
}

struct rss_result {
  double hwm_mb = 0, rss_mb = 0;
  double dispatch_seconds = 0;  // until every saga waited on its first remote step
  double drain_seconds = 0;     // from the worker's start until all finished
  std::int64_t clients = 0;     // connected_clients while they waited
};

// `rss_sagas` remote sagas in a fresh orchestrator process while no worker consumes their tasks:
// once every one has dispatched its first step (the first queue holds that many tasks) and the
// orchestrator is idle, they all wait on it; the orchestrator's VmHWM then is its peak with that
// many in flight. A worker then lets them finish.
rss_result rss_run(session& s, std::uint16_t port, const sagas_options& o) {
  rss_result out;
  // The default configuration: a saga waiting for a reply does not count against concurrency,
  // and up to max_waiting (10,000) waiting sagas stay in memory.
  orchestrator_child orch(port, o.concurrency);
  s.orchestrator_pid = orch.pid();
  orch.wait_ready(s);
  const std::string first_queue = tasks::queue_keys("sf", remote_queues[0]).streams[static_cast<std::size_t>(tasks::priority::normal)];
  auto base = s.integer(transport::request().push("XLEN", first_queue));
  auto rejected_before = std::stoll(info_field(s.info("stats"), "rejected_connections"));
  auto t0 = clock_type::now();
  s.start_bulk(remote_saga, o.rss_sagas, o.inflight);
  std::int64_t waiting = 0;
  for (;;) {
    waiting = s.integer(transport::request().push("XLEN", first_queue)) - base;
    if (waiting >= static_cast<std::int64_t>(o.rss_sagas)) break;
    auto rejected = std::stoll(info_field(s.info("stats"), "rejected_connections")) - rejected_before;
    if (clock_type::now() - t0 > 60s || !orch.running())
      throw std::runtime_error("only " + std::to_string(waiting) + " of " + std::to_string(o.rss_sagas) +
                               " sagas reached their remote step " +
                               (orch.running() ? std::string("within 60 s") : std::string("before the orchestrator died")) +
                               " (redis-server rejected " + std::to_string(rejected) + " connections)");
    std::this_thread::sleep_for(10ms);
  }
  out.dispatch_seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  // A dispatched saga may still be setting up its wait (today: connecting a connection of its
  // own): they all wait once the orchestrator is idle (under 10 ms of CPU in 200 ms).
  for (auto settle_until = clock_type::now() + 30s; clock_type::now() < settle_until;) {
    double before = cpu_seconds_of(orch.pid());
    std::this_thread::sleep_for(200ms);
    if (cpu_seconds_of(orch.pid()) - before < 0.010) break;
  }
  out.hwm_mb = proc_status_kb(orch.pid(), "VmHWM") / 1024;
  out.rss_mb = proc_status_kb(orch.pid(), "VmRSS") / 1024;
  out.clients = std::stoll(info_field(s.info("clients"), "connected_clients"));
  auto rejected = std::stoll(info_field(s.info("stats"), "rejected_connections")) - rejected_before;
  auto v = orch.values();
  std::fprintf(stderr,
               "  %llu remote sagas waiting on step 1 after %.3f s: orchestrator VmHWM %.1f MB, VmRSS %.1f MB; "
               "redis-server: %lld clients connected, %lld connections rejected; orchestrator: %llu started, %llu "
               "finished\n",
               static_cast<unsigned long long>(o.rss_sagas), out.dispatch_seconds, out.hwm_mb, out.rss_mb,
               static_cast<long long>(out.clients), static_cast<long long>(rejected),
               static_cast<unsigned long long>(v.started), static_cast<unsigned long long>(v.finished));
  // Why the figure cannot stand, if it cannot: kept while the sagas are let finish.
  std::string problem;
  if (rejected > 0) {
    auto maxclients = s.call(transport::request().push("CONFIG", "GET", "maxclients"));
    problem = "redis-server refused " + std::to_string(rejected) + " connections (maxclients " +
              (maxclients.elements.size() == 2 ? maxclients.elements[1].text : std::string("?")) + ", " +
              std::to_string(out.clients) + " connected) while " + std::to_string(o.rss_sagas) +
              " sagas waited on a remote step; orchestrator VmHWM then " + fixed(out.hwm_mb, 1) + " MB";
  }
  if (v.finished > 0)
    problem += std::string(problem.empty() ? "" : "; ") + std::to_string(v.finished) +
               " saga(s) finished before any of their tasks ran";
  auto drain_start = clock_type::now();
  try {
    auto worker = start_worker(s, port, o);
    try {
      orch.wait_finished(o.rss_sagas, 120s);
      out.drain_seconds = std::chrono::duration<double>(clock_type::now() - drain_start).count();
      std::fprintf(stderr, "  then finished in %.3f s once a worker consumed their tasks (VmHWM now %.1f MB)\n",
                   out.drain_seconds, proc_status_kb(orch.pid(), "VmHWM") / 1024);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "  then did not all finish: %s\n", e.what());
    }
    worker->signal(SIGTERM);
    std::fprintf(stderr, "  worker: %s\n", shorten(worker->finish(30s), 200).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "  the worker that would let them finish failed: %s\n", e.what());
    if (problem.empty()) problem = std::string("letting them finish failed: ") + e.what();
  }
  s.worker_pid = -1;
  try {
    std::fprintf(stderr, "  orchestrator: %s\n", shorten(orch.stop(), 300).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "  orchestrator did not stop cleanly: %s\n", e.what());
  }
  s.orchestrator_pid = -1;
  if (!problem.empty()) throw std::runtime_error(problem);
  return out;
}

// Runs `measure`; a failure is kept as the figure's reason and the run goes on.
template <typename F>
std::optional<figure_failure> attempt(std::string_view what, F measure) {
  try {
    measure();
    return std::nullopt;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "  %s FAILED: %s\n", std::string(what).c_str(), e.what());
    return figure_failure{e.what()};
  }
}

}  // namespace

int run_sagas_bench(std::span<const std::string_view> args) {
  sagas_options o;
  const flag flags[] = {
      {"sagas", &o.sagas, 1, 10'000'000, "local sagas per throughput round (plain and appendonly)"},
      {"remote-sagas", &o.remote_sagas, 1, 10'000'000, "remote sagas per throughput round"},
      {"inflight", &o.inflight, 1, 100'000, "client::start() calls in flight (one pipelined connection)"},
      {"concurrency", &o.concurrency, 1, 10'000'000, "the orchestrator's orchestrator_options::concurrency"},
      {"worker-concurrency", &o.worker_concurrency, 1, 1'000'000, "the remote steps' worker's concurrency"},
      {"latency-rate", &o.latency_rate, 1, 100'000, "sagas per second in the latency run"},
      {"latency-seconds", &o.latency_seconds, 1, 600, "length of the latency run"},
      {"rss-sagas", &o.rss_sagas, 1, 10'000'000, "remote sagas in flight for the orchestrator RSS figure"},
      {"repeat", &o.repeat, 1, 20, "rounds of the throughput runs; the best of each is reported"},
      {"reference-n", &o.reference_n, 1, 100'000'000, "redis-benchmark XADDs per round"},
      {"aof", &o.aof, 0, 1, "1: also measure against a redis-server with appendonly yes, appendfsync everysec"},
  };
  if (!parse_flags("sagas", args, flags)) return 0;

  phase_result reference, reference_aof, local, local_aof, remote, latency_phase;
  latency_result latency, polled;  // seen by client::wait each, by one poller for all
  rss_result rss;
  std::optional<figure_failure> local_failed, aof_failed, remote_failed, latency_failed, polled_failed, rss_failed;
  std::string version;
  sagaflow::runtime rt({.threads = 1});
  rt.start();
  {
    // Declared first, destroyed last: the server outlives the processes and every connection.
    redis_process server;
    session s(rt, server.port(), server.pid());
    version = info_field(s.info("server"), "redis_version");
    std::fprintf(stderr,
                 "sagaflow-bench sagas: redis-server %s on 127.0.0.1:%u; client 1 thread, reactor %s; orchestrator "
                 "process (concurrency %llu); remote steps: a worker process on 3 queues (concurrency %llu)\n",
                 version.c_str(), static_cast<unsigned>(server.port()), std::string(sagaflow::runtime::backend()).c_str(),
                 static_cast<unsigned long long>(o.concurrency), static_cast<unsigned long long>(o.worker_concurrency));
    {
      orchestrator_child orch(server.port(), o.concurrency);
      s.orchestrator_pid = orch.pid();
      orch.wait_ready(s);
      // The rounds alternate between redis-benchmark and us, so that load from other processes on
      // the two cores hits both alike; the best round of each is kept.
      for (std::uint64_t round = 1; round <= o.repeat; ++round) {
        std::fprintf(stderr, "round %llu of %llu\n", static_cast<unsigned long long>(round),
                     static_cast<unsigned long long>(o.repeat));
        keep_best(reference, reference_xadd(s, o, "redis-benchmark XADD -P 64 -c 50"));
        if (!local_failed)
          local_failed = attempt("local3", [&] {
            keep_best(local, saga_round(s, orch, "local3 (3 local no-op steps)", local_saga, o.sagas, o));
          });
      }
      orch.started_here += o.latency_rate * o.latency_seconds;
      latency_failed = attempt("latency", [&] { latency_phase = latency_run(s, o, latency, false); });
      orch.started_here += o.latency_rate * o.latency_seconds;
      polled_failed = attempt("latency (one poller)", [&] { latency_run(s, o, polled, true); });
      remote_failed = attempt("remote3", [&] {
        auto worker = start_worker(s, server.port(), o);
        for (std::uint64_t round = 1; round <= o.repeat; ++round)
          keep_best(remote, saga_round(s, orch, "remote3 (3 remote no-op steps)", remote_saga, o.remote_sagas, o));
        worker->signal(SIGTERM);
        std::fprintf(stderr, "  worker: %s\n", shorten(worker->finish(30s), 200).c_str());
        s.worker_pid = -1;
      });
      s.worker_pid = -1;
      try {
        std::fprintf(stderr, "  orchestrator: %s\n", shorten(orch.stop(), 300).c_str());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "  orchestrator did not stop cleanly: %s\n", e.what());
      }
      s.orchestrator_pid = -1;
    }
    rss_failed = attempt("orchestrator RSS", [&] { rss = rss_run(s, server.port(), o); });
  }
  if (o.aof) {
    redis_process server({"--appendonly", "yes", "--appendfsync", "everysec"});
    session s(rt, server.port(), server.pid());
    std::fprintf(stderr, "appendonly yes, appendfsync everysec: redis-server on 127.0.0.1:%u\n",
                 static_cast<unsigned>(server.port()));
    aof_failed = attempt("local3 appendonly", [&] {
      orchestrator_child orch(server.port(), o.concurrency);
      s.orchestrator_pid = orch.pid();
      orch.wait_ready(s);
      for (std::uint64_t round = 1; round <= o.repeat; ++round) {
        keep_best(reference_aof, reference_xadd(s, o, "redis-benchmark XADD -P 64 -c 50 (AOF)"));
        keep_best(local_aof, saga_round(s, orch, "local3, appendonly everysec", local_saga, o.sagas, o));
      }
      orch.stop();
      s.orchestrator_pid = -1;
    });
  } else {
    aof_failed = figure_failure{"not run (--aof 0)"};
  }
  rt.stop();
  rt.join();

  // Printed after the servers and the processes are gone, so that the JSON object is the last line.
  const double ref = reference.per_sec();
  struct row {
    std::string metric, value, target;
    bool met;
    double reference;  // 0: not a rate
    double figure;
    const std::optional<figure_failure>* failed;
  };
  const std::string lat = " at " + std::to_string(o.latency_rate) + " sagas/s";
  const row rows[] = {
      {"local3_per_sec: " + std::to_string(o.sagas) + " local 3-step sagas", std::to_string(std::llround(local.per_sec())) + " /s",
       ">= " + std::to_string(std::llround(local3_target)) + " /s", local.per_sec() >= local3_target, ref, local.per_sec(),
       &local_failed},
      {"local3_aof_per_sec: the same, appendonly everysec", std::to_string(std::llround(local_aof.per_sec())) + " /s",
       ">= " + std::to_string(std::llround(local3_aof_target)) + " /s", local_aof.per_sec() >= local3_aof_target,
       reference_aof.per_sec(), local_aof.per_sec(), &aof_failed},
      {"remote3_per_sec: " + std::to_string(o.remote_sagas) + " remote 3-step sagas",
       std::to_string(std::llround(remote.per_sec())) + " /s", ">= " + std::to_string(std::llround(remote3_target)) + " /s",
       remote.per_sec() >= remote3_target, ref, remote.per_sec(), &remote_failed},
      {"latency_p50_ms: start to client::wait's outcome" + lat, fixed(latency.at(0.5), 3) + " ms", "n/a", true, 0, 0, &latency_failed},
      {"latency_p99_ms: start to client::wait's outcome" + lat, fixed(latency.at(0.99), 3) + " ms", "< " + fixed(p99_target_ms, 1) + " ms",
       latency.at(0.99) < p99_target_ms, 0, 0, &latency_failed},
      {"  the same, outcome seen by one poller: p50", fixed(polled.at(0.5), 3) + " ms", "n/a", true, 0, 0, &polled_failed},
      {"  the same, outcome seen by one poller: p99", fixed(polled.at(0.99), 3) + " ms", "< " + fixed(p99_target_ms, 1) + " ms",
       polled.at(0.99) < p99_target_ms, 0, 0, &polled_failed},
      {"orchestrator_rss_mb: VmHWM, " + std::to_string(o.rss_sagas) + " sagas in flight", fixed(rss.hwm_mb, 1) + " MB",
       "< " + fixed(rss_target_mb, 0) + " MB", rss.hwm_mb < rss_target_mb, 0, 0, &rss_failed},
  };
  std::ostringstream table;
  char line[512];
  std::snprintf(line, sizeof line, "%-64s | %12s | %12s | %-6s | %-25s | %s\n", "metric", "sagaflow", "target", "met",
                "redis-benchmark XADD P=64", "of reference");
  table << line << std::string(64, '-') << "-|-" << std::string(12, '-') << "-|-" << std::string(12, '-') << "-|-"
        << std::string(6, '-') << "-|-" << std::string(25, '-') << "-|-" << std::string(12, '-') << "\n";
  std::string notes;
  bool any_failed = false;
  for (auto& r : rows) {
    bool failed = r.failed->has_value();
    any_failed = any_failed || failed;
    std::string ref_text = r.reference > 0 ? std::to_string(std::llround(r.reference)) + " /s" : "n/a";
    std::string share = r.reference > 0 && !failed ? fixed(100 * r.figure / r.reference, 2) + " %" : "n/a";
    std::snprintf(line, sizeof line, "%-64s | %12s | %12s | %-6s | %-25s | %s\n", r.metric.c_str(),
                  failed ? "FAILED" : r.value.c_str(), r.target.c_str(), failed ? "failed" : (r.met ? "yes" : "NO"),
                  ref_text.c_str(), share.c_str());
    table << line;
    if (failed) notes += "  " + r.metric.substr(0, r.metric.find(':')) + " failed: " + shorten((*r.failed)->why, 400) + "\n";
  }
  std::cout << "\nRedis " << version << "; throughput rows: best of " << o.repeat << " rounds; orchestrator: 1 process, "
            << "concurrency " << o.concurrency << "; remote steps: 1 worker process on 3 queues; client, orchestrator "
            << "and worker: 1 thread each, reactor " << sagaflow::runtime::backend() << "\n"
            << table.str() << notes << "\n";
  auto number = [](bool failed, std::string text) { return failed ? std::string("null") : text; };
  std::cout << R"({"bench":"sagas","local3_per_sec":)" << number(local_failed.has_value(), std::to_string(std::llround(local.per_sec())))
            << R"(,"local3_aof_per_sec":)" << number(aof_failed.has_value(), std::to_string(std::llround(local_aof.per_sec())))
            << R"(,"remote3_per_sec":)" << number(remote_failed.has_value(), std::to_string(std::llround(remote.per_sec())))
            << R"(,"latency_p50_ms":)" << number(latency_failed.has_value(), fixed(latency.at(0.5), 3))
            << R"(,"latency_p99_ms":)" << number(latency_failed.has_value(), fixed(latency.at(0.99), 3))
            << R"(,"orchestrator_rss_mb":)" << number(rss_failed.has_value(), fixed(rss.hwm_mb, 1))
            << R"(,"redis_benchmark_xadd_per_sec":)" << std::llround(ref) << "}" << std::endl;
  return any_failed ? 1 : 0;
}

}  // namespace sagaflow::bench
