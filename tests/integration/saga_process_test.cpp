// The order saga example's real programs (examples/orders/): 1,000 sagas of 4 steps shared by two
// orchestrators, or with the orchestrator SIGKILLed or SIGSTOPped past its lease in the middle of
// them. Every saga must end completed or compensated as its steps decided (compensated only when
// a service failed the order for good, with nothing of it left), and no remote step may run
// twice: the services record each order's effects and count each step's runs in Redis.
#include "redis_server.hpp"

#include <sagaflow/sagas/saga.hpp>
#include <sagaflow/transport/commands.hpp>
#include <sagaflow/transport/connection.hpp>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

namespace asio = boost::asio;
namespace transport = sagaflow::transport;
namespace sagas = sagaflow::sagas;
using namespace std::chrono_literals;
using sagaflow::awaitable;
using sagaflow::testing::redis_server;
using sagaflow::testing::run;
using sagaflow::testing::spawn;

#if defined(SAGAFLOW_ORDERS_ORCHESTRATOR_BIN) && defined(SAGAFLOW_ORDERS_CLIENT_BIN)

namespace {

using clock_type = std::chrono::steady_clock;

// One of the example's programs, its output to a log file in the server's directory; killed if
// the test ends first.
class program {
 public:
  program(const redis_server& server, const std::string& bin, const std::vector<std::string>& flags)
      : program(server.url(), server.dir(), bin, flags) {}
  program(const std::string& url, const std::filesystem::path& dir, const std::string& bin, const std::vector<std::string>& flags)
      : log_(dir / (std::filesystem::path(bin).filename().string() + "-" + std::to_string(counter_++) + ".log")) {
    std::vector<std::string> args{bin, "--redis", url};
    args.insert(args.end(), flags.begin(), flags.end());
    int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot open " + log_.string());
    try {
      pid_ = spawn(args, fd, fd);
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
  }
  ~program() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  program(const program&) = delete;
  program& operator=(const program&) = delete;

  void signal(int sig) { ::kill(pid_, sig); }
  // The exit status (128 + signal if killed), or -1 if it did not exit within `limit`.
  int wait(std::chrono::seconds limit = 60s) {
    auto end = clock_type::now() + limit;
    int status = 0;
    for (;;) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (clock_type::now() >= end) return -1;
      std::this_thread::sleep_for(5ms);
    }
  }
  std::string log() const {
    std::ifstream in(log_);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  std::filesystem::path log_;
  pid_t pid_ = -1;
  static inline int counter_ = 0;
};

std::string bin(const char* name) {
  return (std::filesystem::path(SAGAFLOW_ORDERS_ORCHESTRATOR_BIN).parent_path() / name).string();
}

constexpr int total = 1000;
const char* const services[] = {"inventory", "payments", "shipping"};

std::string order_id(int n) { return "o-" + std::to_string(n); }

// The outcome of every order saga (its snapshot's status; "missing" before it started).
std::map<std::string, std::string> statuses(const redis_server& server) {
  return run([&]() -> awaitable<std::map<std::string, std::string>> {
    auto c = transport::connection::create(co_await asio::this_coro::executor, server.config());
    co_await c->connect();
    transport::request req;
    for (int n = 1; n <= total; ++n) req.push("HGET", "sf:{saga:" + order_id(n) + "}", "status");
    auto replies = co_await c->exec(std::move(req));
    c->close();
    std::map<std::string, std::string> out;
    for (int n = 1; n <= total; ++n) {
      auto& r = replies[static_cast<std::size_t>(n - 1)];
      out[order_id(n)] = r.is_null() ? "missing" : r.text;
    }
    co_return out;
  }());
}

// How many sagas `orchestrator` holds (the snapshot's owner: the last to take it) and are running.
std::size_t running_under(const redis_server& server, const std::string& orchestrator) {
  return run([&]() -> awaitable<std::size_t> {
    auto c = transport::connection::create(co_await asio::this_coro::executor, server.config());
    co_await c->connect();
    transport::request req;
    for (int n = 1; n <= total; ++n) req.push("HMGET", "sf:{saga:" + order_id(n) + "}", "owner", "status");
    auto replies = co_await c->exec(std::move(req));
    c->close();
    std::size_t held = 0;
    for (auto& r : replies) held += r.elements.size() == 2 && r.elements[0].text == orchestrator && r.elements[1].text == "running";
    co_return held;
  }());
}

std::size_t finished(const std::map<std::string, std::string>& s) {
  std::size_t n = 0;
  for (auto& [id, status] : s) n += status != "running" && status != "missing";
  return n;
}

bool wait_for(const std::function<bool()>& done, std::chrono::seconds limit) {
  auto end = clock_type::now() + limit;
  while (!done()) {
    if (clock_type::now() > end) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// What the services did, from their records: runs that took effect per (service, order), of
// the action and of the undo, and each service's records of live effects.
struct effects {
  std::map<std::string, std::map<std::string, std::int64_t>> done, undone;  // service -> order -> runs
  std::set<std::string> reserved, charged, booked;
  std::set<std::string> failed;  // orders a service failed for good (declined, no courier)

  // Runs of a service's action (or, from `undone`, its undo) for an order; 0 if none.
  static std::int64_t runs(const std::map<std::string, std::map<std::string, std::int64_t>>& m, const std::string& service,
                           const std::string& order) {
    auto s = m.find(service);
    if (s == m.end()) return 0;
    auto o = s->second.find(order);
    return o == s->second.end() ? 0 : o->second;
  }

  // Runs beyond the first of any (order, step) or (order, undo).
  std::int64_t reexecutions() const {
    std::int64_t n = 0;
    for (auto* m : {&done, &undone})
      for (auto& [service, runs] : *m)
        for (auto& [order, count] : runs) n += count - 1;
    return n;
  }
};

effects read_effects(const redis_server& server) {
  return run([&]() -> awaitable<effects> {
    auto c = transport::connection::create(co_await asio::this_coro::executor, server.config());
    co_await c->connect();
    transport::request req;
    for (auto* s : services) {
      req.push("HGETALL", std::string("orders:") + s + ":done");
      req.push("HGETALL", std::string("orders:") + s + ":undone");
    }
    req.push("HKEYS", "orders:inventory:reserved").push("SMEMBERS", "orders:payments:charged");
    req.push("HKEYS", "orders:shipping:booked");
    for (auto* s : services) req.push("SMEMBERS", std::string("orders:") + s + ":failed");
    auto replies = co_await c->exec(std::move(req));
    transport::throw_on_error(req, replies);
    c->close();
    effects e;
    std::size_t i = 0;
    for (auto* s : services)
      for (auto* m : {&e.done, &e.undone}) {
        auto& hash = replies[i++].elements;
        for (std::size_t k = 0; k + 1 < hash.size(); k += 2) (*m)[s][hash[k].text] = std::stoll(hash[k + 1].text);
      }
    for (auto* set : {&e.reserved, &e.charged, &e.booked})
      for (auto& v : replies[i++].elements) set->insert(v.text);
    for (std::size_t k = 0; k < std::size(services); ++k)
      for (auto& v : replies[i++].elements) e.failed.insert(v.text);
    co_return e;
  }());
}

// Every saga's status and journal (sagas::client::status).
std::vector<sagas::saga_status> journals(const redis_server& server) {
  return run([&]() -> awaitable<std::vector<sagas::saga_status>> {
    auto c = transport::connection::create(co_await asio::this_coro::executor, server.config());
    co_await c->connect();
    sagas::client client(c, server.config());
    std::vector<sagas::saga_status> out;
    for (int n = 1; n <= total; ++n) {
      auto st = co_await client.status(order_id(n));
      if (st) out.push_back(std::move(*st));
    }
    c->close();
    co_return out;
  }());
}

// A count of an orchestrator's exit line ("sagas started N, ..., fenced N"); -1 if absent.
long stat_in(const std::string& log, const std::string& name) {
  auto line = log.rfind("orders-orchestrator: sagas started");
  if (line == std::string::npos) return -1;
  auto at = log.find(name + " ", line);
  return at == std::string::npos ? -1 : std::strtol(log.c_str() + at + name.size() + 1, nullptr, 10);
}

class saga_process_test : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto* b : {"orders-inventory", "orders-payments", "orders-shipping", "orders-client"})
      if (!std::filesystem::exists(bin(b))) GTEST_SKIP() << bin(b) << " is not built";
    // Each step takes a little while (--work-ms), so that a fault finds many sagas mid-flight.
    const std::vector<std::string> common{"--concurrency", "64", "--lease-ms", "1000", "--work-ms", "10"};
    auto with = [&](std::vector<std::string> more) {
      more.insert(more.begin(), common.begin(), common.end());
      return more;
    };
    // Failures chosen by order id: declined cards and no courier compensate, first attempts
    // failing now and then are retried.
    inventory = std::make_unique<program>(server, bin("orders-inventory"), with({"--transient-rate", "0.1"}));
    payments = std::make_unique<program>(server, bin("orders-payments"), with({"--fail-rate", "0.2", "--transient-rate", "0.05"}));
    shipping = std::make_unique<program>(server, bin("orders-shipping"), with({"--fail-rate", "0.05"}));
  }

