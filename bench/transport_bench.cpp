// sagaflow-bench transport: pipelined XADD and XREADGROUP+XACK throughput of
// sagaflow::transport::connection, next to redis-benchmark's XADD figures on the same private server.
#include "transport_bench.hpp"

#include "flags.hpp"
#include "programs.hpp"
#include "redis_process.hpp"

#include <sagaflow/engine/runtime.hpp>
#include <sagaflow/transport/commands.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <future>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace sagaflow::bench {

namespace {

namespace asio = boost::asio;
using measure::cpu_seconds;
using measure::wait_all;
using testing::info_field;
using testing::redis_process;
using clock_type = std::chrono::steady_clock;

struct transport_options {
  std::uint64_t n = 1'000'000;
  std::uint64_t pipeline = 64;
  std::uint64_t inflight = 32;     // requests in flight per connection in the XADD runs
  std::uint64_t readers = 4;       // concurrent XREADGROUP+XACK loops on the reading connection
  std::uint64_t read_count = 1000;
  std::uint64_t threads = 1;       // client io_contexts; Redis needs the other core
  std::uint64_t repeat = 3;
};

// redis-benchmark's unpipelined run is ~20x slower; this keeps it to about a second.
constexpr std::uint64_t unpipelined_cap = 100'000;
constexpr std::string_view group_name = "sfbench";

// Runs `op` on `ex` (a connection's strand) and waits for it from this, non-runtime, thread.
template <typename Executor, typename T>
T run_on(const Executor& ex, awaitable<T> op) {
  return asio::co_spawn(ex, std::move(op), asio::use_future).get();
}

awaitable<std::string> info(transport::connection& c, std::string_view section) {
  co_return transport::as_string(co_await c.call("INFO", section), "INFO");
}

// CPU time redis-server has used so far: tells whether a run was limited by the server or by
// the client sharing the same two cores.
awaitable<double> server_cpu_seconds(transport::connection& c) {
  auto text = co_await info(c, "cpu");
  co_return std::stod(info_field(text, "used_cpu_user")) + std::stod(info_field(text, "used_cpu_sys"));
}

struct phase_result {
  std::string name;
  std::uint64_t ops = 0;
  double seconds = 0;
  double client_cpu = 0;  // CPU seconds of this process (or of redis-benchmark) during the run
  double server_cpu = 0;  // CPU seconds of redis-server during the run
  double per_sec() const { return seconds > 0 ? static_cast<double>(ops) / seconds : 0; }
};

void report(const phase_result& r) {
  std::fprintf(stderr, "  %-44s %9llu ops in %6.3f s = %9.0f ops/s; CPU: client %3.0f%%, redis-server %3.0f%%\n",
               r.name.c_str(), static_cast<unsigned long long>(r.ops), r.seconds, r.per_sec(),
               100 * r.client_cpu / r.seconds, 100 * r.server_cpu / r.seconds);
}

// The session every phase shares: the runtime, the server's address and the connections, opened
// once and closed at the end. `control` (INFO, DEL, XPENDING) never carries measured traffic.
struct session {
  sagaflow::runtime& rt;
  transport::config cfg;
  std::shared_ptr<transport::connection> control, first, second;

  template <typename T>
  T control_run(awaitable<T> op) { return run_on(control->get_executor(), std::move(op)); }

  std::shared_ptr<transport::connection> open() {
    auto c = transport::connection::create(rt.executor(), cfg);
    run_on(c->get_executor(), c->connect());
    return c;
  }

  double server_cpu() {
    auto c = control;
    return control_run([c]() -> awaitable<double> { co_return co_await server_cpu_seconds(*c); }());
  }

  void del(std::string key) {
    auto c = control;
    control_run([c, key]() -> awaitable<void> { co_await c->call("DEL", key); }());
  }

  ~session() {
    for (auto& c : {control, first, second})
      if (c) c->close();
  }

