// orders-inventory: reserves stock for an order and releases it when the saga compensates.
// Records: orders:inventory:reserved (hash: order id -> "<sku> x <qty>"), orders:inventory:released (set).
#include "service.hpp"

#include <boost/json.hpp>

int main(int argc, char** argv) {
  orders::service_definition s;
  s.name = "inventory";
  s.action = "reserve";
  s.undo = "release";
  s.failure = "out of stock";
  s.apply = [](const boost::json::object& order, sagaflow::transport::request& req) {
    std::string id(order.at("order").as_string());
    std::string line = std::string(order.at("sku").as_string()) + " x " + boost::json::serialize(order.at("qty"));
    // HSETNX: a second run changes nothing (the count of runs in orders:inventory:done tells).
    req.push("HSETNX", "orders:inventory:reserved", id, line);
    return boost::json::value{{"reservation", "rsv-" + id}, {"items", line}};
  };
  s.revert = [](const boost::json::object& order, const boost::json::value&, sagaflow::transport::request& req) {
    std::string id(order.at("order").as_string());
    req.push("HDEL", "orders:inventory:reserved", id).push("SADD", "orders:inventory:released", id);
  };
  return orders::service_main(argc, argv, s);
}
