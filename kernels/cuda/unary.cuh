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

// The same over 16-byte packs (x and y 16-byte aligned), then the tail element by element.
template <class T, class F>
__global__ void unary_packed_k(const T* x, T* y, int64_t n, F f) {
  using C = typename Compute<T>::type;
  constexpr int V = Pack<T>::kSize;
  const int64_t packs = n / V;
  GRID_STRIDE(i, packs) {
    Pack<T> a = reinterpret_cast<const Pack<T>*>(x)[i], r;
#pragma unroll
    for (int k = 0; k < V; ++k) store(r.v, k, f(static_cast<C>(load(a.v, k))));
    reinterpret_cast<Pack<T>*>(y)[i] = r;
  }
  GRID_STRIDE(i, n - packs * V) store(y, packs * V + i, f(static_cast<C>(load(x, packs * V + i))));
}

// Forward of unary op F on the float types.
template <class F>
void unary_kernel(KernelContext& ctx) {
  F f = math::make_functor<F>(ctx.node);
  const Tensor& x = ctx.in(0);
  int64_t n = x.numel();
  OTTER_CUDA_DISPATCH_FLOAT(x.dtype(), ctx.node.describe(), {
    const scalar_t* px = static_cast<const scalar_t*>(x.raw());
    scalar_t* py = static_cast<scalar_t*>(ctx.out(0).raw());
    if (aligned16(px, py))
      unary_packed_k<scalar_t><<<blocks_for(n / Pack<scalar_t>::kSize + 1), kThreads, 0, stream_of(ctx)>>>(px, py, n, f);
    else
      unary_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(px, py, n, f);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

template <class T, class F>
__global__ void unary_grad_k(const T* dy, const T* x, const T* y, T* dx, int64_t n, F f) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) store(dx, i, f.grad(static_cast<C>(load(x, i)), static_cast<C>(load(y, i)), static_cast<C>(load(dy, i))));
}

template <class T, class F>
__global__ void unary_grad_packed_k(const T* dy, const T* x, const T* y, T* dx, int64_t n, F f) {
  using C = typename Compute<T>::type;
  constexpr int V = Pack<T>::kSize;
  const int64_t packs = n / V;
  GRID_STRIDE(i, packs) {
    Pack<T> px = reinterpret_cast<const Pack<T>*>(x)[i], py = reinterpret_cast<const Pack<T>*>(y)[i],
            pdy = reinterpret_cast<const Pack<T>*>(dy)[i], r;
#pragma unroll
    for (int k = 0; k < V; ++k)
      store(r.v, k, f.grad(static_cast<C>(load(px.v, k)), static_cast<C>(load(py.v, k)), static_cast<C>(load(pdy.v, k))));
    reinterpret_cast<Pack<T>*>(dx)[i] = r;
  }
  GRID_STRIDE(i, n - packs * V) {
    int64_t j = packs * V + i;
    store(dx, j, f.grad(static_cast<C>(load(x, j)), static_cast<C>(load(y, j)), static_cast<C>(load(dy, j))));
  }
}

// otter.UnaryGrad(dy, x, y)[op], for every formula the CPU supports.
inline void unary_grad_kernel(KernelContext& ctx) {
  int64_t n = ctx.in(0).numel();
  math::visit_grad_functor(ctx.node, [&](auto f) {
    OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), {
      const scalar_t* dy = static_cast<const scalar_t*>(ctx.in(0).raw());
      const scalar_t* x = static_cast<const scalar_t*>(ctx.in(1).raw());
      const scalar_t* y = static_cast<const scalar_t*>(ctx.in(2).raw());
      scalar_t* dx = static_cast<scalar_t*>(ctx.out(0).raw());
      if (aligned16(dy, x, y, dx))
        unary_grad_packed_k<scalar_t><<<blocks_for(n / Pack<scalar_t>::kSize + 1), kThreads, 0, stream_of(ctx)>>>(
            dy, x, y, dx, n, f);
      else
        unary_grad_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(dy, x, y, dx, n, f);
    });
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

}  // namespace otter::cuda
