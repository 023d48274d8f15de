// CUDA kernels for the norm op family: LayerNormalization, BatchNormalization,
// InstanceNormalization, GroupNormalization and their otter.*Grad ops, with the semantics of
// kernels/cpu/norm.cpp. One block (kThreads threads) per row (LayerNormalization), channel
// (BatchNormalization) or group (n, g) (Instance/GroupNormalization, whose scale and bias are
// per channel or, GroupNormalization opset 18, per group) reduces in a fixed order (per-thread
// strided sums, then a shared-memory tree), so results are deterministic; statistics are two-pass
// mean and biased variance accumulated in FP32 (FP64 for FP64 tensors). Scale, bias and the
// statistics may have another floating dtype than X: they are read and written through a
// runtime dtype code. LayerNormalization's Scale/B broadcast to X through per-element offsets
// (with a fast path when they have the normalized shape); its dScale/dB are one fixed-order
// reduction per parameter element (no atomics).
#include <cmath>

#include "kernels/common/norm_host.h"
#include "kernels/cuda/cuda_common.cuh"

namespace otter::cuda {
namespace {

// Layouts shared with the CPU kernels (kernels/common/norm_host.h).
using namespace norm;

// ---- dtype-erased access to parameters and statistics ----

enum Code : int { kF32 = 0, kF64 = 1, kF16 = 2, kBF16 = 3 };

int code_of(DType t, const Node& node) {
  switch (t) {
    case DType::Float32: return kF32;
    case DType::Float64: return kF64;
    case DType::Float16: return kF16;
    case DType::BFloat16: return kBF16;
    default: OTTER_FAIL_KIND(Unsupported, node.describe(), ": no CUDA norm kernel for a parameter of dtype ", dtype_name(t));
  }
}

struct Param {  // a read-only floating tensor of any dtype
  const void* p = nullptr;
  int code = kF32;
};
struct Out {  // an optional floating output of any dtype (p == nullptr: absent)
  void* p = nullptr;
  int code = kF32;
};

Param param_of(const Tensor& t, const Node& node) { return {t.raw(), code_of(t.dtype(), node)}; }
Out out_of(const KernelContext& ctx, size_t i) {
  if (!ctx.has_output(i)) return {};
  return {ctx.out(i).raw(), code_of(ctx.out(i).dtype(), ctx.node)};
}

template <class C>
__device__ __forceinline__ C load_any(Param a, int64_t i) {
  switch (a.code) {
    case kF32: return static_cast<C>(static_cast<const float*>(a.p)[i]);
    case kF64: return static_cast<C>(static_cast<const double*>(a.p)[i]);
    case kF16: return static_cast<C>(__half2float(static_cast<const __half*>(a.p)[i]));
    default: return static_cast<C>(__bfloat162float(static_cast<const __nv_bfloat16*>(a.p)[i]));
  }
}

template <class C>
__device__ __forceinline__ void store_any(Out o, int64_t i, C v) {
  switch (o.code) {
    case kF32: static_cast<float*>(o.p)[i] = static_cast<float>(v); break;
    case kF64: static_cast<double*>(o.p)[i] = static_cast<double>(v); break;
    case kF16: static_cast<__half*>(o.p)[i] = __float2half_rn(static_cast<float>(v)); break;
    default: static_cast<__nv_bfloat16*>(o.p)[i] = __float2bfloat16_rn(static_cast<float>(v)); break;
  }
}

__device__ __forceinline__ float inv_sqrt(float v) { return 1.0f / sqrtf(v); }
__device__ __forceinline__ double inv_sqrt(double v) { return 1.0 / ::sqrt(v); }

// Sum of v over the block (blockDim.x == kThreads), in a fixed tree order; every thread gets it.
template <class C>
__device__ C block_sum(C v) {
  __shared__ C sh[kThreads];
  int t = static_cast<int>(threadIdx.x);
  sh[t] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (t < s) sh[t] += sh[t + s];
    __syncthreads();
  }
  C r = sh[0];
  __syncthreads();
  return r;
}

unsigned grid_for(int64_t items) {
  int64_t cap = 65535LL * 32;
  return static_cast<unsigned>(items < 1 ? 1 : (items > cap ? cap : items));
}

// Mean and biased variance of the `cols` contiguous values at xr (two passes, block-wide, fixed
// order; 0 and 0 when cols == 0); every thread of the block gets them.
template <class T, class C>
__device__ void row_moments(const T* xr, int64_t cols, C& mean, C& var) {
  int t = static_cast<int>(threadIdx.x);
  C acc = 0;
  for (int64_t j = t; j < cols; j += kThreads) acc += static_cast<C>(load(xr, j));
  C tot = block_sum(acc);
  mean = cols > 0 ? tot / static_cast<C>(cols) : C(0);
  acc = 0;
  for (int64_t j = t; j < cols; j += kThreads) {
    C d = static_cast<C>(load(xr, j)) - mean;
    acc += d * d;
  }
  tot = block_sum(acc);
  var = cols > 0 ? tot / static_cast<C>(cols) : C(0);
}

// ---- LayerNormalization ----

// The shared [rows, cols] view, for X within the CUDA kernels' rank limit.
RowView cuda_row_view(const KernelContext& ctx, const Shape& x) {
  RowView v = row_view(ctx, x);
  OTTER_CHECK_KIND(Unsupported, x.size() <= static_cast<size_t>(kMaxDims), ctx.node.describe(),
                   ": the CUDA kernel supports X of rank <= ", kMaxDims, ", got ", x.size());
  return v;
}

// True when input k of `s` (broadcast to x) sits at offset j for element (row, j): the
// parameter has the normalized shape x[axis:] (up to size-1 dims).
bool col_fast(const Strides& s, int k, const Shape& x, size_t axis) {
  int64_t st = 1;
  for (int d = s.rank - 1; d >= 0; --d) {
    if (static_cast<size_t>(d) >= axis) {
      if (x[d] != 1 && s.in[k][d] != st) return false;
      st *= x[d];
    } else if (x[d] != 1 && s.in[k][d] != 0) {
      return false;
    }
  }
  return true;
}

template <class T, class C>
__global__ void ln_fwd_k(const T* x, T* y, Param w, Param b, bool has_b, Strides s, bool w_fast, bool b_fast,
                         int64_t rows, int64_t cols, C eps, Out mean_out, Out inv_out) {
  int t = static_cast<int>(threadIdx.x);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    C mean, var;
    row_moments(xr, cols, mean, var);
    C inv = inv_sqrt(var + eps);
    for (int64_t j = t; j < cols; j += kThreads) {
      int64_t ow = j, ob = j;
      if (!(w_fast && (b_fast || !has_b))) {
        int64_t off[2];
        offsets_of(s, r * cols + j, 2, off);
        if (!w_fast) ow = off[0];
        if (!b_fast) ob = off[1];
      }
      C v = (static_cast<C>(load(xr, j)) - mean) * inv * load_any<C>(w, ow);
      if (has_b) v += load_any<C>(b, ob);
      store(yr, j, v);
    }
    if (t == 0) {
      if (mean_out.p) store_any(mean_out, r, mean);
      if (inv_out.p) store_any(inv_out, r, inv);
    }
  }
}

