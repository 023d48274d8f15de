// Host-side parameter resolution of the shape family, shared by the CPU kernels
// (kernels/cpu/shape.cpp) and the CUDA ones (kernels/cuda/shape.cu): Transpose's input strides,
// and the values of Shape, Constant and ConstantOfShape, which come from the input's shape and the
// node's attributes (the CPU writes them, the CUDA kernels upload them or fill with them). Slice
// has its own header (kernels/common/slice_layout.h).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "kernels/registry.h"

namespace otter::shape {

// The strides of X (input 0) along each output dim of Transpose: X's row-major strides permuted
// by `perm` (reversed dims by default).
std::vector<int64_t> transpose_strides(const KernelContext& ctx);

// The output of Shape: the dims [start, end) of input 0's shape, checked against the output's size.
std::vector<int64_t> shape_dims(const KernelContext& ctx);

// The output of Constant (from whichever value attribute the node has), checked against the
// output's dtype and size.
Tensor constant_value(const KernelContext& ctx);

// The bytes of ConstantOfShape's element (its `value` attribute, float 0 by default).
std::array<uint8_t, 8> constant_of_shape_pattern(const KernelContext& ctx);

}  // namespace otter::shape
