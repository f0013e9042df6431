// AUTH with an ACL user, a wrong password, database selection, and TLS with a test-made CA.
#include "redis_server.hpp"

#include <sagaflow/transport/commands.hpp>

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

namespace asio = boost::asio;
namespace transport = sagaflow::transport;
using sagaflow::awaitable;
using sagaflow::testing::redis_server;
using sagaflow::testing::run;

namespace {

class auth_test : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    run([&]() -> awaitable<void> {
      auto admin = transport::connection::create(co_await asio::this_coro::executor, server.config());
      co_await admin->connect();
      co_await admin->call("ACL", "SETUSER", "app", "on", ">s3cret", "~app:*", "+@all");
      admin->close();
    }());
  }
  redis_server server;
};

}  // namespace

TEST_P(auth_test, an_acl_user_authenticates_and_gets_its_permissions) {
  run([&]() -> awaitable<void> {
    auto c = transport::config::from_url("redis://app:s3cret@127.0.0.1:" + std::to_string(server.port()) + "/2");
    c.protocol = GetParam();
    auto conn = transport::connection::create(co_await asio::this_coro::executor, c);
    co_await conn->connect();
    EXPECT_EQ((co_await conn->call("ACL", "WHOAMI")).text, "app");
    co_await conn->call("SET", "app:key", "in-db-2");
    try {
      co_await conn->call("SET", "other:key", "x");
      ADD_FAILURE() << "the ACL allows only app:* keys";
    } catch (const transport::server_error& e) {
      EXPECT_EQ(e.code(), "NOPERM") << e.what();
    }
    conn->close();

    // The key went to database 2, as the URL said.
    auto admin = transport::connection::create(co_await asio::this_coro::executor, server.config());
    co_await admin->connect();
    EXPECT_TRUE((co_await admin->call("GET", "app:key")).is_null());
    co_await admin->call("SELECT", 2);
    EXPECT_EQ((co_await admin->call("GET", "app:key")).text, "in-db-2");
    admin->close();
  }());
}

TEST_P(auth_test, a_wrong_password_is_a_clear_connect_error) {
  run([&]() -> awaitable<void> {
    auto c = server.config();
    c.username = "app";
    c.password = "wrong";
    c.protocol = GetParam();
    auto conn = transport::connection::create(co_await asio::this_coro::executor, c);
    try {
      co_await conn->connect();
      ADD_FAILURE() << "connect with a wrong password must fail";
    } catch (const boost::system::system_error& e) {
      EXPECT_EQ(e.code(), transport::error::handshake_failed);
      EXPECT_NE(std::string(e.what()).find("WRONGPASS"), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find("wrong"), std::string::npos) << "the password must not be shown";
    }
    conn->close();
  }());
}

INSTANTIATE_TEST_SUITE_P(resp, auth_test, ::testing::Values(2, 3),
                         [](const auto& info) { return "resp" + std::to_string(info.param); });

namespace {

// A CA and a server certificate for 127.0.0.1/localhost, made with the openssl CLI.
bool make_certificates(const std::filesystem::path& dir) {
  std::string d = dir.string();
  std::string script =
      "cd '" + d + "' && "
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=sagaflow-test-ca -keyout ca.key -out ca.crt && "
      "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr && "
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext && "
      "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.crt && "
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout other.key -out other.crt";
  return std::system((script + " >/dev/null 2>&1").c_str()) == 0;
}

// Asked for a TLS port without a certificate, a redis-server that has TLS refuses to start for
// want of tls-cert-file; one built without TLS rejects the option itself ("Bad directive") or
// lacks the TLS connection type, and never mentions the certificate.
bool redis_has_tls() {
  return std::system("timeout 10 redis-server --port 0 --tls-port 1 2>&1 | grep -q tls-cert-file") == 0;
}

}  // namespace

TEST(tls, connects_with_a_verified_certificate_and_refuses_an_unknown_ca) {
  if (!redis_has_tls()) GTEST_SKIP() << "this redis-server has no TLS (its --tls-port does not ask for a certificate)";
  auto certs = std::filesystem::temp_directory_path() / ("sagaflow-tls-" + std::to_string(::getpid()));
  std::filesystem::create_directories(certs);
  ASSERT_TRUE(make_certificates(certs)) << "openssl could not make test certificates";
  auto path = [&](const char* f) { return (certs / f).string(); };
  std::uint16_t tls_port = sagaflow::testing::free_port();
  redis_server server({"--tls-port", std::to_string(tls_port), "--tls-cert-file", path("server.crt"),
                       "--tls-key-file", path("server.key"), "--tls-ca-cert-file", path("ca.crt"),
                       "--tls-auth-clients", "no"});
  (void)server;

  run([&]() -> awaitable<void> {
    auto c = transport::config::from_url("rediss://127.0.0.1:" + std::to_string(tls_port) + "?tls_ca=" + path("ca.crt"));
    auto conn = transport::connection::create(co_await asio::this_coro::executor, c);
    co_await conn->connect();
    EXPECT_EQ((co_await conn->call("PING")).text, "PONG");
    transport::request req;
    for (int i = 0; i < 1000; ++i) req.push("ECHO", i);
    auto replies = co_await conn->exec(req);
    EXPECT_EQ(replies.back().text, "999");
    conn->close();

    c.tls_ca_file = path("other.crt");
    auto untrusted = transport::connection::create(co_await asio::this_coro::executor, c);
    try {
      co_await untrusted->connect();
      ADD_FAILURE() << "a server certificate from an unknown CA must be refused";
    } catch (const boost::system::system_error& e) {
      EXPECT_NE(std::string(e.what()).find("certificate verify failed"), std::string::npos) << e.what();
    }
    untrusted->close();

    c.tls_ca_file = path("ca.crt");
    c.tls_server_name = "not-the-server.example";
    auto wrong_name = transport::connection::create(co_await asio::this_coro::executor, c);
    EXPECT_THROW(co_await wrong_name->connect(), boost::system::system_error);
    wrong_name->close();
  }());
  std::filesystem::remove_all(certs);
}

TEST(tls, a_missing_ca_file_is_a_configuration_error) {
  transport::config c;
  c.tls = true;
  c.tls_ca_file = "/nonexistent/ca.crt";
  asio::io_context ctx;
  EXPECT_THROW(transport::connection::create(ctx.get_executor(), c), std::invalid_argument);
}