template <class T>
void layer_norm_typed(KernelContext& ctx) {
  using C = typename Compute<T>::type;
  const Tensor& x = ctx.in(0);
  RowView v = cuda_row_view(ctx, x.shape());
  bool has_b = ctx.has_input(2);
  const Tensor& w = ctx.in(1);
  const Tensor& b = has_b ? ctx.in(2) : w;
  Strides s = broadcast_strides(x.shape(), {&w.shape(), &b.shape()});
  bool w_fast = col_fast(s, 0, x.shape(), v.axis), b_fast = has_b && col_fast(s, 1, x.shape(), v.axis);
  C eps = static_cast<C>(ctx.node.attr_float("epsilon", 1e-5));
  if (v.rows == 0) return;
  ln_fwd_k<T, C><<<grid_for(v.rows), kThreads, 0, stream_of(ctx)>>>(
      static_cast<const T*>(x.raw()), static_cast<T*>(ctx.out(0).raw()), param_of(w, ctx.node),
      has_b ? param_of(b, ctx.node) : Param{}, has_b, s, w_fast, b_fast, v.rows, v.cols, eps, out_of(ctx, 1),
      out_of(ctx, 2));
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

void layer_norm_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), layer_norm_typed<scalar_t>(ctx));
}

// Per row, with g = dy * w: dx = inv * (g - mean(g) - xhat * mean(g * xhat)); saves the row's
// mean and inv for the parameter reductions.
template <class T, class C>
__global__ void ln_grad_row_k(const T* dy, const T* x, T* dx, Param w, Strides s, bool w_fast, int64_t rows,
                              int64_t cols, C eps, C* mean_buf, C* inv_buf) {
  int t = static_cast<int>(threadIdx.x);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    T* dxr = dx + r * cols;
    C mean, var;
    row_moments(xr, cols, mean, var);  // every thread reaches each block_sum
    C inv = inv_sqrt(var + eps);
    C a1 = 0, a2 = 0;
    for (int64_t j = t; j < cols; j += kThreads) {
      int64_t ow = j;
      if (!w_fast) offsets_of(s, r * cols + j, 1, &ow);
      C g = static_cast<C>(load(dyr, j)) * load_any<C>(w, ow);
      a1 += g;
      a2 += g * (static_cast<C>(load(xr, j)) - mean) * inv;
    }
    C s1 = block_sum(a1), s2 = block_sum(a2);
    C m1 = cols > 0 ? s1 / static_cast<C>(cols) : C(0), m2 = cols > 0 ? s2 / static_cast<C>(cols) : C(0);
    for (int64_t j = t; j < cols; j += kThreads) {
      int64_t ow = j;
      if (!w_fast) offsets_of(s, r * cols + j, 1, &ow);
      C xhat = (static_cast<C>(load(xr, j)) - mean) * inv;
      C g = static_cast<C>(load(dyr, j)) * load_any<C>(w, ow);
      store(dxr, j, inv * (g - m1 - xhat * m2));
    }
    if (t == 0) {
      mean_buf[r] = mean;
      inv_buf[r] = inv;
    }
  }
}

