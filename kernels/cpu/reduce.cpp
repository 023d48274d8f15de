// CPU kernels for ReduceSum, ReduceMean and their gradient. Sums accumulate in double so that a
// float32 reduction over many elements keeps its precision.
#include <algorithm>
#include <cmath>
#include <optional>

#include "kernels/cpu/cpu_common.h"

namespace otter {
std::vector<int64_t> reduction_axes(const Node& node, const std::optional<std::vector<int64_t>>& axes_input,
                                    int64_t rank, bool* noop);
}

namespace otter::cpu {
namespace {

// The input shape with reduced axes set to 1 (the keepdims shape).
Shape kept_shape(const Shape& in, const std::vector<int64_t>& axes) {
  Shape s = in;
  for (int64_t a : axes) s[a] = 1;
  return s;
}

std::vector<int64_t> node_axes(const KernelContext& ctx, size_t axes_input, int64_t rank, bool* noop) {
  std::optional<std::vector<int64_t>> in;
  if (ctx.has_input(axes_input)) in = ctx.in(axes_input).to_int64_vector();
  return reduction_axes(ctx.node, in, rank, noop);
}

template <class T>
void reduce_typed(KernelContext& ctx, bool mean) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  bool noop = false;
  std::vector<int64_t> axes = node_axes(ctx, 1, x.rank(), &noop);
  const T* px = x.data<T>();
  T* py = y.data<T>();
  if (noop) { std::copy(px, px + x.numel(), py); return; }
  Shape kept = kept_shape(x.shape(), axes);
  int64_t n_out = shape_numel(kept);
  int64_t count = n_out ? x.numel() / n_out : 0;
  std::vector<double> acc(static_cast<size_t>(n_out), 0.0);
  BroadcastIndexer it(x.shape(), {&kept});
  it.seek(0);
  for (int64_t i = 0; i < x.numel(); ++i, it.next()) acc[it.offset(0)] += static_cast<double>(px[i]);
  for (int64_t i = 0; i < n_out; ++i)
    py[i] = static_cast<T>(mean ? (count ? acc[i] / count : std::nan("")) : acc[i]);
}

template <bool Mean>
void reduce_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_NUMERIC(ctx.in(0).dtype(), ctx.node.describe(), reduce_typed<scalar_t>(ctx, Mean));
}

// ReduceGrad(dy, x, axes?): dx[i] = dy[reduced index of i] (/ count for the mean).
void reduce_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  const Tensor& x = ctx.in(1);
  Tensor& dx = ctx.out(0);
  bool noop = false;
  std::vector<int64_t> axes = node_axes(ctx, 2, x.rank(), &noop);
  bool mean = ctx.node.attr_int("mean", 0) != 0;
  OTTER_DISPATCH_FLOAT(dy.dtype(), ctx.node.describe(), {
    const scalar_t* pdy = dy.data<scalar_t>();
    scalar_t* pdx = dx.data<scalar_t>();
    if (noop) { std::copy(pdy, pdy + dy.numel(), pdx); break; }
    Shape kept = kept_shape(x.shape(), axes);
    int64_t n_out = shape_numel(kept);
    scalar_t scale = mean && n_out ? scalar_t(1) / static_cast<scalar_t>(x.numel() / n_out) : scalar_t(1);
    BroadcastIndexer it(x.shape(), {&kept});
    it.seek(0);
    for (int64_t i = 0; i < x.numel(); ++i, it.next()) pdx[i] = pdy[it.offset(0)] * scale;
  });
}

}  // namespace

void register_reduce_kernels(KernelRegistry& r) {
  const std::vector<DType> num = {DType::Float32, DType::Float64, DType::Int64, DType::Int32};
  r.add("", "ReduceSum", Device::CPU, num, reduce_kernel<false>);
  r.add("", "ReduceMean", Device::CPU, num, reduce_kernel<true>);
  r.add("otter", "ReduceGrad", Device::CPU, {DType::Float32, DType::Float64}, reduce_grad_kernel);
}

}  // namespace otter::cpu
