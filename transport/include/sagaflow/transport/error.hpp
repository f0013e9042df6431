// Errors at the Redis boundary: transport failures as error_codes of the "sagaflow.redis"
// category; error replies from the server as server_error, naming the command and its text.
#pragma once

#include <boost/system/error_code.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace sagaflow::transport {

enum class error {
  connection_lost = 1,  // the connection dropped after the request was written: it may have run
  timeout,              // no reply within the request's timeout
  closed,               // the connection was closed by its owner
  protocol_error,       // the server sent bytes that are not RESP
  handshake_failed,     // HELLO/AUTH/SELECT was refused
  unexpected_reply,     // a reply of a type the command never returns
  no_script,            // EVALSHA: the script is not loaded (handled internally)
};

const boost::system::error_category& error_category() noexcept;
inline boost::system::error_code make_error_code(error e) noexcept {
  return {static_cast<int>(e), error_category()};
}

// An error reply ("-ERR ...", "-WRONGTYPE ...", "!...") to one command.
class server_error : public std::runtime_error {
 public:
  server_error(std::string_view command, std::string_view reply);
  const std::string& command() const noexcept { return command_; }
  const std::string& reply() const noexcept { return reply_; }
  // The first word of the reply: "ERR", "WRONGTYPE", "NOSCRIPT", "BUSYGROUP", ...
  std::string_view code() const noexcept;
  // The server refused to run the command for now: LOADING (a restarted server loading its
  // dataset), BUSY (a script running too long), TRYAGAIN, MASTERDOWN. The command did not run;
  // running it again later is safe.
  bool transient() const noexcept;

 private:
  std::string command_;
  std::string reply_;
};

}  // namespace sagaflow::transport

template <>
struct boost::system::is_error_code_enum<sagaflow::transport::error> : std::true_type {};
