// How to reach Redis: a plain struct with defaults, or parsed from a URL
// (redis://user:pass@host:port/db, rediss:// for TLS) as in SAGAFLOW_REDIS_URL.
#pragma once

#include <sagaflow/engine/backoff.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace sagaflow::transport {

struct config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string username;  // empty: the default user
  std::string password;  // empty: no AUTH
  int database = 0;

  bool tls = false;
  std::string tls_ca_file;    // empty: the system's CA store
  std::string tls_cert_file;  // client certificate, for servers with tls-auth-clients
  std::string tls_key_file;
  std::string tls_server_name;  // SNI and certificate name check; empty: host
  bool tls_verify = true;

  int protocol = 3;  // 3: HELLO 3 when the server has it, else RESP2; 2: RESP2 only
  std::string client_name = "sagaflow";
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds command_timeout{5000};
  bool reconnect = true;
  backoff_policy reconnect_backoff{.base = std::chrono::milliseconds(50), .multiplier = 2.0,
                                   .cap = std::chrono::milliseconds(2000), .jitter = sagaflow::jitter::equal};

  // redis://[user[:password]@]host[:port][/db][?option=value&...], rediss:// for TLS.
  // Options: protocol, client_name, connect_timeout_ms, command_timeout_ms, tls_ca, tls_cert,
  // tls_key, tls_verify (true|false), tls_server_name. Throws std::invalid_argument naming the
  // part that is wrong.
  static config from_url(std::string_view url);
  // SAGAFLOW_REDIS_URL when set, else the defaults above.
  static config from_env();

  // The URL back, with the password masked: for log lines.
  std::string describe() const;
};

}  // namespace sagaflow::transport
