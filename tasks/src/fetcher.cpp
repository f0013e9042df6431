// Fetching: a batch as large as the free slots, or a blocking wait when the queue is empty.
#include "fetcher.hpp"

#include <sagaflow/engine/log.hpp>

namespace sagaflow::tasks {

using std::chrono::milliseconds;

awaitable<void> fetcher::connect() {
  blocking_ = transport::connection::create(state_.strand, state_.redis_config);
  co_await blocking_->connect();
  reader_ = std::make_unique<broker>(blocking_);
}

void fetcher::stop() {
  stopped_ = true;
  hold_.cancel();
  if (blocking_) blocking_->close();
  q_.slot_freed.notify_all();
  pause_.wake();
}

// Strict: p0..p3. Weighted: the first stream is drawn by weight, so that low priority still
// progresses while higher streams are never empty.
std::vector<std::size_t> fetcher::fetch_order() {
  std::vector<std::size_t> order{0, 1, 2, 3};
  auto& options = state_.options;
  if (options.mode == priority_mode::weighted) {
    unsigned total = 0;
    for (auto w : options.weights) total += w;
    auto draw = static_cast<unsigned>(state_.random.uniform() * total);
    std::size_t first = 0;
    for (unsigned acc = 0; first < priority_count; ++first) {
      acc += options.weights[first];
      if (draw < acc) break;
    }
    if (first >= priority_count) first = priority_count - 1;
    order.erase(order.begin() + static_cast<std::ptrdiff_t>(first));
    order.insert(order.begin(), first);
  }
  return order;
}

awaitable<void> fetcher::run() {
  auto& consumer = state_.options.consumer;
  while (!stopped_) {
    std::size_t free = q_.fetch_room();
    // A busy queue reads when half its room is free, or a moment after the first slot freed:
    // slots tend to free together (a batch of short tasks ends), and one read for all of them
    // costs Redis and the worker far less than a read per slot. An idle queue reads at once.
    if (free > 0 && free < std::max<std::size_t>(1, (q_.slots + q_.prefetch) / 2) && q_.running + q_.buffered() > 0) {
      auto now = steady_clock::now();
      if (!holding_) {
        holding_ = true;
        hold_.expires_at(now + max_hold);
        hold_.async_wait([keep = state_.owner.lock(), this](boost::system::error_code ec) {
          if (!ec) q_.slot_freed.notify_all();
        });
      }
      if (now < hold_.expiry()) {
        co_await q_.slot_freed.wait();
        continue;
      }
    }
    if (holding_) {
      holding_ = false;
      hold_.cancel();
    }
    if (free == 0) {
      co_await q_.slot_freed.wait();
      continue;
    }
    try {
      auto order = fetch_order();
      auto batches = co_await reader_->fetch(q_.keys, order, consumer, free, plan_);
      if (!batches.empty()) {
        processor_.accept(q_, std::move(batches));
        continue;
      }
      // Nothing ready: block on all four streams until something arrives (or fetch_block).
      plan_.known = false;  // the streams change while this waits
      auto woken = co_await broker::wait_for_tasks(*blocking_, q_.keys, consumer, state_.options.fetch_block);
      processor_.accept(q_, std::move(woken));
      continue;
    } catch (const std::exception& e) {
      if (stopped_) break;
      log::warn("worker", "fetch from queue ", q_.config.name, " failed: ", log::error_text(e), "; retrying");
    }
    co_await pause_.sleep_until(steady_clock::now() + milliseconds(500));  // only reached after a failure
  }
}

}  // namespace sagaflow::tasks