// A parameter broadcast to X, split into kept dims (the parameter's own, in order) and reduced
// dims (size 1 in the parameter); element p of the parameter sums X's elements at
// base(p) + reduced offsets.
struct ReduceLayout {
  int nk = 0, nr = 0;
  int64_t ksize[kMaxDims], kstride[kMaxDims], rsize[kMaxDims], rstride[kMaxDims];
  int64_t count = 1;  // elements summed per parameter element
};

ReduceLayout reduce_layout(const Shape& x, const Shape& p) {
  ReduceLayout l;
  std::vector<int64_t> xs = shape_strides(x);
  size_t lead = x.size() - p.size();
  for (size_t d = 0; d < x.size(); ++d) {
    int64_t pd = d < lead ? 1 : p[d - lead];
    if (pd != 1) {
      l.ksize[l.nk] = x[d];
      l.kstride[l.nk++] = xs[d];
    } else if (x[d] != 1) {
      l.rsize[l.nr] = x[d];
      l.rstride[l.nr++] = xs[d];
      l.count *= x[d];
    }
  }
  return l;
}

// out[p] = sum of dy (* xhat when Xhat) over the X elements that parameter element p reaches;
// one block per parameter element, fixed order.
template <class T, class C, bool Xhat>
__global__ void param_reduce_k(const T* dy, const T* x, const C* mean, const C* inv, int64_t cols, ReduceLayout l,
                               int64_t np, Out out) {
  int t = static_cast<int>(threadIdx.x);
  for (int64_t p = blockIdx.x; p < np; p += gridDim.x) {
    int64_t base = 0, q = p;
    for (int d = l.nk - 1; d >= 0; --d) {
      base += (q % l.ksize[d]) * l.kstride[d];
      q /= l.ksize[d];
    }
    C acc = 0;
    for (int64_t k = t; k < l.count; k += kThreads) {
      int64_t off = base;
      q = k;
      for (int d = l.nr - 1; d >= 0; --d) {
        off += (q % l.rsize[d]) * l.rstride[d];
        q /= l.rsize[d];
      }
      C v = static_cast<C>(load(dy, off));
      if constexpr (Xhat) {
        int64_t r = off / cols;
        v *= (static_cast<C>(load(x, off)) - mean[r]) * inv[r];
      }
      acc += v;
    }
    C tot = block_sum(acc);
    if (t == 0) store_any(out, p, tot);
  }
}

