// orders-client: starts order sagas and reports on them (progress, summary, one saga's history).
//   orders-client [--redis URL] start --count N [--prefix-id X] | wait [--timeout-s N] [--interval-ms N]
//                 | summary | list --status S [--failed-step STEP] [--limit N] | history <saga-id>
#include "common.hpp"

#include <sagaflow/engine/log.hpp>
#include <sagaflow/sagas/saga.hpp>
#include <sagaflow/tasks/keys.hpp>
#include <sagaflow/transport/commands.hpp>
#include <sagaflow/transport/connection.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

namespace asio = boost::asio;
namespace sagas = sagaflow::sagas;
namespace transport = sagaflow::transport;
using json = boost::json::value;
using sagaflow::awaitable;

namespace {

const orders::program me{"orders-client",
                         "usage: orders-client [--redis URL] start --count N [--prefix-id X]\n"
                         "       orders-client [--redis URL] wait [--timeout-s N] [--interval-ms N]\n"
                         "       orders-client [--redis URL] summary\n"
                         "       orders-client [--redis URL] list --status STATUS [--failed-step STEP] [--limit N]\n"
                         "       orders-client [--redis URL] history SAGA-ID\n"};

constexpr const char* help_text =
    "Starts order sagas (run by orders-orchestrator) and reports on them.\n"
    "\n"
    "  start --count N        starts N order sagas, N >= 1; the order id is the saga id and its\n"
    "                         correlation id: X-1 ... X-N (--prefix-id X, default: order)\n"
    "  wait                   prints the sagas finished every --interval-ms (default: 500) until all\n"
    "                         started ones have finished or --timeout-s passed (default: 60); exit 0\n"
    "                         only when every saga completed or compensated\n"
    "  summary                counts by outcome, the failed steps, task retries, dead letters, remote\n"
    "                         step executions, and sagas per second\n"
    "  list --status STATUS   the ids of the sagas in STATUS (running, completed, compensated, ...),\n"
    "                         at most --limit N (default: all); with --failed-step STEP, only those\n"
    "                         whose step STEP failed (validate, reserve, charge, ship)\n"
    "  history SAGA-ID        the saga's journal: time, event, step, attempt, value\n"
    "\n"
    "  --redis URL            Redis to use (default: $SAGAFLOW_REDIS_URL, else redis://127.0.0.1:6379)\n"
    "  -h, --help             print this help and exit\n"
    "\n"
    "Exit status: 0 done, 1 Redis failed (or, for wait: not every saga completed or compensated in\n"
    "time; for history: no such saga), 2 bad arguments.\n";

const char* services[] = {"inventory", "payments", "shipping"};

struct command_line {
  std::string url = orders::redis_url_from_env();
  std::string command;
  std::string saga_id;  // history
  long count = 0;       // start
  std::string prefix_id = "order";
  long timeout_s = 60, interval_ms = 500;
  std::string status;  // list
  std::string failed_step;
  long limit = 0;      // list; 0: all
};

command_line parse(int argc, char** argv) {
  command_line c;
  bool count_given = false;
  std::vector<std::string> given;  // flags seen, to refuse those of another command
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << me.usage << "\n" << help_text;
      std::exit(0);
    }
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) me.usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--redis") c.url = value();
    else if (arg == "--count") {
      c.count = me.number(arg, value(), 1, 1'000'000);
      count_given = true;
    }
    else if (arg == "--prefix-id") {
      c.prefix_id = value();
      if (c.prefix_id.empty() || c.prefix_id.find_first_of("{} ") != std::string::npos)
        me.usage_error("--prefix-id needs a non-empty id prefix without braces or spaces");
    } else if (arg == "--timeout-s") c.timeout_s = me.number(arg, value(), 1, 86'400);
    else if (arg == "--interval-ms") c.interval_ms = me.number(arg, value(), 10, 3'600'000);
    else if (arg == "--status") {
      c.status = value();
      if (!sagas::status_from_string(c.status)) me.usage_error("--status must be running, completed, compensated, compensation_failed, parked or cancelled, not '" + c.status + "'");
    } else if (arg == "--failed-step") c.failed_step = value();
    else if (arg == "--limit") c.limit = me.number(arg, value(), 1, 1'000'000'000);
    else if (arg.starts_with("-")) me.usage_error("unknown flag '" + arg + "'");
    else if (c.command.empty()) c.command = arg;
    else if (c.command == "history" && c.saga_id.empty()) c.saga_id = arg;
    else me.usage_error("unexpected argument '" + arg + "'");
    if (arg.starts_with("--") && arg != "--redis") given.push_back(arg);
  }
  static const std::map<std::string, std::vector<std::string>> allowed{
      {"start", {"--count", "--prefix-id"}}, {"wait", {"--timeout-s", "--interval-ms"}}, {"summary", {}},
      {"list", {"--status", "--failed-step", "--limit"}}, {"history", {}}};
  if (c.command.empty()) me.usage_error("which command: start, wait, summary, list or history?");
  auto found = allowed.find(c.command);
  if (found == allowed.end()) me.usage_error("unknown command '" + c.command + "'");
  for (auto& flag : given)
    if (std::find(found->second.begin(), found->second.end(), flag) == found->second.end())
      me.usage_error(flag + " is not a flag of '" + c.command + "'");
  if (c.command == "start" && !count_given) me.usage_error("start needs --count N");
  if (c.command == "list" && c.status.empty()) me.usage_error("list needs --status STATUS");
  if (c.command == "history" && c.saga_id.empty()) me.usage_error("history needs a saga id");
  return c;
}

