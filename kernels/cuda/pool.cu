// CUDA kernels for the pool op family: MaxPool (with its Indices output), AveragePool,
// GlobalAveragePool, GlobalMaxPool and their internal gradient ops (otter.MaxPoolArgmax writes the
// int32 argmax MaxPoolGrad reads when the model has no Indices output), with the semantics of
// kernels/cpu/pool.cpp. Own kernels rather than cuDNN pooling (which has no argmax and other edge
// rules). The window geometry comes from kernels/common/pool_host.h (as on the CPU); each output's
// taps are the inside-the-input positions of its window, visited in row-major order, and the
// AveragePool divisor counts them (or, with count_include_pad, the positions inside the explicitly
// padded input). MaxPool takes the first maximum (strict >), which is also where its gradient goes.
// Forward ops: one thread per output. AveragePoolGrad is a gather (one thread per input element,
// over the windows that hold it, in the CPU's order of additions), so it needs no atomics; so is
// MaxPoolGrad (its node carries the forward node's window attributes). The global pools run one
// block per (batch, channel) plane.
#include <limits>
#include <type_traits>

#include "kernels/common/pool_host.h"
#include "kernels/cuda/cuda_common.cuh"

namespace otter::cuda {
namespace {

constexpr int kMaxSpatial = kMaxDims - 2;

// ---- window geometry ----

struct PoolGeom {
  int dims = 0;
  int64_t in[kMaxSpatial], out[kMaxSpatial], kernel[kMaxSpatial], stride[kMaxSpatial], dil[kMaxSpatial];
  int64_t pb[kMaxSpatial], pe[kMaxSpatial];  // begin / end pads
  int64_t planes = 0, plane_in = 1, plane_out = 1;
};

void check_rank(const Node& node, const Shape& x) {
  OTTER_CHECK_KIND(Unsupported, x.size() >= 3 && x.size() <= static_cast<size_t>(kMaxDims), node.describe(),
                   ": the CUDA pool kernels support X of rank 3 to ", kMaxDims, ", got ", x.size());
}

// The geometry of a MaxPool/AveragePool node (or its gradient op) for input shape x, checked
// against the output shape the plan inferred.
PoolGeom pool_geometry(const Node& node, const Shape& x, const Shape& y_expected) {
  pool::PoolWindow w = pool::pool_window(node, x, y_expected);
  check_rank(node, x);
  PoolGeom g;
  g.dims = static_cast<int>(w.in.size());
  for (int d = 0; d < g.dims; ++d) {
    g.in[d] = w.in[d];
    g.out[d] = w.out[d];
    g.kernel[d] = w.kernel[d];
    g.stride[d] = w.strides[d];
    g.dil[d] = w.dilations[d];
    g.pb[d] = w.pads_begin[d];
    g.pe[d] = w.pads_end[d];
  }
  g.planes = x[0] * x[1];
  g.plane_in = shape_numel(w.in);
  g.plane_out = shape_numel(w.out);
  return g;
}

// Along dim d, output coordinate o: the taps j in [lo, hi) that land inside the input, and how
// many land inside the padded input [-pb, in + pe).
__device__ void dim_window(const PoolGeom& g, int d, int64_t o, int64_t& lo, int64_t& hi, int64_t& padded) {
  int64_t base = o * g.stride[d] - g.pb[d];
  lo = hi = padded = 0;
  bool found = false;
  for (int64_t j = 0; j < g.kernel[d]; ++j) {
    int64_t i = base + j * g.dil[d];
    if (i >= 0 && i < g.in[d]) {
      if (!found) lo = j;
      found = true;
      hi = j + 1;
    }
    if (i >= -g.pb[d] && i < g.in[d] + g.pe[d]) ++padded;
  }
}

// The window of one output position (flat index in its plane).
struct Window {
  int64_t base[kMaxSpatial], lo[kMaxSpatial], hi[kMaxSpatial];
  int64_t taps = 1, padded = 1;  // taps inside the input / inside the padded input
};

__device__ Window window_of(const PoolGeom& g, int64_t o) {
  Window w;
  for (int d = g.dims - 1; d >= 0; --d) {
    int64_t od = o % g.out[d], padded = 0;
    o /= g.out[d];
    w.base[d] = od * g.stride[d] - g.pb[d];
    dim_window(g, d, od, w.lo[d], w.hi[d], padded);
    w.taps *= w.hi[d] - w.lo[d];
    w.padded *= padded;
  }
  return w;
}

// Calls fn(offset in the input plane) for each tap of w, in row-major order (the CPU's order).
template <class Fn>
__device__ void for_each_tap(const PoolGeom& g, const Window& w, Fn fn) {
  if (w.taps == 0) return;
  int64_t j[kMaxSpatial];
  for (int d = 0; d < g.dims; ++d) j[d] = w.lo[d];
  while (true) {
    int64_t off = 0;
    for (int d = 0; d < g.dims; ++d) off = off * g.in[d] + w.base[d] + j[d] * g.dil[d];
    fn(off);
    int d = g.dims - 1;
    while (d >= 0 && ++j[d] == w.hi[d]) {
      j[d] = w.lo[d];
      --d;
    }
    if (d < 0) return;
  }
}

// Row-major offset in a plane of dims `in` -> column-major (storage_order = 1) offset.
__device__ int64_t to_column_major(int dims, const int64_t* in, int64_t off) {
  int64_t c[kMaxSpatial], r = 0, stride = 1;
  for (int d = dims - 1; d >= 0; --d) {
    c[d] = off % in[d];
    off /= in[d];
  }
  for (int d = 0; d < dims; ++d) {
    r += c[d] * stride;
    stride *= in[d];
  }
  return r;
}

// ---- MaxPool, otter.MaxPoolArgmax, AveragePool ----

// Per output: the first maximum of its window (0 and index -1 for a window with no input tap)
// into y, MaxPool's int64 Indices (flat offset into x, storage_order as asked) and/or the int32
// argmax (row-major offset in the plane); each pointer may be null.
template <class T>
__global__ void max_pool_k(const T* __restrict__ x, T* __restrict__ y, int64_t* __restrict__ indices,
                           int32_t* __restrict__ argmax, PoolGeom g, bool column_major, int64_t n) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) {
    int64_t p = i / g.plane_out;
    Window w = window_of(g, i % g.plane_out);
    const T* src = x + p * g.plane_in;
    C v = C(0);
    int64_t best = -1;
    for_each_tap(g, w, [&](int64_t off) {
      C u = static_cast<C>(load(src, off));
      if (best < 0 || u > v) {
        v = u;
        best = off;
      }
    });
    if (y) store(y, i, v);
    if (indices)
      indices[i] = best < 0 ? -1 : p * g.plane_in + (column_major ? to_column_major(g.dims, g.in, best) : best);
    if (argmax) argmax[i] = best < 0 ? -1 : static_cast<int32_t>(best);
  }
}