  std::unique_ptr<program> orchestrator(const std::string& name) {
    return std::make_unique<program>(server, SAGAFLOW_ORDERS_ORCHESTRATOR_BIN,
                                     std::vector<std::string>{"--lease-ms", "1000", "--consumer", name});
  }

  // Starts the 1,000 sagas (orders-client start, which returns once all are durable) before any
  // orchestrator runs, so that the first one takes them all at once (its concurrency: 1024).
  void start_sagas() {
    program client(server, SAGAFLOW_ORDERS_CLIENT_BIN,
                   std::vector<std::string>{"start", "--count", std::to_string(total), "--prefix-id", "o"});
    ASSERT_EQ(client.wait(), 0) << client.log();
  }

  // Waits until every saga has finished; checks each completed or compensated, with the
  // services' records matching the outcome, and no remote step (or undo) run twice.
  void expect_every_saga_finished_once(const std::string& what, clock_type::time_point second_started) {
    std::map<std::string, std::string> last;
    bool all = wait_for([&] {
      last = statuses(server);
      return finished(last) == total;
    }, 120s);
    ASSERT_TRUE(all) << total - finished(last) << " saga(s) not finished after 120 s";
    std::cout << "[ report ] " << what << ": all finished " << std::chrono::duration<double>(clock_type::now() - second_started).count()
              << " s after the (second) orchestrator started\n";
    std::map<std::string, int> outcomes;
    for (auto& [id, status] : last) ++outcomes[status];
    std::string other;  // the outcomes that should not be, with the first saga of each
    for (auto& [id, status] : last)
      if (status != "completed" && status != "compensated" && other.find(status + " ") == std::string::npos)
        other += status + " " + std::to_string(outcomes[status]) + " (e.g. " + id + ": " + describe(id) + "); ";
    EXPECT_EQ(outcomes["completed"] + outcomes["compensated"], total) << "every saga completed or compensated: " << other;
    EXPECT_GT(outcomes["completed"], 0);
    EXPECT_GT(outcomes["compensated"], 0) << "20% of cards are declined";

    auto e = read_effects(server);
    int explained = 0;  // sagas whose journal is printed with a failure (the first few)
    for (auto& [id, status] : last) {
      bool completed = status == "completed";
      // A completed order holds its stock, payment and shipment; a compensated one none, and
      // it was compensated because a service failed it (not because a reply went missing).
      bool consistent = e.reserved.contains(id) == completed && e.charged.contains(id) == completed &&
                        e.booked.contains(id) == completed && e.failed.contains(id) == !completed;
      EXPECT_TRUE(consistent) << id << " " << status << ": reserved " << e.reserved.contains(id) << ", charged "
                              << e.charged.contains(id) << ", booked " << e.booked.contains(id) << ", failed by a service " << e.failed.contains(id) << "; runs of reserve "
                              << effects::runs(e.done, "inventory", id) << ", charge " << effects::runs(e.done, "payments", id)
                              << ", refund " << effects::runs(e.undone, "payments", id) << (!consistent && explained++ < 3 ? "; " + describe(id) : "");
      EXPECT_EQ(effects::runs(e.done, "inventory", id), 1) << id << ": every order reserves stock (no inventory failure is injected)";
    }
    auto again = e.reexecutions();
    std::cout << "[ report ] " << what << ": " << outcomes["completed"] << " completed, " << outcomes["compensated"]
              << " compensated; remote step re-executions: " << again << "\n";
    RecordProperty("remote_step_reexecutions", static_cast<int>(again));
    EXPECT_EQ(again, 0) << "no step worker crashed, so no remote step may run twice";
  }