// The snapshot hash of a saga (docs/design.md, "Redis keys"; the default prefix "sf").
std::string snapshot_key(const std::string& saga_id) { return "sf:{saga:" + saga_id + "}"; }

std::int64_t number_or_zero(const transport::resp::value& v) {
  if (v.is_error()) throw std::runtime_error(v.text);
  if (v.type == transport::resp::type::integer) return v.integer;
  if (v.is_null() || v.text.empty()) return 0;
  return std::strtoll(v.text.c_str(), nullptr, 10);
}

// What the snapshots of every started saga say, read in pipelines of 1000.
struct saga_row {
  std::string id, status, failed_step;
  std::int64_t updated_ms = 0;
};

awaitable<std::vector<saga_row>> read_sagas(transport::connection& c) {
  transport::request ids_req;
  ids_req.push("SMEMBERS", orders::ids_key);
  auto ids_reply = co_await c.exec(std::move(ids_req));
  transport::throw_on_error(ids_req, ids_reply);
  std::vector<saga_row> rows;
  for (auto& id : ids_reply.at(0).elements) rows.push_back({id.text, "", "", 0});
  std::sort(rows.begin(), rows.end(), [](const saga_row& a, const saga_row& b) {
    return a.id.size() != b.id.size() ? a.id.size() < b.id.size() : a.id < b.id;  // order-2 before order-10
  });
  for (std::size_t from = 0; from < rows.size(); from += 1000) {
    auto to = std::min(rows.size(), from + 1000);
    transport::request req;
    for (auto i = from; i < to; ++i) req.push("HMGET", snapshot_key(rows[i].id), "status", "failed_step", "updated_ms");
    auto replies = co_await c.exec(std::move(req));
    transport::throw_on_error(req, replies);
    for (auto i = from; i < to; ++i) {
      auto& f = replies[i - from].elements;
      rows[i].status = f.at(0).is_null() ? "missing" : f[0].text;
      rows[i].failed_step = f.at(1).is_null() ? "" : f[1].text;
      rows[i].updated_ms = number_or_zero(f.at(2));
    }
  }
  co_return rows;
}

bool finished(const saga_row& r) { return r.status != "running" && r.status != "missing"; }
bool finished_well(const saga_row& r) { return r.status == "completed" || r.status == "compensated"; }

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

awaitable<std::int64_t> first_start_ms(transport::connection& c) {
  transport::request req;
  req.push("GET", orders::first_start_key);
  auto replies = co_await c.exec(std::move(req));
  transport::throw_on_error(req, replies);
  co_return number_or_zero(replies.at(0));
}

