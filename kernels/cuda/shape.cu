// CUDA kernels for the data-movement ops of the shape family (runtime/ops/shape.cpp), mirroring
// kernels/cpu/shape.cpp. They move bytes, so they work on unsigned elements of the dtype's size (1,
// 2, 4 or 8 bytes) and one kernel serves every dtype: Reshape and its kin are a device copy;
// Transpose, Expand, Slice and SliceGrad are one strided gather or scatter (per output dim a
// possibly negative or zero input stride, up to 8 dims); Concat, Split and their gradients copy
// contiguous blocks; Gather copies rows picked by device indices. Only GatherGrad adds: it
// accumulates in FP32 (FP16/BF16, then rounds once, as the CPU's promoted path does) or in the
// dtype itself (FP32/FP64), in index order so the sums are deterministic. Output shapes come from
// the plan's inference; slice bounds and split sizes come from plan-time host copies. Shape, Size,
// Constant, ConstantOfShape and Range usually fold at plan time; when a device plan runs them,
// their values come from the host (shapes, attributes: kernels/common/shape_host.h, as on the CPU;
// plan-time copies of the scalar inputs): Shape, Size and Constant upload them, ConstantOfShape and
// Range fill the output in a kernel.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/common/shape_host.h"
#include "kernels/common/slice_layout.h"
#include "kernels/cuda/cuda_common.cuh"

namespace otter::cuda {
namespace {


// ---- strided copy ----

// For every flat index i of s.out (row-major), with off(i) = sum_d i_d * s.in[0][d]:
// gather: dst[i] = src[base + off(i)];  scatter: dst[base + off(i)] = src[i].
template <class E, bool Scatter>
__global__ void strided_copy_k(const E* __restrict__ src, E* __restrict__ dst, int64_t base, int64_t n, Strides s) {
  GRID_STRIDE(i, n) {
    int64_t off;
    offsets_of(s, i, 1, &off);
    if (Scatter) dst[base + off] = src[i];
    else dst[i] = src[base + off];
  }
}

Strides make_strides(const KernelContext& ctx, const Shape& shape, const std::vector<int64_t>& strides) {
  OTTER_CHECK(shape.size() <= static_cast<size_t>(kMaxDims), ctx.node.describe(), ": CUDA kernels support up to ",
              kMaxDims, " dims, got ", shape.size());
  Strides s;
  s.rank = static_cast<int>(shape.size());
  for (int d = 0; d < s.rank; ++d) {
    s.out[d] = shape[d];
    s.in[0][d] = strides[d];
  }
  return s;
}

template <bool Scatter>
void strided_copy(const KernelContext& ctx, const void* src, void* dst, size_t elem_size, int64_t base,
                  const Shape& shape, const Strides& s) {
  int64_t n = shape_numel(shape);
  if (n == 0) return;
  cudaStream_t st = stream_of(ctx);
  unsigned blocks = blocks_for(n);
  switch (elem_size) {
    case 1: strided_copy_k<uint8_t, Scatter><<<blocks, kThreads, 0, st>>>(static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst), base, n, s); break;
    case 2: strided_copy_k<uint16_t, Scatter><<<blocks, kThreads, 0, st>>>(static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst), base, n, s); break;
    case 4: strided_copy_k<uint32_t, Scatter><<<blocks, kThreads, 0, st>>>(static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst), base, n, s); break;
    case 8: strided_copy_k<uint64_t, Scatter><<<blocks, kThreads, 0, st>>>(static_cast<const uint64_t*>(src), static_cast<uint64_t*>(dst), base, n, s); break;
    default: OTTER_FAIL(ctx.node.describe(), ": unsupported element size ", elem_size);
  }
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// ---- Reshape, Flatten, Squeeze, Unsqueeze: same bytes, new shape ----

void copy_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  OTTER_CHECK(x.nbytes() == y.nbytes(), ctx.node.describe(), ": input ", shape_str(x.shape()), " and output ",
              shape_str(y.shape()), " differ in size");
  // The plan may have made the output a view of the input: then there is nothing to copy.
  if (x.nbytes() && x.raw() != y.raw())
    OTTER_CUDA_CHECK(cudaMemcpyAsync(y.raw(), x.raw(), x.nbytes(), cudaMemcpyDeviceToDevice, stream_of(ctx)));
}

