// Integer and number parsing that reports bad text by name (see checked.h).
#include "runtime/core/checked.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace otter {

int64_t parse_int64(const std::string& text, const std::string& what, int64_t lo, int64_t hi) {
  const char* s = text.c_str();
  char* end = nullptr;
  errno = 0;
  long long v = text.empty() || text[0] == ' ' ? 0 : std::strtoll(s, &end, 10);
  OTTER_CHECK(!text.empty() && end && *end == '\0' && text[0] != ' ', what, ": '", text, "' is not an integer");
  OTTER_CHECK(errno != ERANGE && v >= lo && v <= hi, what, ": ", text, " is out of range [", lo, ", ", hi, "]");
  return static_cast<int64_t>(v);
}

uint64_t parse_uint64(const std::string& text, const std::string& what) {
  char* end = nullptr;
  errno = 0;
  const bool digits = !text.empty() && text[0] >= '0' && text[0] <= '9';
  unsigned long long v = digits ? std::strtoull(text.c_str(), &end, 10) : 0;
  OTTER_CHECK(digits && end && *end == '\0', what, ": '", text, "' is not a non-negative integer");
  OTTER_CHECK(errno != ERANGE, what, ": ", text, " is out of range");
  return static_cast<uint64_t>(v);
}

double parse_finite_double(const std::string& text, const std::string& what) {
  char* end = nullptr;
  double v = text.empty() ? 0 : std::strtod(text.c_str(), &end);
  OTTER_CHECK(!text.empty() && end && *end == '\0' && std::isfinite(v), what, ": '", text, "' is not a finite number");
  return v;
}

}  // namespace otter
