// Unary elementwise kernels shared by the CUDA elementwise and activation families: the forward
// y = f(x) and the otter.UnaryGrad dx = f.grad(x, y, dy), with the functor built from the node
// (kernels/common/unary_functors.h, as on the CPU); FP16/BF16 widened on load, rounded on store.
#pragma once
#include "kernels/common/unary_functors.h"
#include "kernels/cuda/cuda_common.cuh"

namespace otter::cuda {

template <class T, class F>
__global__ void unary_k(const T* x, T* y, int64_t n, F f) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) store(y, i, f(static_cast<C>(load(x, i))));
}

// Forward of unary op F on the float types.
template <class F>
void unary_kernel(KernelContext& ctx) {
  F f = math::make_functor<F>(ctx.node);
  const Tensor& x = ctx.in(0);
  int64_t n = x.numel();
  OTTER_CUDA_DISPATCH_FLOAT(x.dtype(), ctx.node.describe(), {
    unary_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(static_cast<const scalar_t*>(x.raw()),
                                                                         static_cast<scalar_t*>(ctx.out(0).raw()), n, f);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

template <class T, class F>
__global__ void unary_grad_k(const T* dy, const T* x, const T* y, T* dx, int64_t n, F f) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) store(dx, i, f.grad(static_cast<C>(load(x, i)), static_cast<C>(load(y, i)), static_cast<C>(load(dy, i))));
}

// otter.UnaryGrad(dy, x, y)[op], for every formula the CPU supports.
inline void unary_grad_kernel(KernelContext& ctx) {
  int64_t n = ctx.in(0).numel();
  math::visit_grad_functor(ctx.node, [&](auto f) {
    OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), {
      unary_grad_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
          static_cast<const scalar_t*>(ctx.in(0).raw()), static_cast<const scalar_t*>(ctx.in(1).raw()),
          static_cast<const scalar_t*>(ctx.in(2).raw()), static_cast<scalar_t*>(ctx.out(0).raw()), n, f);
    });
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

}  // namespace otter::cuda
