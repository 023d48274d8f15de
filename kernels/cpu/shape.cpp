// CPU kernels for the shape family (runtime/ops/shape.cpp). These move bytes, so most work on raw
// elements of the dtype's size rather than per type: Reshape and its kin copy the buffer;
// Transpose, Slice and Expand are one strided copy (per output dim, a possibly negative or zero
// input stride); Concat/Split and their gradients copy contiguous blocks; Gather copies rows.
// Output shapes come from the plan's inference, so kernels read them instead of recomputing;
// Transpose's strides and the values of Shape, Constant and ConstantOfShape come from
// kernels/common/shape_host.h. Only the gradients that add (GatherGrad) and Range are typed.
#include <algorithm>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "kernels/common/shape_host.h"
#include "kernels/common/slice_layout.h"
#include "kernels/cpu/cpu_common.h"

namespace otter::cpu {
namespace {

using Bytes = uint8_t;

const Bytes* bytes(const Tensor& t) { return static_cast<const Bytes*>(t.raw()); }
Bytes* bytes(Tensor& t) { return static_cast<Bytes*>(t.raw()); }

// The product of shape[b, e).
// ---- strided copy ----

// Transposes one B x B block: dst[r * dst_stride + c] = src[r + c * src_stride] for r, c < B.
// B is 8 for 16-bit and 4 for 32-bit elements, where SSE2 moves whole rows (the classic unpack
// ladder: bits are only moved, so every value, NaN payloads included, is copied exactly); other
// element sizes and targets copy element by element.
template <class E>
constexpr int64_t kBlock = sizeof(E) == 2 ? 8 : 4;

template <class E>
inline void transpose_block(const E* src, int64_t src_stride, E* dst, int64_t dst_stride) {
#if defined(__SSE2__)
  if constexpr (sizeof(E) == 2) {
    __m128i a[8], b[8], c[8];
    for (int i = 0; i < 8; ++i) a[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i * src_stride));
    for (int i = 0; i < 4; ++i) {
      b[2 * i] = _mm_unpacklo_epi16(a[2 * i], a[2 * i + 1]);
      b[2 * i + 1] = _mm_unpackhi_epi16(a[2 * i], a[2 * i + 1]);
    }
    for (int i = 0; i < 2; ++i) {  // b[0..3] hold rows 0-3, b[4..7] rows 4-7
      c[4 * i] = _mm_unpacklo_epi32(b[4 * i], b[4 * i + 2]);
      c[4 * i + 1] = _mm_unpackhi_epi32(b[4 * i], b[4 * i + 2]);
      c[4 * i + 2] = _mm_unpacklo_epi32(b[4 * i + 1], b[4 * i + 3]);
      c[4 * i + 3] = _mm_unpackhi_epi32(b[4 * i + 1], b[4 * i + 3]);
    }
    for (int i = 0; i < 4; ++i) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (2 * i) * dst_stride), _mm_unpacklo_epi64(c[i], c[4 + i]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (2 * i + 1) * dst_stride), _mm_unpackhi_epi64(c[i], c[4 + i]));
    }
    return;
  } else if constexpr (sizeof(E) == 4) {
    __m128i a[4];
    for (int i = 0; i < 4; ++i) a[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i * src_stride));
    const __m128i t0 = _mm_unpacklo_epi32(a[0], a[1]), t1 = _mm_unpackhi_epi32(a[0], a[1]);
    const __m128i t2 = _mm_unpacklo_epi32(a[2], a[3]), t3 = _mm_unpackhi_epi32(a[2], a[3]);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_unpacklo_epi64(t0, t2));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + dst_stride), _mm_unpackhi_epi64(t0, t2));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * dst_stride), _mm_unpacklo_epi64(t1, t3));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 3 * dst_stride), _mm_unpackhi_epi64(t1, t3));
    return;
  }
#endif
  constexpr int64_t B = kBlock<E>;
  for (int64_t r = 0; r < B; ++r)
    for (int64_t c = 0; c < B; ++c) dst[r * dst_stride + c] = src[r + c * src_stride];
}

