// CUDA kernels for the spatial op family (runtime/ops/spatial.cpp): Pad, Resize and their
// gradients otter.PadGrad and otter.ResizeGrad, mirroring kernels/cpu/spatial.cpp. The index math
// (pad source coordinates, resize taps) is kernels/common/spatial_math.h, resolved from the node
// on the host once per call by kernels/common/spatial_host.h (as on the CPU); its tables go to the
// device through the backend's upload_async (pinned staging, no wait for the device).
//
// Pad is one gather: every output element looks up its source coordinate along each axis (-1:
// the constant). It moves values, so it works on unsigned elements of the dtype's size. PadGrad
// and ResizeGrad are gathers too, with no atomics: the CPU's scatter "din[src(y)] += w * dout[y]"
// is inverted on the host into, per input coordinate, the list of (y, w) that reach it, in the
// CPU's order, so each input element sums its list in that order. Resize runs separably, one
// resized axis at a time in the order of `axes` (as the CPU and the ONNX reference do), and
// ResizeGrad, like PadGrad, one transposed pass per axis in reverse order. Arithmetic is FP32
// (FP64 for FP64 tensors); intermediate passes keep that type, FP16/BF16 are rounded once at the
// end.
#include <cstring>
#include <type_traits>
#include <utility>

#include "kernels/common/spatial_host.h"
#include "kernels/cuda/cuda_common.cuh"

