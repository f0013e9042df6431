// orders-shipping: books a shipment for an order and cancels it when the saga compensates.
// Records: orders:shipping:booked (hash: order id -> shipment id), orders:shipping:cancelled (set).
#include "service.hpp"

#include <boost/json.hpp>

int main(int argc, char** argv) {
  orders::service_definition s;
  s.name = "shipping";
  s.action = "book";
  s.undo = "cancel";
  s.failure = "no courier available";
  s.apply = [](const boost::json::object& order, sagaflow::transport::request& req) {
    std::string id(order.at("order").as_string());
    req.push("HSETNX", "orders:shipping:booked", id, "shp-" + id);
    return boost::json::value{{"shipment", "shp-" + id}};
  };
  s.revert = [](const boost::json::object& order, const boost::json::value&, sagaflow::transport::request& req) {
    std::string id(order.at("order").as_string());
    req.push("HDEL", "orders:shipping:booked", id).push("SADD", "orders:shipping:cancelled", id);
  };
  return orders::service_main(argc, argv, s);
}