  // A saga's outcome and journal, to explain a failure.
  std::string describe(const std::string& id) {
    return run([&]() -> awaitable<std::string> {
      auto c = transport::connection::create(co_await asio::this_coro::executor, server.config());
      co_await c->connect();
      sagas::client client(c, server.config());
      auto st = co_await client.status(id);
      c->close();
      if (!st) co_return std::string("unknown");
      std::ostringstream out;
      out << sagas::to_string(st->current.state) << " failed_step '" << st->current.failed_step << "' error '"
          << st->current.error << "'; journal:";
      for (auto& e : st->history) out << " [" << e.event << " " << e.step << " " << e.name << " " << e.attempt << " " << e.value << "]";
      co_return out.str();
    }());
  }

  void stop_services() {
    for (auto* p : {inventory.get(), payments.get(), shipping.get()}) p->signal(SIGTERM);
    for (auto* p : {inventory.get(), payments.get(), shipping.get()}) EXPECT_EQ(p->wait(), 0) << p->log();
  }

  redis_server server;
  std::unique_ptr<program> inventory, payments, shipping;
};

}  // namespace

TEST_F(saga_process_test, sigkill_of_the_orchestrator_mid_flight_a_second_one_finishes_every_saga_running_no_step_twice) {
  ASSERT_NO_FATAL_FAILURE(start_sagas());
  auto a = orchestrator("orchestrator-A");
  std::map<std::string, std::string> at_kill;
  ASSERT_TRUE(wait_for([&] {
    at_kill = statuses(server);
    return finished(at_kill) >= 100;
  }, 60s)) << "orchestrator A made no progress:\n" << a->log();
  a->signal(SIGKILL);
  EXPECT_EQ(a->wait(), 128 + SIGKILL);
  auto running_at_kill = std::count_if(at_kill.begin(), at_kill.end(), [](auto& s) { return s.second == "running"; });
  std::cout << "[ report ] SIGKILL of orchestrator A: " << finished(at_kill) << " sagas finished, " << running_at_kill
            << " running\n";
  EXPECT_LT(finished(at_kill), static_cast<std::size_t>(total)) << "the kill should come mid-flight";
  EXPECT_GT(running_at_kill, 0) << "the kill should find sagas running";

  auto b_started = clock_type::now();
  auto b = orchestrator("orchestrator-B");
  expect_every_saga_finished_once("SIGKILL", b_started);
  b->signal(SIGTERM);
  EXPECT_EQ(b->wait(), 0) << b->log();
  stop_services();
}