void transpose_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  strided_copy<false>(ctx, x.raw(), y.raw(), dtype_size(x.dtype()), 0, y.shape(),
                      make_strides(ctx, y.shape(), shape::transpose_strides(ctx)));
}

void expand_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  Strides s = broadcast_strides(y.shape(), {&x.shape()});
  strided_copy<false>(ctx, x.raw(), y.raw(), dtype_size(x.dtype()), 0, y.shape(), s);
}

// ---- Slice and SliceGrad (layout: kernels/common/slice_layout.h) ----

void slice_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  SliceLayout l = slice_layout(ctx, x.shape(), 1);
  OTTER_CHECK(l.shape == y.shape(), ctx.node.describe(), ": the slice is ", shape_str(l.shape), " but the output is ",
              shape_str(y.shape()));
  strided_copy<false>(ctx, x.raw(), y.raw(), dtype_size(x.dtype()), l.base, y.shape(),
                      make_strides(ctx, y.shape(), l.strides));
}

// SliceGrad(dy, x, starts, ends, axes?, steps?): zeros of x's shape with dy at the sliced places
// (x is read for its shape only; the output has that shape). The sliced places are distinct, so
// the scatter has no races.
void slice_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  Tensor& dx = ctx.out(0);
  SliceLayout l = slice_layout(ctx, dx.shape(), 2);
  OTTER_CHECK(l.shape == dy.shape(), ctx.node.describe(), ": the slice is ", shape_str(l.shape), " but dy is ",
              shape_str(dy.shape()));
  if (dx.nbytes()) OTTER_CUDA_CHECK(cudaMemsetAsync(dx.raw(), 0, dx.nbytes(), stream_of(ctx)));
  strided_copy<true>(ctx, dy.raw(), dx.raw(), dtype_size(dy.dtype()), l.base, dy.shape(),
                     make_strides(ctx, dy.shape(), l.strides));
}

// ---- Concat, Split and their gradients: contiguous blocks ----

// For o < outer, j < block: dst[o * dst_pitch + dst_off + j] = src ? src[o * src_pitch + src_off + j] : 0
// (all in units of U).
template <class U>
__global__ void block_copy_k(const U* __restrict__ src, U* __restrict__ dst, int64_t outer, int64_t block,
                             int64_t src_pitch, int64_t src_off, int64_t dst_pitch, int64_t dst_off) {
  int64_t n = outer * block;
  GRID_STRIDE(i, n) {
    int64_t o = i / block, j = i - o * block;
    dst[o * dst_pitch + dst_off + j] = src ? src[o * src_pitch + src_off + j] : U(0);
  }
}

// Copies `outer` blocks of `block` bytes between pitched layouts (all sizes and offsets in bytes),
// moving the widest unit (8, 4, 2 or 1 bytes) that divides every size, offset and address.
void block_copy(const KernelContext& ctx, const void* src, size_t src_pitch, size_t src_off, void* dst,
                size_t dst_pitch, size_t dst_off, int64_t outer, size_t block) {
  if (outer == 0 || block == 0) return;
  uintptr_t all = src_pitch | src_off | dst_pitch | dst_off | block | reinterpret_cast<uintptr_t>(dst) |
                  (src ? reinterpret_cast<uintptr_t>(src) : 0);
  size_t unit = (all % 8 == 0) ? 8 : (all % 4 == 0) ? 4 : (all % 2 == 0) ? 2 : 1;
  auto u = [unit](size_t bytes) { return static_cast<int64_t>(bytes / unit); };
  int64_t n = outer * u(block);
  cudaStream_t st = stream_of(ctx);
  unsigned blocks = blocks_for(n);
  switch (unit) {
    case 8: block_copy_k<uint64_t><<<blocks, kThreads, 0, st>>>(static_cast<const uint64_t*>(src), static_cast<uint64_t*>(dst), outer, u(block), u(src_pitch), u(src_off), u(dst_pitch), u(dst_off)); break;
    case 4: block_copy_k<uint32_t><<<blocks, kThreads, 0, st>>>(static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst), outer, u(block), u(src_pitch), u(src_off), u(dst_pitch), u(dst_off)); break;
    case 2: block_copy_k<uint16_t><<<blocks, kThreads, 0, st>>>(static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst), outer, u(block), u(src_pitch), u(src_off), u(dst_pitch), u(dst_off)); break;
    default: block_copy_k<uint8_t><<<blocks, kThreads, 0, st>>>(static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst), outer, u(block), u(src_pitch), u(src_off), u(dst_pitch), u(dst_off)); break;
  }
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// The layout of a tensor split into parts along axis (part i has part_dims[i] there).
struct Blocks {
  int64_t outer = 0;
  size_t row = 0;                 // bytes of one outer index of the whole
  std::vector<size_t> block;      // bytes of one outer index of part i
  std::vector<size_t> offset;     // part i's offset within a row of the whole
};

