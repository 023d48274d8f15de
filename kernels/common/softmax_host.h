// Host-side layout of the softmax family, shared by the CPU kernels (kernels/cpu/softmax.cpp) and
// the CUDA ones (kernels/cuda/softmax.cu): the tensor viewed as [outer, dim, inner] around the
// softmax axis. A plain struct, passed by value to CUDA kernels.
#pragma once
#include <cstdint>

#include "runtime/core/tensor.h"

namespace otter::softmax {

struct AxisView {
  int64_t outer = 1, dim = 1, inner = 1;
};

// `axis` in [-rank, rank) (the op's inference has checked it).
inline AxisView axis_view(const Shape& shape, int64_t axis) {
  int64_t rank = static_cast<int64_t>(shape.size());
  if (axis < 0) axis += rank;
  AxisView v;
  for (int64_t i = 0; i < axis; ++i) v.outer *= shape[i];
  v.dim = shape[axis];
  for (int64_t i = axis + 1; i < rank; ++i) v.inner *= shape[i];
  return v;
}

}  // namespace otter::softmax