template <class T>
void launch_max_pool(const KernelContext& ctx, const PoolGeom& g, T* y, int64_t* indices, int32_t* argmax,
                     bool column_major) {
  int64_t n = g.planes * g.plane_out;
  if (n == 0) return;
  max_pool_k<T><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(static_cast<const T*>(ctx.in(0).raw()), y, indices,
                                                                argmax, g, column_major, n);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

template <class T>
void max_pool_typed(KernelContext& ctx) {
  Tensor& y = ctx.out(0);
  PoolGeom g = pool_geometry(ctx.node, ctx.in(0).shape(), y.shape());
  bool column_major = ctx.node.attr_int("storage_order", 0) != 0;
  int64_t* indices = ctx.has_output(1) ? static_cast<int64_t*>(ctx.out(1).raw()) : nullptr;
  launch_max_pool<T>(ctx, g, static_cast<T*>(y.raw()), indices, nullptr, column_major);
}

// otter.MaxPoolArgmax: x -> int32 argmax of each window as a row-major offset inside its
// (batch, channel) plane, -1 for a window with no input tap; the same first maximum as MaxPool.
template <class T>
void max_pool_argmax_typed(KernelContext& ctx) {
  Tensor& idx = ctx.out(0);
  PoolGeom g = pool_geometry(ctx.node, ctx.in(0).shape(), idx.shape());
  OTTER_CHECK(g.plane_in <= std::numeric_limits<int32_t>::max(), ctx.node.describe(), ": a plane of ", g.plane_in,
              " elements is too large for int32 offsets");
  launch_max_pool<T>(ctx, g, nullptr, nullptr, static_cast<int32_t*>(idx.raw()), false);
}

template <class T>
__global__ void average_pool_k(const T* __restrict__ x, T* __restrict__ y, PoolGeom g, bool include_pad, int64_t n) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) {
    int64_t p = i / g.plane_out;
    Window w = window_of(g, i % g.plane_out);
    const T* src = x + p * g.plane_in;
    C acc = C(0);
    for_each_tap(g, w, [&](int64_t off) { acc += static_cast<C>(load(src, off)); });
    int64_t div = include_pad ? w.padded : w.taps;
    store(y, i, div > 0 ? acc / static_cast<C>(div) : C(0));
  }
}