// Fast path for a parameter of the normalized shape: out[j] = sum over rows; 32 columns per
// block (coalesced), 32 row lanes, fixed-order tree over the lanes.
constexpr int kColTile = 32;
template <class T, class C, bool Xhat>
__global__ void col_reduce_k(const T* dy, const T* x, const C* mean, const C* inv, int64_t rows, int64_t cols,
                             Out out) {
  __shared__ C sh[kColTile][kColTile + 1];
  int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  for (int64_t j0 = int64_t(blockIdx.x) * kColTile; j0 < cols; j0 += int64_t(gridDim.x) * kColTile) {
    int64_t j = j0 + tx;
    C acc = 0;
    if (j < cols) {
      for (int64_t r = ty; r < rows; r += kColTile) {
        int64_t off = r * cols + j;
        C v = static_cast<C>(load(dy, off));
        if constexpr (Xhat) v *= (static_cast<C>(load(x, off)) - mean[r]) * inv[r];
        acc += v;
      }
    }
    sh[ty][tx] = acc;
    __syncthreads();
    for (int s = kColTile / 2; s > 0; s >>= 1) {
      if (ty < s) sh[ty][tx] += sh[ty + s][tx];
      __syncthreads();
    }
    if (ty == 0 && j < cols) store_any(out, j, sh[0][tx]);
    __syncthreads();
  }
}

template <class T, class C, bool Xhat>
void reduce_param(KernelContext& ctx, const Tensor& param, size_t out_index, const RowView& v, const C* mean,
                  const C* inv) {
  const Tensor& x = ctx.in(1);
  Out out = out_of(ctx, out_index);
  int64_t np = param.numel();
  if (np == 0) return;
  const T* pdy = static_cast<const T*>(ctx.in(0).raw());
  const T* px = static_cast<const T*>(x.raw());
  cudaStream_t st = stream_of(ctx);
  Strides s = broadcast_strides(x.shape(), {&param.shape()});
  if (col_fast(s, 0, x.shape(), v.axis) && np == v.cols) {
    int64_t tiles = (v.cols + kColTile - 1) / kColTile;
    col_reduce_k<T, C, Xhat><<<grid_for(tiles), dim3(kColTile, kColTile), 0, st>>>(pdy, px, mean, inv, v.rows,
                                                                                    v.cols, out);
  } else {
    ReduceLayout l = reduce_layout(x.shape(), param.shape());
    param_reduce_k<T, C, Xhat><<<grid_for(np), kThreads, 0, st>>>(pdy, px, mean, inv, v.cols, l, np, out);
  }
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// (dy, X, Scale, B?) -> dX, dScale, dB (dB only when B is given; B is read only for its shape).
template <class T>
void layer_norm_grad_typed(KernelContext& ctx) {
  using C = typename Compute<T>::type;
  const Tensor& x = ctx.in(1);
  RowView v = cuda_row_view(ctx, x.shape());
  const Tensor& w = ctx.in(2);
  bool want_db = ctx.has_input(3) && ctx.has_output(2);
  C eps = static_cast<C>(ctx.node.attr_float("epsilon", 1e-5));
  Strides s = broadcast_strides(x.shape(), {&w.shape()});
  bool w_fast = col_fast(s, 0, x.shape(), v.axis);
  Tensor stats(DTypeOf<C>::value, {2, v.rows}, Device::CUDA);
  C* mean = static_cast<C*>(stats.raw());
  C* inv = mean + v.rows;
  if (v.rows > 0) {
    ln_grad_row_k<T, C><<<grid_for(v.rows), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const T*>(ctx.in(0).raw()), static_cast<const T*>(x.raw()), static_cast<T*>(ctx.out(0).raw()),
        param_of(w, ctx.node), s, w_fast, v.rows, v.cols, eps, mean, inv);
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  }
  if (ctx.has_output(1)) reduce_param<T, C, true>(ctx, w, 1, v, mean, inv);
  if (want_db) reduce_param<T, C, false>(ctx, ctx.in(3), 2, v, mean, inv);
}

