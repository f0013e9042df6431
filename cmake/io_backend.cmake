# Chooses the Asio reactor once, at configure time: Asio selects it with macros, so every
# translation unit that includes Asio (ours and our users') must agree. The choice is exported
# with sagaflow::engine, so an installed package carries it to its consumers.
find_library(SAGAFLOW_LIBURING uring)
find_path(SAGAFLOW_LIBURING_INCLUDE liburing.h)

set(_backend ${SAGAFLOW_IO_BACKEND})
if(_backend STREQUAL "auto")
  set(_backend epoll)
  if(SAGAFLOW_LIBURING AND SAGAFLOW_LIBURING_INCLUDE)
    # The build machine's kernel decides the default: containers often forbid io_uring.
    try_run(_uring_run _uring_compile
      SOURCES ${CMAKE_CURRENT_LIST_DIR}/io_uring_probe.cpp
      LINK_LIBRARIES ${SAGAFLOW_LIBURING}
      CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${SAGAFLOW_LIBURING_INCLUDE}")
    if(_uring_compile AND _uring_run EQUAL 0)
      set(_backend io_uring)
    endif()
  endif()
elseif(_backend STREQUAL "io_uring")
  if(NOT SAGAFLOW_LIBURING OR NOT SAGAFLOW_LIBURING_INCLUDE)
    message(FATAL_ERROR "SAGAFLOW_IO_BACKEND=io_uring needs liburing (apt-get install liburing-dev)")
  endif()
elseif(NOT _backend STREQUAL "epoll")
  message(FATAL_ERROR "SAGAFLOW_IO_BACKEND must be auto, io_uring or epoll, not '${_backend}'")
endif()
set(SAGAFLOW_IO_BACKEND_CHOSEN ${_backend})
message(STATUS "sagaflow: Asio reactor: ${_backend}")