template <class T>
void average_pool_typed(KernelContext& ctx) {
  Tensor& y = ctx.out(0);
  PoolGeom g = pool_geometry(ctx.node, ctx.in(0).shape(), y.shape());
  bool include_pad = ctx.node.attr_int("count_include_pad", 0) != 0;
  int64_t n = g.planes * g.plane_out;
  if (n == 0) return;
  average_pool_k<T><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(static_cast<const T*>(ctx.in(0).raw()),
                                                                    static_cast<T*>(y.raw()), g, include_pad, n);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// ---- gradients of MaxPool and AveragePool ----

// otter.MaxPoolGrad as a gather: int64 indices are MaxPool's (flat offsets into x, storage_order
// as the forward node), int32 ones otter.MaxPoolArgmax's (row-major offsets in the plane); -1
// marks a window with no input tap. The node carries the forward node's window attributes, so
// input element c walks the outputs o whose window holds it (as AveragePoolGrad below, in
// increasing flat o, the order in which the CPU adds them) and adds dy[o] where the argmax of o
// is c: no atomics, deterministic, and the CPU's sums.
template <class T, class I>
__global__ void max_pool_grad_k(const T* __restrict__ dy, const I* __restrict__ idx, T* __restrict__ dx, PoolGeom g,
                                bool local_argmax, bool column_major, int64_t n) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) {
    int64_t p = i / g.plane_in, local = i % g.plane_in, rest = local;
    int64_t c[kMaxSpatial], j[kMaxSpatial];
    for (int d = g.dims - 1; d >= 0; --d) {
      c[d] = rest % g.in[d];
      rest /= g.in[d];
      j[d] = g.kernel[d] - 1;
    }
    // The index value that designates this element.
    const int64_t want =
        local_argmax ? local : p * g.plane_in + (column_major ? to_column_major(g.dims, g.in, local) : local);
    C acc = C(0);
    while (true) {
      int64_t o = 0;
      bool covers = true;
      for (int d = 0; d < g.dims; ++d) {
        int64_t t = c[d] + g.pb[d] - j[d] * g.dil[d];
        if (t < 0 || t % g.stride[d] != 0 || t / g.stride[d] >= g.out[d]) {
          covers = false;
          break;
        }
        o = o * g.out[d] + t / g.stride[d];
      }
      if (covers && static_cast<int64_t>(idx[p * g.plane_out + o]) == want)
        acc += static_cast<C>(load(dy, p * g.plane_out + o));
      int d = g.dims - 1;
      while (d >= 0 && j[d]-- == 0) {
        j[d] = g.kernel[d] - 1;
        --d;
      }
      if (d < 0) break;
    }
    store(dx, i, acc);
  }
}

