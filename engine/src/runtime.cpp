// Pool of single-threaded io_contexts; see runtime.hpp.
#include <sagaflow/engine/log.hpp>
#include <sagaflow/engine/runtime.hpp>

#include <boost/asio/executor_work_guard.hpp>

#include <chrono>
#include <stdexcept>
#include <system_error>

namespace sagaflow {

std::string_view runtime::backend() noexcept { return SAGAFLOW_IO_BACKEND_NAME; }

runtime::runtime(runtime_options options) {
  std::size_t threads = options.threads ? options.threads : std::thread::hardware_concurrency();
  if (threads == 0) threads = 1;
  contexts_.reserve(threads);
  try {
    for (std::size_t i = 0; i < threads; ++i) contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
  } catch (const std::system_error& e) {
    // An io_uring build on a kernel (or seccomp profile) that forbids io_uring fails here.
    throw std::runtime_error(std::string("sagaflow: cannot create the ") + std::string(backend()) +
                             " reactor (" + e.what() +
                             "); rebuild with -DSAGAFLOW_IO_BACKEND=epoll on this machine");
  }
  for (auto& ctx : contexts_) guards_.push_back(boost::asio::make_work_guard(*ctx));
  log::info("engine", "runtime: ", threads, " thread(s), reactor ", backend());
}

runtime::~runtime() {
  // Let what is still running finish (closed connections end their loops, flushes complete)
  // before the contexts are destroyed: destroying a suspended coroutine that owns I/O objects
  // while Asio tears its services down is not safe. Work that never ends (a forgotten
  // connection, a signal wait) is stopped after a short grace.
  guards_.clear();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (running_.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop();
  join();
}

boost::asio::any_io_executor runtime::executor() noexcept {
  return contexts_[next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()]->get_executor();
}

void runtime::start() {
  if (!threads_.empty()) return;
  for (auto& ctx : contexts_) {
    running_.fetch_add(1);
    threads_.emplace_back([this, c = ctx.get()] {
      for (;;) {
        try {
          c->run();
          running_.fetch_sub(1);
          return;
        } catch (const std::exception& e) {
          // A handler that throws must not take the thread down with it: log and keep serving.
          log::error("engine", "unhandled exception escaped a handler: ", e.what());
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
