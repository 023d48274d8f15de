// Overflow-checked arithmetic for every count Otter computes from user-supplied numbers: tensor
// shapes (C API views, .npy headers, ONNX dims), byte sizes and file offsets (checkpoints,
// external data), and integers parsed from text. A count that would overflow is an error that
// names what was being computed, never a wrapped value (docs/reliability.md).
#pragma once
#include <cstdint>
#include <string>

#include "runtime/core/error.h"

namespace otter {

// The largest element count or byte size Otter accepts (2^60): far above any real tensor, and
// small enough that a count times an element size (at most 8) still fits in int64_t.
constexpr int64_t kMaxCount = int64_t(1) << 60;

// a * b for counts >= 0; throws (naming `what`) when the product exceeds kMaxCount.
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r = 0;
  OTTER_CHECK(a >= 0 && b >= 0, what, ": negative size (", a, " x ", b, ")");
  OTTER_CHECK(!__builtin_mul_overflow(a, b, &r) && r <= kMaxCount, what, ": ", a, " x ", b,
              " overflows (over 2^60)");
  return r;
}

// a + b for counts >= 0; throws when the sum exceeds kMaxCount.
inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
  int64_t r = 0;
  OTTER_CHECK(a >= 0 && b >= 0, what, ": negative size (", a, " + ", b, ")");
  OTTER_CHECK(!__builtin_add_overflow(a, b, &r) && r <= kMaxCount, what, ": ", a, " + ", b,
              " overflows (over 2^60)");
  return r;
}

// Parses a whole decimal integer (optional sign, no spaces); throws "`what`: 'text' is not an
// integer" or "... is out of range [lo, hi]" instead of std::stoll's exceptions.
int64_t parse_int64(const std::string& text, const std::string& what, int64_t lo = INT64_MIN, int64_t hi = INT64_MAX);
// The same for an unsigned 64-bit integer (no sign).
uint64_t parse_uint64(const std::string& text, const std::string& what);
// Parses a whole finite floating-point number.
double parse_finite_double(const std::string& text, const std::string& what);

}  // namespace otter