// otter.MaxPoolGrad: (dy, indices, x) -> dx, with the forward node's attributes.
template <class T>
void max_pool_grad_typed(KernelContext& ctx) {
  const Tensor &dy = ctx.in(0), &idx = ctx.in(1), &x = ctx.in(2);
  OTTER_CHECK(idx.numel() == dy.numel(), ctx.node.describe(), ": indices ", shape_str(idx.shape()),
              " do not match dy ", shape_str(dy.shape()));
  PoolGeom g = pool_geometry(ctx.node, x.shape(), dy.shape());
  int64_t n = g.planes * g.plane_in;
  if (n == 0) return;
  const bool local_argmax = idx.dtype() == DType::Int32;
  const bool column_major = !local_argmax && ctx.node.attr_int("storage_order", 0) != 0;
  const T* pdy = static_cast<const T*>(dy.raw());
  T* pdx = static_cast<T*>(ctx.out(0).raw());
  if (local_argmax)
    max_pool_grad_k<T, int32_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        pdy, static_cast<const int32_t*>(idx.raw()), pdx, g, true, false, n);
  else
    max_pool_grad_k<T, int64_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        pdy, static_cast<const int64_t*>(idx.raw()), pdx, g, false, column_major, n);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// otter.AveragePoolGrad as a gather: input element c gets dy[o] / divisor(o) from each output o
// whose window holds it. Along dim d those are o = (c + pb - j * dil) / stride for the taps j
// where that divides exactly and 0 <= o < out; walking j downwards (last dim fastest) visits
// them in increasing flat o, the order in which the CPU adds them.
template <class T>
__global__ void average_pool_grad_k(const T* __restrict__ dy, T* __restrict__ dx, PoolGeom g, bool include_pad,
                                    int64_t n) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) {
    int64_t p = i / g.plane_in, rest = i % g.plane_in;
    int64_t c[kMaxSpatial], j[kMaxSpatial];
    for (int d = g.dims - 1; d >= 0; --d) {
      c[d] = rest % g.in[d];
      rest /= g.in[d];
      j[d] = g.kernel[d] - 1;
    }
    C acc = C(0);
    while (true) {
      int64_t o = 0, taps = 1, padded = 1;
      bool covers = true;
      for (int d = 0; d < g.dims; ++d) {
        int64_t t = c[d] + g.pb[d] - j[d] * g.dil[d];
        if (t < 0 || t % g.stride[d] != 0 || t / g.stride[d] >= g.out[d]) {
          covers = false;
          break;
        }
        int64_t od = t / g.stride[d], lo = 0, hi = 0, pd = 0;
        dim_window(g, d, od, lo, hi, pd);
        o = o * g.out[d] + od;
        taps *= hi - lo;
        padded *= pd;
      }
      if (covers) {
        int64_t div = include_pad ? padded : taps;
        if (div > 0) acc += static_cast<C>(load(dy, p * g.plane_out + o)) / static_cast<C>(div);
      }
      int d = g.dims - 1;
      while (d >= 0 && j[d]-- == 0) {
        j[d] = g.kernel[d] - 1;
        --d;
      }
      if (d < 0) break;
    }
    store(dx, i, acc);
  }
}

// otter.AveragePoolGrad: (dy, x) -> dx, with the forward node's attributes.
template <class T>
void average_pool_grad_typed(KernelContext& ctx) {
  const Tensor &dy = ctx.in(0), &x = ctx.in(1);
  PoolGeom g = pool_geometry(ctx.node, x.shape(), dy.shape());
  bool include_pad = ctx.node.attr_int("count_include_pad", 0) != 0;
  int64_t n = g.planes * g.plane_in;
  if (n == 0) return;
  average_pool_grad_k<T><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
      static_cast<const T*>(dy.raw()), static_cast<T*>(ctx.out(0).raw()), g, include_pad, n);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// ---- global pools: one block (kThreads threads) per plane ----

