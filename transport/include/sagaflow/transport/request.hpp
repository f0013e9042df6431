// A request is a pipeline: commands serialized as RESP arrays of bulk strings into one buffer,
// written with a single call and answered by one reply per command, in order.
#pragma once

#include <charconv>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sagaflow::transport {

class request {
 public:
  // Starts a command of `argc` arguments (the command name included); follow with argc arg()s.
  request& begin(std::size_t argc);
  request& arg(std::string_view a);
  request& arg(const char* a) { return arg(std::string_view(a)); }
  template <std::integral I>
    requires(!std::same_as<I, bool> && !std::same_as<I, char>)
  request& arg(I n) {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
    (void)ec;
    return arg(std::string_view(buf, static_cast<std::size_t>(end - buf)));
  }
  request& arg(double d);
  // A char or bool would otherwise become a number silently: say what you mean.
  request& arg(char) = delete;
  request& arg(bool) = delete;

  // One whole command: push("XACK", key, group, id).
  template <typename... Args>
  request& push(std::string_view command, const Args&... args) {
    begin(1 + sizeof...(Args));
    arg(command);
    (arg(args), ...);
    return *this;
  }

  // Appends every command of `other` (e.g. to wrap commands in MULTI/EXEC).
  request& append(const request& other);

  std::size_t size() const noexcept { return starts_.size(); }
  bool empty() const noexcept { return starts_.empty(); }
  // The bytes to send; throws std::logic_error if the last command lacks arguments.
  const std::string& payload() const;
  // The name of command `i` (for error messages), e.g. "XADD".
  std::string_view command_name(std::size_t i) const;

  // Time allowed for the whole request from exec() to its last reply; unset: the
  // connection's command_timeout. Blocking commands (XREADGROUP BLOCK) add their block time
  // to it in block_time.
  std::optional<std::chrono::milliseconds> timeout;
  std::chrono::milliseconds block_time{0};

  void clear() noexcept;
  void reserve(std::size_t bytes) { payload_.reserve(bytes); }

 private:
  std::string payload_;
  std::vector<std::uint32_t> starts_;  // offset of each command in payload_
  std::size_t args_left_ = 0;
};

}  // namespace sagaflow::transport
