// CPU kernels for the indexing op family (runtime/ops/indexing.cpp): GatherElements,
// ScatterElements, ScatterND, Trilu, Tile, CumSum and the internal otter.GatherElementsGrad,
// otter.GatherND and otter.TileGrad. Indices are converted to int64, made non-negative and
// checked before any parallel loop (no error is raised inside one). Scatters that may hit one
// place twice keep a fixed order: ScatterElements and GatherElementsGrad run the indexed axis
// sequentially inside each "column" (the other dims, which never collide) and parallelise over
// columns; ScatterND runs the index tuples in order and parallelises over each slice's elements.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/common/indexing_host.h"
#include "kernels/cpu/cpu_common.h"

namespace otter::cpu {


namespace {

// Resolution and layouts shared with the CUDA kernels (kernels/common/indexing_host.h).
using namespace indexing;

// The indices as int64 in [0, dim) (negative ones counted from the end), or fails naming the bad one.
std::vector<int64_t> checked_indices(const KernelContext& ctx, const Tensor& t, int64_t dim, int64_t axis) {
  std::vector<int64_t> v = t.to_int64_vector();
  for (int64_t& i : v) {
    OTTER_CHECK(i >= -dim && i < dim, ctx.node.describe(), ": index ", i, " is out of range for axis ", axis,
                " of size ", dim);
    if (i < 0) i += dim;
  }
  return v;
}

// Calls fn(off_a, off_b) for every index of `shape`, where off_x = sum_k index_k * strides_x[k]
// (in parallel chunks; each chunk walks its indices in row-major order).
template <class Fn>
void for_each_index(const Shape& shape, const std::vector<int64_t>& sa, const std::vector<int64_t>& sb, Fn fn,
                    int64_t min_items = 32768) {
  int64_t n = shape_numel(shape);
  int64_t r = static_cast<int64_t>(shape.size());
  if (n == 0) return;
  parallel_for(n, [&](int64_t b, int64_t e) {
    std::vector<int64_t> idx(static_cast<size_t>(r), 0);
    int64_t oa = 0, ob = 0;
    for (int64_t k = r - 1, rest = b; k >= 0; --k) {
      idx[k] = rest % shape[k];
      rest /= shape[k];
      oa += idx[k] * sa[k];
      ob += idx[k] * sb[k];
    }
    for (int64_t i = b; i < e; ++i) {
      fn(oa, ob);
      for (int64_t k = r - 1; k >= 0; --k) {
        oa += sa[k];
        ob += sb[k];
        if (++idx[k] < shape[k]) break;
        oa -= sa[k] * shape[k];
        ob -= sb[k] * shape[k];
        idx[k] = 0;
      }
    }
  }, min_items);
}

// ---- GatherElements, GatherElementsGrad, ScatterElements ----

template <class T>
void gather_elements_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const Tensor& ind = ctx.in(1);
  Tensor& y = ctx.out(0);
  ElementLayout l = element_layout(ctx, x.shape(), ind.shape());
  std::vector<int64_t> idx = checked_indices(ctx, ind, l.dim, l.axis);
  const T* px = x.data<T>();
  T* py = y.data<T>();
  for_each_index(ind.shape(), l.data_strides, l.index_strides,
                 [&](int64_t od, int64_t oi) { py[oi] = px[od + idx[static_cast<size_t>(oi)] * l.data_stride]; });
}

void gather_elements_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_ALL(ctx.in(0).dtype(), ctx.node.describe(), gather_elements_typed<scalar_t>(ctx));
}