Blocks blocks_of(const KernelContext& ctx, const Shape& whole_shape, int64_t axis, size_t elem_size,
                 const std::vector<int64_t>& part_dims) {
  Blocks b;
  b.outer = shape_numel(whole_shape, 0, static_cast<size_t>(axis));
  int64_t inner = shape_numel(whole_shape, static_cast<size_t>(axis) + 1, whole_shape.size());
  int64_t total = 0;
  for (int64_t d : part_dims) total += d;
  OTTER_CHECK(total == whole_shape[axis], ctx.node.describe(), ": the parts add up to ", total, " along axis ", axis,
              " of ", shape_str(whole_shape));
  b.row = static_cast<size_t>(whole_shape[axis] * inner) * elem_size;
  size_t offset = 0;
  for (int64_t d : part_dims) {
    size_t block = static_cast<size_t>(d * inner) * elem_size;
    b.block.push_back(block);
    b.offset.push_back(offset);
    offset += block;
  }
  return b;
}

// whole = the parts joined along axis; a null part is zeros.
void join(const KernelContext& ctx, Tensor& whole, int64_t axis, const std::vector<int64_t>& part_dims,
          const std::vector<const void*>& parts) {
  Blocks b = blocks_of(ctx, whole.shape(), axis, dtype_size(whole.dtype()), part_dims);
  for (size_t i = 0; i < parts.size(); ++i)
    block_copy(ctx, parts[i], b.block[i], 0, whole.raw(), b.row, b.offset[i], b.outer, b.block[i]);
}

// The parts of whole along axis; a null part is not wanted.
void split(const KernelContext& ctx, const Tensor& whole, int64_t axis, const std::vector<int64_t>& part_dims,
           const std::vector<void*>& parts) {
  Blocks b = blocks_of(ctx, whole.shape(), axis, dtype_size(whole.dtype()), part_dims);
  for (size_t i = 0; i < parts.size(); ++i)
    if (parts[i]) block_copy(ctx, whole.raw(), b.row, b.offset[i], parts[i], b.block[i], 0, b.outer, b.block[i]);
}

void concat_kernel(KernelContext& ctx) {
  Tensor& y = ctx.out(0);
  int64_t axis = ctx.normalize_axis(ctx.node.attr_int("axis", 0), y.rank());
  std::vector<int64_t> dims;
  std::vector<const void*> parts;
  for (size_t i = 0; i < ctx.inputs.size(); ++i) {
    dims.push_back(ctx.in(i).shape()[axis]);
    parts.push_back(ctx.in(i).raw());
  }
  join(ctx, y, axis, dims, parts);
}

// ConcatGrad(dy, x0, x1, ...): output i is dy's block for x_i (x_i read for its shape only).
void concat_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  int64_t axis = ctx.normalize_axis(ctx.node.attr_int("axis", 0), dy.rank());
  std::vector<int64_t> dims;
  std::vector<void*> parts;
  for (size_t i = 1; i < ctx.inputs.size(); ++i) {
    dims.push_back(ctx.in(i).shape()[axis]);
    parts.push_back(ctx.has_output(i - 1) ? ctx.out(i - 1).raw() : nullptr);
  }
  split(ctx, dy, axis, dims, parts);
}

// Split: the sizes along the axis are the outputs' (the plan's inference computed them from the
// split input, num_outputs or equal parts), exactly as the CPU kernel reads them.
void split_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  int64_t axis = ctx.normalize_axis(ctx.node.attr_int("axis", 0), x.rank());
  std::vector<int64_t> dims;
  std::vector<void*> parts;
  for (size_t i = 0; i < ctx.outputs.size(); ++i) {
    OTTER_CHECK(ctx.has_output(i), ctx.node.describe(), ": output ", i, " is omitted");
    dims.push_back(ctx.out(i).shape()[axis]);
    parts.push_back(ctx.out(i).raw());
  }
  split(ctx, x, axis, dims, parts);
}