namespace otter::cuda {
namespace {

// A host table on the device (see the file comment).
template <class V>
Tensor upload(const std::vector<V>& v) {
  Tensor t(DTypeOf<V>::value, {static_cast<int64_t>(v.size())}, Device::CUDA);
  if (t.nbytes()) device_backend(Device::CUDA)->upload_async(t.raw(), v.data(), t.nbytes());
  return t;
}

// The values of input i on the host (its plan-time copy when there is one).
Tensor host_value(const KernelContext& ctx, size_t i) {
  if (const Tensor* h = ctx.host_input(i)) return *h;
  return ctx.in(i).to(Device::CPU);
}

// Runs `count` passes from src (storage type T) to dst (T) through FP32/FP64 buffers: pass k
// writes shapes[k]; launch(k, in, out) is called with typed pointers (T or the compute type).
template <class T, class Launch>
void run_passes(const T* src, T* dst, const std::vector<Shape>& shapes, Launch launch) {
  using A = typename Compute<T>::type;
  Tensor bufs[2];
  const A* prev = nullptr;
  size_t count = shapes.size();
  for (size_t k = 0; k < count; ++k) {
    bool first = k == 0, last = k + 1 == count;
    A* next = nullptr;
    if (!last) {
      bufs[k % 2] = Tensor(DTypeOf<A>::value, shapes[k], Device::CUDA);
      next = static_cast<A*>(bufs[k % 2].raw());
    }
    if (first && last) launch(k, src, dst);
    else if (first) launch(k, src, next);
    else if (last) launch(k, prev, dst);
    else launch(k, prev, next);
    prev = next;
  }
}

// One transposed (gather) pass along an axis: dst [outer, n_dst, inner] from src [outer, n_src,
// inner]: dst[o, s, i] = sum over q in [start[s], start[s + 1]) of w[q] * src[o, y[q], i] (w null:
// weight 1), summed in list order.
template <class In, class Out, class A>
__global__ void gather_sum_k(const In* __restrict__ src, Out* __restrict__ dst, const int64_t* __restrict__ start,
                             const int64_t* __restrict__ y, const A* __restrict__ w, int64_t outer, int64_t n_src,
                             int64_t n_dst, int64_t inner) {
  int64_t total = outer * n_dst * inner;
  GRID_STRIDE(e, total) {
    int64_t i = e % inner, r = e / inner;
    int64_t s = r % n_dst, o = r / n_dst;
    A acc = 0;
    for (int64_t q = start[s]; q < start[s + 1]; ++q) {
      A v = static_cast<A>(load(src, (o * n_src + y[q]) * inner + i));
      acc += w ? w[q] * v : v;
    }
    store(dst, e, acc);
  }
}

// The list of one transposed pass, built on the host: per destination coordinate s, the entries
// [start[s], start[s + 1]) of y (and of the weights, for ResizeGrad).
struct GatherList {
  std::vector<int64_t> start, y;
};

// ---- Pad ----

struct PadWalk {
  int rank = 0;
  int64_t out[kMaxDims], in_stride[kMaxDims], table[kMaxDims];  // table: where axis d's sources start
};

// y[i] = x[the sources of i's coordinates], or value when one of them is -1.
template <class E>
__global__ void pad_k(const E* __restrict__ x, E* __restrict__ y, const int64_t* __restrict__ src, int64_t n,
                      PadWalk w, E value) {
  GRID_STRIDE(i, n) {
    int64_t rest = i, off = 0;
    bool constant = false;
    for (int d = w.rank - 1; d >= 0; --d) {
      int64_t s = src[w.table[d] + rest % w.out[d]];
      rest /= w.out[d];
      constant = constant || s < 0;
      off += s * w.in_stride[d];
    }
    y[i] = constant ? value : x[off];
  }
}

template <class E>
void pad_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  spatial::PadLayout l = spatial::pad_layout(ctx, x.shape(), y.shape(), 1, 3);
  E value = E(0);
  if (ctx.has_input(2) && ctx.in(2).numel() > 0) {
    OTTER_CHECK(ctx.in(2).dtype() == x.dtype(), ctx.node.describe(), ": constant_value is ",
                dtype_name(ctx.in(2).dtype()), " but the data is ", dtype_name(x.dtype()));
    Tensor v = host_value(ctx, 2);
    std::memcpy(&value, v.raw(), sizeof(E));
  }
  int64_t n = y.numel();
  if (n == 0) return;
  OTTER_CHECK(y.rank() <= kMaxDims, ctx.node.describe(), ": CUDA kernels support up to ", kMaxDims, " dims, got ",
              y.rank());
  PadWalk w;
  w.rank = static_cast<int>(y.rank());
  std::vector<int64_t> xs = shape_strides(x.shape()), table;
  for (int d = 0; d < w.rank; ++d) {
    w.out[d] = y.shape()[d];
    w.in_stride[d] = xs[d];
    w.table[d] = static_cast<int64_t>(table.size());
    table.insert(table.end(), l.src[d].begin(), l.src[d].end());
  }
  Tensor src = upload(table);
  pad_k<E><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(static_cast<const E*>(x.raw()), static_cast<E*>(y.raw()),
                                                          static_cast<const int64_t*>(src.raw()), n, w, value);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

void pad_kernel(KernelContext& ctx) {
  switch (dtype_size(ctx.in(0).dtype())) {
    case 1: pad_typed<uint8_t>(ctx); break;
    case 2: pad_typed<uint16_t>(ctx); break;
    case 4: pad_typed<uint32_t>(ctx); break;
    case 8: pad_typed<uint64_t>(ctx); break;
    default: OTTER_FAIL(ctx.node.describe(), ": unsupported element size ", dtype_size(ctx.in(0).dtype()));
  }
}

// PadGrad(dy, x, pads, axes?): for each padded axis in turn, every input coordinate sums the
// gradients of the output coordinates whose source it is, in increasing order (the CPU adds them
// in that order); x is read for its shape only.
template <class T>
void pad_grad_typed(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  Tensor& dx = ctx.out(0);
  spatial::PadLayout l = spatial::pad_layout(ctx, dx.shape(), dy.shape(), 2, 3);
  std::vector<int64_t> todo;
  for (int64_t d = 0; d < dx.rank(); ++d)
    if (l.padded[d]) todo.push_back(d);
  cudaStream_t st = stream_of(ctx);
  if (todo.empty()) {
    if (dx.nbytes()) OTTER_CUDA_CHECK(cudaMemcpyAsync(dx.raw(), dy.raw(), dx.nbytes(), cudaMemcpyDeviceToDevice, st));
    return;
  }
  // Shapes after each pass, and each pass's list (all lists in one table: start then y).
  std::vector<Shape> shapes;
  std::vector<int64_t> table, start_at, y_at;
  Shape shape = dy.shape();
  for (int64_t d : todo) {
    const std::vector<int64_t>& src = l.src[d];
    int64_t n_in = dx.shape()[d];
    GatherList g;
    g.start.assign(static_cast<size_t>(n_in) + 1, 0);
    for (int64_t s : src)
      if (s >= 0) ++g.start[s + 1];
    for (int64_t s = 0; s < n_in; ++s) g.start[s + 1] += g.start[s];
    g.y.resize(static_cast<size_t>(g.start[n_in]));
    std::vector<int64_t> fill(g.start.begin(), g.start.end() - 1);
    for (int64_t y = 0; y < static_cast<int64_t>(src.size()); ++y)
      if (src[y] >= 0) g.y[fill[src[y]]++] = y;
    start_at.push_back(static_cast<int64_t>(table.size()));
    table.insert(table.end(), g.start.begin(), g.start.end());
    y_at.push_back(static_cast<int64_t>(table.size()));
    table.insert(table.end(), g.y.begin(), g.y.end());
    shape[d] = n_in;
    shapes.push_back(shape);
  }
  Tensor lists = upload(table);
  const int64_t* pl = static_cast<const int64_t*>(lists.raw());
  using A = typename Compute<T>::type;
  Shape cur = dy.shape();
  run_passes<T>(static_cast<const T*>(dy.raw()), static_cast<T*>(dx.raw()), shapes, [&](size_t k, auto in, auto out) {
    using In = std::remove_cv_t<std::remove_pointer_t<decltype(in)>>;
    using Out = std::remove_pointer_t<decltype(out)>;
    int64_t d = todo[k];
    int64_t outer = shape_numel(cur, 0, static_cast<size_t>(d));
    int64_t inner = shape_numel(cur, static_cast<size_t>(d) + 1, cur.size());
    int64_t total = outer * shapes[k][d] * inner;
    if (total)
      gather_sum_k<In, Out, A><<<blocks_for(total), kThreads, 0, st>>>(in, out, pl + start_at[k], pl + y_at[k],
                                                                       nullptr, outer, cur[d], shapes[k][d], inner);
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
    cur = shapes[k];
  });
}

void pad_grad_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), pad_grad_typed<scalar_t>(ctx));
}