  std::int64_t xlen(std::string key) {
    auto c = control;
    return control_run([c, key]() -> awaitable<std::int64_t> { co_return co_await transport::xlen(*c, key); }());
  }
};

// Takes up to `want` commands from the shared budget; 0 when it is spent.
std::uint64_t claim(std::atomic<std::int64_t>& budget, std::uint64_t want) {
  auto before = budget.fetch_sub(static_cast<std::int64_t>(want), std::memory_order_relaxed);
  if (before <= 0) return 0;
  return std::min<std::uint64_t>(static_cast<std::uint64_t>(before), want);
}

// One of `inflight` loops per connection: each keeps one request of up to `pipeline` XADDs in
// flight, so the connection always has the next requests queued while replies come back.
awaitable<void> xadd_worker(std::shared_ptr<transport::connection> conn, std::string key,
                            std::atomic<std::int64_t>& budget, std::uint64_t pipeline,
                            std::atomic<std::uint64_t>& added) {
  const transport::field_view fields[] = {{"f", "v"}};
  for (;;) {
    auto take = claim(budget, pipeline);
    if (take == 0) co_return;
    // Built per request, as an application would: serialization is part of what we measure.
    transport::request req;
    for (std::uint64_t i = 0; i < take; ++i) transport::add_xadd(req, key, fields);
    auto replies = co_await conn->exec(std::move(req));
    if (replies.size() != take) throw std::runtime_error("XADD: " + std::to_string(replies.size()) + " replies for " + std::to_string(take) + " commands");
    for (auto& r : replies)
      if (!r.is_string()) throw std::runtime_error("XADD failed: " + r.text);
    added.fetch_add(take, std::memory_order_relaxed);
  }
}

phase_result xadd_phase(session& s, std::string name, const std::string& key, std::uint64_t n,
                        std::uint64_t pipeline, std::uint64_t inflight, std::size_t connections) {
  s.del(key);
  std::vector<std::shared_ptr<transport::connection>> conns{s.first};
  if (connections > 1) conns.push_back(s.second);
  std::atomic<std::int64_t> budget{static_cast<std::int64_t>(n)};
  std::atomic<std::uint64_t> added{0};
  std::vector<std::future<void>> workers;

  double server_before = s.server_cpu(), client_before = cpu_seconds(RUSAGE_SELF);
  auto start = clock_type::now();
  for (auto& c : conns)
    for (std::uint64_t i = 0; i < inflight; ++i)
      workers.push_back(asio::co_spawn(c->get_executor(), xadd_worker(c, key, budget, pipeline, added), asio::use_future));
  wait_all(workers);
  phase_result r{std::move(name), n, std::chrono::duration<double>(clock_type::now() - start).count()};
  r.client_cpu = cpu_seconds(RUSAGE_SELF) - client_before;
  r.server_cpu = s.server_cpu() - server_before;

  auto len = s.xlen(key);
  if (added.load() != n || len != static_cast<std::int64_t>(n))
    throw std::runtime_error(r.name + ": expected " + std::to_string(n) + " entries, added " +
                             std::to_string(added.load()) + ", XLEN says " + std::to_string(len));
  report(r);
  return r;
}

struct read_ack_counts {
  std::atomic<std::uint64_t> consumed{0};
  std::atomic<std::uint64_t> acked{0};
};

// One consumer of the group: every request acknowledges the previous batch and reads the next
// one (XACK + XREADGROUP in one pipeline), so each batch costs one round trip.
awaitable<void> read_ack_worker(std::shared_ptr<transport::connection> conn, std::string key, std::string consumer,
                                std::uint64_t count, read_ack_counts& counts) {
  const transport::stream_offset from[] = {{key, ">"}};
  std::vector<std::string> to_ack;
  for (;;) {
    transport::request req;
    if (!to_ack.empty()) transport::add_xack(req, key, group_name, to_ack);
    transport::add_xreadgroup(req, group_name, consumer, from, {.count = static_cast<std::size_t>(count)});
    auto replies = co_await conn->exec(std::move(req));
    if (replies.size() != (to_ack.empty() ? 1u : 2u))
      throw std::runtime_error("XACK+XREADGROUP: " + std::to_string(replies.size()) + " replies");
    for (std::size_t i = 0; i < replies.size(); ++i)
      if (replies[i].is_error())
        throw std::runtime_error(std::string(i + 1 == replies.size() ? "XREADGROUP" : "XACK") + " failed: " + replies[i].text);
    if (!to_ack.empty()) counts.acked.fetch_add(static_cast<std::uint64_t>(transport::as_integer(replies[0], "XACK")));
    auto batches = transport::decode_stream_batches(std::move(replies.back()));
    to_ack.clear();
    for (auto& b : batches)
      for (auto& e : b.entries) {
        if (e.fields.size() != 1 || e.fields[0].first != "f" || e.fields[0].second != "v")
          throw std::runtime_error("XREADGROUP: entry " + e.id + " does not hold f=v");
        to_ack.push_back(std::move(e.id));
      }
    // Nothing new: every entry was delivered (all were added before), and the previous batch
    // was acknowledged by this very request.
    if (to_ack.empty()) co_return;
    counts.consumed.fetch_add(to_ack.size(), std::memory_order_relaxed);
  }
}

phase_result read_ack_phase(session& s, std::string name, const std::string& key, std::uint64_t n,
                            std::uint64_t readers, std::uint64_t count) {
  auto control = s.control;
  s.control_run([control, key]() -> awaitable<void> {
    co_await transport::xgroup_create(*control, key, group_name, "0", false);
  }());
  auto conn = s.first;
  read_ack_counts counts;
  std::vector<std::future<void>> workers;

  double server_before = s.server_cpu(), client_before = cpu_seconds(RUSAGE_SELF);
  auto start = clock_type::now();
  for (std::uint64_t i = 0; i < readers; ++i)
    workers.push_back(asio::co_spawn(conn->get_executor(),
                                     read_ack_worker(conn, key, "reader-" + std::to_string(i), count, counts),
                                     asio::use_future));
  wait_all(workers);
  phase_result r{std::move(name), counts.consumed.load(), std::chrono::duration<double>(clock_type::now() - start).count()};
  r.client_cpu = cpu_seconds(RUSAGE_SELF) - client_before;
  r.server_cpu = s.server_cpu() - server_before;

  auto pending = s.control_run([control, key]() -> awaitable<transport::pending_summary> {
    co_return co_await transport::xpending(*control, key, group_name);
  }());
  if (counts.consumed.load() != n || counts.acked.load() != n || pending.count != 0)
    throw std::runtime_error(r.name + " check failed: consumed " + std::to_string(counts.consumed.load()) + " of " +
                             std::to_string(n) + ", acknowledged " + std::to_string(counts.acked.load()) +
                             ", still pending (XPENDING) " + std::to_string(pending.count));
  report(r);
  return r;
}

phase_result redis_benchmark_phase(session& s, std::string name, std::uint64_t n, std::size_t pipeline,
                                   std::size_t clients) {
  const std::string key = "sfbench:rb";
  s.del(key);
  double server_before = s.server_cpu(), client_before = cpu_seconds(RUSAGE_CHILDREN);
  auto start = clock_type::now();
  double rps = redis_benchmark({.port = s.cfg.port, .requests = n, .pipeline = pipeline, .clients = clients,
                                .command = {"XADD", key, "*", "f", "v"}});
  double wall = std::chrono::duration<double>(clock_type::now() - start).count();
  phase_result r{std::move(name), n, static_cast<double>(n) / rps};
  // redis-benchmark's CPU over its whole life (connect, warm-up) is the best we can get.
  r.client_cpu = (cpu_seconds(RUSAGE_CHILDREN) - client_before) * r.seconds / wall;
  r.server_cpu = (s.server_cpu() - server_before) * r.seconds / wall;
  // redis-benchmark completes its last pipelines, so it may add up to -P entries per client more.
  auto len = static_cast<std::uint64_t>(s.xlen(key));
  if (len < n || len >= n + pipeline * clients)
    throw std::runtime_error("redis-benchmark was asked for " + std::to_string(n) + " XADDs; the stream holds " +
                             std::to_string(len));
  s.del(key);
  report(r);
  return r;
}

struct transport_results {
  phase_result rb_pipelined, rb_single;          // redis-benchmark, -P pipeline and -P 1
  phase_result xadd, xadd_two, xadd_single, read_ack;
};

void keep_best(phase_result& best, phase_result r) {
  if (r.per_sec() > best.per_sec()) best = std::move(r);
}

std::string ops(double per_sec) { return std::to_string(std::llround(per_sec)); }

std::string ratio(double ours, double theirs) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.2f", ours / theirs);
  return buf;
}

}  // namespace

