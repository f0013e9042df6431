// RESP serialization of commands: "*<argc>\r\n" then "$<len>\r\n<bytes>\r\n" per argument.
#include <sagaflow/transport/request.hpp>

namespace sagaflow::transport {

namespace {
void append_header(std::string& out, char kind, std::size_t n) {
  char buf[24];
  buf[0] = kind;
  auto [end, ec] = std::to_chars(buf + 1, buf + sizeof buf - 2, n);
  (void)ec;
  *end++ = '\r';
  *end++ = '\n';
  out.append(buf, static_cast<std::size_t>(end - buf));
}
}  // namespace

request& request::begin(std::size_t argc) {
  if (args_left_ != 0) throw std::logic_error("transport::request: previous command is missing arguments");
  if (argc == 0) throw std::logic_error("transport::request: a command needs at least its name");
  starts_.push_back(static_cast<std::uint32_t>(payload_.size()));
  append_header(payload_, '*', argc);
  args_left_ = argc;
  return *this;
}

request& request::arg(std::string_view a) {
  if (args_left_ == 0) throw std::logic_error("transport::request: more arguments than begin() declared");
  --args_left_;
  append_header(payload_, '$', a.size());
  payload_.append(a);
  payload_.append("\r\n", 2);
  return *this;
}

request& request::arg(double d) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  (void)ec;
  return arg(std::string_view(buf, static_cast<std::size_t>(end - buf)));
}

const std::string& request::payload() const {
  if (args_left_ != 0) throw std::logic_error("transport::request: last command is missing arguments");
  return payload_;
}

std::string_view request::command_name(std::size_t i) const {
  if (i >= starts_.size()) return {};
  std::string_view p(payload_);
  p.remove_prefix(starts_[i]);
  // "*N\r\n$L\r\nNAME\r\n"
  auto a = p.find("\r\n");
  if (a == std::string_view::npos) return {};
  auto b = p.find("\r\n", a + 2);
  if (b == std::string_view::npos) return {};
  auto c = p.find("\r\n", b + 2);
  if (c == std::string_view::npos) return {};
  return p.substr(b + 2, c - b - 2);
}

request& request::append(const request& other) {
  const std::string& bytes = other.payload();
  if (args_left_ != 0) throw std::logic_error("transport::request: previous command is missing arguments");
  // `other` may be *this: take sizes first, and index rather than iterate while appending.
  auto base = static_cast<std::uint32_t>(payload_.size());
  std::size_t length = bytes.size();
  std::size_t n = other.starts_.size();
  starts_.reserve(starts_.size() + n);
  for (std::size_t i = 0; i < n; ++i) starts_.push_back(base + other.starts_[i]);
  payload_.append(bytes, 0, length);  // std::string handles appending itself
  return *this;
}

void request::clear() noexcept {
  payload_.clear();
  starts_.clear();
  args_left_ = 0;
  timeout.reset();
  block_time = {};
}

}  // namespace sagaflow::transport
