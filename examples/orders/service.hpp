// One service of the order saga (inventory, payments, shipping) as a program: a tasks::worker on
// the service's queue with an action task and its undo task, its state in Redis, failures
// injected by flags. The three programs differ only in their service_definition.
#pragma once

#include <sagaflow/transport/request.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <functional>
#include <string>

namespace orders {

struct service_definition {
  std::string name;    // the service and its queue: "payments"
  std::string action;  // task names: "charge" ...
  std::string undo;    // ... and "refund"
  std::string failure;  // why an order fails for good here: "card declined"
  // The action's effect on the service's records for `order` (the step's input), added to `req`
  // (one pipeline with the bookkeeping); returns the step's result.
  std::function<boost::json::value(const boost::json::object& order, sagaflow::transport::request& req)> apply;
  // Its undo, given the step's input and result; must be idempotent (a compensation may run
  // again after a crash).
  std::function<void(const boost::json::object& order, const boost::json::value& result, sagaflow::transport::request& req)>
      revert;
};

// The program: parses the flags (see its --help), runs until SIGTERM or SIGINT, returns the exit
// status.
int service_main(int argc, char** argv, const service_definition& service);

}  // namespace orders
