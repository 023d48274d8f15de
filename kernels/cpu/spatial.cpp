// CPU kernels for the spatial op family (runtime/ops/spatial.cpp): Pad, Resize and their
// gradients otter.PadGrad and otter.ResizeGrad. Index math (pad source coordinates, resize taps)
// is in kernels/common/spatial_math.h, its resolution from the node (pad_layout, resize_taps) in
// kernels/common/spatial_host.h.
//
// Pad precomputes, per axis, the source coordinate of every output coordinate (-1: constant) and
// copies row by row. PadGrad is the transpose, one axis at a time: along each padded axis the
// gradient of every output coordinate is added into its source coordinate (dropped for constant
// padding), which also accumulates the reflected/edge/wrapped copies.
//
// Resize runs separably in double, one resized axis at a time in the order of `axes` (as the
// ONNX reference does): out[o, y, i] = sum_j w[y][j] * in[o, idx[y][j], i], or the extrapolation
// value at tf_crop_and_resize places outside the input. ResizeGrad applies the transposed passes
// in reverse order: din[o, idx[y][j], i] += w[y][j] * dout[o, y, i].
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/common/spatial_host.h"
#include "kernels/cpu/cpu_common.h"

namespace otter::cpu {
namespace {

// Runs fn(o, i0, i1) over the outer index o in [0, outer) and inner ranges [i0, i1) of [0, inner),
// in parallel; each (o, range) pair is independent.
template <class Fn>
void parallel_outer_inner(int64_t outer, int64_t inner, int64_t cost_per_item, Fn fn) {
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(inner, 4096));
  int64_t chunks = inner == 0 ? 0 : (inner + chunk - 1) / chunk;
  parallel_for(outer * chunks, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      int64_t o = t / chunks, c = t % chunks;
      fn(o, c * chunk, std::min(inner, (c + 1) * chunk));
    }
  }, std::max<int64_t>(1, 32768 / std::max<int64_t>(chunk * cost_per_item, 1)));
}

// ---- Pad ----

template <class T>
void pad_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  spatial::PadLayout l = spatial::pad_layout(ctx, x.shape(), y.shape(), 1, 3);
  T value = T(0);
  if (ctx.has_input(2) && ctx.in(2).numel() > 0) value = ctx.in(2).data<T>()[0];
  const T* px = x.data<T>();
  T* py = y.data<T>();
  const Shape& out = y.shape();
  int64_t r = y.rank();
  if (r == 0) {
    py[0] = px[0];
    return;
  }
  std::vector<int64_t> xs = shape_strides(x.shape());
  int64_t inner = out[r - 1], rows = inner ? y.numel() / inner : 0;
  const std::vector<int64_t>& last = l.src[static_cast<size_t>(r - 1)];
  parallel_for(rows, [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      int64_t off = 0, rest = row;
      bool constant = false;
      for (int64_t d = r - 2; d >= 0; --d) {
        int64_t o = rest % out[d];
        rest /= out[d];
        int64_t s = l.src[static_cast<size_t>(d)][static_cast<size_t>(o)];
        if (s < 0) constant = true;
        off += s * xs[d];
      }
      T* dst = py + row * inner;
      if (constant) {
        std::fill(dst, dst + inner, value);
        continue;
      }
      for (int64_t j = 0; j < inner; ++j) {
        int64_t s = last[static_cast<size_t>(j)];
        dst[j] = s < 0 ? value : px[off + s];
      }
    }
  }, std::max<int64_t>(1, 32768 / std::max<int64_t>(inner, 1)));
}

void pad_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_ALL(ctx.in(0).dtype(), ctx.node.describe(), pad_typed<scalar_t>(ctx));
}

// PadGrad(dy, x, pads, axes?): for each padded axis in turn, the gradient of every output
// coordinate is added into its source coordinate.
template <class T>
void pad_grad_typed(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  Tensor& dx = ctx.out(0);
  spatial::PadLayout l = spatial::pad_layout(ctx, dx.shape(), dy.shape(), 2, 3);
  int64_t r = dx.rank();
  std::vector<int64_t> todo;
  for (int64_t d = 0; d < r; ++d)
    if (l.padded[d]) todo.push_back(d);
  T* out = dx.data<T>();
  if (todo.empty()) {
    if (dx.nbytes()) std::memcpy(out, dy.data<T>(), dx.nbytes());
    return;
  }
  Shape cur_shape = dy.shape();
  const T* cur = dy.data<T>();
  std::vector<T> bufs[2];
  for (size_t t = 0; t < todo.size(); ++t) {
    int64_t d = todo[t];
    Shape next_shape = cur_shape;
    next_shape[d] = dx.shape()[d];
    T* next;
    if (t + 1 == todo.size()) {
      next = out;
    } else {
      bufs[t % 2].assign(static_cast<size_t>(shape_numel(next_shape)), T(0));
      next = bufs[t % 2].data();
    }
    int64_t outer = shape_numel(cur_shape, 0, static_cast<size_t>(d));
    int64_t inner = shape_numel(cur_shape, static_cast<size_t>(d) + 1, cur_shape.size());
    int64_t n_out = cur_shape[d], n_in = next_shape[d];
    const std::vector<int64_t>& src = l.src[static_cast<size_t>(d)];
    if (t + 1 == todo.size()) std::fill(next, next + shape_numel(next_shape), T(0));
    parallel_outer_inner(outer, inner, n_out, [&](int64_t o, int64_t i0, int64_t i1) {
      const T* g = cur + o * n_out * inner;
      T* dst = next + o * n_in * inner;
      for (int64_t y = 0; y < n_out; ++y) {
        int64_t s = src[static_cast<size_t>(y)];
        if (s < 0) continue;
        for (int64_t i = i0; i < i1; ++i) dst[s * inner + i] += g[y * inner + i];
      }
    });
    cur = next;
    cur_shape = next_shape;
  }
}

