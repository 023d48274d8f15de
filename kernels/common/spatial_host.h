// Host-side parameter resolution of the spatial ops (Pad, Resize and their gradients), shared by
// the CPU kernels (kernels/cpu/spatial.cpp) and the CUDA ones (kernels/cuda/spatial.cu): the
// node's attributes and small inputs (pads, axes, roi, scales, sizes, read through
// KernelContext's host values) turned into per-axis tables. The index math itself is
// kernels/common/spatial_math.h.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/common/spatial_math.h"
#include "kernels/registry.h"

namespace otter::spatial {

// Per axis of the output: the source coordinate of every output coordinate (-1: constant).
struct PadLayout {
  PadMode mode;
  std::vector<std::vector<int64_t>> src;
  std::vector<bool> padded;  // the axis differs from the input's
};

// The layout of a Pad (or PadGrad) node padding shape `in` into `out`, with the pads and axes
// in inputs `pads_input` and `axes_input` (optional).
PadLayout pad_layout(const KernelContext& ctx, const Shape& in, const Shape& out, size_t pads_input,
                     size_t axes_input);

// The taps of every resized axis (in pass order) for X of shape `in` resized to `out`; inputs
// roi, scales, sizes start at `first`. Fills p from the node's attributes.
std::vector<std::pair<int64_t, AxisTaps>> resize_taps(const KernelContext& ctx, const Shape& in, const Shape& out,
                                                      size_t first, ResizeParams& p);

}  // namespace otter::spatial
