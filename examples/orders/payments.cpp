// orders-payments: charges an order and refunds it when the saga compensates.
// Records: orders:payments:charged and orders:payments:refunded (sets of order ids).
#include "service.hpp"

#include <boost/json.hpp>

int main(int argc, char** argv) {
  orders::service_definition s;
  s.name = "payments";
  s.action = "charge";
  s.undo = "refund";
  s.failure = "card declined";
  s.apply = [](const boost::json::object& order, sagaflow::transport::request& req) {
    std::string id(order.at("order").as_string());
    req.push("SADD", "orders:payments:charged", id);
    return boost::json::value{{"payment", "pay-" + id}, {"amount_cents", order.at("amount_cents")}};
  };
  s.revert = [](const boost::json::object& order, const boost::json::value&, sagaflow::transport::request& req) {
    std::string id(order.at("order").as_string());
    req.push("SREM", "orders:payments:charged", id).push("SADD", "orders:payments:refunded", id);
  };
  return orders::service_main(argc, argv, s);
}