void pad_grad_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), pad_grad_typed<scalar_t>(ctx));
}

// ---- Resize ----

// One forward pass along axis d: src has cur_shape, dst has cur_shape with [d] = t.out.
void resize_pass(const double* src, double* dst, const Shape& cur_shape, int64_t d, const spatial::AxisTaps& t,
                 double extrapolation) {
  int64_t outer = shape_numel(cur_shape, 0, static_cast<size_t>(d));
  int64_t inner = shape_numel(cur_shape, static_cast<size_t>(d) + 1, cur_shape.size());
  int64_t n_in = t.in, n_out = t.out, n = t.n;
  parallel_outer_inner(outer * n_out, inner, n, [&](int64_t oy, int64_t i0, int64_t i1) {
    int64_t o = oy / n_out, y = oy % n_out;
    double* out = dst + oy * inner;
    if (t.extrapolated[static_cast<size_t>(y)]) {
      std::fill(out + i0, out + i1, extrapolation);
      return;
    }
    std::fill(out + i0, out + i1, 0.0);
    for (int64_t j = 0; j < n; ++j) {
      double w = t.weight[static_cast<size_t>(y * n + j)];
      if (w == 0) continue;
      const double* in = src + (o * n_in + t.idx[static_cast<size_t>(y * n + j)]) * inner;
      for (int64_t i = i0; i < i1; ++i) out[i] += w * in[i];
    }
  });
}

// The transposed pass: dst (cur_shape with [d] = t.in) = the pass's gradient from src (with t.out).
void resize_pass_grad(const double* src, double* dst, const Shape& in_shape, int64_t d, const spatial::AxisTaps& t) {
  int64_t outer = shape_numel(in_shape, 0, static_cast<size_t>(d));
  int64_t inner = shape_numel(in_shape, static_cast<size_t>(d) + 1, in_shape.size());
  int64_t n_in = t.in, n_out = t.out, n = t.n;
  parallel_outer_inner(outer, inner, n_out * n, [&](int64_t o, int64_t i0, int64_t i1) {
    double* din = dst + o * n_in * inner;
    for (int64_t s = 0; s < n_in; ++s) std::fill(din + s * inner + i0, din + s * inner + i1, 0.0);
    for (int64_t y = 0; y < n_out; ++y) {
      if (t.extrapolated[static_cast<size_t>(y)]) continue;
      const double* g = src + (o * n_out + y) * inner;
      for (int64_t j = 0; j < n; ++j) {
        double w = t.weight[static_cast<size_t>(y * n + j)];
        if (w == 0) continue;
        double* dd = din + t.idx[static_cast<size_t>(y * n + j)] * inner;
        for (int64_t i = i0; i < i1; ++i) dd[i] += w * g[i];
      }
    }
  });
}

template <class T>
void resize_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  spatial::ResizeParams p;
  auto taps = spatial::resize_taps(ctx, x.shape(), y.shape(), 1, p);
  const T* px = x.data<T>();
  T* py = y.data<T>();
  if (taps.empty()) {
    std::copy(px, px + x.numel(), py);
    return;
  }
  std::vector<double> cur(px, px + x.numel()), next;
  Shape shape = x.shape();
  for (auto& [d, t] : taps) {
    Shape out_shape = shape;
    out_shape[d] = t.out;
    next.assign(static_cast<size_t>(shape_numel(out_shape)), 0.0);
    resize_pass(cur.data(), next.data(), shape, d, t, p.extrapolation_value);
    cur.swap(next);
    shape = out_shape;
  }
  for (int64_t i = 0; i < y.numel(); ++i) py[i] = static_cast<T>(cur[static_cast<size_t>(i)]);
}

void resize_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), resize_typed<scalar_t>(ctx));
}

// ResizeGrad(dy, X, roi, scales, sizes).
template <class T>
void resize_grad_typed(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  Tensor& dx = ctx.out(0);
  spatial::ResizeParams p;
  auto taps = spatial::resize_taps(ctx, dx.shape(), dy.shape(), 2, p);
  const T* g = dy.data<T>();
  T* out = dx.data<T>();
  if (taps.empty()) {
    std::copy(g, g + dy.numel(), out);
    return;
  }
  // The shapes before each forward pass.
  std::vector<Shape> before;
  Shape shape = dx.shape();
  for (auto& [d, t] : taps) {
    before.push_back(shape);
    shape[d] = t.out;
  }
  std::vector<double> cur(g, g + dy.numel()), next;
  for (size_t k = taps.size(); k-- > 0;) {
    next.assign(static_cast<size_t>(shape_numel(before[k])), 0.0);
    resize_pass_grad(cur.data(), next.data(), before[k], taps[k].first, taps[k].second);
    cur.swap(next);
  }
  for (int64_t i = 0; i < dx.numel(); ++i) out[i] = static_cast<T>(cur[static_cast<size_t>(i)]);
}

void resize_grad_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), resize_grad_typed<scalar_t>(ctx));
}

}  // namespace

void register_spatial_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64};
  const std::vector<DType> all = {DType::Float32, DType::Float64, DType::Int64, DType::Int32,
                                  DType::Int8, DType::Uint8, DType::Bool};
  r.add("", "Pad", Device::CPU, all, pad_kernel);
  r.add("", "Resize", Device::CPU, f, resize_kernel);
  r.add("otter", "PadGrad", Device::CPU, f, pad_grad_kernel);
  r.add("otter", "ResizeGrad", Device::CPU, f, resize_grad_kernel);
}

}  // namespace otter::cpu