unsigned grid_for(int64_t items) {
  int64_t cap = 65535LL * 32;
  return static_cast<unsigned>(items < 1 ? 1 : (items > cap ? cap : items));
}

// Like the CPU kernel, the sum is in FP64 for every dtype; the mean is rounded to the compute
// type, then stored. Per-thread strided sums, then a fixed shared-memory tree.
template <class T>
__global__ void global_average_pool_k(const T* __restrict__ x, T* __restrict__ y, int64_t planes, int64_t size) {
  using C = typename Compute<T>::type;
  __shared__ double sh[kThreads];
  int t = static_cast<int>(threadIdx.x);
  for (int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    double acc = 0;
    for (int64_t i = t; i < size; i += kThreads) acc += static_cast<double>(load(x, p * size + i));
    sh[t] = acc;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
      if (t < s) sh[t] += sh[t + s];
      __syncthreads();
    }
    if (t == 0) store(y, p, size ? static_cast<C>(sh[0] / static_cast<double>(size)) : C(0));
    __syncthreads();
  }
}

// The first maximum of src[0, size) as the CPU's scan finds it (v = src[0], then each later
// element that is strictly greater): the first occurrence of the largest non-NaN value, or 0 when
// src[0] is NaN; -1 for size 0. Called by the whole block; every thread gets the result.
template <class T>
__device__ int64_t block_first_max(const T* src, int64_t size) {
  using C = typename Compute<T>::type;
  __shared__ C sv[kThreads];
  __shared__ int64_t si[kThreads];
  int t = static_cast<int>(threadIdx.x);
  C v = C(0);
  int64_t best = -1;
  for (int64_t i = t; i < size; i += kThreads) {
    C u = static_cast<C>(load(src, i));
    if (u == u && (best < 0 || u > v)) {
      v = u;
      best = i;
    }
  }
  sv[t] = v;
  si[t] = best;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (t < s) {
      C u = sv[t + s];
      int64_t k = si[t + s];
      if (k >= 0 && (si[t] < 0 || u > sv[t] || (u == sv[t] && k < si[t]))) {
        sv[t] = u;
        si[t] = k;
      }
    }
    __syncthreads();
  }
  int64_t r = si[0];
  __syncthreads();
  if (size > 0) {
    C first = static_cast<C>(load(src, 0));
    if (first != first) r = 0;
  }
  return r;
}

template <class T>
__global__ void global_max_pool_k(const T* __restrict__ x, T* __restrict__ y, int64_t planes, int64_t size) {
  using C = typename Compute<T>::type;
  for (int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    int64_t best = block_first_max(x + p * size, size);
    if (threadIdx.x == 0) store(y, p, best < 0 ? C(0) : static_cast<C>(load(x, p * size + best)));
  }
}

// otter.GlobalMaxPoolGrad: dx = dy at the first maximum of each plane, 0 elsewhere.
template <class T>
__global__ void global_max_pool_grad_k(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx,
                                       int64_t planes, int64_t size) {
  using C = typename Compute<T>::type;
  for (int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    int64_t best = block_first_max(x + p * size, size);
    C g = static_cast<C>(load(dy, p));
    for (int64_t i = threadIdx.x; i < size; i += kThreads) store(dx, p * size + i, i == best ? g : C(0));
  }
}

// otter.GlobalAveragePoolGrad: dx = dy / size, broadcast over each plane.
template <class T>
__global__ void global_average_pool_grad_k(const T* __restrict__ dy, T* __restrict__ dx, int64_t size, int64_t n) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) { store(dx, i, static_cast<C>(load(dy, i / size)) / static_cast<C>(size)); }
}

using pool::global_plane_size;
using pool::global_planes;