// An order: the id, and an item, quantity and amount derived from it (the same in every run).
json make_order(const std::string& id, long n) {
  return {{"order", id}, {"sku", "sku-" + std::to_string(n % 17)}, {"qty", 1 + n % 3},
          {"amount_cents", 500 + (n * 7919) % 20000}};
}

awaitable<int> start(std::shared_ptr<transport::connection> conn, const transport::config& cfg, const command_line& cl) {
  auto& c = *conn;
  sagas::client client(conn, cfg);
  transport::request mark;
  mark.push("SET", orders::first_start_key, std::to_string(now_ms()), "NX");
  auto marked = co_await c.exec(std::move(mark));
  transport::throw_on_error(mark, marked);
  long step = std::max(1L, cl.count / 10);
  for (long n = 1; n <= cl.count; ++n) {
    auto id = cl.prefix_id + "-" + std::to_string(n);
    // Listed before it starts: a start that fails half-way is still waited for, not forgotten.
    transport::request add;
    add.push("SADD", orders::ids_key, id);
    auto added = co_await c.exec(std::move(add));
    transport::throw_on_error(add, added);
    auto order = make_order(id, n);
    sagas::start_options options{.correlation_id = id, .saga_id = id};
    co_await client.start("order", order, options);
    if (n % step == 0 || n == cl.count) std::cout << "started " << n << " / " << cl.count << " order sagas" << std::endl;
  }
  co_return 0;
}

awaitable<int> wait_for_all(transport::connection& c, const command_line& cl) {
  auto end = sagaflow::steady_clock::now() + std::chrono::seconds(cl.timeout_s);
  for (;;) {
    auto rows = co_await read_sagas(c);
    std::map<std::string, std::size_t> by_status;
    std::size_t done = 0, well = 0;
    for (auto& r : rows) {
      ++by_status[r.status];
      done += finished(r);
      well += finished_well(r);
    }
    std::cout << "finished " << done << " / " << rows.size() << " (completed " << by_status["completed"]
              << ", compensated " << by_status["compensated"];
    if (done != well) std::cout << ", other " << done - well;
    std::cout << ")" << std::endl;
    if (done == rows.size()) {
      if (well == done) co_return 0;
      std::cout << "not every saga completed or compensated:";
      for (auto& [s, n] : by_status)
        if (s != "completed" && s != "compensated") std::cout << " " << s << " " << n;
      std::cout << std::endl;
      co_return 1;
    }
    if (sagaflow::steady_clock::now() >= end) {
      std::cout << "gave up after " << cl.timeout_s << " s: " << rows.size() - done << " saga(s) not finished" << std::endl;
      co_return 1;
    }
    co_await sagaflow::sleep_for(std::chrono::milliseconds(cl.interval_ms));
  }
}

awaitable<int> summary(transport::connection& c) {
  auto rows = co_await read_sagas(c);
  auto first = co_await first_start_ms(c);
  std::map<std::string, std::size_t> by_status, failed_steps;
  std::int64_t last = 0;
  for (auto& r : rows) {
    ++by_status[r.status];
    if (r.status == "compensated") ++failed_steps[r.failed_step];
    if (finished(r)) last = std::max(last, r.updated_ms);
  }
  transport::request req;
  for (auto* s : services) {
    req.push("GET", orders::service_key(s, "retries"));
    req.push("XLEN", sagaflow::tasks::queue_keys("sf", s).dead);
    req.push("HVALS", orders::service_key(s, "done"));
    req.push("HVALS", orders::service_key(s, "undone"));
  }
  auto replies = co_await c.exec(std::move(req));
  transport::throw_on_error(req, replies);
  std::int64_t retries = 0, dead = 0, runs = 0, undos = 0, again = 0;
  std::size_t i = 0;
  for (std::size_t s = 0; s < std::size(services); ++s) {
    retries += number_or_zero(replies[i++]);
    dead += number_or_zero(replies[i++]);
    for (auto* hash : {&runs, &undos})
      for (auto& v : replies[i++].elements) {
        auto n = number_or_zero(v);
        *hash += n;
        again += n - 1;
      }
  }
  std::cout << "sagas: " << rows.size() << "\n";
  for (auto& [s, n] : by_status) std::cout << "  " << s << ": " << n << "\n";
  if (!failed_steps.empty()) {
    std::cout << "  compensated after the failure of:";
    for (auto& [step, n] : failed_steps) std::cout << " " << step << " " << n;
    std::cout << "\n";
  }
  std::cout << "task retries: " << retries << "\n"
            << "dead letters: " << dead << " (permanent failures end there; each one failed its saga's step)\n"
            << "remote step executions: " << runs << " actions, " << undos << " undos; run more than once: " << again << "\n";
  if (first > 0 && last > first)
    std::cout << "throughput: " << std::fixed << std::setprecision(1)
              << static_cast<double>(rows.size() - by_status["running"]) * 1000.0 / static_cast<double>(last - first)
              << " sagas/s (first start to last finish: " << std::setprecision(2)
              << static_cast<double>(last - first) / 1000.0 << " s)\n";
  std::cout << std::flush;
  co_return 0;
}