// For every index i of `shape` (row-major): with src_off(i) = base + sum_k i_k * strides[k],
// gather: dst[i] = src[src_off(i)];  scatter: dst[src_off(i)] = src[i]. E is an element-sized
// unsigned type. The last dim runs in the inner loop; rows run in parallel.
template <class E>
void strided_copy_typed(const E* src, E* dst, int64_t base, const Shape& shape, const std::vector<int64_t>& strides,
                        bool scatter) {
  int64_t numel = shape_numel(shape);
  if (numel == 0) return;
  if (shape.empty()) {
    if (scatter) dst[base] = src[0];
    else dst[0] = src[base];
    return;
  }
  size_t rank = shape.size();
  int64_t inner = shape.back(), inner_stride = strides.back(), rows = numel / inner;
  if (!scatter && rank >= 2 && strides[rank - 2] == 1 && inner_stride != 1 && inner > 1 && shape[rank - 2] > 1) {
    // The last two dims swapped (a matrix transpose, per outer index): in tiles, so that both the
    // reads and the writes stay within a few cache lines instead of one line per element read.
    constexpr int64_t kTile = 32;
    const int64_t r_n = shape[rank - 2], c_n = inner, plane = r_n * c_n, planes = numel / plane;
    const int64_t r_tiles = (r_n + kTile - 1) / kTile, c_tiles = (c_n + kTile - 1) / kTile;
    parallel_for(planes * r_tiles, [&](int64_t b, int64_t e) {
      for (int64_t w = b; w < e; ++w) {
        const int64_t p = w / r_tiles, r0 = (w % r_tiles) * kTile, r1 = std::min(r_n, r0 + kTile);
        int64_t off = base;  // the source offset of plane p
        for (int64_t k = static_cast<int64_t>(rank) - 3, rest = p; k >= 0; --k) {
          off += (rest % shape[k]) * strides[k];
          rest /= shape[k];
        }
        E* out = dst + p * plane;
        constexpr int64_t B = kBlock<E>;
        for (int64_t ct = 0; ct < c_tiles; ++ct) {
          const int64_t c0 = ct * kTile, c1 = std::min(c_n, c0 + kTile);
          for (int64_t rb = r0; rb < r1; rb += B)
            for (int64_t cb = c0; cb < c1; cb += B) {
              if (rb + B <= r1 && cb + B <= c1) {
                transpose_block(src + off + rb + cb * inner_stride, inner_stride, out + rb * c_n + cb, c_n);
                continue;
              }
              for (int64_t r = rb; r < std::min(r1, rb + B); ++r)
                for (int64_t c = cb; c < std::min(c1, cb + B); ++c) out[r * c_n + c] = src[off + r + c * inner_stride];
            }
        }
      }
    }, std::max<int64_t>(1, 32768 / (kTile * c_n)));
    return;
  }
  parallel_for(rows, [&](int64_t b, int64_t e) {
    // The outer index of row b and its offset.
    std::vector<int64_t> index(rank - 1, 0);
    int64_t off = base;
    for (int64_t k = static_cast<int64_t>(rank) - 2, rest = b; k >= 0; --k) {
      index[k] = rest % shape[k];
      rest /= shape[k];
      off += index[k] * strides[k];
    }
    for (int64_t row = b; row < e; ++row) {
      const int64_t flat = row * inner;
      if (scatter) {
        for (int64_t j = 0; j < inner; ++j) dst[off + j * inner_stride] = src[flat + j];
      } else if (inner_stride == 1) {
        std::memcpy(dst + flat, src + off, static_cast<size_t>(inner) * sizeof(E));
      } else {
        for (int64_t j = 0; j < inner; ++j) dst[flat + j] = src[off + j * inner_stride];
      }
      for (int64_t k = static_cast<int64_t>(rank) - 2; k >= 0; --k) {  // next row
        off += strides[k];
        if (++index[k] < shape[k]) break;
        off -= strides[k] * shape[k];
        index[k] = 0;
      }
    }
  }, std::max<int64_t>(1, 32768 / std::max<int64_t>(inner, 1)));
}

void strided_copy(const void* src, void* dst, size_t elem_size, int64_t base, const Shape& shape,
                  const std::vector<int64_t>& strides, bool scatter) {
  switch (elem_size) {
    case 1: strided_copy_typed(static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst), base, shape, strides, scatter); break;
    case 2: strided_copy_typed(static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst), base, shape, strides, scatter); break;
    case 4: strided_copy_typed(static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst), base, shape, strides, scatter); break;
    case 8: strided_copy_typed(static_cast<const uint64_t*>(src), static_cast<uint64_t*>(dst), base, shape, strides, scatter); break;
    default: OTTER_FAIL("strided copy: unsupported element size ", elem_size);
  }
}

// ---- Reshape, Flatten, Squeeze, Unsqueeze: same bytes, new shape ----

void copy_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  OTTER_CHECK(x.nbytes() == y.nbytes(), ctx.node.describe(), ": input ", shape_str(x.shape()), " and output ",
              shape_str(y.shape()), " differ in size");
  if (x.nbytes()) std::memcpy(y.raw(), x.raw(), x.nbytes());
}