// The usual deployment: two orchestrators share the sagas from the start, nothing fails but the
// injected order failures. Every saga ends as its steps decided, each step run once.
TEST_F(saga_process_test, two_orchestrators_share_the_sagas_and_each_ends_as_its_steps_decided) {
  auto a = orchestrator("orchestrator-A");
  auto b = orchestrator("orchestrator-B");
  auto started = clock_type::now();
  ASSERT_NO_FATAL_FAILURE(start_sagas());
  expect_every_saga_finished_once("two orchestrators", started);
  a->signal(SIGTERM);
  b->signal(SIGTERM);
  EXPECT_EQ(a->wait(), 0) << a->log();
  EXPECT_EQ(b->wait(), 0) << b->log();
  EXPECT_GT(stat_in(a->log(), "started"), 0) << a->log();
  EXPECT_GT(stat_in(b->log(), "started"), 0) << b->log();
  stop_services();
}

// Fencing across processes: A is paused (SIGSTOP) past its lease with sagas in flight, B takes
// them over, then A continues. A's writes to those sagas must be refused: every journal stays
// consistent (one completion per step, one finish, nothing after it) and no step runs twice.
TEST_F(saga_process_test, an_orchestrator_paused_past_its_lease_writes_nothing_to_the_sagas_taken_over) {
  ASSERT_NO_FATAL_FAILURE(start_sagas());
  auto a = orchestrator("orchestrator-A");
  std::map<std::string, std::string> at_stop;
  ASSERT_TRUE(wait_for([&] {
    at_stop = statuses(server);
    return finished(at_stop) >= 100;
  }, 60s)) << "orchestrator A made no progress:\n" << a->log();
  a->signal(SIGSTOP);
  auto b_started = clock_type::now();
  auto b = orchestrator("orchestrator-B");
  // B takes A's sagas once they are idle past the lease (1 s); A continues as soon as B holds
  // some, so that both run them at once.
  std::size_t held_by_b = 0;
  EXPECT_TRUE(wait_for([&] { return (held_by_b = running_under(server, "orchestrator-B")) > 0; }, 30s))
      << "B took nothing over:\n" << b->log();
  a->signal(SIGCONT);
  std::cout << "[ report ] SIGSTOP of orchestrator A at " << finished(at_stop) << " sagas finished; SIGCONT with "
            << held_by_b << " running sagas taken over by B\n";

  expect_every_saga_finished_once("SIGSTOP", b_started);
  a->signal(SIGTERM);
  b->signal(SIGTERM);
  EXPECT_EQ(a->wait(), 0) << a->log();
  EXPECT_EQ(b->wait(), 0) << b->log();
  auto fenced = stat_in(a->log(), "fenced");
  std::cout << "[ report ] SIGSTOP: orchestrator A had " << fenced << " saga(s) fenced after it continued\n";
  EXPECT_GT(fenced, 0) << "A woke up with sagas B had taken: its writes must have been refused\n" << a->log();

  EXPECT_GT(stat_in(b->log(), "started"), 0) << b->log();
  for (auto& st : journals(server)) {
    SCOPED_TRACE(st.id);
    std::map<std::int64_t, int> completed, compensated;
    int finishes = 0;
    for (auto& e : st.history) {
      EXPECT_EQ(finishes, 0) << "an entry after the finish: " << e.event;
      if (e.event == "step_completed") ++completed[e.step];
      if (e.event == "compensation_completed") ++compensated[e.step];
      if (e.event == "finished") ++finishes;
    }
    EXPECT_EQ(finishes, 1);
    for (auto& [step, n] : completed) EXPECT_EQ(n, 1) << "step " << step << " completed " << n << " times";
    for (auto& [step, n] : compensated) EXPECT_EQ(n, 1) << "step " << step << " compensated " << n << " times";
  }
  stop_services();
}