awaitable<int> list(transport::connection& c, const command_line& cl) {
  auto rows = co_await read_sagas(c);
  long shown = 0;
  for (auto& r : rows) {
    if (r.status != cl.status || (!cl.failed_step.empty() && r.failed_step != cl.failed_step)) continue;
    std::cout << r.id << "\n";
    if (++shown == cl.limit) break;
  }
  std::cout << std::flush;
  co_return 0;
}

std::string clock_text(std::int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  std::ostringstream out;
  out << std::put_time(&tm, "%H:%M:%S") << "." << std::setw(3) << std::setfill('0') << ms % 1000;
  return out.str();
}

awaitable<int> history(std::shared_ptr<transport::connection> conn, const transport::config& cfg, const command_line& cl) {
  sagas::client client(conn, cfg);
  auto st = co_await client.status(cl.saga_id);
  if (!st) {
    std::cout << "no saga '" << cl.saga_id << "' (unknown, or expired)" << std::endl;
    co_return 1;
  }
  std::cout << "saga " << st->id << " (" << st->name << " v" << st->version << ", correlation id " << st->correlation_id
            << "): " << sagas::to_string(st->current.state);
  if (!st->current.failed_step.empty()) std::cout << " after " << st->current.failed_step << " failed: " << st->current.error;
  std::cout << "\n";
  std::cout << "  time (UTC)    event                   step         attempt  value\n";
  for (auto& e : st->history) {
    std::string step = e.step >= 0 ? std::to_string(e.step) + " " + e.name : "";
    std::cout << "  " << clock_text(e.at_ms) << "  " << std::left << std::setw(22) << e.event << "  " << std::setw(11)
              << step << "  " << std::setw(7) << (e.attempt ? std::to_string(e.attempt) : "") << "  " << e.value
              << std::right << "\n";
  }
  std::cout << std::flush;
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto cl = parse(argc, argv);
  auto cfg = me.redis(cl.url);
  asio::io_context ctx;
  int status = 1;
  std::string failure;
  // Named: a lambda coroutine's captures live in the lambda object, which must outlive ctx.run().
  auto command = [&]() -> awaitable<void> {
    auto c = transport::connection::create(co_await asio::this_coro::executor, cfg);
    try {
      co_await c->connect();
      if (cl.command == "start") status = co_await start(c, cfg, cl);
      else if (cl.command == "wait") status = co_await wait_for_all(*c, cl);
      else if (cl.command == "summary") status = co_await summary(*c);
      else if (cl.command == "list") status = co_await list(*c, cl);
      else status = co_await history(c, cfg, cl);
    } catch (const std::exception& e) {
      failure = sagaflow::log::error_text(e);
      status = 1;
    }
    c->close();
  };
  asio::co_spawn(ctx, command(), asio::detached);
  ctx.run();
  if (!failure.empty()) std::cerr << me.name << ": " << failure << "\n";
  return status;
}
