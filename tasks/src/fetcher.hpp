// The fetcher of one queue: whenever the queue has free handler slots (plus the prefetch
// allowance), it reads that many new entries (higher priority streams first, one round trip
// planned by the lags the previous one answered) and gives them to the processor; when the
// queue is empty it blocks on all four streams until one has an entry. It has a connection of
// its own, so that a fetch never waits behind the settler's acknowledgements in a pipeline.
#pragma once

#include "processor.hpp"

namespace sagaflow::tasks {

class fetcher {
 public:
  fetcher(worker_state& state, queue_state& q, processor& proc)
      : state_(state), q_(q), processor_(proc), pause_(state.strand), hold_(state.strand) {}

  awaitable<void> connect();
  // Ends when stop() is called.
  awaitable<void> run();
  // The blocking read ends as its connection closes.
  void stop();

 private:
  std::vector<std::size_t> fetch_order();

  worker_state& state_;
  queue_state& q_;
  processor& processor_;
  std::shared_ptr<transport::connection> blocking_;
  std::unique_ptr<broker> reader_;  // on blocking_: fetches never wait behind settlements
  broker::fetch_plan plan_;
  wakeup pause_;  // after a failed fetch
  // How long a busy queue may wait for more of its slots to free before it reads for fewer.
  static constexpr std::chrono::microseconds max_hold{500};
  boost::asio::steady_timer hold_;
  bool holding_ = false;
  bool stopped_ = false;
};

}  // namespace sagaflow::tasks