void layer_norm_grad_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(1).dtype(), ctx.node.describe(), layer_norm_grad_typed<scalar_t>(ctx));
}

// ---- BatchNormalization ----

// Mean and biased variance of channel c over [N, S] (two passes, block-wide, fixed order).
template <class T, class C>
__device__ void channel_moments(const T* x, NCS d, int64_t c, C& mean, C& var) {
  int t = static_cast<int>(threadIdx.x);
  int64_t count = d.n * d.s;
  C acc = 0;
  for (int64_t i = t; i < count; i += kThreads) acc += static_cast<C>(load(x, ((i / d.s) * d.c + c) * d.s + i % d.s));
  C tot = block_sum(acc);
  mean = count > 0 ? tot / static_cast<C>(count) : C(0);
  acc = 0;
  for (int64_t i = t; i < count; i += kThreads) {
    C dv = static_cast<C>(load(x, ((i / d.s) * d.c + c) * d.s + i % d.s)) - mean;
    acc += dv * dv;
  }
  tot = block_sum(acc);
  var = count > 0 ? tot / static_cast<C>(count) : C(0);
}

template <class T, class C>
__global__ void bn_fwd_k(const T* x, T* y, NCS d, Param scale, Param bias, Param in_mean, Param in_var, bool batch,
                         C eps, C momentum, Out run_mean, Out run_var, Out saved_mean, Out saved_var) {
  int t = static_cast<int>(threadIdx.x);
  int64_t count = d.n * d.s;
  for (int64_t c = blockIdx.x; c < d.c; c += gridDim.x) {
    C im = load_any<C>(in_mean, c), iv = load_any<C>(in_var, c);
    C mean = im, var = iv;
    if (batch) channel_moments(x, d, c, mean, var);
    C a = load_any<C>(scale, c) * inv_sqrt(var + eps);
    C shift = load_any<C>(bias, c) - mean * a;
    for (int64_t i = t; i < count; i += kThreads) {
      int64_t off = ((i / d.s) * d.c + c) * d.s + i % d.s;
      store(y, off, static_cast<C>(load(x, off)) * a + shift);
    }
    if (t == 0) {
      if (run_mean.p) store_any(run_mean, c, batch ? im * momentum + mean * (C(1) - momentum) : im);
      if (run_var.p) store_any(run_var, c, batch ? iv * momentum + var * (C(1) - momentum) : iv);
      if (saved_mean.p) store_any(saved_mean, c, mean);
      if (saved_var.p) store_any(saved_var, c, var);
    }
  }
}