// SplitGrad(dy0..dy{n-1}, y0..y{n-1}): the dys concatenated, zeros for an omitted dy_i (the ys
// are read for their shape only).
void split_grad_kernel(KernelContext& ctx) {
  Tensor& dx = ctx.out(0);
  size_t n = ctx.inputs.size() / 2;
  int64_t axis = ctx.normalize_axis(ctx.node.attr_int("axis", 0), dx.rank());
  std::vector<int64_t> dims;
  std::vector<const void*> parts;
  for (size_t i = 0; i < n; ++i) {
    dims.push_back(ctx.in(n + i).shape()[axis]);
    parts.push_back(ctx.has_input(i) ? ctx.in(i).raw() : nullptr);
  }
  join(ctx, dx, axis, dims, parts);
}

// ---- Gather and GatherGrad ----

// Index checking. When the indices are a plan-time constant they are checked on the host and no
// device flag is used. Otherwise the kernels record an out-of-range index in a device flag
// ({1, index}) which is read back after the kernel: a host synchronization, acceptable for now
// (a later version could defer the check to the next natural sync point).
struct IndexCheck {
  Tensor flag;              // Int64 [2] on the device, zero-filled; undefined when checked on the host
  int64_t* device = nullptr;
};

IndexCheck check_indices(const KernelContext& ctx, size_t input, int64_t dim, int64_t axis) {
  const Tensor& indices = ctx.in(input);
  OTTER_CHECK(indices.dtype() == DType::Int64 || indices.dtype() == DType::Int32, ctx.node.describe(),
              ": indices must be int32 or int64, got ", dtype_name(indices.dtype()));
  IndexCheck c;
  if (const Tensor* h = ctx.host_input(input)) {
    for (int64_t i : h->to_int64_vector())
      OTTER_CHECK(i >= -dim && i < dim, ctx.node.describe(), ": index ", i, " is out of range for axis ", axis,
                  " of size ", dim);
    return c;
  }
  if (ctx.input_checked(input)) return c;  // checked on the host before the upload (device sessions)
  c.flag = Tensor(DType::Int64, {2}, Device::CUDA);  // zero-filled, stream-ordered
  c.device = static_cast<int64_t*>(c.flag.raw());
  return c;
}

void finish_check(const KernelContext& ctx, const IndexCheck& c, int64_t dim, int64_t axis) {
  if (!c.device) return;
  int64_t h[2] = {0, 0};
  cudaStream_t st = stream_of(ctx);
  OTTER_CUDA_CHECK(cudaMemcpyAsync(h, c.device, sizeof(h), cudaMemcpyDeviceToHost, st));
  OTTER_CUDA_CHECK(cudaStreamSynchronize(st));  // host sync: see IndexCheck
  OTTER_CHECK(h[0] == 0, ctx.node.describe(), ": index ", h[1], " is out of range for axis ", axis, " of size ", dim);
}

// The index j made non-negative, or -1 (after recording it in err) when out of range.
template <class I>
__device__ __forceinline__ int64_t wrap_index(const I* idx, int64_t j, int64_t dim, int64_t* err) {
  int64_t v = static_cast<int64_t>(idx[j]);
  int64_t w = v < 0 ? v + dim : v;
  if (w < 0 || w >= dim) {
    if (err) {
      err[1] = v;
      err[0] = 1;
    }
    return -1;
  }
  return w;
}

// y[o, j, k] = x[o, idx[j], k] for x [outer, dim, inner] and n indices.
template <class E, class I>
__global__ void gather_k(const E* __restrict__ x, const I* __restrict__ idx, E* __restrict__ y, int64_t outer,
                         int64_t n, int64_t dim, int64_t inner, int64_t* err) {
  int64_t total = outer * n * inner;
  GRID_STRIDE(i, total) {
    int64_t k = i % inner, r = i / inner;
    int64_t j = r % n, o = r / n;
    int64_t w = wrap_index(idx, j, dim, err);
    y[i] = w < 0 ? E(0) : x[(o * dim + w) * inner + k];
  }
}