// dst[.., idx, ..] (reduce)= src[..] along the axis, column by column (see the file comment).
template <class T>
void scatter_elements_into(const KernelContext& ctx, T* dst, const Shape& dst_shape, const Tensor& ind, const T* src,
                           Reduction red) {
  ElementLayout l = element_layout(ctx, dst_shape, ind.shape());
  std::vector<int64_t> idx = checked_indices(ctx, ind, l.dim, l.axis);
  Shape cols = ind.shape();
  int64_t n = cols[l.axis], istride = l.index_strides[l.axis];
  cols[l.axis] = 1;
  for_each_index(cols, l.data_strides, l.index_strides, [&](int64_t od, int64_t oi) {
    for (int64_t j = 0; j < n; ++j) {
      int64_t e = oi + j * istride;
      reduce_into(dst[od + idx[static_cast<size_t>(e)] * l.data_stride], src[e], red);
    }
  }, std::max<int64_t>(1, 32768 / std::max<int64_t>(n, 1)));
}

template <class T>
void scatter_elements_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  if (x.nbytes()) std::memcpy(y.raw(), x.raw(), x.nbytes());
  OTTER_CHECK(ctx.in(2).shape() == ctx.in(1).shape(), ctx.node.describe(), ": updates ", shape_str(ctx.in(2).shape()),
              " and indices ", shape_str(ctx.in(1).shape()), " differ");
  scatter_elements_into<T>(ctx, y.data<T>(), y.shape(), ctx.in(1), ctx.in(2).data<T>(), reduction_of(ctx));
}

void scatter_elements_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_ALL(ctx.in(0).dtype(), ctx.node.describe(), scatter_elements_typed<scalar_t>(ctx));
}

// GatherElementsGrad(dy, indices, data): zeros of data's shape, dy added at the indices.
template <class T>
void gather_elements_grad_typed(KernelContext& ctx) {
  Tensor& dx = ctx.out(0);
  T* out = dx.data<T>();
  std::fill(out, out + dx.numel(), T(0));
  scatter_elements_into<T>(ctx, out, dx.shape(), ctx.in(1), ctx.in(0).data<T>(), Reduction::Add);
}

void gather_elements_grad_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), gather_elements_grad_typed<scalar_t>(ctx));
}

// ---- ScatterND and otter.GatherND ----

// The data offsets of the index tuples (indices [..., k] into data) and the slice size.
struct NdLayout {
  std::vector<int64_t> offsets;
  int64_t slice = 1;
};

NdLayout nd_layout(const KernelContext& ctx, const Shape& data, const Tensor& indices) {
  OTTER_CHECK(indices.rank() >= 1, ctx.node.describe(), ": indices must have rank >= 1");
  int64_t k = indices.shape().back();
  int64_t r = static_cast<int64_t>(data.size());
  OTTER_CHECK(k <= r, ctx.node.describe(), ": indices index ", k, " dims of data ", shape_str(data));
  std::vector<int64_t> strides = shape_strides(data);
  std::vector<int64_t> v = indices.to_int64_vector();
  NdLayout l;
  for (int64_t d = k; d < r; ++d) l.slice *= data[d];
  int64_t tuples = k ? static_cast<int64_t>(v.size()) / k : shape_numel(Shape(indices.shape().begin(), indices.shape().end() - 1));
  l.offsets.resize(static_cast<size_t>(tuples));
  for (int64_t t = 0; t < tuples; ++t) {
    int64_t off = 0;
    for (int64_t d = 0; d < k; ++d) {
      int64_t i = v[static_cast<size_t>(t * k + d)];
      OTTER_CHECK(i >= -data[d] && i < data[d], ctx.node.describe(), ": index ", i, " is out of range for axis ", d,
                  " of size ", data[d]);
      if (i < 0) i += data[d];
      off += i * strides[d];
    }
    l.offsets[static_cast<size_t>(t)] = off;
  }
  return l;
}

template <class T>
void scatter_nd_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const Tensor& u = ctx.in(2);
  Tensor& y = ctx.out(0);
  if (x.nbytes()) std::memcpy(y.raw(), x.raw(), x.nbytes());
  NdLayout l = nd_layout(ctx, x.shape(), ctx.in(1));
  int64_t tuples = static_cast<int64_t>(l.offsets.size());
  OTTER_CHECK(u.numel() == tuples * l.slice, ctx.node.describe(), ": updates ", shape_str(u.shape()),
              " do not match the indices and data");
  Reduction red = reduction_of(ctx);
  const T* pu = u.data<T>();
  T* py = y.data<T>();
  parallel_for(l.slice, [&](int64_t b, int64_t e) {
    for (int64_t t = 0; t < tuples; ++t) {
      T* dst = py + l.offsets[static_cast<size_t>(t)];
      const T* src = pu + t * l.slice;
      for (int64_t j = b; j < e; ++j) reduce_into(dst[j], src[j], red);
    }
  }, std::max<int64_t>(1, 32768 / std::max<int64_t>(tuples, 1)));
}

