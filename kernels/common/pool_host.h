// Host-side window geometry of the pool ops, shared by the CPU kernels (kernels/cpu/pool.cpp)
// and the CUDA ones (kernels/cuda/pool.cu): a MaxPool/AveragePool node's (or its gradient op's)
// window from kernels/common/attributes.h's window_geometry (with ceil_mode), checked against the output
// shape the plan inferred, and the plane layout of the global pools.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/registry.h"

namespace otter::pool {

// The spatial dims of X [N, C, spatial...] and of the output, and the window along each.
struct PoolWindow {
  Shape in, out;
  std::vector<int64_t> kernel, strides, dilations, pads_begin, pads_end;
};

// The window of a MaxPool/AveragePool node (or its gradient op) for input shape x; an error
// naming the node when the output shape `y_expected` does not match it.
PoolWindow pool_window(const Node& node, const Shape& x, const Shape& y_expected);

// The global pools: X as [planes, plane size] (planes = N * C).
inline int64_t global_planes(const Tensor& x) { return x.shape()[0] * x.shape()[1]; }
inline int64_t global_plane_size(const Tensor& x) {
  return shape_numel(Shape(x.shape().begin() + 2, x.shape().end()));
}

}  // namespace otter::pool
