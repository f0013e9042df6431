// Redis key names of a queue (docs/design.md): every key of a queue shares the hash tag
// {q:<queue>}, so that one script may touch them all, on one server or a cluster.
#pragma once

#include <sagaflow/tasks/task.hpp>

#include <array>
#include <string>

namespace sagaflow::tasks {

inline constexpr std::string_view consumer_group = "workers";

struct queue_keys {
  queue_keys(std::string_view prefix, std::string_view queue)
      : base(std::string(prefix) + ":{q:" + std::string(queue) + "}"), queue_name(queue) {
    for (std::size_t p = 0; p < priority_count; ++p) streams[p] = base + ":p" + std::to_string(p);
    delayed = base + ":delayed";
    dead = base + ":dead";
  }
  const std::string& name() const noexcept { return queue_name; }
  std::string uniq(std::string_view key) const { return base + ":uniq:" + std::string(key); }
  std::string result(std::string_view task_id) const { return base + ":result:" + std::string(task_id); }

  std::string base;
  std::array<std::string, priority_count> streams;
  std::string delayed;
  std::string dead;
  std::string queue_name;
};

}  // namespace sagaflow::tasks