void scatter_nd_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_ALL(ctx.in(0).dtype(), ctx.node.describe(), scatter_nd_typed<scalar_t>(ctx));
}

// GatherND(data, indices): the slices of data at the index tuples.
void gather_nd_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  NdLayout l = nd_layout(ctx, x.shape(), ctx.in(1));
  int64_t tuples = static_cast<int64_t>(l.offsets.size());
  OTTER_CHECK(y.numel() == tuples * l.slice, ctx.node.describe(), ": output ", shape_str(y.shape()),
              " does not match the indices and data");
  size_t es = dtype_size(x.dtype()), row = static_cast<size_t>(l.slice) * es;
  const uint8_t* px = static_cast<const uint8_t*>(x.raw());
  uint8_t* py = static_cast<uint8_t*>(y.raw());
  if (row == 0) return;
  parallel_for(tuples, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      std::memcpy(py + static_cast<size_t>(t) * row, px + static_cast<size_t>(l.offsets[static_cast<size_t>(t)]) * es, row);
  }, std::max<int64_t>(1, static_cast<int64_t>(262144 / row)));
}

// ---- Trilu ----

template <class T>
void trilu_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  int64_t k = trilu_offset(ctx);
  bool upper = ctx.node.attr_int("upper", 1) != 0;
  int64_t rows = x.shape()[x.rank() - 2], cols = x.shape()[x.rank() - 1];
  int64_t n = rows == 0 || cols == 0 ? 0 : x.numel() / cols;  // matrix rows, over all matrices
  const T* px = x.data<T>();
  T* py = y.data<T>();
  parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      int64_t i = r % rows;
      for (int64_t j = 0; j < cols; ++j) {
        bool keep = upper ? j - i >= k : j - i <= k;
        py[r * cols + j] = keep ? px[r * cols + j] : T(0);
      }
    }
  }, std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)));
}

void trilu_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_ALL(ctx.in(0).dtype(), ctx.node.describe(), trilu_typed<scalar_t>(ctx));
}

// ---- Tile and TileGrad ----

// The offsets in the tiled tensor (shape `big`, a multiple of `small`) of the origin of every
// tile, and big's strides.
std::vector<int64_t> tile_offsets(const Shape& small, const Shape& big, std::vector<int64_t>& big_strides) {
  big_strides = shape_strides(big);
  Shape reps;
  for (size_t d = 0; d < small.size(); ++d) reps.push_back(small[d] ? big[d] / small[d] : 0);
  std::vector<int64_t> offs;
  int64_t n = shape_numel(reps);
  offs.reserve(static_cast<size_t>(n));
  std::vector<int64_t> t(reps.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t off = 0;
    for (size_t d = 0; d < reps.size(); ++d) off += t[d] * small[d] * big_strides[d];
    offs.push_back(off);
    for (int64_t d = static_cast<int64_t>(reps.size()) - 1; d >= 0; --d) {
      if (++t[d] < reps[d]) break;
      t[d] = 0;
    }
  }
  return offs;
}

template <class T>
void tile_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  check_tiling(ctx, x.shape(), y.shape());
  if (y.numel() == 0) return;
  std::vector<int64_t> ys;
  std::vector<int64_t> offs = tile_offsets(x.shape(), y.shape(), ys);
  const T* px = x.data<T>();
  T* py = y.data<T>();
  std::vector<int64_t> xs = shape_strides(x.shape());
  int64_t per = static_cast<int64_t>(offs.size());
  for_each_index(x.shape(), ys, xs, [&](int64_t oy, int64_t ox) {
    T v = px[ox];
    for (int64_t t = 0; t < per; ++t) py[oy + offs[static_cast<size_t>(t)]] = v;
  }, std::max<int64_t>(1, 32768 / std::max<int64_t>(per, 1)));
}