void transpose_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  strided_copy(x.raw(), y.raw(), dtype_size(x.dtype()), 0, y.shape(), shape::transpose_strides(ctx), false);
}

void expand_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  strided_copy(x.raw(), y.raw(), dtype_size(x.dtype()), 0, y.shape(), broadcast_strides(x.shape(), y.shape()), false);
}

// ---- Slice and SliceGrad (layout: kernels/common/slice_layout.h) ----

void slice_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  SliceLayout l = slice_layout(ctx, x.shape(), 1);
  OTTER_CHECK(l.shape == y.shape(), ctx.node.describe(), ": the slice is ", shape_str(l.shape), " but the output is ",
              shape_str(y.shape()));
  strided_copy(x.raw(), y.raw(), dtype_size(x.dtype()), l.base, y.shape(), l.strides, false);
}

// SliceGrad(dy, x, starts, ends, axes?, steps?): zeros of x's shape with dy at the sliced places.
void slice_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  Tensor& dx = ctx.out(0);
  SliceLayout l = slice_layout(ctx, dx.shape(), 2);
  OTTER_CHECK(l.shape == dy.shape(), ctx.node.describe(), ": the slice is ", shape_str(l.shape), " but dy is ",
              shape_str(dy.shape()));
  if (dx.nbytes()) std::memset(dx.raw(), 0, dx.nbytes());
  strided_copy(dy.raw(), dx.raw(), dtype_size(dy.dtype()), l.base, dy.shape(), l.strides, true);
}

// ---- Concat, Split and their gradients: contiguous blocks ----

// Walks the blocks of a tensor split into parts along `axis` (part i has part_dims[i] there):
// fn(i, whole_offset, part_offset, block_bytes) for every part and outer index, in parallel
// over the outer index.
template <class Fn>
void for_each_block(const Shape& whole_shape, int64_t axis, size_t elem_size, const std::vector<int64_t>& part_dims,
                    Fn fn) {
  int64_t outer = shape_numel(whole_shape, 0, static_cast<size_t>(axis));
  int64_t inner = shape_numel(whole_shape, static_cast<size_t>(axis) + 1, whole_shape.size());
  int64_t total = 0;
  for (int64_t d : part_dims) total += d;
  OTTER_CHECK(total == whole_shape[axis], "concat/split: the parts add up to ", total, " along axis ", axis, " of ",
              shape_str(whole_shape));
  size_t row = static_cast<size_t>(whole_shape[axis] * inner) * elem_size;
  size_t offset = 0;
  for (size_t i = 0; i < part_dims.size(); ++i) {
    size_t block = static_cast<size_t>(part_dims[i] * inner) * elem_size;
    if (block != 0) {
      parallel_for(outer, [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o)
          fn(i, static_cast<size_t>(o) * row + offset, static_cast<size_t>(o) * block, block);
      }, std::max<int64_t>(1, static_cast<int64_t>(262144 / block)));
    }
    offset += block;
  }
}

// whole = the parts joined along axis; a null part is zeros.
void join(Tensor& whole, int64_t axis, const std::vector<int64_t>& part_dims, const std::vector<const Bytes*>& parts) {
  Bytes* w = bytes(whole);
  for_each_block(whole.shape(), axis, dtype_size(whole.dtype()), part_dims,
                 [&](size_t i, size_t wo, size_t po, size_t block) {
                   if (parts[i]) std::memcpy(w + wo, parts[i] + po, block);
                   else std::memset(w + wo, 0, block);
                 });
}

// The parts of whole along axis; a null part is not wanted.
void split(const Tensor& whole, int64_t axis, const std::vector<int64_t>& part_dims, const std::vector<Bytes*>& parts) {
  const Bytes* w = bytes(whole);
  for_each_block(whole.shape(), axis, dtype_size(whole.dtype()), part_dims,
                 [&](size_t i, size_t wo, size_t po, size_t block) {
                   if (parts[i]) std::memcpy(parts[i] + po, w + wo, block);
                 });
}

void concat_kernel(KernelContext& ctx) {
  Tensor& y = ctx.out(0);
  int64_t axis = ctx.normalize_axis(ctx.node.attr_int("axis", 0), y.rank());
  std::vector<int64_t> dims;
  std::vector<const Bytes*> parts;
  for (size_t i = 0; i < ctx.inputs.size(); ++i) {
    dims.push_back(ctx.in(i).shape()[axis]);
    parts.push_back(bytes(ctx.in(i)));
  }
  join(y, axis, dims, parts);
}

