// libFuzzer entry: the parser must never crash, over-read or allocate without bound, and must
// give the same values whether the bytes arrive at once or split at arbitrary points.
#include <sagaflow/transport/resp.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

using namespace sagaflow::transport::resp;

namespace {
bool same(const value& a, const value& b) {
  if (a.type != b.type || a.text != b.text || a.integer != b.integer || a.elements.size() != b.elements.size())
    return false;
  for (std::size_t i = 0; i < a.elements.size(); ++i)
    if (!same(a.elements[i], b.elements[i])) return false;
  return true;
}

// Parses `data` offering it in chunks of `step` bytes (0: all at once), as a connection would:
// unconsumed bytes are kept and offered again with the next chunk.
std::vector<value> parse(std::string_view data, std::size_t step, parse_error& error) {
  // A line limit well below libFuzzer's input size, so that line_too_long is reachable.
  parser p({.max_bulk_length = 1 << 20, .max_elements = 1 << 16, .max_depth = 32, .max_line_length = 64});
  std::vector<value> out;
  std::string pending;
  std::size_t offered = 0;
  while (offered < data.size()) {
    std::size_t n = step ? std::min(step, data.size() - offered) : data.size();
    pending.append(data.substr(offered, n));
    offered += n;
    for (;;) {
      auto r = p.feed(pending);
      if (r.consumed > pending.size()) std::abort();
      pending.erase(0, r.consumed);
      if (r.error != parse_error::none) {
        error = r.error;
        return out;
      }
      if (!r.complete) break;
      out.push_back(p.take());
    }
  }
  error = parse_error::none;
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  if (size == 0) return 0;
  std::size_t step = bytes[0] % 8 + 1;
  std::string_view data(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  parse_error whole_error, split_error;
  auto whole = parse(data, 0, whole_error);
  auto split = parse(data, step, split_error);
  // Where the bytes are split must change nothing: not the values, not the error.
  if (whole_error != split_error || whole.size() != split.size()) std::abort();
  for (std::size_t i = 0; i < whole.size(); ++i)
    if (!same(whole[i], split[i])) std::abort();
  return 0;
}
