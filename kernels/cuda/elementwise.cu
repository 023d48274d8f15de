// CUDA kernels for the elementwise family: the same functors as the CPU (kernels/common/
// elementwise_math.h) in grid-stride loops, FP16/BF16 widened to FP32 on load and rounded on
// store; broadcasting binary ops (and the logical And/Or/Xor on Bool) index through per-input
// strides; same-shape binary ops and the unary ops use 16-byte packed loads and stores. Also Sign
// (integers too), PRelu and otter.PReluGrad, the variadic Max/Min/Sum/Mean (up to 4 broadcast
// inputs) and otter.MinMaxGrad, and Mod, as kernels/cpu/elementwise.cpp.
#include "kernels/common/elementwise_math.h"
#include "kernels/common/philox.h"
#include "kernels/cuda/unary.cuh"

namespace otter::cuda {
namespace {


// out = f(a, b) with broadcasting; R is the result storage type.
template <class T, class R, class F>
__global__ void binary(const T* a, const T* b, R* out, int64_t n, Strides s, F f) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) {
    int64_t off[2];
    offsets_of(s, i, 2, off);
    store(out, i, f(static_cast<C>(load(a, off[0])), static_cast<C>(load(b, off[1]))));
  }
}

// The same without broadcasting (a, b and out of one shape), over 16-byte packs, then the tail.
template <class T, class F>
__global__ void binary_packed(const T* a, const T* b, T* out, int64_t n, F f) {
  using C = typename Compute<T>::type;
  constexpr int V = Pack<T>::kSize;
  const int64_t packs = n / V;
  GRID_STRIDE(i, packs) {
    Pack<T> pa = reinterpret_cast<const Pack<T>*>(a)[i], pb = reinterpret_cast<const Pack<T>*>(b)[i], r;
#pragma unroll
    for (int k = 0; k < V; ++k) store(r.v, k, f(static_cast<C>(load(pa.v, k)), static_cast<C>(load(pb.v, k))));
    reinterpret_cast<Pack<T>*>(out)[i] = r;
  }
  GRID_STRIDE(i, n - packs * V) {
    int64_t j = packs * V + i;
    store(out, j, f(static_cast<C>(load(a, j)), static_cast<C>(load(b, j))));
  }
}

