// Pool of single-threaded io_contexts; see runtime.hpp.
#include <sagaflow/engine/log.hpp>
#include <sagaflow/engine/runtime.hpp>

#include <boost/asio/executor_work_guard.hpp>

#include <chrono>
#include <stdexcept>
#include <system_error>

namespace sagaflow {

namespace {
// An io_context whose services the runtime shuts down itself (execution_context::shutdown() is
// protected): every context of the pool is shut down before the first is destroyed.
struct pool_context final : boost::asio::io_context {
  using io_context::io_context;
  void shut_down_services() { shutdown(); }
};
}  // namespace

void runtime::context_deleter::operator()(boost::asio::io_context* ctx) const noexcept {
  delete static_cast<pool_context*>(ctx);
}

std::string_view runtime::backend() noexcept { return SAGAFLOW_IO_BACKEND_NAME; }

runtime::runtime(runtime_options options) {
  std::size_t threads = options.threads ? options.threads : std::thread::hardware_concurrency();
  if (threads == 0) threads = 1;
  contexts_.reserve(threads);
  try {
    for (std::size_t i = 0; i < threads; ++i) contexts_.emplace_back(new pool_context(1));
  } catch (const std::system_error& e) {
    // An io_uring build on a kernel (or seccomp profile) that forbids io_uring fails here.
    throw std::runtime_error(std::string("sagaflow: cannot create the ") + std::string(backend()) +
                             " reactor (" + log::error_text(e) +
                             "); rebuild with -DSAGAFLOW_IO_BACKEND=epoll on this machine");
  }
  for (auto& ctx : contexts_) guards_.push_back(boost::asio::make_work_guard(*ctx));
  log::info("engine", "runtime: ", threads, " thread(s), reactor ", backend());
}

runtime::~runtime() {
  stop();
  join();
  // ~io_context shuts its services down (destroying pending operations, and the coroutine
  // frames waiting on them, while every service exists), then deletes them. With several
  // contexts that is not enough: a coroutine of context B waiting on a connection of context A
  // is destroyed when A shuts down, and its frame's destruction is posted to B; if B is already
  // gone, or only shut down, that frame (with its timers) would be destroyed when B's scheduler
  // is deleted, after B's timer service. So every context is shut down first, and the pass is
  // repeated, each one destroying what the previous one handed across contexts; shutting a
  // service down again is harmless (its queues are empty). Only then are contexts deleted.
  constexpr int passes = 4;
  for (int pass = 0; pass < passes; ++pass)
    for (auto& ctx : contexts_) static_cast<pool_context&>(*ctx).shut_down_services();
  contexts_.clear();
}

boost::asio::any_io_executor runtime::executor() noexcept {
  return contexts_[next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()]->get_executor();
}

void runtime::start() {
  if (!threads_.empty()) return;
  for (auto& ctx : contexts_) {
    threads_.emplace_back([c = ctx.get()] {
      for (;;) {
        try {
          c->run();
          return;
        } catch (const std::exception& e) {
          // A handler that throws must not take the thread down with it: log and keep serving.
          log::error("engine", "unhandled exception escaped a handler: ", log::error_text(e));
        }
      }
    });
  }
}

void runtime::stop() {
  guards_.clear();
  for (auto& ctx : contexts_) ctx->stop();
}

void runtime::join() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

}  // namespace sagaflow