// ---- Resize ----

// One forward pass along an axis: dst [outer, n_out, inner] from src [outer, n_in, inner]:
// dst[o, y, i] = extrapolation if extrapolated[y], else the sum over the n taps j (in order,
// skipping zero weights as the CPU does) of weight[y*n + j] * src[o, idx[y*n + j], i].
template <class In, class Out, class A>
__global__ void resize_pass_k(const In* __restrict__ src, Out* __restrict__ dst, const int64_t* __restrict__ idx,
                              const A* __restrict__ weight, const int64_t* __restrict__ extrapolated, int n,
                              int64_t outer, int64_t n_in, int64_t n_out, int64_t inner, A extrapolation) {
  int64_t total = outer * n_out * inner;
  GRID_STRIDE(e, total) {
    int64_t i = e % inner, r = e / inner;
    int64_t y = r % n_out, o = r / n_out;
    A acc = 0;
    if (extrapolated[y]) {
      acc = extrapolation;
    } else {
      for (int j = 0; j < n; ++j) {
        A w = weight[y * n + j];
        if (w == A(0)) continue;
        acc += w * static_cast<A>(load(src, (o * n_in + idx[y * n + j]) * inner + i));
      }
    }
    store(dst, e, acc);
  }
}

template <class T>
void resize_typed(KernelContext& ctx) {
  using A = typename Compute<T>::type;
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  spatial::ResizeParams p;
  auto taps = spatial::resize_taps(ctx, x.shape(), y.shape(), 1, p);
  cudaStream_t st = stream_of(ctx);
  if (taps.empty()) {
    if (y.nbytes()) OTTER_CUDA_CHECK(cudaMemcpyAsync(y.raw(), x.raw(), y.nbytes(), cudaMemcpyDeviceToDevice, st));
    return;
  }
  // All passes' taps in two tables: idx then extrapolated (int64), weights (A).
  std::vector<Shape> shapes;
  std::vector<int64_t> itable, idx_at, ext_at;
  std::vector<A> wtable;
  Shape shape = x.shape();
  for (auto& [d, t] : taps) {
    idx_at.push_back(static_cast<int64_t>(itable.size()));
    itable.insert(itable.end(), t.idx.begin(), t.idx.end());
    ext_at.push_back(static_cast<int64_t>(itable.size()));
    itable.insert(itable.end(), t.extrapolated.begin(), t.extrapolated.end());
    wtable.insert(wtable.end(), t.weight.begin(), t.weight.end());
    shape[d] = t.out;
    shapes.push_back(shape);
  }
  Tensor ints = upload(itable), weights = upload(wtable);
  const int64_t* pi = static_cast<const int64_t*>(ints.raw());
  const A* pw = static_cast<const A*>(weights.raw());
  A extrapolation = static_cast<A>(p.extrapolation_value);
  Shape cur = x.shape();
  int64_t w_at = 0;
  run_passes<T>(static_cast<const T*>(x.raw()), static_cast<T*>(y.raw()), shapes, [&](size_t k, auto in, auto out) {
    using In = std::remove_cv_t<std::remove_pointer_t<decltype(in)>>;
    using Out = std::remove_pointer_t<decltype(out)>;
    const spatial::AxisTaps& t = taps[k].second;
    int64_t d = taps[k].first;
    int64_t outer = shape_numel(cur, 0, static_cast<size_t>(d));
    int64_t inner = shape_numel(cur, static_cast<size_t>(d) + 1, cur.size());
    int64_t total = outer * t.out * inner;
    if (total)
      resize_pass_k<In, Out, A><<<blocks_for(total), kThreads, 0, st>>>(in, out, pi + idx_at[k], pw + w_at,
                                                                        pi + ext_at[k], t.n, outer, t.in, t.out,
                                                                        inner, extrapolation);
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
    w_at += static_cast<int64_t>(t.weight.size());
    cur = shapes[k];
  });
}

void resize_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), resize_typed<scalar_t>(ctx));
}