// ConcatGrad(dy, x0, x1, ...): output i is dy's block for x_i.
void concat_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  int64_t axis = ctx.normalize_axis(ctx.node.attr_int("axis", 0), dy.rank());
  std::vector<int64_t> dims;
  std::vector<Bytes*> parts;
  for (size_t i = 1; i < ctx.inputs.size(); ++i) {
    dims.push_back(ctx.in(i).shape()[axis]);
    parts.push_back(ctx.has_output(i - 1) ? bytes(ctx.out(i - 1)) : nullptr);
  }
  split(dy, axis, dims, parts);
}

void split_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  int64_t axis = ctx.normalize_axis(ctx.node.attr_int("axis", 0), x.rank());
  std::vector<int64_t> dims;
  std::vector<Bytes*> parts;
  for (size_t i = 0; i < ctx.outputs.size(); ++i) {
    OTTER_CHECK(ctx.has_output(i), ctx.node.describe(), ": output ", i, " is omitted");
    dims.push_back(ctx.out(i).shape()[axis]);
    parts.push_back(bytes(ctx.out(i)));
  }
  split(x, axis, dims, parts);
}

// SplitGrad(dy0..dy{n-1}, y0..y{n-1}): the dys concatenated, zeros for an omitted dy_i.
void split_grad_kernel(KernelContext& ctx) {
  Tensor& dx = ctx.out(0);
  size_t n = ctx.inputs.size() / 2;
  int64_t axis = ctx.normalize_axis(ctx.node.attr_int("axis", 0), dx.rank());
  std::vector<int64_t> dims;
  std::vector<const Bytes*> parts;
  for (size_t i = 0; i < n; ++i) {
    dims.push_back(ctx.in(n + i).shape()[axis]);
    parts.push_back(ctx.has_input(i) ? bytes(ctx.in(i)) : nullptr);
  }
  join(dx, axis, dims, parts);
}

// ---- Gather and GatherGrad ----

// The indices as int64, made non-negative and checked against the axis size.
std::vector<int64_t> gather_indices(const KernelContext& ctx, const Tensor& indices, int64_t dim, int64_t axis) {
  OTTER_CHECK(indices.dtype() == DType::Int64 || indices.dtype() == DType::Int32, ctx.node.describe(),
              ": indices must be int32 or int64, got ", dtype_name(indices.dtype()));
  std::vector<int64_t> idx = indices.to_int64_vector();
  for (int64_t& i : idx) {
    OTTER_CHECK(i >= -dim && i < dim, ctx.node.describe(), ": index ", i, " is out of range for axis ", axis,
                " of size ", dim);
    if (i < 0) i += dim;
  }
  return idx;
}

void gather_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  int64_t axis = ctx.normalize_axis(ctx.node.attr_int("axis", 0), x.rank());
  int64_t dim = x.shape()[axis];
  std::vector<int64_t> idx = gather_indices(ctx, ctx.in(1), dim, axis);
  int64_t outer = shape_numel(x.shape(), 0, static_cast<size_t>(axis));
  size_t row = static_cast<size_t>(shape_numel(x.shape(), static_cast<size_t>(axis) + 1, x.shape().size())) *
               dtype_size(x.dtype());
  int64_t n = static_cast<int64_t>(idx.size());
  const Bytes* px = bytes(x);
  Bytes* py = bytes(y);
  if (row == 0) return;
  parallel_for(outer * n, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      int64_t o = r / n, j = r % n;
      std::memcpy(py + static_cast<size_t>(r) * row, px + static_cast<size_t>(o * dim + idx[j]) * row, row);
    }
  }, std::max<int64_t>(1, static_cast<int64_t>(262144 / row)));
}

// GatherGrad(dy, indices, x): zeros of x's shape with dy's rows added at the gathered places
// (a repeated index accumulates). Threads split the row's elements, so the sums stay in order.
template <class T>
void gather_grad_typed(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  Tensor& dx = ctx.out(0);
  int64_t axis = ctx.normalize_axis(ctx.node.attr_int("axis", 0), dx.rank());
  int64_t dim = dx.shape()[axis];
  std::vector<int64_t> idx = gather_indices(ctx, ctx.in(1), dim, axis);
  int64_t outer = shape_numel(dx.shape(), 0, static_cast<size_t>(axis));
  int64_t inner = shape_numel(dx.shape(), static_cast<size_t>(axis) + 1, dx.shape().size());
  int64_t n = static_cast<int64_t>(idx.size());
  OTTER_CHECK(dy.numel() == outer * n * inner, ctx.node.describe(), ": dy ", shape_str(dy.shape()),
              " does not match the gather of ", shape_str(dx.shape()));
  const T* g = dy.data<T>();
  T* out = dx.data<T>();
  // The zeros on all threads (an embedding's gradient is vocab x d: 154 MB for GPT-2's).
  parallel_for(outer * dim, [&](int64_t b, int64_t e) { std::fill(out + b * inner, out + e * inner, T(0)); },
               std::max<int64_t>(1, 65536 / std::max<int64_t>(inner, 1)));
  parallel_for(inner, [&](int64_t b, int64_t e) {
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < n; ++j) {
        const T* src = g + (o * n + j) * inner;
        T* dst = out + (o * dim + idx[j]) * inner;
        for (int64_t k = b; k < e; ++k) dst[k] += src[k];
      }
  }, std::max<int64_t>(1, 32768 / std::max<int64_t>(outer * n, 1)));
}

