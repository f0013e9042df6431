// The one translation unit that compiles Asio (BOOST_ASIO_SEPARATE_COMPILATION): every other
// file includes only Asio's declarations, which keeps the build fast.
#include <boost/asio/impl/src.hpp>