template <class T>
void batch_norm_typed(KernelContext& ctx, bool batch) {
  using C = typename Compute<T>::type;
  const Tensor& x = ctx.in(0);
  NCS d = ncs_view(ctx, x.shape());
  if (d.c == 0) return;
  C eps = static_cast<C>(ctx.node.attr_float("epsilon", 1e-5));
  C momentum = static_cast<C>(ctx.node.attr_float("momentum", 0.9));
  const Node& n = ctx.node;
  bn_fwd_k<T, C><<<grid_for(d.c), kThreads, 0, stream_of(ctx)>>>(
      static_cast<const T*>(x.raw()), static_cast<T*>(ctx.out(0).raw()), d, param_of(ctx.in(1), n),
      param_of(ctx.in(2), n), param_of(ctx.in(3), n), param_of(ctx.in(4), n), batch, eps, momentum, out_of(ctx, 1),
      out_of(ctx, 2), out_of(ctx, 3), out_of(ctx, 4));
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

void batch_norm_kernel(KernelContext& ctx) {
  bool batch = batch_norm_training_form(ctx.node) && ctx.training;
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), batch_norm_typed<scalar_t>(ctx, batch));
}

// (dy, X, scale, input_mean, input_var, B) -> dX, dscale, dB. With batch statistics:
// dx = scale * inv * (dy - mean(dy) - xhat * mean(dy * xhat)); otherwise dx = dy * scale * inv.
// dscale = sum(dy * xhat), dB = sum(dy) per channel.
template <class T, class C>
__global__ void bn_grad_k(const T* dy, const T* x, T* dx, NCS d, Param scale, Param in_mean, Param in_var, bool batch,
                          C eps, Out dscale, Out dbias) {
  int t = static_cast<int>(threadIdx.x);
  int64_t count = d.n * d.s;
  for (int64_t c = blockIdx.x; c < d.c; c += gridDim.x) {
    C mean = load_any<C>(in_mean, c), var = load_any<C>(in_var, c);
    if (batch) channel_moments(x, d, c, mean, var);
    C inv = inv_sqrt(var + eps);
    C a1 = 0, a2 = 0;
    for (int64_t i = t; i < count; i += kThreads) {
      int64_t off = ((i / d.s) * d.c + c) * d.s + i % d.s;
      C g = static_cast<C>(load(dy, off));
      a1 += g;
      a2 += g * (static_cast<C>(load(x, off)) - mean) * inv;
    }
    C sdy = block_sum(a1), sdyx = block_sum(a2);
    C k0 = load_any<C>(scale, c) * inv;
    C m1 = count > 0 ? sdy / static_cast<C>(count) : C(0), m2 = count > 0 ? sdyx / static_cast<C>(count) : C(0);
    for (int64_t i = t; i < count; i += kThreads) {
      int64_t off = ((i / d.s) * d.c + c) * d.s + i % d.s;
      C g = static_cast<C>(load(dy, off));
      if (batch) {
        C xhat = (static_cast<C>(load(x, off)) - mean) * inv;
        store(dx, off, k0 * (g - m1 - xhat * m2));
      } else {
        store(dx, off, k0 * g);
      }
    }
    if (t == 0) {
      if (dscale.p) store_any(dscale, c, sdyx);
      if (dbias.p) store_any(dbias, c, sdy);
    }
  }
}

template <class T>
void batch_norm_grad_typed(KernelContext& ctx, bool batch) {
  using C = typename Compute<T>::type;
  const Tensor& x = ctx.in(1);
  NCS d = ncs_view(ctx, x.shape());
  if (d.c == 0) return;
  C eps = static_cast<C>(ctx.node.attr_float("epsilon", 1e-5));
  const Node& n = ctx.node;
  bn_grad_k<T, C><<<grid_for(d.c), kThreads, 0, stream_of(ctx)>>>(
      static_cast<const T*>(ctx.in(0).raw()), static_cast<const T*>(x.raw()), static_cast<T*>(ctx.out(0).raw()), d,
      param_of(ctx.in(2), n), param_of(ctx.in(3), n), param_of(ctx.in(4), n), batch, eps, out_of(ctx, 1),
      out_of(ctx, 2));
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

void batch_norm_grad_kernel(KernelContext& ctx) {
  bool batch = ctx.node.attr_int("training_mode", 0) != 0 && ctx.training;
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(1).dtype(), ctx.node.describe(), batch_norm_grad_typed<scalar_t>(ctx, batch));
}