template <class E>
void launch_gather(const KernelContext& ctx, const void* x, const Tensor& indices, void* y, int64_t outer, int64_t n,
                   int64_t dim, int64_t inner, int64_t* err) {
  int64_t total = outer * n * inner;
  cudaStream_t st = stream_of(ctx);
  if (indices.dtype() == DType::Int64)
    gather_k<E, int64_t><<<blocks_for(total), kThreads, 0, st>>>(static_cast<const E*>(x), static_cast<const int64_t*>(indices.raw()), static_cast<E*>(y), outer, n, dim, inner, err);
  else
    gather_k<E, int32_t><<<blocks_for(total), kThreads, 0, st>>>(static_cast<const E*>(x), static_cast<const int32_t*>(indices.raw()), static_cast<E*>(y), outer, n, dim, inner, err);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

void gather_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  Tensor& y = ctx.out(0);
  int64_t axis = ctx.normalize_axis(ctx.node.attr_int("axis", 0), x.rank());
  int64_t dim = x.shape()[axis];
  int64_t outer = shape_numel(x.shape(), 0, static_cast<size_t>(axis));
  int64_t inner = shape_numel(x.shape(), static_cast<size_t>(axis) + 1, x.shape().size());
  int64_t n = indices.numel();
  OTTER_CHECK(y.numel() == outer * n * inner, ctx.node.describe(), ": output ", shape_str(y.shape()),
              " does not match the gather of ", shape_str(x.shape()));
  IndexCheck check = check_indices(ctx, 1, dim, axis);
  if (y.numel() == 0) return;
  switch (dtype_size(x.dtype())) {
    case 1: launch_gather<uint8_t>(ctx, x.raw(), indices, y.raw(), outer, n, dim, inner, check.device); break;
    case 2: launch_gather<uint16_t>(ctx, x.raw(), indices, y.raw(), outer, n, dim, inner, check.device); break;
    case 4: launch_gather<uint32_t>(ctx, x.raw(), indices, y.raw(), outer, n, dim, inner, check.device); break;
    case 8: launch_gather<uint64_t>(ctx, x.raw(), indices, y.raw(), outer, n, dim, inner, check.device); break;
    default: OTTER_FAIL(ctx.node.describe(), ": unsupported element size ", dtype_size(x.dtype()));
  }
  finish_check(ctx, check, dim, axis);
}

// Deterministic GatherGrad: one thread per (o, k) adds dy[o, j, k] into acc[o, idx[j], k] for
// j = 0..n-1 in order, the CPU kernel's order. Each thread owns its (o, *, k) addresses, so
// there are no races; the total work is dy's size.
template <class T, class A, class I>
__global__ void gather_grad_ordered_k(const T* __restrict__ dy, const I* __restrict__ idx, A* __restrict__ acc,
                                      int64_t outer, int64_t n, int64_t dim, int64_t inner, int64_t* err) {
  int64_t total = outer * inner;
  GRID_STRIDE(t, total) {
    int64_t k = t % inner, o = t / inner;
    for (int64_t j = 0; j < n; ++j) {
      int64_t w = wrap_index(idx, j, dim, err);
      if (w < 0) continue;
      acc[(o * dim + w) * inner + k] += static_cast<A>(load(dy, (o * n + j) * inner + k));
    }
  }
}

// Many indices (FP32 only): one thread per dy element with atomicAdd. The order of the additions
// is not fixed, so results may differ from run to run by rounding (within the test tolerances).
template <class I>
__global__ void gather_grad_atomic_k(const float* __restrict__ dy, const I* __restrict__ idx, float* __restrict__ dx,
                                     int64_t outer, int64_t n, int64_t dim, int64_t inner, int64_t* err) {
  int64_t total = outer * n * inner;
  GRID_STRIDE(i, total) {
    int64_t k = i % inner, r = i / inner;
    int64_t j = r % n, o = r / n;
    int64_t w = wrap_index(idx, j, dim, err);
    if (w >= 0) atomicAdd(dx + (o * dim + w) * inner + k, dy[i]);
  }
}

template <class T>
__global__ void round_k(const float* __restrict__ acc, T* __restrict__ out, int64_t n) {
  GRID_STRIDE(i, n) store(out, i, acc[i]);
}

constexpr int64_t kOrderedMaxIndices = 65536;

