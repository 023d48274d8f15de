// The layout of an ONNX Slice, shared by the CPU and CUDA kernels of Slice and otter.SliceGrad:
// for a tensor of `shape` sliced by inputs first..first+3 (starts, ends, axes?, steps?), the offset
// of its first element, the per-dim strides (step * stride) and its shape. Negative indices
// count from the end, out-of-range ones clamp, negative steps walk backwards (ONNX semantics).
#pragma once
#include <algorithm>

#include "kernels/registry.h"

namespace otter {

struct SliceLayout {
  int64_t base = 0;
  std::vector<int64_t> strides;
  Shape shape;
};

inline SliceLayout slice_layout(const KernelContext& ctx, const Shape& shape, size_t first) {
  std::vector<int64_t> starts = ctx.int64_values(first), ends = ctx.int64_values(first + 1);
  std::vector<int64_t> axes, steps(starts.size(), 1);
  if (ctx.has_input(first + 2)) axes = ctx.int64_values(first + 2);
  else for (size_t k = 0; k < starts.size(); ++k) axes.push_back(static_cast<int64_t>(k));
  if (ctx.has_input(first + 3)) steps = ctx.int64_values(first + 3);
  OTTER_CHECK(ends.size() == starts.size() && axes.size() == starts.size() && steps.size() == starts.size(),
              ctx.node.describe(), ": starts, ends, axes and steps differ in length");
  std::vector<int64_t> in_strides = shape_strides(shape);
  SliceLayout l{0, in_strides, shape};
  for (size_t k = 0; k < starts.size(); ++k) {
    int64_t a = ctx.normalize_axis(axes[k], static_cast<int64_t>(shape.size()));
    int64_t dim = shape[a], start = starts[k], end = ends[k], step = steps[k];
    OTTER_CHECK(step != 0, ctx.node.describe(), ": a step is 0");
    if (dim == 0) continue;  // nothing is sliced there
    if (start < 0) start += dim;
    if (end < 0) end += dim;
    if (step > 0) {
      start = std::clamp<int64_t>(start, 0, dim);
      end = std::clamp<int64_t>(end, 0, dim);
      l.shape[a] = end > start ? (end - start + step - 1) / step : 0;
    } else {
      start = std::clamp<int64_t>(start, 0, dim - 1);
      end = std::clamp<int64_t>(end, -1, dim - 1);
      l.shape[a] = start > end ? (start - end - step - 1) / -step : 0;
    }
    l.base += start * in_strides[a];
    l.strides[a] = in_strides[a] * step;
  }
  return l;
}

}  // namespace otter
