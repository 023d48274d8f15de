// CUDA kernels for the softmax family: Softmax, LogSoftmax and their gradients (otter.SoftmaxGrad,
// otter.LogSoftmaxGrad), with the CPU's semantics (kernels/cpu/softmax.cpp). The tensor is viewed as
// [outer, dim, inner] and each (outer, inner) line goes to one warp (max first, then the sum of
// exponentials, both reduced by a fixed butterfly: deterministic). SoftmaxGrad may read y in a lower
// precision than dy (the planner lets it read the FP16/BF16 copy of y), so it is templated on both.
// FP16/BF16/FP32 compute in FP32, FP64 in FP64.
#include <cmath>
#include <string>

#include "kernels/common/softmax_host.h"
#include "kernels/cuda/warp_reduce.cuh"

namespace otter::cuda {
namespace {

using softmax::AxisView;  // kernels/common/softmax_host.h
using softmax::axis_view;

// ---------------------------------------------------------------------------------------------
// Softmax / LogSoftmax

template <class T, bool Log>
__global__ void softmax_k(const T* x, T* y, int64_t lines, int64_t dim, int64_t inner) {
  using C = typename Compute<T>::type;
  WARP_STRIDE(l, lines) {
    int64_t base = (l / inner) * dim * inner + l % inner;
    C mx = C(-INFINITY);
    for (int64_t k = lane; k < dim; k += 32) {
      C v = static_cast<C>(load(x, base + k * inner));
      mx = v > mx ? v : mx;  // NaN is skipped, as std::max on the CPU
    }
    mx = warp_max(mx);
    C s = 0;
    for (int64_t k = lane; k < dim; k += 32) s += dexp(static_cast<C>(load(x, base + k * inner)) - mx);
    s = warp_sum(s);
    if (Log) {
      C ls = dlog(s);
      for (int64_t k = lane; k < dim; k += 32) {
        int64_t i = base + k * inner;
        store(y, i, static_cast<C>(load(x, i)) - mx - ls);
      }
    } else {
      for (int64_t k = lane; k < dim; k += 32) {
        int64_t i = base + k * inner;
        store(y, i, dexp(static_cast<C>(load(x, i)) - mx) / s);
      }
    }
  }
}

template <bool Log>
void softmax_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  AxisView v = axis_view(x.shape(), ctx.node.attr_int("axis", -1));
  int64_t lines = v.outer * v.inner;
  if (lines == 0 || v.dim == 0) return;
  OTTER_CUDA_DISPATCH_FLOAT(x.dtype(), ctx.node.describe(), {
    softmax_k<scalar_t, Log><<<blocks_for_lines(lines), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const scalar_t*>(x.raw()), static_cast<scalar_t*>(ctx.out(0).raw()), lines, v.dim, v.inner);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// (dy, y) -> dx. Softmax: dx = y (dy - sum(dy y)); LogSoftmax: dx = dy - exp(y) sum(dy).
// dy and dx share TD; y may be stored in another floating type TY.
template <class TD, class TY, bool Log>
__global__ void softmax_grad_k(const TD* dy, const TY* y, TD* dx, int64_t lines, int64_t dim, int64_t inner) {
  using C = typename Compute<TD>::type;
  WARP_STRIDE(l, lines) {
    int64_t base = (l / inner) * dim * inner + l % inner;
    C s = 0;
    for (int64_t k = lane; k < dim; k += 32) {
      int64_t i = base + k * inner;
      C d = static_cast<C>(load(dy, i));
      s += Log ? d : d * static_cast<C>(load(y, i));
    }
    s = warp_sum(s);
    for (int64_t k = lane; k < dim; k += 32) {
      int64_t i = base + k * inner;
      C d = static_cast<C>(load(dy, i)), yv = static_cast<C>(load(y, i));
      store(dx, i, Log ? d - dexp(yv) * s : yv * (d - s));
    }
  }
}

template <bool Log>
void softmax_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  const Tensor& y = ctx.in(1);
  OTTER_CHECK(dy.shape() == y.shape(), ctx.node.describe(), ": dy ", shape_str(dy.shape()), " and y ",
              shape_str(y.shape()), " differ");
  AxisView v = axis_view(y.shape(), ctx.node.attr_int("axis", -1));
  int64_t lines = v.outer * v.inner;
  if (lines == 0 || v.dim == 0) return;
  unsigned grid = blocks_for_lines(lines);
  OTTER_CUDA_DISPATCH_FLOAT(dy.dtype(), ctx.node.describe(), {
    using TD = scalar_t;
    OTTER_CUDA_DISPATCH_FLOAT(y.dtype(), ctx.node.describe(), {
      using TY = scalar_t;
      softmax_grad_k<TD, TY, Log><<<grid, kThreads, 0, stream_of(ctx)>>>(
          static_cast<const TD*>(dy.raw()), static_cast<const TY*>(y.raw()), static_cast<TD*>(ctx.out(0).raw()),
          lines, v.dim, v.inner);
    });
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

}  // namespace

void register_softmax_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};
  const Device cuda = Device::CUDA;
  r.add("", "Softmax", cuda, f, softmax_kernel<false>);
  r.add("", "LogSoftmax", cuda, f, softmax_kernel<true>);
  r.add("otter", "SoftmaxGrad", cuda, f, softmax_grad_kernel<false>);
  r.add("otter", "LogSoftmaxGrad", cuda, f, softmax_grad_kernel<true>);
}

}  // namespace otter::cuda
