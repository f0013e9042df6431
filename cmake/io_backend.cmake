# Chooses the Asio reactor once, at configure time: Asio selects it with macros, so every
# translation unit that includes Asio (ours and our users') must agree. The choice is exported
# with sagaflow::engine, so an installed package carries it to its consumers, and the runtime
# names it in its first log line ("runtime: N thread(s), reactor epoll").
#
# `auto` means epoll; io_uring is chosen only explicitly. Evidence (`sagaflow-bench
# reactor-stress`, both reactors, bench/RESULTS.md "reactor"): Boost 1.81's Asio submits its
# io_uring cancel entries (a socket closed, an operation cancelled) without setting their
# user_data, and newer liburing (Debian 12's 2.3 among them) no longer clears that field in its
# prep functions (liburing commit 8ecd3fd9, "Don't clear sqe->user_data"), so a cancel
# carries the user_data of whatever request last used the same slot of the ring. The kernel's
# answer to the cancel (0 or -ENOENT) then completes that request instead: a healthy connection's
# read ends with "End of file" or "No such file or directory" and the client drops it (Redis logs
# "Client closed connection"), and a request can also lose its completion and hang until its
# timeout. In the stress the io_uring build lost healthy connections in 12 of 13 runs: at
# shutdown, 1-6 per run in 5 of 5 runs of the worker's mix and 2-3 in 4 of 5 runs with the
# miswritten worker's shared timer; with 20 short-lived connections per second beside the
# workers, 7-50 per run while running (a lost connection's own close sends the next stale
# cancel), with stuck tasks and a worker that never stopped. The epoll build lost none in 13 runs.
# Submitting those cancel entries with user_data 0 (what Asio 1.27 / Boost 1.82 does,
# chriskohlhoff/asio commit 0080ec1c9) made the io_uring build clean in 3 of 3 runs, which
# confirms the cause.
find_library(SAGAFLOW_LIBURING uring)
find_path(SAGAFLOW_LIBURING_INCLUDE liburing.h)

set(_backend ${SAGAFLOW_IO_BACKEND})
if(_backend STREQUAL "auto")
  set(_backend epoll)
elseif(_backend STREQUAL "io_uring")
  if(NOT SAGAFLOW_LIBURING OR NOT SAGAFLOW_LIBURING_INCLUDE)
    message(FATAL_ERROR "SAGAFLOW_IO_BACKEND=io_uring needs liburing (apt-get install liburing-dev)")
  endif()
  if(Boost_VERSION VERSION_LESS 1.82)
    message(WARNING "SAGAFLOW_IO_BACKEND=io_uring with Boost ${Boost_VERSION}: Asio before 1.27 (Boost 1.82) "
                    "lets an io_uring cancel complete an unrelated operation, so healthy connections can "
                    "see 'End of file' when another socket closes (cmake/io_backend.cmake). Prefer epoll.")
  endif()
  # Only a warning: the machine that builds is not always the one that runs.
  try_run(_uring_run _uring_compile
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/io_uring_probe.cpp
    LINK_LIBRARIES ${SAGAFLOW_LIBURING}
    CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${SAGAFLOW_LIBURING_INCLUDE}")
  if(NOT _uring_compile OR NOT _uring_run EQUAL 0)
    message(WARNING "this machine's kernel (or seccomp profile) does not let a process create an io_uring "
                    "instance: programs built here fail at start when run here")
  endif()
elseif(NOT _backend STREQUAL "epoll")
  message(FATAL_ERROR "SAGAFLOW_IO_BACKEND must be auto, io_uring or epoll, not '${_backend}'")
endif()
set(SAGAFLOW_IO_BACKEND_CHOSEN ${_backend})
message(STATUS "sagaflow: Asio reactor: ${_backend}")
