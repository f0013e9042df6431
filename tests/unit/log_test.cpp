// sagaflow::log::error_text: the text of an error without the source location Boost appends to
// system_error::what(), and with it at debug level.
#include <sagaflow/engine/log.hpp>
#include <sagaflow/transport/error.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/system_error.hpp>
#include <gtest/gtest.h>

#include <cerrno>
#include <stdexcept>

namespace asio = boost::asio;
using boost::system::error_code;
using boost::system::system_error;

namespace {

// Restores the level a test changed.
struct level_guard {
  sagaflow::log::level saved = sagaflow::log::enabled(sagaflow::log::level::debug)  ? sagaflow::log::level::debug
                     : sagaflow::log::enabled(sagaflow::log::level::info) ? sagaflow::log::level::info
                     : sagaflow::log::enabled(sagaflow::log::level::warn) ? sagaflow::log::level::warn
                                                      : sagaflow::log::level::error;
  level_guard(sagaflow::log::level lvl) { sagaflow::log::set_level(lvl); }
  ~level_guard() { sagaflow::log::set_level(saved); }
};

error_code refused_here() {
  static constexpr boost::source_location here = BOOST_CURRENT_LOCATION;
  return error_code(ECONNREFUSED, boost::system::system_category(), &here);
}

}  // namespace

TEST(log_error_text, drops_the_category_and_source_location_boost_appends) {
  level_guard info(sagaflow::log::level::info);
  const system_error with_prefix(refused_here(), "connecting to 127.0.0.1:6379");
  ASSERT_NE(std::string(with_prefix.what()).find("log_test.cpp"), std::string::npos) << with_prefix.what();
  EXPECT_EQ(sagaflow::log::error_text(with_prefix), "connecting to 127.0.0.1:6379: Connection refused");
  EXPECT_EQ(sagaflow::log::error_text(system_error(refused_here())), "Connection refused");
  // Without a location Boost still appends " [system:111]".
  EXPECT_EQ(sagaflow::log::error_text(system_error(error_code(ECONNREFUSED, boost::system::system_category()))),
            "Connection refused");
  EXPECT_EQ(sagaflow::log::error_text(system_error(sagaflow::transport::error::timeout, "GET")),
            "GET: no reply within the command timeout");
  EXPECT_EQ(sagaflow::log::error_text(refused_here()), "Connection refused");
}

TEST(log_error_text, keeps_the_location_at_debug_level) {
  level_guard debug(sagaflow::log::level::debug);
  const system_error e(refused_here(), "connecting");
  EXPECT_EQ(sagaflow::log::error_text(e), e.what());
  EXPECT_NE(sagaflow::log::error_text(e).find("log_test.cpp"), std::string::npos);
  EXPECT_NE(sagaflow::log::error_text(refused_here()).find("log_test.cpp"), std::string::npos);
}

TEST(log_error_text, leaves_other_exceptions_as_they_are) {
  level_guard info(sagaflow::log::level::info);
  EXPECT_EQ(sagaflow::log::error_text(std::runtime_error("handler said [no] at line 3")), "handler said [no] at line 3");
  EXPECT_EQ(sagaflow::log::error_text(std::make_exception_ptr(std::invalid_argument("bad"))), "bad");
  EXPECT_EQ(sagaflow::log::error_text(std::make_exception_ptr(system_error(refused_here(), "x"))), "x: Connection refused");
  EXPECT_EQ(sagaflow::log::error_text(std::make_exception_ptr(42)), "unknown exception");
}

// The error a user actually saw: Asio's own exception from a refused connect carries the
// location of the Asio header that detected it.
TEST(log_error_text, cleans_a_real_asio_connect_error) {
  level_guard info(sagaflow::log::level::info);
  asio::io_context ctx;
  asio::ip::tcp::acceptor acceptor(ctx, {asio::ip::address_v4::loopback(), 0});
  const auto closed = acceptor.local_endpoint();
  acceptor.close();  // nothing listens there now
  asio::ip::tcp::socket socket(ctx);
  try {
    socket.connect(closed);
    GTEST_SKIP() << "something else started listening on " << closed;
  } catch (const system_error& e) {
    EXPECT_EQ(e.code(), asio::error::connection_refused);
    EXPECT_NE(std::string(e.what()).find(" [system:111"), std::string::npos) << e.what();
    EXPECT_EQ(sagaflow::log::error_text(e), "connect: Connection refused") << e.what();
  }
}
