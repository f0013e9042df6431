// A tasks::worker running in the background of a test's coroutine, and how its run() ended: what
// a test that runs workers beside its own steps checks once it has stopped them.
#pragma once

#include <sagaflow/engine/stop.hpp>
#include <sagaflow/tasks/worker.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <string>
#include <string_view>

namespace sagaflow::testing {

struct worker_end {
  bool finished = false;  // run() has returned
  bool unasked = false;   // it returned before its stop was requested
  std::string failure;    // what it threw; "" if nothing
};

// Spawns `w.run(stop)` on `ex`; `end`, which must outlive the run, says when and how it ended.
void start_worker(boost::asio::any_io_executor ex, tasks::worker& w, stop_source stop, worker_end& end);

// Adds a test failure, naming the worker `who`, if it threw or ended before its stop was requested.
void expect_clean_end(const worker_end& end, std::string_view who = "worker");

}  // namespace sagaflow::testing
