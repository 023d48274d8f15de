// CUDA kernels for the indexing op family (runtime/ops/indexing.cpp), mirroring
// kernels/cpu/indexing.cpp: GatherElements, ScatterElements, ScatterND, Trilu, Tile, CumSum and
// the internal otter.GatherElementsGrad, otter.GatherND and otter.TileGrad. Ops that only move
// values (GatherElements, GatherND, Trilu, Tile) work on unsigned elements of the dtype's size.
// The scatters keep the CPU's fixed order, so they need no atomics and a repeated index gives the
// CPU's result (the last write wins for reduction 'none'): ScatterElements and GatherElementsGrad
// run one thread per "column" (the other dims, which never collide) walking the indexed axis in
// order; ScatterND runs one thread per slice element walking the index tuples in order. The price
// is less parallelism when the indexed axis (or the tuple count) is long and the rest small.
// FP16/BF16 scatters accumulate in an FP32 buffer rounded once at the end, as the CPU's promoted
// path does. TileGrad sums each input element's copies (a gather, no atomics); CumSum runs one
// thread per column and accumulates floats in FP64 as the CPU does.
//
// Indices: known when the plan was built, they are checked on the host before any launch, with
// the CPU's message; otherwise the kernels record the first out-of-range index in a device record
// read back after the launches (a host synchronization, as Gather in kernels/cuda/shape.cu).
#include <type_traits>

#include "kernels/common/indexing_host.h"
#include "kernels/cuda/cuda_common.cuh"

// Binds elem_t to an unsigned type of SIZE bytes (1, 2, 4 or 8).
#define OTTER_CUDA_DISPATCH_BYTES(SIZE, WHAT, ...)                                      \
  switch (SIZE) {                                                                       \
    case 1: { using elem_t = uint8_t; __VA_ARGS__; break; }                             \
    case 2: { using elem_t = uint16_t; __VA_ARGS__; break; }                            \
    case 4: { using elem_t = uint32_t; __VA_ARGS__; break; }                            \
    case 8: { using elem_t = uint64_t; __VA_ARGS__; break; }                            \
    default: OTTER_FAIL(WHAT, ": unsupported element size ", SIZE);                     \
  }

// Binds index_t to the type of an Int64 or Int32 indices tensor.
#define OTTER_CUDA_DISPATCH_INDEX(DTYPE, WHAT, ...)                                     \
  switch (DTYPE) {                                                                      \
    case ::otter::DType::Int64: { using index_t = int64_t; __VA_ARGS__; break; }        \
    case ::otter::DType::Int32: { using index_t = int32_t; __VA_ARGS__; break; }        \
    default: OTTER_FAIL(WHAT, ": indices must be int32 or int64, got ", ::otter::dtype_name(DTYPE)); \
  }

// Every dtype the scatters run on (storage type; see Compute for the arithmetic type).
#define OTTER_CUDA_DISPATCH_ALL(DTYPE, WHAT, ...)                                                \
  switch (DTYPE) {                                                                               \
    case ::otter::DType::Float32: { using scalar_t = float; __VA_ARGS__; break; }                \
    case ::otter::DType::Float64: { using scalar_t = double; __VA_ARGS__; break; }               \
    case ::otter::DType::Float16: { using scalar_t = __half; __VA_ARGS__; break; }               \
    case ::otter::DType::BFloat16: { using scalar_t = __nv_bfloat16; __VA_ARGS__; break; }       \
    case ::otter::DType::Int64: { using scalar_t = int64_t; __VA_ARGS__; break; }                \
    case ::otter::DType::Int32: { using scalar_t = int32_t; __VA_ARGS__; break; }                \
    case ::otter::DType::Int8: { using scalar_t = int8_t; __VA_ARGS__; break; }                  \
    case ::otter::DType::Uint8: { using scalar_t = uint8_t; __VA_ARGS__; break; }                \
    case ::otter::DType::Bool: { using scalar_t = bool; __VA_ARGS__; break; }                    \
    default: OTTER_FAIL(WHAT, ": no CUDA kernel for dtype ", ::otter::dtype_name(DTYPE));       \
  }

