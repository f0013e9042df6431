// The executors sagaflow runs on: a pool of io_contexts, one thread each, so that a connection
// and the coroutines that own it live on one thread without locks. The Asio reactor (io_uring or
// epoll) is fixed at build time (SAGAFLOW_IO_BACKEND) and logged once when the runtime starts.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

namespace sagaflow {

struct runtime_options {
  std::size_t threads = 0;  // 0: std::thread::hardware_concurrency()
};

class runtime {
 public:
  explicit runtime(runtime_options options = {});
  // Prompt: stops the threads at once (handlers not yet run are dropped, as when an io_context
  // is destroyed; whoever needs an orderly end, e.g. a worker, awaits it before), then shuts
  // every context's services down before destroying any, so that objects on one context held
  // by coroutines of another never outlive the services they use.
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  // Round-robin over the io_contexts: spreads connections and loops across threads.
  boost::asio::any_io_executor executor() noexcept;
  boost::asio::io_context& context(std::size_t index) noexcept { return *contexts_[index]; }
  std::size_t size() const noexcept { return contexts_.size(); }

  void start();  // one thread per io_context; idempotent
  void stop();   // makes run() return in every thread; pending handlers are dropped
  void join();

  // "io_uring" or "epoll": the reactor this build of sagaflow uses.
  static std::string_view backend() noexcept;

 private:
  struct context_deleter {  // the contexts are of a type private to runtime.cpp
    void operator()(boost::asio::io_context* ctx) const noexcept;
  };
  std::vector<std::unique_ptr<boost::asio::io_context, context_deleter>> contexts_;
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  std::atomic<std::size_t> next_{0};
};

}  // namespace sagaflow