void tile_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_ALL(ctx.in(0).dtype(), ctx.node.describe(), tile_typed<scalar_t>(ctx));
}

// TileGrad(dy, x): dx[i] = the sum of dy over the tiles' copies of i.
template <class T>
void tile_grad_typed(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  Tensor& dx = ctx.out(0);
  OTTER_CHECK(dy.rank() == dx.rank(), ctx.node.describe(), ": dy and x differ in rank");
  T* out = dx.data<T>();
  if (dy.numel() == 0) {
    std::fill(out, out + dx.numel(), T(0));
    return;
  }
  std::vector<int64_t> ys;
  std::vector<int64_t> offs = tile_offsets(dx.shape(), dy.shape(), ys);
  const T* g = dy.data<T>();
  std::vector<int64_t> xs = shape_strides(dx.shape());
  int64_t per = static_cast<int64_t>(offs.size());
  for_each_index(dx.shape(), ys, xs, [&](int64_t oy, int64_t ox) {
    double acc = 0;
    for (int64_t t = 0; t < per; ++t) acc += static_cast<double>(g[oy + offs[static_cast<size_t>(t)]]);
    out[ox] = static_cast<T>(acc);
  }, std::max<int64_t>(1, 32768 / std::max<int64_t>(per, 1)));
}

void tile_grad_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), tile_grad_typed<scalar_t>(ctx));
}

// ---- CumSum ----

template <class T>
void cumsum_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  CumSumLayout l = cumsum_layout(ctx, x.shape());
  int64_t n = l.n, inner = l.inner, outer = l.outer;
  bool exclusive = l.exclusive, reverse = l.reverse;
  using Acc = std::conditional_t<std::is_floating_point_v<T>, double, T>;
  const T* px = x.data<T>();
  T* py = y.data<T>();
  parallel_for(outer * inner, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      int64_t base = (c / inner) * n * inner + c % inner;
      Acc acc = 0;
      for (int64_t jj = 0; jj < n; ++jj) {
        int64_t j = reverse ? n - 1 - jj : jj;
        int64_t off = base + j * inner;
        if (exclusive) {
          py[off] = static_cast<T>(acc);
          acc += static_cast<Acc>(px[off]);
        } else {
          acc += static_cast<Acc>(px[off]);
          py[off] = static_cast<T>(acc);
        }
      }
    }
  }, std::max<int64_t>(1, 32768 / std::max<int64_t>(n, 1)));
}

void cumsum_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_NUMERIC(ctx.in(0).dtype(), ctx.node.describe(), cumsum_typed<scalar_t>(ctx));
}

}  // namespace

void register_indexing_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64};
  const std::vector<DType> num = {DType::Float32, DType::Float64, DType::Int64, DType::Int32};
  const std::vector<DType> all = {DType::Float32, DType::Float64, DType::Int64, DType::Int32,
                                  DType::Int8, DType::Uint8, DType::Bool};
  const Device cpu = Device::CPU;
  r.add("", "GatherElements", cpu, all, gather_elements_kernel);
  r.add("", "ScatterElements", cpu, all, scatter_elements_kernel);
  r.add("", "ScatterND", cpu, all, scatter_nd_kernel);
  r.add("", "Trilu", cpu, all, trilu_kernel);
  r.add("", "Tile", cpu, all, tile_kernel);
  r.add("", "CumSum", cpu, num, cumsum_kernel);
  r.add("otter", "GatherElementsGrad", cpu, f, gather_elements_grad_kernel);
  r.add("otter", "GatherND", cpu, all, gather_nd_kernel);
  r.add("otter", "TileGrad", cpu, f, tile_grad_kernel);
}

}  // namespace otter::cpu
