// One Redis connection, shared by any number of coroutines: requests are pipelined (written as
// soon as they arrive, many in flight, replies matched in order). The connection reconnects by
// itself with jittered backoff; requests in flight when it drops fail with
// error::connection_lost (they may have run), requests not yet written wait for the next
// connection until their timeout. After each connect the connection waits until the server has
// loaded its dataset (INFO persistence, loading:0) before it writes requests: a restarted Redis
// answers -LOADING meanwhile. A -LOADING reply that still arrives (the server started loading
// while connected: DEBUG RELOAD, a replica's resync) is passed on as a server_error whose
// transient() is true: the command did not run. It is not retried here, because a pipeline's
// other commands may have run and MULTI/EXEC must stay one unit; the caller decides.
//
// Teardown in any order is safe: when the execution context is destroyed first, the connection
// gives back its sockets, timers and strand while the context's services still exist (pending
// requests are dropped with their callers' coroutines, as Asio drops every pending handler);
// what remains is an inert object that may be closed and destroyed later, on any thread.
#pragma once

#include <sagaflow/engine/coro.hpp>
#include <sagaflow/transport/config.hpp>
#include <sagaflow/transport/error.hpp>
#include <sagaflow/transport/request.hpp>
#include <sagaflow/transport/resp.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/system_executor.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace sagaflow::transport {

using response = std::vector<resp::value>;

class connection : public std::enable_shared_from_this<connection> {
 public:
  using executor_type = boost::asio::strand<boost::asio::any_io_executor>;
  using exec_handler = boost::asio::any_completion_handler<void(boost::system::error_code, response)>;

  // Throws std::invalid_argument for a config it cannot use (e.g. a TLS file that is missing).
  static std::shared_ptr<connection> create(boost::asio::any_io_executor ex, config cfg);
  ~connection();

  // Connects once (throws system_error saying why: refused, timeout, TLS, AUTH, SELECT), then
  // keeps the connection up in the background until close().
  awaitable<void> connect();
  // Fails every pending request with error::closed and stops reconnecting. Thread-safe.
  void close();

  // Sends `req` and completes with one reply per command (server errors included as values of
  // type simple_error/bulk_error). Supports per-operation cancellation: a cancelled request is
  // dropped if not yet written, otherwise its replies are discarded.
  template <typename Token>
  auto async_exec(request req, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, response)>(
        [self = shared_from_this()](auto handler, request r) {
          if (self->context_gone_.load(std::memory_order_acquire)) {
            // Our executor is gone with its context: answer on the caller's own executor.
            auto ex = boost::asio::get_associated_executor(handler, boost::asio::system_executor());
            boost::asio::post(ex, [h = std::move(handler)]() mutable {
              std::move(h)(make_error_code(error::closed), response{});
            });
            return;
          }
          // Everything touching the caller's cancellation slot happens on the caller's side: the
          // slot is assigned here and cleared just before the handler runs, on its executor.
          auto id = self->next_id_.fetch_add(1, std::memory_order_relaxed);
          auto slot = boost::asio::get_associated_cancellation_slot(handler);
          if (slot.is_connected())
            slot.assign([weak = self->weak_from_this(), id](boost::asio::cancellation_type) {
              if (auto c = weak.lock()) c->abandon(id);
            });
          // The reply is posted to the caller's executor, which is kept busy until then.
          auto work = boost::asio::prefer(boost::asio::get_associated_executor(handler, *self->strand_),
                                          boost::asio::execution::outstanding_work.tracked);
          exec_handler done([h = std::move(handler), work, slot](boost::system::error_code ec, response replies) mutable {
            boost::asio::post(work, [h = std::move(h), slot, ec, replies = std::move(replies)]() mutable {
              if (slot.is_connected()) slot.clear();
              std::move(h)(ec, std::move(replies));
            });
          });
          self->submit(std::move(r), std::move(done), id);
        },
        token, std::move(req));
  }
  // The coroutine form: throws system_error on a transport failure.
  awaitable<response> exec(request req);
  // One command; throws server_error when Redis answers with an error.
  awaitable<resp::value> call(request req);
  template <typename... Args>
  awaitable<resp::value> call(std::string_view command, const Args&... args) {
    request req;
    req.push(command, args...);
    return call(std::move(req));
  }

  // The connection's strand. Throws std::logic_error once its execution context is gone.
  executor_type get_executor() const;
  const transport::config& config() const noexcept { return cfg_; }
  bool connected() const noexcept { return connected_.load(std::memory_order_relaxed); }
  int protocol() const noexcept { return protocol_.load(std::memory_order_relaxed); }  // 2 or 3
  std::uint64_t reconnects() const noexcept { return reconnects_.load(std::memory_order_relaxed); }

  struct impl;      // the socket, buffers and queues; lives on the strand
  struct registry;  // the live connections of one execution context (see connection.cpp)

 private:
  connection(boost::asio::any_io_executor ex, transport::config cfg);
  void submit(request req, exec_handler handler, std::uint64_t id);
  void abandon(std::uint64_t id);  // thread-safe
  void release();  // the execution context is shutting down: give back what belongs to it

  std::optional<executor_type> strand_;  // reset by release(): a strand must not outlive its context
  std::shared_ptr<registry> registry_;
  std::atomic<bool> context_gone_{false};
  transport::config cfg_;
  std::unique_ptr<impl> impl_;
  std::atomic<bool> connected_{false};
  std::atomic<int> protocol_{0};
  std::atomic<std::uint64_t> reconnects_{0};
  std::atomic<std::uint64_t> next_id_{1};
};

// Throws server_error for the first error reply in `replies` (named after its command in `req`).
void throw_on_error(const request& req, const response& replies);

}  // namespace sagaflow::transport