template <class F, bool Compare>
void binary_kernel(KernelContext& ctx) {
  const Tensor &a = ctx.in(0), &b = ctx.in(1);
  Tensor& out = ctx.out(0);
  Strides s = broadcast_strides(out.shape(), {&a.shape(), &b.shape()});
  int64_t n = out.numel();
  auto launch = [&](auto* pa, auto* pb) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(pa)>>;
    const bool same_shape = a.shape() == out.shape() && b.shape() == out.shape();
    if constexpr (Compare)
      binary<T, bool><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(pa, pb, static_cast<bool*>(out.raw()), n, s, F{});
    else if (same_shape && aligned16(pa, pb, out.raw()))
      binary_packed<T><<<blocks_for(n / Pack<T>::kSize + 1), kThreads, 0, stream_of(ctx)>>>(
          pa, pb, static_cast<T*>(out.raw()), n, F{});
    else
      binary<T, T><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(pa, pb, static_cast<T*>(out.raw()), n, s, F{});
  };
  switch (a.dtype()) {
    case DType::Float32: launch(static_cast<const float*>(a.raw()), static_cast<const float*>(b.raw())); break;
    case DType::Float64: launch(static_cast<const double*>(a.raw()), static_cast<const double*>(b.raw())); break;
    case DType::Float16: launch(static_cast<const __half*>(a.raw()), static_cast<const __half*>(b.raw())); break;
    case DType::BFloat16: launch(static_cast<const __nv_bfloat16*>(a.raw()), static_cast<const __nv_bfloat16*>(b.raw())); break;
    case DType::Int64: launch(static_cast<const int64_t*>(a.raw()), static_cast<const int64_t*>(b.raw())); break;
    case DType::Int32: launch(static_cast<const int32_t*>(a.raw()), static_cast<const int32_t*>(b.raw())); break;
    default: OTTER_FAIL(ctx.node.describe(), ": no CUDA kernel for dtype ", dtype_name(a.dtype()));
  }
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// And / Or / Xor on Bool, broadcasting like the arithmetic ops.
template <class F>
void logical_kernel(KernelContext& ctx) {
  Tensor& out = ctx.out(0);
  Strides s = broadcast_strides(out.shape(), {&ctx.in(0).shape(), &ctx.in(1).shape()});
  int64_t n = out.numel();
  binary<bool, bool><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(static_cast<const bool*>(ctx.in(0).raw()),
                                                                      static_cast<const bool*>(ctx.in(1).raw()),
                                                                      static_cast<bool*>(out.raw()), n, s, F{});
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

__global__ void not_k(const bool* x, bool* y, int64_t n) {
  GRID_STRIDE(i, n) y[i] = !x[i];
}

void not_kernel(KernelContext& ctx) {
  int64_t n = ctx.in(0).numel();
  not_k<<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(static_cast<const bool*>(ctx.in(0).raw()),
                                                        static_cast<bool*>(ctx.out(0).raw()), n);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

template <class T>
__global__ void where_k(const bool* c, const T* a, const T* b, T* out, int64_t n, Strides s) {
  GRID_STRIDE(i, n) {
    int64_t off[3];
    offsets_of(s, i, 3, off);
    out[i] = c[off[0]] ? a[off[1]] : b[off[2]];
  }
}

void where_kernel(KernelContext& ctx) {
  Tensor& out = ctx.out(0);
  Strides s = broadcast_strides(out.shape(), {&ctx.in(0).shape(), &ctx.in(1).shape(), &ctx.in(2).shape()});
  int64_t n = out.numel();
  size_t size = dtype_size(out.dtype());
  const bool* c = static_cast<const bool*>(ctx.in(0).raw());
  // Element-size dispatch: Where moves values, it does no arithmetic.
  if (size == 8) where_k<<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(c, static_cast<const int64_t*>(ctx.in(1).raw()), static_cast<const int64_t*>(ctx.in(2).raw()), static_cast<int64_t*>(out.raw()), n, s);
  else if (size == 4) where_k<<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(c, static_cast<const int32_t*>(ctx.in(1).raw()), static_cast<const int32_t*>(ctx.in(2).raw()), static_cast<int32_t*>(out.raw()), n, s);
  else if (size == 2) where_k<<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(c, static_cast<const int16_t*>(ctx.in(1).raw()), static_cast<const int16_t*>(ctx.in(2).raw()), static_cast<int16_t*>(out.raw()), n, s);
  else where_k<<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(c, static_cast<const int8_t*>(ctx.in(1).raw()), static_cast<const int8_t*>(ctx.in(2).raw()), static_cast<int8_t*>(out.raw()), n, s);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

template <class In, class Out>
__global__ void cast_k(const In* x, Out* y, int64_t n) {
  GRID_STRIDE(i, n) {
    if constexpr (std::is_same_v<Out, bool>) y[i] = static_cast<double>(load(x, i)) != 0.0;
    else store(y, i, static_cast<typename Compute<Out>::type>(load(x, i)));
  }
}

template <class In>
void cast_from(KernelContext& ctx, const In* x, int64_t n) {
  Tensor& out = ctx.out(0);
  cudaStream_t st = stream_of(ctx);
  switch (out.dtype()) {
    case DType::Float32: cast_k<<<blocks_for(n), kThreads, 0, st>>>(x, static_cast<float*>(out.raw()), n); break;
    case DType::Float64: cast_k<<<blocks_for(n), kThreads, 0, st>>>(x, static_cast<double*>(out.raw()), n); break;
    case DType::Float16: cast_k<<<blocks_for(n), kThreads, 0, st>>>(x, static_cast<__half*>(out.raw()), n); break;
    case DType::BFloat16: cast_k<<<blocks_for(n), kThreads, 0, st>>>(x, static_cast<__nv_bfloat16*>(out.raw()), n); break;
    case DType::Int64: cast_k<<<blocks_for(n), kThreads, 0, st>>>(x, static_cast<int64_t*>(out.raw()), n); break;
    case DType::Int32: cast_k<<<blocks_for(n), kThreads, 0, st>>>(x, static_cast<int32_t*>(out.raw()), n); break;
    case DType::Bool: cast_k<<<blocks_for(n), kThreads, 0, st>>>(x, static_cast<bool*>(out.raw()), n); break;
    default: OTTER_FAIL(ctx.node.describe(), ": no CUDA cast to ", dtype_name(out.dtype()));
  }
}

void cast_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  int64_t n = x.numel();
  switch (x.dtype()) {
    case DType::Float32: cast_from(ctx, static_cast<const float*>(x.raw()), n); break;
    case DType::Float64: cast_from(ctx, static_cast<const double*>(x.raw()), n); break;
    case DType::Float16: cast_from(ctx, static_cast<const __half*>(x.raw()), n); break;
    case DType::BFloat16: cast_from(ctx, static_cast<const __nv_bfloat16*>(x.raw()), n); break;
    case DType::Int64: cast_from(ctx, static_cast<const int64_t*>(x.raw()), n); break;
    case DType::Int32: cast_from(ctx, static_cast<const int32_t*>(x.raw()), n); break;
    case DType::Bool: cast_from(ctx, static_cast<const bool*>(x.raw()), n); break;
    default: OTTER_FAIL(ctx.node.describe(), ": no CUDA cast from ", dtype_name(x.dtype()));
  }
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

void identity_kernel(KernelContext& ctx) {
  OTTER_CUDA_CHECK(cudaMemcpyAsync(ctx.out(0).raw(), ctx.in(0).raw(), ctx.in(0).nbytes(), cudaMemcpyDeviceToDevice,
                                   stream_of(ctx)));
}

template <class T>
__global__ void clip_k(const T* x, T* y, int64_t n, double lo, double hi) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) {
    C v = static_cast<C>(load(x, i));
    v = v < C(lo) ? C(lo) : v;
    store(y, i, v > C(hi) ? C(hi) : v);
  }
}

template <class T>
__global__ void clip_grad_k(const T* dy, const T* x, T* dx, int64_t n, double lo, double hi) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) store(dx, i, math::clip_grad(static_cast<C>(load(x, i)), C(lo), C(hi), static_cast<C>(load(dy, i))));
}