namespace otter::cuda {
namespace {

// Resolution and layouts shared with the CPU kernels (kernels/common/indexing_host.h).
using namespace indexing;

void check_rank(const KernelContext& ctx, size_t rank) {
  OTTER_CHECK(rank <= static_cast<size_t>(kMaxDims), ctx.node.describe(), ": CUDA kernels support up to ", kMaxDims,
              " dims, got ", rank);
}

// ---- index checking (see the file comment) ----

class IndexCheck {
 public:
  // Element p of input `input` indexes axis axes[p % k] of size sizes[p % k] (k = axes.size()).
  IndexCheck(const KernelContext& ctx, size_t input, const std::vector<int64_t>& axes,
             const std::vector<int64_t>& sizes)
      : ctx_(ctx) {
    if (const Tensor* h = ctx.host_input(input)) {
      std::vector<int64_t> v = h->to_int64_vector();
      size_t k = axes.size();
      for (size_t p = 0; p < v.size(); ++p) {
        int64_t i = v[p], dim = sizes[p % k];
        OTTER_CHECK(i >= -dim && i < dim, ctx.node.describe(), ": index ", i, " is out of range for axis ",
                    axes[p % k], " of size ", dim);
      }
      return;
    }
    if (ctx.input_checked(input)) return;  // checked on the host before the upload (device sessions)
    record_ = Tensor(DType::Int64, {4}, Device::CUDA);  // {flag, index, axis, size}, zero-filled
    device_ = static_cast<int64_t*>(record_.raw());
  }
  int64_t* device() const { return device_; }
  // Fails naming the first out-of-range index the kernels recorded (synchronizes the stream).
  void finish() const {
    if (!device_) return;
    int64_t h[4] = {0, 0, 0, 0};
    cudaStream_t st = stream_of(ctx_);
    OTTER_CUDA_CHECK(cudaMemcpyAsync(h, device_, sizeof(h), cudaMemcpyDeviceToHost, st));
    OTTER_CUDA_CHECK(cudaStreamSynchronize(st));
    OTTER_CHECK(h[0] == 0, ctx_.node.describe(), ": index ", h[1], " is out of range for axis ", h[2], " of size ",
                h[3]);
  }

