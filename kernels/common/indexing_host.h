// Host-side parameter resolution and layouts of the indexing family, shared by the CPU kernels
// (kernels/cpu/indexing.cpp) and the CUDA ones (kernels/cuda/indexing.cu): the scatters'
// reduction, the walk of the element-wise index ops, Trilu's k, Tile's shape check and CumSum's
// axis layout.
#pragma once
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/common/elementwise_math.h"
#include "kernels/registry.h"

namespace otter::indexing {

// ScatterElements / ScatterND's `reduction` attribute.
enum class Reduction { None, Add, Mul, Max, Min };

// dst = reduce(dst, v) for the scatters, on both backends (max/min as std::max/std::min; bool:
// add/max = or, mul/min = and).
template <class T>
OTTER_HD void reduce_into(T& dst, T v, Reduction r) {
  if constexpr (std::is_same_v<T, bool>) {
    switch (r) {
      case Reduction::Add: case Reduction::Max: dst = dst || v; break;
      case Reduction::Mul: case Reduction::Min: dst = dst && v; break;
      default: dst = v;
    }
  } else {
    switch (r) {
      case Reduction::None: dst = v; break;
      case Reduction::Add: dst = static_cast<T>(dst + v); break;
      case Reduction::Mul: dst = static_cast<T>(dst * v); break;
      case Reduction::Max: dst = dst < v ? v : dst; break;
      case Reduction::Min: dst = v < dst ? v : dst; break;
    }
  }
}
Reduction reduction_of(const KernelContext& ctx);

// The walk shared by GatherElements, ScatterElements and GatherElementsGrad (data and indices of
// one rank, the node's `axis`): data's strides with the axis zeroed, the stride of the axis in
// data (data_stride) and the indices' own strides.
struct ElementLayout {
  int64_t axis = 0, dim = 0, data_stride = 0;  // dim: the axis's size in data
  std::vector<int64_t> data_strides, index_strides;
};
ElementLayout element_layout(const KernelContext& ctx, const Shape& data, const Shape& indices);

// Trilu's diagonal offset k (input 1, optional: 0).
int64_t trilu_offset(const KernelContext& ctx);

// Fails naming the node unless `tiled` is a tiling of `x` (every dim a multiple of x's).
void check_tiling(const KernelContext& ctx, const Shape& x, const Shape& tiled);

// CumSum over X of shape `x` viewed as [outer, n, inner] around its axis (input 1), and the
// node's exclusive / reverse attributes.
struct CumSumLayout {
  int64_t n = 0, outer = 1, inner = 1;
  bool exclusive = false, reverse = false;
};
CumSumLayout cumsum_layout(const KernelContext& ctx, const Shape& x);

}  // namespace otter::indexing
