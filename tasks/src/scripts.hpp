// The task queue's Lua scripts (tasks/lua/*.lua), embedded at build time.
#pragma once

#include <sagaflow/transport/commands.hpp>

namespace sagaflow::tasks::scripts {
const transport::script& enqueue();
const transport::script& backlog();
const transport::script& settle();
const transport::script& dead();
const transport::script& promote();
const transport::script& requeue_dead();
const transport::script& renew();
const transport::script& release();
}  // namespace sagaflow::tasks::scripts