 private:
  const KernelContext& ctx_;
  Tensor record_;
  int64_t* device_ = nullptr;
};

// The index v made non-negative, or -1 (recorded in err, first one only) when out of range.
template <class I>
__device__ __forceinline__ int64_t wrap_index(I v, int64_t size, int64_t axis, int64_t* err) {
  int64_t i = static_cast<int64_t>(v);
  int64_t w = i < 0 ? i + size : i;
  if (w >= 0 && w < size) return w;
  if (err && atomicCAS(reinterpret_cast<unsigned long long*>(err), 0ull, 1ull) == 0ull) {
    err[1] = i;
    err[2] = axis;
    err[3] = size;
  }
  return -1;
}

// ---- FP32 accumulation for FP16/BF16 scatters ----

template <class T>
__global__ void widen_k(const T* __restrict__ x, float* __restrict__ acc, int64_t n) {
  GRID_STRIDE(i, n) acc[i] = load(x, i);
}

template <class T>
__global__ void round_k(const float* __restrict__ acc, T* __restrict__ out, int64_t n) {
  GRID_STRIDE(i, n) store(out, i, acc[i]);
}

// Runs scatter(dst) on an accumulator that starts as `init`'s values (zeros when init is null) and
// leaves the result in y: y itself for FP32, FP64 and integers; for FP16/BF16 an FP32 buffer
// rounded into y once at the end.
template <class T, class Fn>
void accumulate_into(const KernelContext& ctx, const Tensor* init, Tensor& y, Fn scatter) {
  using A = typename Compute<T>::type;
  cudaStream_t st = stream_of(ctx);
  int64_t n = y.numel();
  if constexpr (std::is_same_v<T, A>) {
    if (y.nbytes()) {
      if (init) OTTER_CUDA_CHECK(cudaMemcpyAsync(y.raw(), init->raw(), y.nbytes(), cudaMemcpyDeviceToDevice, st));
      else OTTER_CUDA_CHECK(cudaMemsetAsync(y.raw(), 0, y.nbytes(), st));
    }
    scatter(static_cast<A*>(y.raw()));
  } else {
    Tensor acc(DType::Float32, y.shape(), Device::CUDA);  // zero-filled, stream-ordered
    if (init && n) {
      widen_k<T><<<blocks_for(n), kThreads, 0, st>>>(static_cast<const T*>(init->raw()), static_cast<float*>(acc.raw()), n);
      OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
    }
    scatter(static_cast<float*>(acc.raw()));
    if (n) {
      round_k<T><<<blocks_for(n), kThreads, 0, st>>>(static_cast<const float*>(acc.raw()), static_cast<T*>(y.raw()), n);
      OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
    }
  }
}

// ---- GatherElements, GatherElementsGrad, ScatterElements ----

// The shared element layout (kernels/common/indexing_host.h) as a device walk: `walk.out` is the
// walked shape (the indices', or its columns'), walk.in[0] data's strides with the axis zeroed,
// walk.in[1] the indices' strides.
struct ElementWalk {
  int64_t axis, dim, data_stride, index_stride;
  Strides walk;
};

ElementWalk element_walk(const KernelContext& ctx, const Shape& data, const Shape& indices) {
  ElementLayout l = element_layout(ctx, data, indices);
  check_rank(ctx, data.size());
  ElementWalk w{l.axis, l.dim, l.data_stride, l.index_strides[l.axis], {}};
  w.walk.rank = static_cast<int>(data.size());
  for (int k = 0; k < w.walk.rank; ++k) {
    w.walk.out[k] = indices[k];
    w.walk.in[0][k] = l.data_strides[k];
    w.walk.in[1][k] = l.index_strides[k];
  }
  return w;
}

// y[i] = x[od(i) + idx[i] * data_stride] over the indices' elements.
template <class E, class I>
__global__ void gather_elements_k(const E* __restrict__ x, const I* __restrict__ idx, E* __restrict__ y, int64_t n,
                                  Strides walk, int64_t axis, int64_t dim, int64_t data_stride, int64_t* err) {
  GRID_STRIDE(i, n) {
    int64_t od;
    offsets_of(walk, i, 1, &od);
    int64_t w = wrap_index(idx[i], dim, axis, err);
    y[i] = w < 0 ? E(0) : x[od + w * data_stride];
  }
}

void gather_elements_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const Tensor& ind = ctx.in(1);
  Tensor& y = ctx.out(0);
  ElementWalk l = element_walk(ctx, x.shape(), ind.shape());
  IndexCheck check(ctx, 1, {l.axis}, {l.dim});
  int64_t n = ind.numel();
  if (n) {
    OTTER_CUDA_DISPATCH_BYTES(dtype_size(x.dtype()), ctx.node.describe(), {
      OTTER_CUDA_DISPATCH_INDEX(ind.dtype(), ctx.node.describe(), {
        gather_elements_k<elem_t, index_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
            static_cast<const elem_t*>(x.raw()), static_cast<const index_t*>(ind.raw()), static_cast<elem_t*>(y.raw()),
            n, l.walk, l.axis, l.dim, l.data_stride, check.device());
      });
    });
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  }
  check.finish();
}