void gather_grad_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), gather_grad_typed<scalar_t>(ctx));
}

// ---- Shape, Size, Constant, ConstantOfShape, Range ----

void shape_kernel(KernelContext& ctx) {
  std::vector<int64_t> dims = shape::shape_dims(ctx);
  std::copy(dims.begin(), dims.end(), ctx.out(0).data<int64_t>());
}

void size_kernel(KernelContext& ctx) { ctx.out(0).data<int64_t>()[0] = ctx.in(0).numel(); }

void constant_kernel(KernelContext& ctx) {
  Tensor value = shape::constant_value(ctx);
  Tensor& y = ctx.out(0);
  if (y.nbytes()) std::memcpy(y.raw(), value.raw(), y.nbytes());
}

void constant_of_shape_kernel(KernelContext& ctx) {
  Tensor& y = ctx.out(0);
  size_t size = dtype_size(y.dtype());
  std::array<Bytes, 8> pattern = shape::constant_of_shape_pattern(ctx);
  Bytes* py = bytes(y);
  int64_t n = y.numel();
  bool zero = std::all_of(pattern.begin(), pattern.begin() + size, [](Bytes b) { return b == 0; });
  if (zero) {
    if (y.nbytes()) std::memset(py, 0, y.nbytes());
    return;
  }
  for (int64_t i = 0; i < n; ++i) std::memcpy(py + static_cast<size_t>(i) * size, pattern.data(), size);
}

template <class T>
void range_typed(KernelContext& ctx) {
  T start = ctx.in(0).data<T>()[0], delta = ctx.in(2).data<T>()[0];
  Tensor& y = ctx.out(0);
  T* py = y.data<T>();
  for (int64_t i = 0; i < y.numel(); ++i) py[i] = static_cast<T>(start + static_cast<T>(i) * delta);
}

void range_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_NUMERIC(ctx.out(0).dtype(), ctx.node.describe(), range_typed<scalar_t>(ctx));
}

}  // namespace

void register_shape_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64};
  const std::vector<DType> num = {DType::Float32, DType::Float64, DType::Int64, DType::Int32};
  // Data movement works on bytes: FP16/BF16 values move as they are (no widening), and their
  // Shape/Size fold into constants at plan time like any other dtype's.
  const std::vector<DType> all = {DType::Float32, DType::Float64, DType::Int64, DType::Int32, DType::Int8,
                                  DType::Uint8,   DType::Bool,    DType::Float16, DType::BFloat16};
  const Device cpu = Device::CPU;
  for (const char* op : {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}) r.add("", op, cpu, all, copy_kernel);
  r.add("", "Transpose", cpu, all, transpose_kernel);
  r.add("", "Expand", cpu, all, expand_kernel);
  r.add("", "Slice", cpu, all, slice_kernel);
  r.add("", "Concat", cpu, all, concat_kernel);
  r.add("", "Split", cpu, all, split_kernel);
  r.add("", "Gather", cpu, all, gather_kernel);
  r.add("", "Shape", cpu, all, shape_kernel);
  r.add("", "Size", cpu, all, size_kernel);
  r.add("", "Constant", cpu, all, constant_kernel);
  r.add("", "ConstantOfShape", cpu, all, constant_of_shape_kernel);
  r.add("", "Range", cpu, num, range_kernel);
  // Gradients that only move bytes (and write zeros, the all-zero pattern of every float type).
  const std::vector<DType> moved = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};
  r.add("otter", "ConcatGrad", cpu, moved, concat_grad_kernel);
  r.add("otter", "SplitGrad", cpu, moved, split_grad_kernel);
  r.add("otter", "SliceGrad", cpu, moved, slice_grad_kernel);
  r.add("otter", "GatherGrad", cpu, f, gather_grad_kernel);
}

}  // namespace otter::cpu
