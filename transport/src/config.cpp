// Parsing of redis:// and rediss:// URLs into a config.
#include <sagaflow/transport/config.hpp>

#include <charconv>
#include <cstdlib>
#include <stdexcept>

namespace sagaflow::transport {

namespace {

[[noreturn]] void bad(std::string_view url_without_secret, const std::string& why) {
  throw std::invalid_argument("invalid Redis URL '" + std::string(url_without_secret) + "': " + why);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s, std::string_view shown) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) bad(shown, "truncated %-escape");
    int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
    if (hi < 0 || lo < 0) bad(shown, "bad %-escape");
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

template <typename Int>
Int parse_number(std::string_view s, Int lo, Int hi, std::string_view shown, std::string_view what) {
  Int v{};
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || ptr != s.data() + s.size() || v < lo || v > hi)
    bad(shown, std::string(what) + " must be a number from " + std::to_string(lo) + " to " + std::to_string(hi) +
                   ", not '" + std::string(s) + "'");
  return v;
}

bool parse_bool(std::string_view s, std::string_view shown, std::string_view what) {
  if (s == "true" || s == "1" || s == "yes") return true;
  if (s == "false" || s == "0" || s == "no") return false;
  bad(shown, std::string(what) + " must be true or false");
}

}  // namespace

config config::from_url(std::string_view url) {
  // Error messages quote the URL without its userinfo, so a password never reaches a log.
  std::string shown(url);
  if (auto at = shown.rfind('@'); at != std::string::npos) {
    auto scheme_end = shown.find("://");
    std::size_t from = (scheme_end != std::string::npos && scheme_end < at) ? scheme_end + 3 : 0;
    shown.replace(from, at - from, "***");
  }

  config c;
  std::string_view rest = url;
  if (rest.starts_with("redis://")) {
    rest.remove_prefix(8);
  } else if (rest.starts_with("rediss://")) {
    rest.remove_prefix(9);
    c.tls = true;
  } else {
    bad(shown, "the scheme must be redis:// or rediss://");
  }

  std::string_view query;
  if (auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  std::string_view path;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    path = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    if (auto colon = userinfo.find(':'); colon != std::string_view::npos) {
      c.username = percent_decode(userinfo.substr(0, colon), shown);
      c.password = percent_decode(userinfo.substr(colon + 1), shown);
    } else {
      c.username = percent_decode(userinfo, shown);
    }
  }

  std::string_view port;
  const bool bracketed = rest.starts_with('[');
  if (bracketed) {  // [::1]:6379
    auto close = rest.find(']');
    if (close == std::string_view::npos) bad(shown, "unterminated IPv6 address");
    c.host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') bad(shown, "expected ':' after the IPv6 address");
      port = rest.substr(1);
      if (port.empty()) bad(shown, "empty port");
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    c.host = std::string(rest.substr(0, colon));
    port = rest.substr(colon + 1);
    if (port.empty()) bad(shown, "empty port");
  } else {
    c.host = std::string(rest);
  }
  if (c.host.empty()) bad(shown, "no host");
  if (!bracketed && c.host.find(':') != std::string::npos)
    bad(shown, "an IPv6 address must be in brackets, e.g. redis://[::1]:6379");
  if (!port.empty()) c.port = parse_number<std::uint16_t>(port, 1, 65535, shown, "port");
  if (!path.empty()) c.database = parse_number<int>(path, 0, 1 << 20, shown, "database");

  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (item.empty()) continue;
    auto eq = item.find('=');
    if (eq == std::string_view::npos) bad(shown, "option '" + std::string(item) + "' has no value");
    std::string_view key = item.substr(0, eq);
    std::string value = percent_decode(item.substr(eq + 1), shown);
    if (key == "protocol") {
      c.protocol = parse_number<int>(value, 2, 3, shown, "protocol");
    } else if (key == "client_name") {
      c.client_name = value;
    } else if (key == "connect_timeout_ms") {
      c.connect_timeout = std::chrono::milliseconds(parse_number<std::int64_t>(value, 1, 86'400'000, shown, key));
    } else if (key == "command_timeout_ms") {
      c.command_timeout = std::chrono::milliseconds(parse_number<std::int64_t>(value, 1, 86'400'000, shown, key));
    } else if (key == "tls_ca") {
      c.tls_ca_file = value;
    } else if (key == "tls_cert") {
      c.tls_cert_file = value;
    } else if (key == "tls_key") {
      c.tls_key_file = value;
    } else if (key == "tls_verify") {
      c.tls_verify = parse_bool(value, shown, key);
    } else if (key == "tls_server_name") {
      c.tls_server_name = value;
    } else {
      bad(shown, "unknown option '" + std::string(key) + "'");
    }
  }
  return c;
}

config config::from_env() {
  if (const char* url = std::getenv("SAGAFLOW_REDIS_URL"); url && *url) return from_url(url);
  return config{};
}

std::string config::describe() const {
  std::string out = tls ? "rediss://" : "redis://";
  if (!username.empty() || !password.empty()) out += username + (password.empty() ? "" : ":***") + "@";
  out += host.find(':') != std::string::npos ? "[" + host + "]" : host;
  out += ":" + std::to_string(port);
  if (database) out += "/" + std::to_string(database);
  return out;
}

}  // namespace sagaflow::transport