// One thread per column c of the indices (their shape with the axis set to 1): for j = 0..n-1 in
// order, dst[od(c) + idx[e] * data_stride] (reduce)= src[e] with e = oi(c) + j * index_stride.
template <class A, class S, class I>
__global__ void scatter_elements_k(A* __restrict__ dst, const S* __restrict__ src, const I* __restrict__ idx,
                                   int64_t cols, int64_t n, Strides walk, int64_t axis, int64_t dim,
                                   int64_t data_stride, int64_t index_stride, Reduction red, int64_t* err) {
  GRID_STRIDE(c, cols) {
    int64_t off[2];
    offsets_of(walk, c, 2, off);
    for (int64_t j = 0; j < n; ++j) {
      int64_t e = off[1] + j * index_stride;
      int64_t w = wrap_index(idx[e], dim, axis, err);
      if (w < 0) continue;
      reduce_into(dst[off[0] + w * data_stride], static_cast<A>(load(src, e)), red);
    }
  }
}

// dst (shape `shape`) (reduce)= src at indices input 1, column by column.
template <class A, class T>
void scatter_elements_into(const KernelContext& ctx, A* dst, const Shape& shape, const T* src, Reduction red) {
  const Tensor& ind = ctx.in(1);
  ElementWalk l = element_walk(ctx, shape, ind.shape());
  IndexCheck check(ctx, 1, {l.axis}, {l.dim});
  int64_t n = ind.shape()[l.axis];
  l.walk.out[l.axis] = 1;
  int64_t cols = n ? ind.numel() / n : 0;
  if (cols) {
    OTTER_CUDA_DISPATCH_INDEX(ind.dtype(), ctx.node.describe(), {
      scatter_elements_k<A, T, index_t><<<blocks_for(cols), kThreads, 0, stream_of(ctx)>>>(
          dst, src, static_cast<const index_t*>(ind.raw()), cols, n, l.walk, l.axis, l.dim, l.data_stride,
          l.index_stride, red, check.device());
    });
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  }
  check.finish();
}

template <class T>
void scatter_elements_typed(KernelContext& ctx) {
  using A = typename Compute<T>::type;
  const Tensor& x = ctx.in(0);
  const Tensor& u = ctx.in(2);
  Tensor& y = ctx.out(0);
  OTTER_CHECK(u.shape() == ctx.in(1).shape(), ctx.node.describe(), ": updates ", shape_str(u.shape()),
              " and indices ", shape_str(ctx.in(1).shape()), " differ");
  Reduction red = reduction_of(ctx);
  accumulate_into<T>(ctx, &x, y, [&](A* dst) {
    scatter_elements_into<A, T>(ctx, dst, y.shape(), static_cast<const T*>(u.raw()), red);
  });
}

void scatter_elements_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_ALL(ctx.in(0).dtype(), ctx.node.describe(), scatter_elements_typed<scalar_t>(ctx));
}

// GatherElementsGrad(dy, indices, data): zeros of data's shape (the output's), dy added at the
// indices (data is read for its shape only).
template <class T>
void gather_elements_grad_typed(KernelContext& ctx) {
  using A = typename Compute<T>::type;
  const Tensor& dy = ctx.in(0);
  Tensor& dx = ctx.out(0);
  accumulate_into<T>(ctx, nullptr, dx, [&](A* dst) {
    scatter_elements_into<A, T>(ctx, dst, dx.shape(), static_cast<const T*>(dy.raw()), Reduction::Add);
  });
}

void gather_elements_grad_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), gather_elements_grad_typed<scalar_t>(ctx));
}

// ---- ScatterND and otter.GatherND ----

struct NdDims {
  int k = 0;  // index dims per tuple
  int64_t size[kMaxDims], stride[kMaxDims];
};

// offsets[t] = the data offset of index tuple t (garbage for an out-of-range tuple, which
// IndexCheck::finish reports before the offsets are used).
template <class I>
__global__ void nd_offsets_k(const I* __restrict__ idx, int64_t tuples, NdDims d, int64_t* __restrict__ offsets,
                             int64_t* err) {
  GRID_STRIDE(t, tuples) {
    int64_t off = 0;
    for (int a = 0; a < d.k; ++a) off += wrap_index(idx[t * d.k + a], d.size[a], a, err) * d.stride[a];
    offsets[t] = off;
  }
}

