// Host-side parameter resolution and layouts of the indexing family (see indexing_host.h).
#include "kernels/common/indexing_host.h"

#include <string>

namespace otter::indexing {

Reduction reduction_of(const KernelContext& ctx) {
  std::string r = ctx.node.attr_string("reduction", "none");
  if (r == "none") return Reduction::None;
  if (r == "add") return Reduction::Add;
  if (r == "mul") return Reduction::Mul;
  if (r == "max") return Reduction::Max;
  if (r == "min") return Reduction::Min;
  OTTER_FAIL(ctx.node.describe(), ": unknown reduction '", r, "'");
}

ElementLayout element_layout(const KernelContext& ctx, const Shape& data, const Shape& indices) {
  int64_t r = static_cast<int64_t>(data.size());
  OTTER_CHECK(static_cast<int64_t>(indices.size()) == r, ctx.node.describe(), ": indices ", shape_str(indices),
              " and data ", shape_str(data), " differ in rank");
  ElementLayout l;
  l.axis = ctx.normalize_axis(ctx.node.attr_int("axis", 0), r);
  l.dim = data[l.axis];
  l.data_strides = shape_strides(data);
  l.data_stride = l.data_strides[l.axis];
  l.data_strides[l.axis] = 0;
  l.index_strides = shape_strides(indices);
  for (int64_t k = 0; k < r; ++k)
    OTTER_CHECK(k == l.axis || indices[k] <= data[k], ctx.node.describe(), ": indices ", shape_str(indices),
                " are larger than data ", shape_str(data), " along axis ", k);
  return l;
}

int64_t trilu_offset(const KernelContext& ctx) {
  if (!ctx.has_input(1)) return 0;
  std::vector<int64_t> v = ctx.int64_values(1);
  OTTER_CHECK(v.size() == 1, ctx.node.describe(), ": k must hold one value");
  return v[0];
}

void check_tiling(const KernelContext& ctx, const Shape& x, const Shape& tiled) {
  for (size_t d = 0; d < x.size(); ++d)
    OTTER_CHECK(x[d] == 0 ? tiled[d] == 0 : tiled[d] % x[d] == 0, ctx.node.describe(), ": output ",
                shape_str(tiled), " is not a tiling of ", shape_str(x));
}

CumSumLayout cumsum_layout(const KernelContext& ctx, const Shape& x) {
  std::vector<int64_t> a = ctx.int64_values(1);
  OTTER_CHECK(a.size() == 1, ctx.node.describe(), ": the axis input must hold one value");
  int64_t rank = static_cast<int64_t>(x.size());
  int64_t axis = ctx.normalize_axis(a[0], rank);
  CumSumLayout l;
  l.exclusive = ctx.node.attr_int("exclusive", 0) != 0;
  l.reverse = ctx.node.attr_int("reverse", 0) != 0;
  l.n = x[axis];
  for (int64_t d = 0; d < axis; ++d) l.outer *= x[d];
  for (int64_t d = axis + 1; d < rank; ++d) l.inner *= x[d];
  return l;
}

}  // namespace otter::indexing
