// Errors inside the engine. C++ code throws otter::Error with a message that names the problem
// (node, op, value, shape); the C ABI turns it into a status code and a thread-local message.
// OTTER_CHECK(cond, parts...) concatenates its parts with operator<< into the message.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace otter {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

}  // namespace otter

#define OTTER_CHECK(cond, ...)                       \
  do {                                               \
    if (!(cond)) throw ::otter::Error(::otter::cat(__VA_ARGS__)); \
  } while (0)

#define OTTER_FAIL(...) throw ::otter::Error(::otter::cat(__VA_ARGS__))
