// The one translation unit that compiles Asio's SSL layer (see engine/src/asio_impl.cpp).
#include <boost/asio/ssl/impl/src.hpp>