// ---- InstanceNormalization (one group per channel), GroupNormalization ----

__device__ __forceinline__ int64_t param_index(int64_t c, bool per_channel, int64_t per_group) {
  return per_channel ? c : c / per_group;
}

template <class T, class C>
__global__ void gn_fwd_k(const T* x, T* y, GroupView v, Param scale, bool scale_pc, Param bias, bool bias_pc, C eps) {
  int t = static_cast<int>(threadIdx.x);
  int64_t rows = v.d.n * v.groups;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xb = x + r * v.block;
    T* yb = y + r * v.block;
    C mean, var;
    row_moments(xb, v.block, mean, var);
    C inv = inv_sqrt(var + eps);
    int64_t c0 = (r % v.groups) * v.per_group;
    for (int64_t j = t; j < v.block; j += kThreads) {
      int64_t c = c0 + j / v.d.s;
      C a = inv * load_any<C>(scale, param_index(c, scale_pc, v.per_group));
      C shift = load_any<C>(bias, param_index(c, bias_pc, v.per_group)) - mean * a;
      store(yb, j, static_cast<C>(load(xb, j)) * a + shift);
    }
  }
}

template <class T>
void group_norm_typed(KernelContext& ctx, bool instance) {
  using C = typename Compute<T>::type;
  const Tensor& x = ctx.in(0);
  GroupView v = group_view(ctx, x.shape(), instance);
  const Tensor &scale = ctx.in(1), &bias = ctx.in(2);
  bool scale_pc = per_channel_param(v, scale.numel(), ctx), bias_pc = per_channel_param(v, bias.numel(), ctx);
  C eps = static_cast<C>(ctx.node.attr_float("epsilon", 1e-5));
  int64_t rows = v.d.n * v.groups;
  if (rows == 0) return;
  gn_fwd_k<T, C><<<grid_for(rows), kThreads, 0, stream_of(ctx)>>>(
      static_cast<const T*>(x.raw()), static_cast<T*>(ctx.out(0).raw()), v, param_of(scale, ctx.node), scale_pc,
      param_of(bias, ctx.node), bias_pc, eps);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

template <bool Instance>
void group_norm_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), group_norm_typed<scalar_t>(ctx, Instance));
}

// Per group (n, g), with g = dy * scale[c]: dx = inv * (g - mean(g) - xhat * mean(g * xhat));
// saves the group's mean and inv for the parameter reductions.
template <class T, class C>
__global__ void gn_grad_row_k(const T* dy, const T* x, T* dx, GroupView v, Param scale, bool scale_pc, C eps,
                              C* mean_buf, C* inv_buf) {
  int t = static_cast<int>(threadIdx.x);
  int64_t rows = v.d.n * v.groups;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xb = x + r * v.block;
    const T* dyb = dy + r * v.block;
    T* dxb = dx + r * v.block;
    C mean, var;
    row_moments(xb, v.block, mean, var);  // every thread reaches each block_sum
    C inv = inv_sqrt(var + eps);
    int64_t c0 = (r % v.groups) * v.per_group;
    C a1 = 0, a2 = 0;
    for (int64_t j = t; j < v.block; j += kThreads) {
      C g = static_cast<C>(load(dyb, j)) * load_any<C>(scale, param_index(c0 + j / v.d.s, scale_pc, v.per_group));
      a1 += g;
      a2 += g * (static_cast<C>(load(xb, j)) - mean) * inv;
    }
    C s1 = block_sum(a1), s2 = block_sum(a2);
    C count = static_cast<C>(v.block);
    C m1 = v.block > 0 ? s1 / count : C(0), m2 = v.block > 0 ? s2 / count : C(0);
    for (int64_t j = t; j < v.block; j += kThreads) {
      C xhat = (static_cast<C>(load(xb, j)) - mean) * inv;
      C g = static_cast<C>(load(dyb, j)) * load_any<C>(scale, param_index(c0 + j / v.d.s, scale_pc, v.per_group));
      store(dxb, j, inv * (g - m1 - xhat * m2));
    }
    if (t == 0) {
      mean_buf[r] = mean;
      inv_buf[r] = inv;
    }
  }
}