void clip_kernel(KernelContext& ctx) {
  double lo = ctx.scalar_value(1, -INFINITY), hi = ctx.scalar_value(2, INFINITY);
  int64_t n = ctx.in(0).numel();
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), {
    clip_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(static_cast<const scalar_t*>(ctx.in(0).raw()),
                                                                         static_cast<scalar_t*>(ctx.out(0).raw()), n, lo, hi);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

void clip_grad_kernel(KernelContext& ctx) {
  double lo = ctx.scalar_value(2, -INFINITY), hi = ctx.scalar_value(3, INFINITY);
  int64_t n = ctx.in(0).numel();
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), {
    clip_grad_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const scalar_t*>(ctx.in(0).raw()), static_cast<const scalar_t*>(ctx.in(1).raw()),
        static_cast<scalar_t*>(ctx.out(0).raw()), n, lo, hi);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// Dropout: the same Philox stream as the CPU kernel, so masks match for the same seed.
template <class T>
__global__ void dropout_k(const T* x, T* y, bool* mask, int64_t n, float ratio, bool active, uint64_t seed,
                          uint64_t stream, const int64_t* step_on_device, uint64_t node_index) {
  using C = typename Compute<T>::type;
  C scale = C(1.0 / (1.0 - ratio));
  if (step_on_device) stream = (static_cast<uint64_t>(*step_on_device) << 20) ^ node_index;
  GRID_STRIDE(i, n) {
    bool keep = !active || math::philox_uniform(seed, stream, static_cast<uint64_t>(i)) >= ratio;
    C v = static_cast<C>(load(x, i));
    store(y, i, keep ? (active ? v * scale : v) : C(0));
    if (mask) mask[i] = keep;
  }
}

template <class T>
__global__ void dropout_grad_k(const T* dy, const bool* mask, T* dx, int64_t n, float ratio) {
  using C = typename Compute<T>::type;
  C scale = C(1.0 / (1.0 - ratio));
  GRID_STRIDE(i, n) store(dx, i, mask[i] ? static_cast<C>(load(dy, i)) * scale : C(0));
}

void dropout_kernel(KernelContext& ctx) {
  double ratio = ctx.scalar_value(1, 0.5);
  OTTER_CHECK(ratio >= 0.0 && ratio < 1.0, ctx.node.describe(), ": ratio ", ratio, " must be in [0, 1)");
  bool active = ctx.training && ratio > 0.0;
  int64_t n = ctx.in(0).numel();
  bool* mask = ctx.has_output(1) ? static_cast<bool*>(ctx.out(1).raw()) : nullptr;
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), {
    dropout_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const scalar_t*>(ctx.in(0).raw()), static_cast<scalar_t*>(ctx.out(0).raw()), mask, n,
        static_cast<float>(ratio), active, ctx.seed, ctx.counter, ctx.step_on_device, ctx.node_index);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

void dropout_grad_kernel(KernelContext& ctx) {
  double ratio = ctx.scalar_value(2, 0.5);
  int64_t n = ctx.in(0).numel();
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), {
    dropout_grad_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const scalar_t*>(ctx.in(0).raw()), static_cast<const bool*>(ctx.in(1).raw()),
        static_cast<scalar_t*>(ctx.out(0).raw()), n, static_cast<float>(ratio));
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// SumToShapeOf: each output element sums its preimage (deterministic; accumulates in FP32/FP64).
template <class T>
__global__ void sum_to_k(const T* g, T* out, int64_t n_out, Strides s, int64_t reduce_count, Strides r) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(o, n_out) {
    int64_t base[1];
    offsets_of(s, o, 1, base);  // offset in g of the first element of o's preimage
    C acc = 0;
    for (int64_t k = 0; k < reduce_count; ++k) {
      int64_t off[1];
      offsets_of(r, k, 1, off);
      acc += static_cast<C>(load(g, base[0] + off[0]));
    }
    store(out, o, acc);
  }
}

