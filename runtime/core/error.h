// Errors inside the engine. C++ code throws otter::Error with a message that names the problem
// (node, op, value, shape) and a kind the C ABI maps to its status codes; the C ABI turns it into
// a status and a thread-local message. OTTER_CHECK(cond, parts...) concatenates its parts with
// operator<< into the message; the _KIND variants set a kind other than InvalidArgument.
#pragma once
#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <string>

namespace otter {

enum class ErrorKind {
  InvalidArgument, NotFound, InvalidModel, Unsupported, Io, OutOfMemory, WrongState, Internal,
  NonFinite,  // a training step met a NaN/Inf loss or gradient (the step was skipped)
  Busy,       // the object is in use by another thread
  Distributed // data-parallel training: MPI/NCCL failed, a step failed on this rank, or the ranks disagree
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

// Messages quote names from users' files, which may hold any bytes: keep them valid UTF-8 (as
// otter.h promises) by writing invalid bytes and control characters as \xNN.
inline std::string valid_utf8(const std::string& in) {
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  size_t n = in.size();
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xc0) == 0x80;
    if (ok && len == 1 && (c < 0x20 && c != '\n' && c != '\t')) ok = false;
    if (ok && len == 2 && c < 0xc2) ok = false;  // overlong
    if (!ok) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
      ++i;
      continue;
    }
    out.append(in, i, len);
    i += len;
  }
  return out;
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