template <class T>
void global_average_pool_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  int64_t planes = global_planes(x), size = global_plane_size(x);
  if (planes == 0) return;
  global_average_pool_k<T><<<grid_for(planes), kThreads, 0, stream_of(ctx)>>>(
      static_cast<const T*>(x.raw()), static_cast<T*>(ctx.out(0).raw()), planes, size);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

template <class T>
void global_max_pool_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  int64_t planes = global_planes(x), size = global_plane_size(x);
  if (planes == 0) return;
  global_max_pool_k<T><<<grid_for(planes), kThreads, 0, stream_of(ctx)>>>(
      static_cast<const T*>(x.raw()), static_cast<T*>(ctx.out(0).raw()), planes, size);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// otter.GlobalAveragePoolGrad: (dy, x) -> dx.
template <class T>
void global_average_pool_grad_typed(KernelContext& ctx) {
  const Tensor &dy = ctx.in(0), &x = ctx.in(1);
  int64_t size = global_plane_size(x), n = global_planes(x) * size;
  if (n == 0) return;
  global_average_pool_grad_k<T><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
      static_cast<const T*>(dy.raw()), static_cast<T*>(ctx.out(0).raw()), size, n);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// otter.GlobalMaxPoolGrad: (dy, x) -> dx.
template <class T>
void global_max_pool_grad_typed(KernelContext& ctx) {
  const Tensor &dy = ctx.in(0), &x = ctx.in(1);
  int64_t planes = global_planes(x), size = global_plane_size(x);
  if (planes == 0 || size == 0) return;
  global_max_pool_grad_k<T><<<grid_for(planes), kThreads, 0, stream_of(ctx)>>>(
      static_cast<const T*>(dy.raw()), static_cast<const T*>(x.raw()), static_cast<T*>(ctx.out(0).raw()), planes,
      size);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

void max_pool_kernel(KernelContext& ctx) {
  switch (ctx.in(0).dtype()) {
    case DType::Float32: max_pool_typed<float>(ctx); break;
    case DType::Float64: max_pool_typed<double>(ctx); break;
    case DType::Float16: max_pool_typed<__half>(ctx); break;
    case DType::BFloat16: max_pool_typed<__nv_bfloat16>(ctx); break;
    case DType::Int8: max_pool_typed<int8_t>(ctx); break;
    case DType::Uint8: max_pool_typed<uint8_t>(ctx); break;
    default: OTTER_FAIL(ctx.node.describe(), ": no CUDA kernel for dtype ", dtype_name(ctx.in(0).dtype()));
  }
}

}  // namespace

void register_pool_kernels(KernelRegistry& r) {
  const Device cuda = Device::CUDA;
  r.add("", "MaxPool", cuda,
        {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int8, DType::Uint8}, max_pool_kernel);
  r.add("", "AveragePool", cuda, OTTER_CUDA_FLOAT_KERNELS(average_pool_typed));
  r.add("", "GlobalAveragePool", cuda, OTTER_CUDA_FLOAT_KERNELS(global_average_pool_typed));
  r.add("", "GlobalMaxPool", cuda, OTTER_CUDA_FLOAT_KERNELS(global_max_pool_typed));
  r.add("otter", "MaxPoolGrad", cuda, OTTER_CUDA_FLOAT_KERNELS(max_pool_grad_typed));
  r.add("otter", "MaxPoolArgmax", cuda, OTTER_CUDA_FLOAT_KERNELS(max_pool_argmax_typed));
  r.add("otter", "AveragePoolGrad", cuda, OTTER_CUDA_FLOAT_KERNELS(average_pool_grad_typed));
  r.add("otter", "GlobalAveragePoolGrad", cuda, OTTER_CUDA_FLOAT_KERNELS(global_average_pool_grad_typed));
  r.add("otter", "GlobalMaxPoolGrad", cuda, OTTER_CUDA_FLOAT_KERNELS(global_max_pool_grad_typed));
}

}  // namespace otter::cuda