// ResizeGrad(dy, X, roi, scales, sizes): the forward passes transposed, in reverse order. Pass
// k's list gives every input coordinate s the taps (y, weight) with idx == s, in the CPU's
// accumulation order (y, then j), skipping extrapolated y and zero weights; X is read for its
// shape only.
template <class T>
void resize_grad_typed(KernelContext& ctx) {
  using A = typename Compute<T>::type;
  const Tensor& dy = ctx.in(0);
  Tensor& dx = ctx.out(0);
  spatial::ResizeParams p;
  auto taps = spatial::resize_taps(ctx, dx.shape(), dy.shape(), 2, p);
  cudaStream_t st = stream_of(ctx);
  if (taps.empty()) {
    if (dx.nbytes()) OTTER_CUDA_CHECK(cudaMemcpyAsync(dx.raw(), dy.raw(), dx.nbytes(), cudaMemcpyDeviceToDevice, st));
    return;
  }
  // The shapes before each forward pass: the shapes after each transposed pass, in reverse.
  std::vector<Shape> before;
  Shape shape = dx.shape();
  for (auto& [d, t] : taps) {
    before.push_back(shape);
    shape[d] = t.out;
  }
  std::vector<Shape> shapes(before.rbegin(), before.rend());
  std::vector<int64_t> itable, start_at, y_at, w_at;
  std::vector<A> wtable;
  for (size_t k = taps.size(); k-- > 0;) {
    const spatial::AxisTaps& t = taps[k].second;
    GatherList g;
    std::vector<A> w;
    g.start.assign(static_cast<size_t>(t.in) + 1, 0);
    auto used = [&](int64_t y, int j) {
      return !t.extrapolated[static_cast<size_t>(y)] && t.weight[static_cast<size_t>(y * t.n + j)] != 0;
    };
    for (int64_t y = 0; y < t.out; ++y)
      for (int j = 0; j < t.n; ++j)
        if (used(y, j)) ++g.start[t.idx[static_cast<size_t>(y * t.n + j)] + 1];
    for (int64_t s = 0; s < t.in; ++s) g.start[s + 1] += g.start[s];
    g.y.resize(static_cast<size_t>(g.start[t.in]));
    w.resize(g.y.size());
    std::vector<int64_t> fill(g.start.begin(), g.start.end() - 1);
    for (int64_t y = 0; y < t.out; ++y)
      for (int j = 0; j < t.n; ++j)
        if (used(y, j)) {
          size_t q = static_cast<size_t>(y * t.n + j);
          int64_t at = fill[t.idx[q]]++;
          g.y[at] = y;
          w[at] = static_cast<A>(t.weight[q]);
        }
    start_at.push_back(static_cast<int64_t>(itable.size()));
    itable.insert(itable.end(), g.start.begin(), g.start.end());
    y_at.push_back(static_cast<int64_t>(itable.size()));
    itable.insert(itable.end(), g.y.begin(), g.y.end());
    w_at.push_back(static_cast<int64_t>(wtable.size()));
    wtable.insert(wtable.end(), w.begin(), w.end());
  }
  Tensor ints = upload(itable), weights = upload(wtable);
  const int64_t* pi = static_cast<const int64_t*>(ints.raw());
  const A* pw = static_cast<const A*>(weights.raw());
  Shape cur = dy.shape();
  run_passes<T>(static_cast<const T*>(dy.raw()), static_cast<T*>(dx.raw()), shapes, [&](size_t k, auto in, auto out) {
    using In = std::remove_cv_t<std::remove_pointer_t<decltype(in)>>;
    using Out = std::remove_pointer_t<decltype(out)>;
    int64_t d = taps[taps.size() - 1 - k].first;
    int64_t outer = shape_numel(cur, 0, static_cast<size_t>(d));
    int64_t inner = shape_numel(cur, static_cast<size_t>(d) + 1, cur.size());
    int64_t total = outer * shapes[k][d] * inner;
    if (total)
      gather_sum_k<In, Out, A><<<blocks_for(total), kThreads, 0, st>>>(in, out, pi + start_at[k], pi + y_at[k],
                                                                       pw + w_at[k], outer, cur[d], shapes[k][d],
                                                                       inner);
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
    cur = shapes[k];
  });
}

void resize_grad_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), resize_grad_typed<scalar_t>(ctx));
}

}  // namespace

void register_spatial_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};
  const std::vector<DType> all = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int64,
                                  DType::Int32,   DType::Int8,    DType::Uint8,   DType::Bool};
  r.add("", "Pad", Device::CUDA, all, pad_kernel);
  r.add("", "Resize", Device::CUDA, f, resize_kernel);
  r.add("otter", "PadGrad", Device::CUDA, f, pad_grad_kernel);
  r.add("otter", "ResizeGrad", Device::CUDA, f, resize_grad_kernel);
}

}  // namespace otter::cuda
