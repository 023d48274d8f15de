// Errors inside the engine. C++ code throws otter::Error with a message that names the problem
// (node, op, value, shape) and a kind the C ABI maps to its status codes; the C ABI turns it into
// a status and a thread-local message. OTTER_CHECK(cond, parts...) concatenates its parts with
// operator<< into the message; the _KIND variants set a kind other than InvalidArgument.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace otter {

enum class ErrorKind {
  InvalidArgument, NotFound, InvalidModel, Unsupported, Io, OutOfMemory, WrongState, Internal,
  NonFinite,  // a training step met a NaN/Inf loss or gradient (the step was skipped)
  Busy        // the object is in use by another thread
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, ErrorKind kind = ErrorKind::InvalidArgument)
      : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

}  // namespace otter

#define OTTER_CHECK(cond, ...)                                      \
  do {                                                              \
    if (!(cond)) throw ::otter::Error(::otter::cat(__VA_ARGS__));   \
  } while (0)

#define OTTER_CHECK_KIND(kind, cond, ...)                                                   \
  do {                                                                                      \
    if (!(cond)) throw ::otter::Error(::otter::cat(__VA_ARGS__), ::otter::ErrorKind::kind); \
  } while (0)

#define OTTER_FAIL(...) throw ::otter::Error(::otter::cat(__VA_ARGS__))
#define OTTER_FAIL_KIND(kind, ...) throw ::otter::Error(::otter::cat(__VA_ARGS__), ::otter::ErrorKind::kind)
