// The saga engine's Lua scripts (sagas/lua/*.lua), embedded at build time.
#pragma once

#include <sagaflow/transport/commands.hpp>

namespace sagaflow::sagas::scripts {
const transport::script& start();
const transport::script& take();
const transport::script& append();
const transport::script& cancel();
const transport::script& due();
const transport::script& resume();
const transport::script& adopt();
}  // namespace sagaflow::sagas::scripts