// dscale (Xhat) or dbias: sum of dy * xhat or dy over the batch and the channels a parameter
// element covers (one channel, or the channels of a group), one block per element in a fixed
// order (param_reduce_k over X viewed as [N, P, C/P * S] against a [P, 1] parameter; the
// statistics row of an element is its offset / block).
template <class T, class C, bool Xhat>
void gn_reduce_param(KernelContext& ctx, const GroupView& v, const Tensor& param, bool pc, size_t out_index,
                     const C* mean, const C* inv) {
  int64_t np = param.numel();
  if (np == 0) return;
  int64_t inner = (pc ? 1 : v.per_group) * v.d.s;
  ReduceLayout l = reduce_layout({v.d.n, np, inner}, {np, 1});
  param_reduce_k<T, C, Xhat><<<grid_for(np), kThreads, 0, stream_of(ctx)>>>(
      static_cast<const T*>(ctx.in(0).raw()), static_cast<const T*>(ctx.in(1).raw()), mean, inv, v.block, l, np,
      out_of(ctx, out_index));
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// (dy, X, scale, bias) -> dX, dscale, dbias (bias is read only for its size).
template <class T>
void group_norm_grad_typed(KernelContext& ctx, bool instance) {
  using C = typename Compute<T>::type;
  const Tensor& x = ctx.in(1);
  GroupView v = group_view(ctx, x.shape(), instance);
  const Tensor &scale = ctx.in(2), &bias = ctx.in(3);
  bool scale_pc = per_channel_param(v, scale.numel(), ctx), bias_pc = per_channel_param(v, bias.numel(), ctx);
  C eps = static_cast<C>(ctx.node.attr_float("epsilon", 1e-5));
  int64_t rows = v.d.n * v.groups;
  Tensor stats(DTypeOf<C>::value, {2, rows}, Device::CUDA);
  C* mean = static_cast<C*>(stats.raw());
  C* inv = mean + rows;
  if (rows > 0) {
    gn_grad_row_k<T, C><<<grid_for(rows), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const T*>(ctx.in(0).raw()), static_cast<const T*>(x.raw()), static_cast<T*>(ctx.out(0).raw()), v,
        param_of(scale, ctx.node), scale_pc, eps, mean, inv);
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  }
  if (ctx.has_output(1)) gn_reduce_param<T, C, true>(ctx, v, scale, scale_pc, 1, mean, inv);
  if (ctx.has_output(2)) gn_reduce_param<T, C, false>(ctx, v, bias, bias_pc, 2, mean, inv);
}

template <bool Instance>
void group_norm_grad_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(1).dtype(), ctx.node.describe(), group_norm_grad_typed<scalar_t>(ctx, Instance));
}

}  // namespace

void register_norm_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};
  r.add("", "BatchNormalization", Device::CUDA, f, batch_norm_kernel);
  r.add("otter", "BatchNormalizationGrad", Device::CUDA, f, batch_norm_grad_kernel);
  r.add("", "LayerNormalization", Device::CUDA, f, layer_norm_kernel);
  r.add("otter", "LayerNormalizationGrad", Device::CUDA, f, layer_norm_grad_kernel);
  r.add("", "InstanceNormalization", Device::CUDA, f, group_norm_kernel<true>);
  r.add("otter", "InstanceNormalizationGrad", Device::CUDA, f, group_norm_grad_kernel<true>);
  r.add("", "GroupNormalization", Device::CUDA, f, group_norm_kernel<false>);
  r.add("otter", "GroupNormalizationGrad", Device::CUDA, f, group_norm_grad_kernel<false>);
}

}  // namespace otter::cuda