template <class T, class I>
void gather_grad_typed(KernelContext& ctx, const I* idx, int64_t outer, int64_t n, int64_t dim, int64_t inner,
                       int64_t* err) {
  using A = typename Compute<T>::type;
  const Tensor& dy = ctx.in(0);
  Tensor& dx = ctx.out(0);
  cudaStream_t st = stream_of(ctx);
  const T* g = static_cast<const T*>(dy.raw());
  if constexpr (std::is_same_v<T, float>) {
    if (n >= kOrderedMaxIndices) {
      OTTER_CUDA_CHECK(cudaMemsetAsync(dx.raw(), 0, dx.nbytes(), st));
      int64_t total = outer * n * inner;
      gather_grad_atomic_k<I><<<blocks_for(total), kThreads, 0, st>>>(g, idx, static_cast<float*>(dx.raw()), outer, n,
                                                                        dim, inner, err);
      OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
      return;
    }
  }
  if constexpr (std::is_same_v<T, A>) {  // FP32, FP64: accumulate in dx itself
    OTTER_CUDA_CHECK(cudaMemsetAsync(dx.raw(), 0, dx.nbytes(), st));
    gather_grad_ordered_k<T, A, I><<<blocks_for(outer * inner), kThreads, 0, st>>>(g, idx, static_cast<A*>(dx.raw()),
                                                                                  outer, n, dim, inner, err);
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  } else {  // FP16, BF16: accumulate in an FP32 buffer, round once
    Tensor acc(DType::Float32, dx.shape(), Device::CUDA);  // zero-filled, stream-ordered
    gather_grad_ordered_k<T, A, I><<<blocks_for(outer * inner), kThreads, 0, st>>>(g, idx, static_cast<A*>(acc.raw()),
                                                                                  outer, n, dim, inner, err);
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
    round_k<T><<<blocks_for(dx.numel()), kThreads, 0, st>>>(static_cast<const float*>(acc.raw()),
                                                             static_cast<T*>(dx.raw()), dx.numel());
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  }
}

// GatherGrad(dy, indices, x): zeros of x's shape with dy's rows added at the gathered places (a
// repeated index accumulates). x may be a shape-only view without data: only the output's shape
// (which is x's) is used.
void gather_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  Tensor& dx = ctx.out(0);
  int64_t axis = ctx.normalize_axis(ctx.node.attr_int("axis", 0), dx.rank());
  int64_t dim = dx.shape()[axis];
  int64_t outer = shape_numel(dx.shape(), 0, static_cast<size_t>(axis));
  int64_t inner = shape_numel(dx.shape(), static_cast<size_t>(axis) + 1, dx.shape().size());
  int64_t n = indices.numel();
  OTTER_CHECK(dy.numel() == outer * n * inner, ctx.node.describe(), ": dy ", shape_str(dy.shape()),
              " does not match the gather of ", shape_str(dx.shape()));
  OTTER_CHECK(dy.dtype() == dx.dtype(), ctx.node.describe(), ": dy is ", dtype_name(dy.dtype()), " but dx is ",
              dtype_name(dx.dtype()));
  IndexCheck check = check_indices(ctx, 1, dim, axis);
  if (dx.numel() == 0) return;
  if (dy.numel() == 0) {
    OTTER_CUDA_CHECK(cudaMemsetAsync(dx.raw(), 0, dx.nbytes(), stream_of(ctx)));
    return;
  }
  OTTER_CUDA_DISPATCH_FLOAT(dx.dtype(), ctx.node.describe(), {
    if (indices.dtype() == DType::Int64)
      gather_grad_typed<scalar_t>(ctx, static_cast<const int64_t*>(indices.raw()), outer, n, dim, inner, check.device);
    else
      gather_grad_typed<scalar_t>(ctx, static_cast<const int32_t*>(indices.raw()), outer, n, dim, inner, check.device);
  });
  finish_check(ctx, check, dim, axis);
}

// ---- Shape, Size, Constant, ConstantOfShape, Range ----

// Host values into the output (the backend stages them in pinned memory: no wait for the device).
void upload_to(Tensor& y, const void* src) {
  if (y.nbytes()) device_backend(Device::CUDA)->upload_async(y.raw(), src, y.nbytes());
}

void shape_kernel(KernelContext& ctx) {
  std::vector<int64_t> dims = shape::shape_dims(ctx);
  upload_to(ctx.out(0), dims.data());
}