void sum_to_shape_kernel(KernelContext& ctx) {
  const Tensor& g = ctx.in(0);
  Tensor& out = ctx.out(0);
  ReduceToShape r = reduce_to_shape(g.shape(), out.shape());
  int64_t n_out = out.numel();
  OTTER_CUDA_DISPATCH_FLOAT(g.dtype(), ctx.node.describe(), {
    sum_to_k<scalar_t><<<blocks_for(n_out), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const scalar_t*>(g.raw()), static_cast<scalar_t*>(out.raw()), n_out, r.keep, r.count, r.reduced);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// ---- Sign, PRelu, variadic Max/Min/Sum/Mean (formerly activation.cu) ----

// Sign also runs on integers (as on the CPU).
void sign_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  int64_t n = x.numel();
  OTTER_CUDA_DISPATCH_NUM(x.dtype(), ctx.node.describe(), {
    unary_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const scalar_t*>(x.raw()), static_cast<scalar_t*>(ctx.out(0).raw()), n, math::Sign{});
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// ---- PRelu and PReluGrad ----

template <class T>
__global__ void prelu_k(const T* x, const T* slope, T* y, int64_t n, Strides s) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) {
    int64_t off[2];
    offsets_of(s, i, 2, off);
    store(y, i, math::PRelu{}(static_cast<C>(load(x, off[0])), static_cast<C>(load(slope, off[1]))));
  }
}

void prelu_kernel(KernelContext& ctx) {
  const Tensor &x = ctx.in(0), &slope = ctx.in(1);
  Tensor& out = ctx.out(0);
  Strides s = broadcast_strides(out.shape(), {&x.shape(), &slope.shape()});
  int64_t n = out.numel();
  OTTER_CUDA_DISPATCH_NUM(x.dtype(), ctx.node.describe(), {
    prelu_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const scalar_t*>(x.raw()), static_cast<const scalar_t*>(slope.raw()),
        static_cast<scalar_t*>(out.raw()), n, s);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// PReluGrad(dy, x, slope)[wrt]: the unreduced gradient for x (wrt 0) or slope (wrt 1), at dy's shape.
template <class T>
__global__ void prelu_grad_k(const T* dy, const T* x, const T* slope, T* out, int64_t n, Strides s, bool wrt_slope) {
  using C = typename Compute<T>::type;
  math::PRelu f;
  GRID_STRIDE(i, n) {
    int64_t off[2];
    offsets_of(s, i, 2, off);
    C xv = static_cast<C>(load(x, off[0])), sv = static_cast<C>(load(slope, off[1])), g = static_cast<C>(load(dy, i));
    store(out, i, wrt_slope ? f.grad_slope(xv, sv, g) : f.grad_x(xv, sv, g));
  }
}

void prelu_grad_kernel(KernelContext& ctx) {
  const Tensor &dy = ctx.in(0), &x = ctx.in(1), &slope = ctx.in(2);
  bool wrt_slope = ctx.node.attr_int("wrt", 0) == 1;
  Strides s = broadcast_strides(dy.shape(), {&x.shape(), &slope.shape()});
  int64_t n = dy.numel();
  OTTER_CUDA_DISPATCH_FLOAT(dy.dtype(), ctx.node.describe(), {
    prelu_grad_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const scalar_t*>(dy.raw()), static_cast<const scalar_t*>(x.raw()),
        static_cast<const scalar_t*>(slope.raw()), static_cast<scalar_t*>(ctx.out(0).raw()), n, s, wrt_slope);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// ---- variadic Max / Min / Sum / Mean (up to 4 inputs) ----

constexpr size_t kMaxVariadic = 4;

template <class T>
struct Ptrs { const T* p[kMaxVariadic]; };

void check_variadic_count(const KernelContext& ctx, size_t n) {
  OTTER_CHECK_KIND(Unsupported, n >= 1 && n <= kMaxVariadic, ctx.node.describe(), ": the CUDA kernel takes 1 to ",
                   kMaxVariadic, " inputs, got ", n);
}

template <class T, class F>
__global__ void variadic_k(Ptrs<T> in, int n_in, T* out, int64_t n, Strides s, F f, bool mean) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) {
    int64_t off[kMaxVariadic];
    offsets_of(s, i, n_in, off);
    C acc = static_cast<C>(load(in.p[0], off[0]));
    for (int j = 1; j < n_in; ++j) acc = f(acc, static_cast<C>(load(in.p[j], off[j])));
    store(out, i, mean ? acc / static_cast<C>(n_in) : acc);
  }
}

template <class F, bool Mean = false>
void variadic_kernel(KernelContext& ctx) {
  size_t n_in = ctx.inputs.size();
  check_variadic_count(ctx, n_in);
  Tensor& out = ctx.out(0);
  std::vector<const Shape*> shapes;
  for (size_t j = 0; j < n_in; ++j) shapes.push_back(&ctx.in(j).shape());
  Strides s = broadcast_strides(out.shape(), shapes);
  int64_t n = out.numel();
  OTTER_CUDA_DISPATCH_NUM(out.dtype(), ctx.node.describe(), {
    Ptrs<scalar_t> p{};
    for (size_t j = 0; j < n_in; ++j) p.p[j] = static_cast<const scalar_t*>(ctx.in(j).raw());
    variadic_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        p, static_cast<int>(n_in), static_cast<scalar_t*>(out.raw()), n, s, F{}, Mean);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// ---- MinMaxGrad(dy, y, x0, ..., xn-1)[index] ----
// Each dx element (at input `index`'s shape) sums, in dy's flat order as the CPU does, over the
// dy positions it was broadcast to: extreme_grad(x_index, y, dy, 1 / ties), where ties counts the
// inputs equal to y at that position (skipped when no input equals y, e.g. a NaN extreme).
template <class T>
__global__ void min_max_grad_k(const T* dy, const T* y, Ptrs<T> xs, int n_in, int index, T* dx, int64_t n_out,
                               Strides keep, int64_t reduce_count, Strides red, Strides bs) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(o, n_out) {
    int64_t base[1];
    offsets_of(keep, o, 1, base);
    C acc = C(0);
    for (int64_t k = 0; k < reduce_count; ++k) {
      int64_t r[1];
      offsets_of(red, k, 1, r);
      int64_t flat = base[0] + r[0];  // dy is contiguous: its offset is its flat index
      int64_t off[kMaxVariadic];
      offsets_of(bs, flat, n_in, off);
      C v = static_cast<C>(load(y, flat));
      int ties = 0;
      for (int j = 0; j < n_in; ++j) ties += static_cast<C>(load(xs.p[j], off[j])) == v;
      if (ties)
        acc += math::extreme_grad(static_cast<C>(load(xs.p[index], off[index])), v, static_cast<C>(load(dy, flat)),
                                  C(1) / static_cast<C>(ties));
    }
    store(dx, o, acc);
  }
}

void min_max_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  OTTER_CHECK(ctx.inputs.size() >= 3, ctx.node.describe(), ": needs dy, y and at least one input");
  size_t n_in = ctx.inputs.size() - 2;
  check_variadic_count(ctx, n_in);
  int64_t index = ctx.node.attr_int("index", 0);
  OTTER_CHECK(index >= 0 && static_cast<size_t>(index) < n_in, ctx.node.describe(), ": index ", index,
              " is out of range for ", n_in, " inputs");
  Tensor& dx = ctx.out(0);
  std::vector<const Shape*> shapes;
  for (size_t j = 0; j < n_in; ++j) shapes.push_back(&ctx.in(j + 2).shape());
  Strides bs = broadcast_strides(dy.shape(), shapes);

  OTTER_CHECK(dx.shape().size() <= dy.shape().size(), ctx.node.describe(), ": input rank exceeds the output's");
  ReduceToShape rt = reduce_to_shape(dy.shape(), dx.shape());
  const Strides &keep = rt.keep, &red = rt.reduced;
  const int64_t reduce_count = rt.count;
  int64_t n_out = dx.numel();
  OTTER_CUDA_DISPATCH_FLOAT(dy.dtype(), ctx.node.describe(), {
    Ptrs<scalar_t> p{};
    for (size_t j = 0; j < n_in; ++j) p.p[j] = static_cast<const scalar_t*>(ctx.in(j + 2).raw());
    min_max_grad_k<scalar_t><<<blocks_for(n_out), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const scalar_t*>(dy.raw()), static_cast<const scalar_t*>(ctx.in(1).raw()), p,
        static_cast<int>(n_in), static_cast<int>(index), static_cast<scalar_t*>(dx.raw()), n_out, keep, reduce_count,
        red, bs);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// Mod: the functor follows the fmod attribute.
void mod_kernel(KernelContext& ctx) {
  if (ctx.node.attr_int("fmod", 0) != 0) binary_kernel<math::ModTrunc, false>(ctx);
  else binary_kernel<math::ModFloor, false>(ctx);
}

}  // namespace

void register_elementwise_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};
  std::vector<DType> num = f;
  num.push_back(DType::Int64);
  num.push_back(DType::Int32);
  const std::vector<DType> all = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int64,
                                  DType::Int32,   DType::Int8,    DType::Uint8,   DType::Bool};
  const Device cuda = Device::CUDA;
#define OTTER_UNARY_KERNEL(op, grad) r.add("", #op, cuda, f, unary_kernel<math::op>);
  OTTER_UNARY_OPS(OTTER_UNARY_KERNEL)  // kernels/common/unary_ops.h
#undef OTTER_UNARY_KERNEL
  r.add("", "Neg", cuda, f, unary_kernel<math::Neg>);
  r.add("", "Identity", cuda, all, identity_kernel);
  r.add("", "Cast", cuda, {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int64, DType::Int32, DType::Bool}, cast_kernel);
  r.add("", "CastLike", cuda, {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int64, DType::Int32, DType::Bool}, cast_kernel);
  r.add("", "Clip", cuda, f, clip_kernel);
  r.add("", "Add", cuda, num, binary_kernel<math::Add, false>);
  r.add("", "Sub", cuda, num, binary_kernel<math::Sub, false>);
  r.add("", "Mul", cuda, num, binary_kernel<math::Mul, false>);
  r.add("", "Div", cuda, num, binary_kernel<math::Div, false>);
  r.add("", "Pow", cuda, f, binary_kernel<math::Pow, false>);
  r.add("", "Mod", cuda, num, mod_kernel);
  r.add("", "Equal", cuda, num, binary_kernel<math::Equal, true>);
  r.add("", "Less", cuda, num, binary_kernel<math::Less, true>);
  r.add("", "Greater", cuda, num, binary_kernel<math::Greater, true>);
  r.add("", "LessOrEqual", cuda, num, binary_kernel<math::LessOrEqual, true>);
  r.add("", "GreaterOrEqual", cuda, num, binary_kernel<math::GreaterOrEqual, true>);
  r.add("", "Not", cuda, {DType::Bool}, not_kernel);
  r.add("", "And", cuda, {DType::Bool}, logical_kernel<math::And>);
  r.add("", "Or", cuda, {DType::Bool}, logical_kernel<math::Or>);
  r.add("", "Xor", cuda, {DType::Bool}, logical_kernel<math::Xor>);
  r.add("", "Where", cuda, all, where_kernel);
  r.add("", "Dropout", cuda, f, dropout_kernel);
  r.add("otter", "UnaryGrad", cuda, f, unary_grad_kernel);
  r.add("otter", "ClipGrad", cuda, f, clip_grad_kernel);
  r.add("otter", "DropoutGrad", cuda, f, dropout_grad_kernel);
  r.add("otter", "SumToShapeOf", cuda, f, sum_to_shape_kernel);
  r.add("", "Sign", cuda, num, sign_kernel);
  r.add("", "PRelu", cuda, num, prelu_kernel);
  r.add("", "Max", cuda, num, variadic_kernel<math::Max>);
  r.add("", "Min", cuda, num, variadic_kernel<math::Min>);
  r.add("", "Sum", cuda, f, variadic_kernel<math::Add>);
  r.add("", "Mean", cuda, f, variadic_kernel<math::Add, true>);
  r.add("otter", "PReluGrad", cuda, f, prelu_grad_kernel);
  r.add("otter", "MinMaxGrad", cuda, f, min_max_grad_kernel);
}

}  // namespace otter::cuda
