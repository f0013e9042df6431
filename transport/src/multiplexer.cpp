// The connection's bookkeeping: queue, write batches, reply matching, deadlines, cancellation.
// Runs on the connection's strand.
#include <sagaflow/transport/detail/multiplexer.hpp>

#include <boost/asio/error.hpp>

#include <stdexcept>

namespace sagaflow::transport::detail {

void multiplexer::complete(pending& p, error_code ec) {
  if (!p.done) return;
  // The connection's handlers post to the caller's executor: no caller resumes in here.
  std::move(p.done)(ec, std::move(p.replies));
  p.done = {};
}

void multiplexer::fail(std::deque<pending>& list, error_code ec) {
  for (auto& p : list) complete(p, ec);
  list.clear();
}

std::optional<multiplexer::time_point> multiplexer::add(std::uint64_t id, request&& req, handler&& h, time_point now) {
  pending p{id, std::move(req), 0, {}, {}, std::move(h)};
  p.deadline = now + p.req.timeout.value_or(command_timeout_) + p.req.block_time;
  if (p.req.empty()) {
    complete(p, {});
    return std::nullopt;
  }
  try {
    (void)p.req.payload();  // throws if the request is incomplete: the caller's mistake
  } catch (const std::logic_error&) {
    complete(p, boost::asio::error::invalid_argument);
    return std::nullopt;
  }
  std::optional<time_point> arm;
  if (!watchdog_ || p.deadline < *watchdog_) watchdog_ = arm = p.deadline;
  queued_.push_back(std::move(p));
  return arm;
}

void multiplexer::cancel(std::uint64_t id) {
  for (auto it = queued_.begin(); it != queued_.end(); ++it) {
    if (it->id == id) {
      complete(*it, boost::asio::error::operation_aborted);
      queued_.erase(it);
      return;
    }
  }
  for (auto& p : written_)
    if (p.id == id) complete(p, boost::asio::error::operation_aborted);
}

std::string_view multiplexer::prepare_write() {
  if (writing_ || queued_.empty()) return {};
  write_buffer_.clear();
  while (!queued_.empty() && write_buffer_.size() < max_write_batch_) {
    write_buffer_.append(queued_.front().req.payload());
    written_.push_back(std::move(queued_.front()));
    queued_.pop_front();
  }
  writing_ = true;
  return write_buffer_;
}

bool multiplexer::on_reply(resp::value&& v) {
  if (v.type == resp::type::push) return true;  // out of band (we never subscribe): not a reply
  if (written_.empty()) return false;
  auto& p = written_.front();
  if (p.done) p.replies.push_back(std::move(v));
  if (++p.received == p.req.size()) {
    complete(p, {});
    written_.pop_front();
  }
  return true;
}

multiplexer::watchdog_verdict multiplexer::on_watchdog(time_point now) {
  watchdog_.reset();
  watchdog_verdict verdict;
  for (auto it = queued_.begin(); it != queued_.end();) {
    if (it->deadline <= now) {
      complete(*it, error::timeout);
      it = queued_.erase(it);
    } else {
      ++it;
    }
  }
  // Only the oldest written request is judged: the ones behind it cannot be answered before it.
  // It stays in the list, completed, so that a reply of its arriving still finds its place.
  if (!written_.empty() && written_.front().deadline <= now) {
    auto& p = written_.front();
    verdict.stuck = true;
    verdict.command = p.req.command_name(0);
    complete(p, error::timeout);
  }
  for (auto& p : queued_)
    if (!watchdog_ || p.deadline < *watchdog_) watchdog_ = p.deadline;
  for (auto& p : written_)
    if (p.done && (!watchdog_ || p.deadline < *watchdog_)) {
      watchdog_ = p.deadline;
      break;  // in order: the first live one is the one that matters
    }
  verdict.next = watchdog_;
  return verdict;
}

void multiplexer::on_connection_lost(error_code why) {
  // A corrupt reply stream is reported as such; any other loss means "may have run".
  fail(written_, why == error::protocol_error ? why : make_error_code(error::connection_lost));
}

void multiplexer::fail_all(error_code ec) {
  fail(queued_, ec);
  fail(written_, ec);
}

void multiplexer::drop_all() {
  // Moved out first: destroying a handler may destroy its caller's frame, which may call back.
  auto dropped_queued = std::move(queued_);
  auto dropped_written = std::move(written_);
  queued_.clear();
  written_.clear();
}

}  // namespace sagaflow::transport::detail