// The data offsets of the index tuples (indices [..., k] into data), on the device, and the slice
// size; checks every index first (as the CPU's nd_layout).
struct NdLayout {
  Tensor offsets;  // Int64 [tuples] on the device
  int64_t tuples = 0, slice = 1;
};

NdLayout nd_layout(const KernelContext& ctx, const Shape& data, size_t indices_input) {
  const Tensor& indices = ctx.in(indices_input);
  OTTER_CHECK(indices.rank() >= 1, ctx.node.describe(), ": indices must have rank >= 1");
  int64_t k = indices.shape().back();
  int64_t r = static_cast<int64_t>(data.size());
  OTTER_CHECK(k <= r, ctx.node.describe(), ": indices index ", k, " dims of data ", shape_str(data));
  check_rank(ctx, static_cast<size_t>(k));  // NdDims holds kMaxDims index dims
  std::vector<int64_t> strides = shape_strides(data);
  NdLayout l;
  for (int64_t d = k; d < r; ++d) l.slice *= data[d];
  l.tuples = shape_numel(Shape(indices.shape().begin(), indices.shape().end() - 1));
  l.offsets = Tensor(DType::Int64, {l.tuples}, Device::CUDA);
  if (k == 0 || l.tuples == 0) return l;  // no indices: every offset is 0 (zero-filled)
  NdDims d;
  d.k = static_cast<int>(k);
  std::vector<int64_t> axes;
  for (int64_t a = 0; a < k; ++a) {
    d.size[a] = data[a];
    d.stride[a] = strides[a];
    axes.push_back(a);
  }
  IndexCheck check(ctx, indices_input, axes, Shape(data.begin(), data.begin() + k));
  OTTER_CUDA_DISPATCH_INDEX(indices.dtype(), ctx.node.describe(), {
    nd_offsets_k<index_t><<<blocks_for(l.tuples), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const index_t*>(indices.raw()), l.tuples, d, static_cast<int64_t*>(l.offsets.raw()),
        check.device());
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  check.finish();
  return l;
}

// One thread per slice element j: for t = 0..tuples-1 in order, dst[offsets[t] + j] (reduce)=
// src[t * slice + j].
template <class A, class S>
__global__ void scatter_nd_k(A* __restrict__ dst, const S* __restrict__ src, const int64_t* __restrict__ offsets,
                             int64_t tuples, int64_t slice, Reduction red) {
  GRID_STRIDE(j, slice) {
    for (int64_t t = 0; t < tuples; ++t) reduce_into(dst[offsets[t] + j], static_cast<A>(load(src, t * slice + j)), red);
  }
}

template <class T>
void scatter_nd_typed(KernelContext& ctx) {
  using A = typename Compute<T>::type;
  const Tensor& x = ctx.in(0);
  const Tensor& u = ctx.in(2);
  Tensor& y = ctx.out(0);
  NdLayout l = nd_layout(ctx, x.shape(), 1);
  OTTER_CHECK(u.numel() == l.tuples * l.slice, ctx.node.describe(), ": updates ", shape_str(u.shape()),
              " do not match the indices and data");
  Reduction red = reduction_of(ctx);
  accumulate_into<T>(ctx, &x, y, [&](A* dst) {
    if (l.tuples == 0 || l.slice == 0) return;
    scatter_nd_k<A, T><<<blocks_for(l.slice), kThreads, 0, stream_of(ctx)>>>(
        dst, static_cast<const T*>(u.raw()), static_cast<const int64_t*>(l.offsets.raw()), l.tuples, l.slice, red);
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  });
}

void scatter_nd_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_ALL(ctx.in(0).dtype(), ctx.node.describe(), scatter_nd_typed<scalar_t>(ctx));
}

// y[t * slice + j] = x[offsets[t] + j].
template <class E>
__global__ void gather_nd_k(const E* __restrict__ x, const int64_t* __restrict__ offsets, E* __restrict__ y,
                            int64_t n, int64_t slice) {
  GRID_STRIDE(i, n) y[i] = x[offsets[i / slice] + i % slice];
}

