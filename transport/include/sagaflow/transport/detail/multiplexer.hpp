// The connection's bookkeeping without I/O: requests waiting to be written, what the next write
// holds, replies matched to requests in order, deadlines and cancellation. The connection owns
// sockets and timers and asks this class what to do, so that all of it is unit-tested serverless.
#pragma once

#include <sagaflow/transport/connection.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

namespace sagaflow::transport::detail {

class multiplexer {
 public:
  using handler = connection::exec_handler;
  using time_point = steady_clock::time_point;
  using error_code = boost::system::error_code;

  // A request's deadline is its timeout (command_timeout if it has none) plus its block_time,
  // counted from add(). A write holds at least one request and takes no more once it reaches
  // max_write_batch bytes.
  explicit multiplexer(std::chrono::milliseconds command_timeout, std::size_t max_write_batch = 4 * 1024 * 1024)
      : command_timeout_(command_timeout), max_write_batch_(max_write_batch) {}

  // Queues `req` to be written, or completes it at once: an empty one with no replies, an
  // incomplete one with invalid_argument. Returns a time if the watchdog must now fire earlier
  // than it was set to (or it was not set).
  std::optional<time_point> add(std::uint64_t id, request&& req, handler&& h, time_point now);

  // Completes request `id` with operation_aborted. Unwritten, it is dropped and never written;
  // written, it stays so that its replies are read and discarded. Unknown ids are ignored.
  void cancel(std::uint64_t id);

  // The bytes of the next write: every queued request in order, until max_write_batch. Those
  // count as written from now on (their replies may come before the write completes). Empty if
  // nothing is queued or the previous write has not completed; valid until the next call.
  std::string_view prepare_write();
  // The write completed, successfully or not (a failed write means a lost connection).
  void commit_write() noexcept { writing_ = false; }

  // One reply, for the oldest written request; a request completes with its last reply. Pushes
  // are out of band: ignored. False when no written request waits for it: the stream is corrupt.
  [[nodiscard]] bool on_reply(resp::value&& v);

  struct watchdog_verdict {
    // The oldest written request was overdue and failed with timeout. Replies come in order, so
    // the link is stuck (server hung, half-open TCP): drop it, and everything behind fails fast.
    bool stuck = false;
    std::string_view command;        // the stuck request's first command, for the log
    std::optional<time_point> next;  // when to call on_watchdog again
  };
  // Called when the time add() or the previous call asked for has come: unwritten requests past
  // their deadline fail with timeout (nothing was sent); written ones are only judged as above.
  watchdog_verdict on_watchdog(time_point now);

  // The link dropped because of `why`: written requests fail with connection_lost (they may have
  // run), or protocol_error when that was why; unwritten ones wait for the next link.
  void on_connection_lost(error_code why);
  // Fails every request, unwritten ones first, with `ec`.
  void fail_all(error_code ec);
  // Destroys every request without completing it (the execution context is going away).
  void drop_all();

 private:
  struct pending {
    std::uint64_t id;
    request req;
    std::size_t received = 0;
    response replies;
    time_point deadline;
    handler done;  // empty once completed or cancelled
  };
  static void complete(pending& p, error_code ec);
  static void fail(std::deque<pending>& list, error_code ec);

  std::chrono::milliseconds command_timeout_;
  std::size_t max_write_batch_;
  std::deque<pending> queued_, written_;
  std::string write_buffer_;
  bool writing_ = false;
  std::optional<time_point> watchdog_;  // when the connection's timer calls on_watchdog
};

}  // namespace sagaflow::transport::detail