void size_kernel(KernelContext& ctx) {
  int64_t n = ctx.in(0).numel();
  upload_to(ctx.out(0), &n);
}

void constant_kernel(KernelContext& ctx) {
  Tensor value = shape::constant_value(ctx);
  upload_to(ctx.out(0), value.raw());
}

template <class E>
__global__ void fill_k(E* __restrict__ y, E v, int64_t n) {
  GRID_STRIDE(i, n) y[i] = v;
}

template <class E>
void fill(const KernelContext& ctx, Tensor& y, const unsigned char* pattern) {
  E v;
  std::memcpy(&v, pattern, sizeof(E));
  int64_t n = y.numel();
  fill_k<E><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(static_cast<E*>(y.raw()), v, n);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

void constant_of_shape_kernel(KernelContext& ctx) {
  Tensor& y = ctx.out(0);
  size_t size = dtype_size(y.dtype());
  std::array<uint8_t, 8> bytes = shape::constant_of_shape_pattern(ctx);
  const unsigned char* pattern = bytes.data();
  if (y.numel() == 0) return;
  if (std::all_of(pattern, pattern + size, [](unsigned char b) { return b == 0; })) {
    OTTER_CUDA_CHECK(cudaMemsetAsync(y.raw(), 0, y.nbytes(), stream_of(ctx)));
    return;
  }
  switch (size) {
    case 1: fill<uint8_t>(ctx, y, pattern); break;
    case 2: fill<uint16_t>(ctx, y, pattern); break;
    case 4: fill<uint32_t>(ctx, y, pattern); break;
    case 8: fill<uint64_t>(ctx, y, pattern); break;
    default: OTTER_FAIL(ctx.node.describe(), ": unsupported element size ", size);
  }
}

// y[i] = start + i * delta, computed in the compute type (FP32 for FP16/BF16, as the CPU's
// promoted kernel).
template <class T, class C>
__global__ void range_k(T* __restrict__ y, C start, C delta, int64_t n) {
  GRID_STRIDE(i, n) store(y, i, static_cast<C>(start + static_cast<C>(i) * delta));
}

template <class T>
void range_typed(KernelContext& ctx) {
  using C = typename Compute<T>::type;
  C start, delta;
  if constexpr (std::is_integral_v<T>) {
    start = static_cast<C>(ctx.int64_values(0).at(0));
    delta = static_cast<C>(ctx.int64_values(2).at(0));
  } else {
    start = static_cast<C>(ctx.scalar_value(0, 0));
    delta = static_cast<C>(ctx.scalar_value(2, 0));
  }
  Tensor& y = ctx.out(0);
  int64_t n = y.numel();
  if (n == 0) return;
  range_k<T, C><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(static_cast<T*>(y.raw()), start, delta, n);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

void range_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_NUM(ctx.out(0).dtype(), ctx.node.describe(), range_typed<scalar_t>(ctx));
}

}  // namespace

void register_shape_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};
  const std::vector<DType> all = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int64,
                                  DType::Int32,   DType::Int8,    DType::Uint8,   DType::Bool};
  const std::vector<DType> num = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int64,
                                  DType::Int32};
  const Device cuda = Device::CUDA;
  for (const char* op : {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}) r.add("", op, cuda, all, copy_kernel);
  r.add("", "Transpose", cuda, all, transpose_kernel);
  r.add("", "Expand", cuda, all, expand_kernel);
  r.add("", "Slice", cuda, all, slice_kernel);
  r.add("", "Concat", cuda, all, concat_kernel);
  r.add("", "Split", cuda, all, split_kernel);
  r.add("", "Gather", cuda, all, gather_kernel);
  r.add("", "Shape", cuda, all, shape_kernel);
  r.add("", "Size", cuda, all, size_kernel);
  r.add("", "Constant", cuda, all, constant_kernel);
  r.add("", "ConstantOfShape", cuda, all, constant_of_shape_kernel);
  r.add("", "Range", cuda, num, range_kernel);
  r.add("otter", "ConcatGrad", cuda, f, concat_grad_kernel);
  r.add("otter", "SplitGrad", cuda, f, split_grad_kernel);
  r.add("otter", "SliceGrad", cuda, f, slice_grad_kernel);
  r.add("otter", "GatherGrad", cuda, f, gather_grad_kernel);
}

}  // namespace otter::cuda