// GatherND(data, indices): the slices of data at the index tuples.
void gather_nd_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  NdLayout l = nd_layout(ctx, x.shape(), 1);
  OTTER_CHECK(y.numel() == l.tuples * l.slice, ctx.node.describe(), ": output ", shape_str(y.shape()),
              " does not match the indices and data");
  int64_t n = y.numel();
  if (n == 0) return;
  OTTER_CUDA_DISPATCH_BYTES(dtype_size(x.dtype()), ctx.node.describe(), {
    gather_nd_k<elem_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const elem_t*>(x.raw()), static_cast<const int64_t*>(l.offsets.raw()),
        static_cast<elem_t*>(y.raw()), n, l.slice);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// ---- Trilu ----

// Over matrices [rows, cols]: y = x where (upper ? j - i >= k : j - i <= k), else 0.
template <class E>
__global__ void trilu_k(const E* __restrict__ x, E* __restrict__ y, int64_t n, int64_t rows, int64_t cols, int64_t k,
                        bool upper) {
  GRID_STRIDE(e, n) {
    int64_t j = e % cols, i = (e / cols) % rows;
    bool keep = upper ? j - i >= k : j - i <= k;
    y[e] = keep ? x[e] : E(0);
  }
}

void trilu_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  int64_t k = trilu_offset(ctx);
  bool upper = ctx.node.attr_int("upper", 1) != 0;
  int64_t rows = x.shape()[x.rank() - 2], cols = x.shape()[x.rank() - 1];
  int64_t n = x.numel();
  if (n == 0) return;
  OTTER_CUDA_DISPATCH_BYTES(dtype_size(x.dtype()), ctx.node.describe(), {
    trilu_k<elem_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const elem_t*>(x.raw()), static_cast<elem_t*>(y.raw()), n, rows, cols, k, upper);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// ---- Tile and TileGrad ----

// The tiled shape `big` (a multiple of `small` along every dim) and big's strides.
struct TileDims {
  int rank = 0;
  int64_t big[kMaxDims], small[kMaxDims], big_stride[kMaxDims];
};

TileDims tile_dims(const KernelContext& ctx, const Shape& small, const Shape& big) {
  check_rank(ctx, big.size());
  TileDims t;
  t.rank = static_cast<int>(big.size());
  std::vector<int64_t> bs = shape_strides(big);
  for (int d = 0; d < t.rank; ++d) {
    t.big[d] = big[d];
    t.small[d] = small[d];
    t.big_stride[d] = bs[d];
  }
  return t;
}

// y[i] = x[the coordinates of i modulo x's shape].
template <class E>
__global__ void tile_k(const E* __restrict__ x, E* __restrict__ y, int64_t n, TileDims t) {
  GRID_STRIDE(i, n) {
    int64_t rest = i, off = 0, stride = 1;
    for (int d = t.rank - 1; d >= 0; --d) {
      int64_t c = rest % t.big[d];
      rest /= t.big[d];
      off += (c % t.small[d]) * stride;
      stride *= t.small[d];
    }
    y[i] = x[off];
  }
}

void tile_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  check_tiling(ctx, x.shape(), y.shape());
  int64_t n = y.numel();
  if (n == 0) return;
  TileDims t = tile_dims(ctx, x.shape(), y.shape());
  OTTER_CUDA_DISPATCH_BYTES(dtype_size(x.dtype()), ctx.node.describe(), {
    tile_k<elem_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(static_cast<const elem_t*>(x.raw()),
                                                                  static_cast<elem_t*>(y.raw()), n, t);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// dx[i] = the sum of dy over the tiles' copies of i, tiles in row-major order (the CPU's).
template <class T>
__global__ void tile_grad_k(const T* __restrict__ dy, T* __restrict__ dx, int64_t n, TileDims t) {
  using A = typename Compute<T>::type;
  GRID_STRIDE(i, n) {
    int64_t c[kMaxDims];
    int64_t tiles = 1, rest = i;
    for (int d = t.rank - 1; d >= 0; --d) {
      c[d] = rest % t.small[d];
      rest /= t.small[d];
      tiles *= t.big[d] / t.small[d];
    }
    A acc = 0;
    for (int64_t k = 0; k < tiles; ++k) {
      int64_t r = k, off = 0;
      for (int d = t.rank - 1; d >= 0; --d) {
        int64_t reps = t.big[d] / t.small[d];
        off += ((r % reps) * t.small[d] + c[d]) * t.big_stride[d];
        r /= reps;
      }
      acc += static_cast<A>(load(dy, off));
    }
    store(dx, i, acc);
  }
}

// TileGrad(dy, x): dx has x's shape (x is read for its shape only).
template <class T>
void tile_grad_typed(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  Tensor& dx = ctx.out(0);
  OTTER_CHECK(dy.rank() == dx.rank(), ctx.node.describe(), ": dy and x differ in rank");
  int64_t n = dx.numel();
  if (n == 0) return;
  TileDims t = tile_dims(ctx, dx.shape(), dy.shape());
  tile_grad_k<T><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(static_cast<const T*>(dy.raw()),
                                                                static_cast<T*>(dx.raw()), n, t);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

void tile_grad_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), tile_grad_typed<scalar_t>(ctx));
}

// ---- CumSum ----

// One thread per (outer, inner) column, along the axis in order (reversed for `reverse`).
template <class T, class Acc>
__global__ void cumsum_k(const T* __restrict__ x, T* __restrict__ y, int64_t columns, int64_t n, int64_t inner,
                         bool exclusive, bool reverse) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(c, columns) {
    int64_t base = (c / inner) * n * inner + c % inner;
    Acc acc = 0;
    for (int64_t jj = 0; jj < n; ++jj) {
      int64_t off = base + (reverse ? n - 1 - jj : jj) * inner;
      Acc v = static_cast<Acc>(load(x, off));
      if (exclusive) {
        store(y, off, static_cast<C>(acc));
        acc += v;
      } else {
        acc += v;
        store(y, off, static_cast<C>(acc));
      }
    }
  }
}

template <class T>
void cumsum_typed(KernelContext& ctx) {
  // As the CPU: floats accumulate in FP64 (the result rounded to FP32 first for FP16/BF16, as
  // the CPU's promoted FP32 kernel does), integers in their own type.
  using Acc = std::conditional_t<std::is_integral_v<T>, T, double>;
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  CumSumLayout l = cumsum_layout(ctx, x.shape());
  int64_t columns = l.outer * l.inner;
  if (columns == 0 || l.n == 0) return;
  cumsum_k<T, Acc><<<blocks_for(columns), kThreads, 0, stream_of(ctx)>>>(
      static_cast<const T*>(x.raw()), static_cast<T*>(y.raw()), columns, l.n, l.inner, l.exclusive, l.reverse);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

void cumsum_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_NUM(ctx.in(0).dtype(), ctx.node.describe(), cumsum_typed<scalar_t>(ctx));
}

}  // namespace

void register_indexing_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};
  const std::vector<DType> num = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int64,
                                  DType::Int32};
  const std::vector<DType> all = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int64,
                                  DType::Int32,   DType::Int8,    DType::Uint8,   DType::Bool};
  const Device cuda = Device::CUDA;
  r.add("", "GatherElements", cuda, all, gather_elements_kernel);
  r.add("", "ScatterElements", cuda, all, scatter_elements_kernel);
  r.add("", "ScatterND", cuda, all, scatter_nd_kernel);
  r.add("", "Trilu", cuda, all, trilu_kernel);
  r.add("", "Tile", cuda, all, tile_kernel);
  r.add("", "CumSum", cuda, num, cumsum_kernel);
  r.add("otter", "GatherElementsGrad", cuda, f, gather_elements_grad_kernel);
  r.add("otter", "GatherND", cuda, all, gather_nd_kernel);
  r.add("otter", "TileGrad", cuda, f, tile_grad_kernel);
}

}  // namespace otter::cuda