int run_transport_bench(std::span<const std::string_view> args) {
  transport_options o;
  const flag flags[] = {
      {"n", &o.n, 1, 100'000'000, "XADDs per run, and entries read back and acknowledged"},
      {"pipeline", &o.pipeline, 1, 100'000, "commands per request (redis-benchmark -P for the reference)"},
      {"inflight", &o.inflight, 1, 4096, "requests in flight per connection (concurrent coroutines)"},
      {"readers", &o.readers, 1, 256, "concurrent XREADGROUP+XACK loops"},
      {"read-count", &o.read_count, 1, 100'000, "XREADGROUP COUNT"},
      {"threads", &o.threads, 1, 64, "client threads (io_contexts)"},
      {"repeat", &o.repeat, 1, 20, "rounds of the headline runs; the best of each is reported"},
  };
  if (!parse_flags("transport", args, flags)) return 0;

  transport_results best;
  std::string version;
  {
    // Declared first, destroyed last: the server outlives every connection to it and is stopped
    // on any exception.
    redis_process server;
    sagaflow::runtime rt({.threads = static_cast<std::size_t>(o.threads)});
    rt.start();
    transport::config cfg;
    cfg.host = "127.0.0.1";
    cfg.port = server.port();
    cfg.client_name = "sagaflow-bench";
    cfg.command_timeout = std::chrono::seconds(30);  // a saturated server is slow, not dead
    cfg.reconnect = false;  // a dropped connection must fail the run, not hide in a retry
    session s{rt, cfg};
    s.control = s.open();
    s.first = s.open();
    s.second = s.open();
    {
      auto c = s.control;
      version = info_field(s.control_run([c]() -> awaitable<std::string> { co_return co_await info(*c, "server"); }()),
                           "redis_version");
    }
    std::fprintf(stderr, "sagaflow-bench transport: redis-server %s on 127.0.0.1:%u; client: %llu thread(s), reactor %s\n",
                 version.c_str(), static_cast<unsigned>(server.port()), static_cast<unsigned long long>(o.threads),
                 std::string(sagaflow::runtime::backend()).c_str());

    const std::uint64_t n1 = std::min(o.n, unpipelined_cap);
    const std::string p = std::to_string(o.pipeline);
    const std::string key = "sfbench:ours";
    // The headline figures alternate between redis-benchmark and us, so that load from other
    // processes on the two cores hits both alike; the best round of each is kept.
    for (std::uint64_t round = 1; round <= o.repeat; ++round) {
      std::fprintf(stderr, "round %llu of %llu\n", static_cast<unsigned long long>(round),
                   static_cast<unsigned long long>(o.repeat));
      keep_best(best.rb_pipelined, redis_benchmark_phase(s, "redis-benchmark XADD -P " + p + " -c 50", o.n, o.pipeline, 50));
      keep_best(best.xadd, xadd_phase(s, "XADD, " + p + "/request, 1 connection", key, o.n, o.pipeline, o.inflight, 1));
      keep_best(best.read_ack, read_ack_phase(s, "XREADGROUP COUNT " + std::to_string(o.read_count) + " + XACK", key,
                                              o.n, o.readers, o.read_count));
      s.del(key);
    }
    std::fprintf(stderr, "once\n");
    best.xadd_two = xadd_phase(s, "XADD, " + p + "/request, 2 connections", key, o.n, o.pipeline, o.inflight, 2);
    s.del(key);
    best.rb_single = redis_benchmark_phase(s, "redis-benchmark XADD -P 1 -c 50", n1, 1, 50);
    best.xadd_single = xadd_phase(s, "XADD, 1/request, 50 in flight", key, n1, 1, 50, 1);
    s.del(key);
  }

  // Printed after the server is gone, so that the JSON object is the very last line.
  struct row {
    std::string operation;
    const phase_result* mine;
    const phase_result* reference;
  };
  const std::string p = std::to_string(o.pipeline);
  const row rows[] = {
      {"XADD, P=" + p + ", 1 connection", &best.xadd, &best.rb_pipelined},
      {"XADD, P=" + p + ", 2 connections", &best.xadd_two, &best.rb_pipelined},
      {"XADD, P=1 (ours: 50 in flight; rb: -c 50)", &best.xadd_single, &best.rb_single},
      {"XREADGROUP COUNT " + std::to_string(o.read_count) + " + XACK", &best.read_ack, nullptr},
  };
  std::ostringstream table;
  char line[160];
  std::snprintf(line, sizeof line, "%-42s | %14s | %21s | %5s\n", "operation", "sagaflow ops/s", "redis-benchmark ops/s", "ratio");
  table << line << std::string(42, '-') << "-|-" << std::string(14, '-') << "-|-" << std::string(21, '-') << "-|-"
        << std::string(5, '-') << "\n";
  for (auto& r : rows) {
    std::snprintf(line, sizeof line, "%-42s | %14s | %21s | %5s\n", r.operation.c_str(), ops(r.mine->per_sec()).c_str(),
                  r.reference ? ops(r.reference->per_sec()).c_str() : "n/a",
                  r.reference ? ratio(r.mine->per_sec(), r.reference->per_sec()).c_str() : "n/a");
    table << line;
  }
  std::cout << "\nRedis " << version << ", N=" << o.n << " (P=1 rows: " << std::min(o.n, unpipelined_cap)
            << "), best of " << o.repeat << " rounds for the P=" << p << " and read rows, client " << o.threads
            << " thread(s), reactor " << sagaflow::runtime::backend() << "\n"
            << table.str() << "\n";
  std::cout << R"({"bench":"transport","xadd_per_sec":)" << ops(best.xadd.per_sec())
            << R"(,"read_ack_per_sec":)" << ops(best.read_ack.per_sec())
            << R"(,"redis_benchmark_xadd_per_sec":)" << ops(best.rb_pipelined.per_sec()) << "}" << std::endl;
  return 0;
}

}  // namespace sagaflow::bench
