// The task queue's Lua scripts (tasks/lua/*.lua), embedded at build time.
#pragma once

#include <sagaflow/transport/commands.hpp>

namespace sagaflow::tasks::scripts {
const redis::script& enqueue();
const redis::script& fetch();
const redis::script& retry();
const redis::script& dead();
const redis::script& promote();
const redis::script& requeue_dead();
const redis::script& renew();
const redis::script& release();
}  // namespace sagaflow::tasks::scripts
