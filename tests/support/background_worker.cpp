// A worker's run() spawned for a test: see background_worker.hpp.
#include "background_worker.hpp"

#include <boost/asio/co_spawn.hpp>
#include <gtest/gtest.h>

#include <exception>

namespace sagaflow::testing {

void start_worker(boost::asio::any_io_executor ex, tasks::worker& w, stop_source stop, worker_end& end) {
  boost::asio::co_spawn(ex, w.run(stop), [&end, stop](std::exception_ptr e) {
    end.finished = true;
    end.unasked = !stop.stop_requested();
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& error) {
      end.failure = *error.what() ? error.what() : "an exception with no message";
    } catch (...) {
      end.failure = "non-standard exception";
    }
  });
}

void expect_clean_end(const worker_end& end, std::string_view who) {
  if (!end.failure.empty()) ADD_FAILURE() << who << " failed: " << end.failure;
  if (end.unasked) ADD_FAILURE() << who << " ended before it was asked to stop";
}

}  // namespace sagaflow::testing
