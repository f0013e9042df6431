// The "sagaflow.redis" error category and server_error.
#include <sagaflow/transport/error.hpp>

namespace sagaflow::transport {

namespace {
class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "sagaflow.redis"; }
  std::string message(int ev) const override {
    switch (static_cast<error>(ev)) {
      case error::connection_lost: return "connection lost with the request in flight (it may have run)";
      case error::timeout: return "no reply within the command timeout";
      case error::closed: return "connection closed";
      case error::protocol_error: return "malformed reply from the server";
      case error::handshake_failed: return "HELLO/AUTH/SELECT refused by the server";
      case error::unexpected_reply: return "reply of an unexpected type";
      case error::no_script: return "script not loaded";
    }
    return "unknown sagaflow.redis error";
  }
};
}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const category instance;
  return instance;
}

server_error::server_error(std::string_view command, std::string_view reply)
    : std::runtime_error(std::string(command) + ": " + std::string(reply)), command_(command), reply_(reply) {}

std::string_view server_error::code() const noexcept {
  std::string_view r(reply_);
  return r.substr(0, r.find(' '));
}

bool server_error::transient() const noexcept {
  const auto c = code();
  return c == "LOADING" || c == "BUSY" || c == "TRYAGAIN" || c == "MASTERDOWN";
}

}  // namespace sagaflow::transport