// The programs' command lines: --help, bad flags (exit 2 with the reason and the usage, before
// touching Redis: the URL is a closed port), an unreachable Redis (exit 1, the reason).
TEST(saga_cli_test, help_bad_flags_and_an_unreachable_redis) {
  auto dir = std::filesystem::temp_directory_path() / ("sagaflow-orders-cli-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string closed = "redis://127.0.0.1:1";
  struct run_case {
    std::string bin;
    std::vector<std::string> args;
    int status;
    std::string says;
  };
  std::vector<run_case> cases;
  for (auto* b : {"orders-inventory", "orders-payments", "orders-shipping", "orders-orchestrator", "orders-client"}) {
    if (!std::filesystem::exists(bin(b))) GTEST_SKIP() << bin(b) << " is not built";
    cases.push_back({b, {"--help"}, 0, std::string("usage: ") + b});
    cases.push_back({b, {"--bogus"}, 2, "unknown flag '--bogus'"});
  }
  for (auto* b : {"orders-inventory", "orders-payments", "orders-shipping", "orders-orchestrator"})
    cases.push_back({b, {}, 1, "Connection refused"});
  const std::vector<run_case> more{
      {"orders-payments", {"--fail-rate", "1.5"}, 2, "--fail-rate needs a fraction from 0 to 1"},
      {"orders-payments", {"--transient-rate", "x"}, 2, "--transient-rate needs a fraction"},
      {"orders-inventory", {"--concurrency", "0"}, 2, "--concurrency needs a whole number"},
      {"orders-shipping", {"--work-ms"}, 2, "--work-ms needs a value"},
      {"orders-orchestrator", {"--lease-ms", "50"}, 2, "--lease-ms needs a whole number from 100"},
      {"orders-client", {}, 2, "which command"},
      {"orders-client", {"frobnicate"}, 2, "unknown command 'frobnicate'"},
      {"orders-client", {"start"}, 2, "start needs --count"},
      {"orders-client", {"start", "--count", "10x"}, 2, "--count needs a whole number"},
      {"orders-client", {"wait", "--count", "5"}, 2, "--count is not a flag of 'wait'"},
      {"orders-client", {"list", "--status", "done"}, 2, "--status must be"},
      {"orders-client", {"history"}, 2, "history needs a saga id"},
      {"orders-client", {"summary"}, 1, "Connection refused"},
  };
  cases.insert(cases.end(), more.begin(), more.end());
  for (auto& c : cases) {
    std::string shown = c.bin;
    for (auto& a : c.args) shown += " '" + a + "'";
    SCOPED_TRACE(shown);
    program p(closed, dir, bin(c.bin.c_str()), c.args);
    EXPECT_EQ(p.wait(30s), c.status) << p.log();
    auto log = p.log();
    EXPECT_NE(log.find(c.says), std::string::npos) << log;
    if (c.status == 2) {
      EXPECT_NE(log.find("usage: " + c.bin), std::string::npos) << log;
    }
    if (c.status == 1) {
      EXPECT_EQ(log.find("[system:"), std::string::npos) << "a plain reason:\n" << log;
    }
  }
  std::filesystem::remove_all(dir);
}

#else
TEST(saga_process_test, needs_the_order_example_programs) {
  GTEST_SKIP() << "built without examples (SAGAFLOW_BUILD_EXAMPLES=OFF)";
}
#endif
