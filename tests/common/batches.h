// Small data helpers shared by the end-to-end tests.
#pragma once
#include <cstring>

#include "runtime/core/tensor.h"

namespace otter::testing {

// Rows [begin, end) of a row-major tensor (dim 0), as a new tensor.
inline Tensor rows(const Tensor& t, int64_t begin, int64_t end) {
  Shape s = t.shape();
  int64_t row = t.numel() / s[0];
  s[0] = end - begin;
  Tensor r(t.dtype(), s);
  std::memcpy(r.raw(), static_cast<const char*>(t.raw()) + begin * row * dtype_size(t.dtype()), r.nbytes());
  return r;
}

}  // namespace otter::testing
