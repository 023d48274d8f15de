// CUDA kernels for the reductions (ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd,
// ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum, ReduceLogSumExp) and their gradients
// (otter.ReduceGrad, otter.ReduceOutputGrad), with the CPU's semantics (kernels/cpu/reduce.cpp):
// axes from the axes input or the node (kernels/common/reduce_host.h), keepdims,
// noop_with_empty_axes (each element reduced alone: |x| for L1/L2, x^2 for SumSquare, log x for
// LogSum), and an empty reduction giving the CPU's value (0 for sums, 1 for Prod, NaN for Mean,
// -inf for LogSum and LogSumExp, the lowest / highest value for Max / Min). The input is viewed as
// alternating runs of kept and reduced dims (size-1 dims dropped, neighbours of the same kind
// merged). Each output element is reduced in a fixed order, so results are deterministic: by one
// thread looping over its reduced elements when there are many outputs, or by one block (strided
// partials, then a shared-memory tree) when there are few outputs over many elements.
// FP16/BF16/FP32 accumulate in FP32, FP64 and integers in FP64 (the CPU goes through double);
// Max/Min compare in the input type (widened for FP16/BF16), exact for integers, NaN propagating.
// ReduceLogSumExp subtracts the maximum first, as on the CPU.
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include "kernels/common/elementwise_math.h"
#include "kernels/common/reduce_host.h"

#include "kernels/cuda/cuda_common.cuh"

namespace otter::cuda {
namespace {

using reduce::Kind;

// The reduction geometry of an input shape and its (sorted, normalised) axes.
struct ReduceGeometry {
  Strides kept;             // output index -> input offset of its first element (rank = kept dims)
  Strides red;              // reduced dims but the innermost: index -> input offset
  int64_t last_size = 1;    // innermost reduced dim (1 when nothing is reduced)
  int64_t last_stride = 0;
  int64_t red_outer = 1;    // product of the `red` dims
  int64_t count = 1;        // elements per output
  int64_t outputs = 1;
  Strides to_out;           // input index -> output offset (rank = all merged dims), for the gradient
};

ReduceGeometry make_geometry(const Node& node, const Shape& in, const std::vector<int64_t>& axes) {
  std::vector<bool> reduced(in.size(), false);
  for (int64_t a : axes) reduced[static_cast<size_t>(a)] = true;
  // Merge: drop size-1 dims, fuse neighbours of the same kind (the input is contiguous).
  std::vector<int64_t> size;
  std::vector<bool> red;
  for (size_t d = 0; d < in.size(); ++d) {
    if (in[d] == 1) continue;
    if (!size.empty() && red.back() == reduced[d]) size.back() *= in[d];
    else { size.push_back(in[d]); red.push_back(reduced[d]); }
  }
  int rank = static_cast<int>(size.size());
  OTTER_CHECK(rank <= kMaxDims, node.describe(), ": CUDA reductions support up to ", kMaxDims,
              " alternating kept/reduced dim groups, got ", rank);
  std::vector<int64_t> stride(size.size(), 1);
  for (int d = rank - 2; d >= 0; --d) stride[d] = stride[d + 1] * size[d + 1];
  ReduceGeometry g;
  g.kept.rank = 0;
  g.red.rank = 0;
  int last = -1;
  for (int d = 0; d < rank; ++d)
    if (red[d]) last = d;
  for (int d = 0; d < rank; ++d) {
    if (!red[d]) {
      g.kept.out[g.kept.rank] = size[d];
      g.kept.in[0][g.kept.rank] = stride[d];
      ++g.kept.rank;
      g.outputs *= size[d];
    } else if (d == last) {
      g.last_size = size[d];
      g.last_stride = stride[d];
      g.count *= size[d];
    } else {
      g.red.out[g.red.rank] = size[d];
      g.red.in[0][g.red.rank] = stride[d];
      ++g.red.rank;
      g.red_outer *= size[d];
      g.count *= size[d];
    }
  }
  // Gradient: every merged input dim, with the output's row-major stride on kept dims, 0 on reduced.
  g.to_out.rank = rank;
  int64_t out_stride = 1;
  for (int d = rank - 1; d >= 0; --d) {
    g.to_out.out[d] = size[d];
    g.to_out.in[0][d] = red[d] ? 0 : out_stride;
    if (!red[d]) out_stride *= size[d];
  }
  return g;
}

constexpr bool is_extreme(Kind k) { return k == Kind::Max || k == Kind::Min; }

// The accumulation type of reduction K over storage type T.
template <Kind K, class T>
using acc_t = std::conditional_t<!is_extreme(K) && std::is_integral_v<T>, double, typename Compute<T>::type>;

// The value of an empty reduction (before finish): Max / Min start at -inf / +inf, or at the
// type's lowest / highest value for integers and bool, as on the CPU.
template <Kind K, class A>
__device__ __forceinline__ A identity() {
  using L = std::numeric_limits<A>;
  if constexpr (K == Kind::Max) {
    if constexpr (L::has_infinity) return -L::infinity();
    else return L::lowest();
  } else if constexpr (K == Kind::Min) {
    if constexpr (L::has_infinity) return L::infinity();
    else return L::max();
  } else if constexpr (K == Kind::Prod) {
    return A(1);
  } else {
    return A(0);
  }
}

// What one element contributes.
template <Kind K, class A>
__device__ __forceinline__ A term(A v) {
  if constexpr (K == Kind::L1) return math::Abs{}(v);
  else if constexpr (K == Kind::L2 || K == Kind::SumSquare) return v * v;
  else return v;
}

// acc combined with v (a term or another thread's partial); Max/Min as the CPU's loop: a NaN
// wins and stays.
template <Kind K, class A>
__device__ __forceinline__ A combine(A acc, A v) {
  if constexpr (K == Kind::Max) return math::Max{}(v, acc);
  else if constexpr (K == Kind::Min) return math::Min{}(v, acc);
  else if constexpr (K == Kind::Prod) return acc * v;
  else return acc + v;
}

template <Kind K, class A>
__device__ __forceinline__ A finish(A acc, int64_t count) {
  if constexpr (K == Kind::Mean) return acc / static_cast<A>(count);  // count 0: NaN, as on the CPU
  else if constexpr (K == Kind::L2) return std::sqrt(acc);
  else if constexpr (K == Kind::LogSum) return std::log(acc);
  else return acc;
}

// LogSumExp's maximum m: std::max(m, v) as on the CPU (a NaN is skipped here and propagates
// through the sum of exponentials). The result is m + log(sum exp(v - m)), or m itself when it is
// infinite (no elements, all -inf, or any +inf).
template <class A>
__device__ __forceinline__ A max_of(A m, A v) { return m < v ? v : m; }

// fn(offset) for every input element of the output whose first element is at `base`, in order.
template <class Fn>
__device__ __forceinline__ void visit_all(const ReduceGeometry& g, int64_t base, Fn fn) {
  for (int64_t r = 0; r < g.red_outer; ++r) {
    int64_t off;
    offsets_of(g.red, r, 1, &off);
    const int64_t b = base + off;
    for (int64_t t = 0; t < g.last_size; ++t) fn(b + t * g.last_stride);
  }
}

// fn(offset) for this thread's share (elements threadIdx.x, + blockDim.x, ...) of that output.
template <class Fn>
__device__ __forceinline__ void visit_strided(const ReduceGeometry& g, int64_t base, Fn fn) {
  for (int64_t k = threadIdx.x; k < g.count; k += blockDim.x) {
    int64_t r = k / g.last_size, t = k - r * g.last_size;
    int64_t off;
    offsets_of(g.red, r, 1, &off);
    fn(base + off + t * g.last_stride);
  }
}

// op-reduction of v over the block (blockDim.x == kThreads, a power of two) in a fixed tree
// order; every thread gets the result.
template <class A, class Op>
__device__ __forceinline__ A block_reduce(A v, A* buf, Op op) {
  __syncthreads();  // buf may still be read from a previous call
  buf[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] = op(buf[threadIdx.x], buf[threadIdx.x + s]);
    __syncthreads();
  }
  return buf[0];
}

// Few outputs over many elements: a block each; otherwise a thread each.
bool by_block(const ReduceGeometry& g) { return g.count >= 64 && g.outputs <= 32768; }
unsigned grid_of(const ReduceGeometry& g) {
  return by_block(g) ? static_cast<unsigned>(g.outputs < 65535 * 32 ? g.outputs : 65535 * 32) : blocks_for(g.outputs);
}

// One thread per output element.
template <Kind K, class T>
__global__ void reduce_thread_k(const T* x, T* y, ReduceGeometry g) {
  using A = acc_t<K, T>;
  GRID_STRIDE(o, g.outputs) {
    int64_t base;
    offsets_of(g.kept, o, 1, &base);
    if constexpr (K == Kind::LogSumExp) {
      A m = -std::numeric_limits<A>::infinity();
      visit_all(g, base, [&](int64_t i) { m = max_of(m, static_cast<A>(load(x, i))); });
      A s = 0;
      if (std::isfinite(m)) visit_all(g, base, [&](int64_t i) { s += std::exp(static_cast<A>(load(x, i)) - m); });
      store(y, o, std::isfinite(m) ? m + std::log(s) : m);
    } else {
      A acc = identity<K, A>();
      visit_all(g, base, [&](int64_t i) { acc = combine<K>(acc, term<K>(static_cast<A>(load(x, i)))); });
      store(y, o, finish<K>(acc, g.count));
    }
  }
}

// One block per output element (blockDim.x == kThreads).
template <Kind K, class T>
__global__ void reduce_block_k(const T* x, T* y, ReduceGeometry g) {
  using A = acc_t<K, T>;
  __shared__ A buf[kThreads];
  for (int64_t o = blockIdx.x; o < g.outputs; o += gridDim.x) {
    int64_t base;
    offsets_of(g.kept, o, 1, &base);
    if constexpr (K == Kind::LogSumExp) {
      A m = -std::numeric_limits<A>::infinity();
      visit_strided(g, base, [&](int64_t i) { m = max_of(m, static_cast<A>(load(x, i))); });
      m = block_reduce(m, buf, [](A a, A b) { return max_of(a, b); });
      A s = 0;
      if (std::isfinite(m)) visit_strided(g, base, [&](int64_t i) { s += std::exp(static_cast<A>(load(x, i)) - m); });
      s = block_reduce(s, buf, [](A a, A b) { return a + b; });  // every thread reaches each block_reduce
      if (threadIdx.x == 0) store(y, o, std::isfinite(m) ? m + std::log(s) : m);
    } else {
      A acc = identity<K, A>();
      visit_strided(g, base, [&](int64_t i) { acc = combine<K>(acc, term<K>(static_cast<A>(load(x, i)))); });
      acc = block_reduce(acc, buf, [](A a, A b) { return combine<K>(a, b); });
      if (threadIdx.x == 0) store(y, o, finish<K>(acc, g.count));
    }
  }
}

template <Kind K, class T>
void launch_reduce(KernelContext& ctx, const ReduceGeometry& g) {
  const T* px = static_cast<const T*>(ctx.in(0).raw());
  T* py = static_cast<T*>(ctx.out(0).raw());
  if (by_block(g)) reduce_block_k<K, T><<<grid_of(g), kThreads, 0, stream_of(ctx)>>>(px, py, g);
  else reduce_thread_k<K, T><<<grid_of(g), kThreads, 0, stream_of(ctx)>>>(px, py, g);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

template <Kind K>
void reduce_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  std::vector<int64_t> axes = reduce::node_axes(ctx, 1, x.rank());
  ReduceGeometry g = make_geometry(ctx.node, x.shape(), axes);
  OTTER_CHECK(g.outputs == y.numel(), ctx.node.describe(), ": output has ", y.numel(), " elements, expected ",
              g.outputs);
  if (g.outputs == 0) return;
  if constexpr (is_extreme(K)) {  // ReduceMax / ReduceMin also take 8-bit integers and bool
    switch (x.dtype()) {
      case DType::Int8: return launch_reduce<K, int8_t>(ctx, g);
      case DType::Uint8: return launch_reduce<K, uint8_t>(ctx, g);
      case DType::Bool: return launch_reduce<K, bool>(ctx, g);
      default: break;
    }
  }
  OTTER_CUDA_DISPATCH_NUM(x.dtype(), ctx.node.describe(), launch_reduce<K, scalar_t>(ctx, g));
}

// dx[i] = dy[reduced index of i] (times 1/count for the mean, computed as on the CPU).
template <class T>
__global__ void reduce_grad_k(const T* dy, T* dx, int64_t n, Strides to_out, int64_t count, bool mean) {
  using C = typename Compute<T>::type;
  C scale = mean && count ? C(1) / static_cast<C>(count) : C(1);
  GRID_STRIDE(i, n) {
    int64_t o;
    offsets_of(to_out, i, 1, &o);
    store(dx, i, static_cast<C>(load(dy, o)) * scale);
  }
}

// ReduceGrad(dy, x, axes?): x is read for its shape only (the plan may pass it without data).
void reduce_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  const Shape& xs = ctx.in(1).shape();
  Tensor& dx = ctx.out(0);
  std::vector<int64_t> axes = reduce::node_axes(ctx, 2, static_cast<int64_t>(xs.size()));
  ReduceGeometry g = make_geometry(ctx.node, xs, axes);
  OTTER_CHECK(g.outputs == dy.numel(), ctx.node.describe(), ": dy has ", dy.numel(), " elements, expected ",
              g.outputs);
  bool mean = ctx.node.attr_int("mean", 0) != 0;
  int64_t n = dx.numel();
  if (n == 0) return;
  OTTER_CUDA_DISPATCH_FLOAT(dy.dtype(), ctx.node.describe(), {
    reduce_grad_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const scalar_t*>(dy.raw()), static_cast<scalar_t*>(dx.raw()), n, g.to_out, g.count, mean);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// ReduceMax / ReduceMin's gradient: dy to the elements equal to the extreme, shared equally among
// ties (math::extreme_grad).
struct ExtremeGrad {};

// ReduceOutputGrad, one thread per output element: dx = f(x, y, dy) over its elements.
template <class T, class F>
__global__ void output_grad_thread_k(const T* dy, const T* x, const T* y, T* dx, ReduceGeometry g, F f) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(o, g.outputs) {
    int64_t base;
    offsets_of(g.kept, o, 1, &base);
    C v = static_cast<C>(load(y, o)), d = static_cast<C>(load(dy, o));
    if constexpr (std::is_same_v<F, ExtremeGrad>) {
      int64_t ties = 0;
      visit_all(g, base, [&](int64_t i) { ties += static_cast<C>(load(x, i)) == v; });
      C inv = ties ? C(1) / static_cast<C>(ties) : C(0);
      visit_all(g, base, [&](int64_t i) { store(dx, i, math::extreme_grad(static_cast<C>(load(x, i)), v, d, inv)); });
    } else {
      visit_all(g, base, [&](int64_t i) { store(dx, i, f(static_cast<C>(load(x, i)), v, d)); });
    }
  }
}

// ReduceOutputGrad, one block per output element (the ties counted block-wide, fixed order).
template <class T, class F>
__global__ void output_grad_block_k(const T* dy, const T* x, const T* y, T* dx, ReduceGeometry g, F f) {
  using C = typename Compute<T>::type;
  for (int64_t o = blockIdx.x; o < g.outputs; o += gridDim.x) {
    int64_t base;
    offsets_of(g.kept, o, 1, &base);
    C v = static_cast<C>(load(y, o)), d = static_cast<C>(load(dy, o));
    if constexpr (std::is_same_v<F, ExtremeGrad>) {
      __shared__ int64_t buf[kThreads];
      int64_t ties = 0;
      visit_strided(g, base, [&](int64_t i) { ties += static_cast<C>(load(x, i)) == v; });
      ties = block_reduce(ties, buf, [](int64_t a, int64_t b) { return a + b; });
      C inv = ties ? C(1) / static_cast<C>(ties) : C(0);
      visit_strided(g, base, [&](int64_t i) { store(dx, i, math::extreme_grad(static_cast<C>(load(x, i)), v, d, inv)); });
    } else {
      visit_strided(g, base, [&](int64_t i) { store(dx, i, f(static_cast<C>(load(x, i)), v, d)); });
    }
  }
}

template <class F>
void launch_output_grad(KernelContext& ctx, const ReduceGeometry& g, F f) {
  if (ctx.in(1).numel() == 0) return;
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), {
    const scalar_t* pdy = static_cast<const scalar_t*>(ctx.in(0).raw());
    const scalar_t* px = static_cast<const scalar_t*>(ctx.in(1).raw());
    const scalar_t* py = static_cast<const scalar_t*>(ctx.in(2).raw());
    scalar_t* pdx = static_cast<scalar_t*>(ctx.out(0).raw());
    if (by_block(g)) output_grad_block_k<<<grid_of(g), kThreads, 0, stream_of(ctx)>>>(pdy, px, py, pdx, g, f);
    else output_grad_thread_k<<<grid_of(g), kThreads, 0, stream_of(ctx)>>>(pdy, px, py, pdx, g, f);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// ReduceOutputGrad(dy, x, y, axes?)[op]: dx from dy, the input and the output (the output and its
// gradient are indexed by the kept-dims position, which keepdims does not change).
void reduce_output_grad_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(1);
  Kind kind = reduce::kind_of(ctx, ctx.node.attr_string("op", ""));
  std::vector<int64_t> axes = reduce::node_axes(ctx, 3, x.rank());
  ReduceGeometry g = make_geometry(ctx.node, x.shape(), axes);
  OTTER_CHECK(g.outputs == ctx.in(2).numel() && ctx.in(2).numel() == ctx.in(0).numel(), ctx.node.describe(),
              ": the output and its gradient do not match the reduction of x");
  switch (kind) {
    case Kind::Max:
    case Kind::Min: launch_output_grad(ctx, g, ExtremeGrad{}); break;
    case Kind::L1: launch_output_grad(ctx, g, math::ReduceL1Grad{}); break;
    case Kind::L2: launch_output_grad(ctx, g, math::ReduceL2Grad{}); break;
    case Kind::SumSquare: launch_output_grad(ctx, g, math::ReduceSumSquareGrad{}); break;
    case Kind::LogSum: launch_output_grad(ctx, g, math::ReduceLogSumGrad{}); break;
    case Kind::LogSumExp: launch_output_grad(ctx, g, math::ReduceLogSumExpGrad{}); break;
    case Kind::Prod: launch_output_grad(ctx, g, math::ReduceProdGrad{}); break;
    default: OTTER_FAIL(ctx.node.describe(), ": no output-based gradient for this reduction");
  }
}

}  // namespace

void register_reduce_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};
  std::vector<DType> num = f;
  num.push_back(DType::Int64);
  num.push_back(DType::Int32);
  std::vector<DType> extreme = num;
  extreme.insert(extreme.end(), {DType::Int8, DType::Uint8, DType::Bool});
  const Device cuda = Device::CUDA;
  r.add("", "ReduceSum", cuda, num, reduce_kernel<Kind::Sum>);
  r.add("", "ReduceMean", cuda, num, reduce_kernel<Kind::Mean>);
  r.add("", "ReduceMax", cuda, extreme, reduce_kernel<Kind::Max>);
  r.add("", "ReduceMin", cuda, extreme, reduce_kernel<Kind::Min>);
  r.add("", "ReduceProd", cuda, num, reduce_kernel<Kind::Prod>);
  r.add("", "ReduceL1", cuda, num, reduce_kernel<Kind::L1>);
  r.add("", "ReduceL2", cuda, num, reduce_kernel<Kind::L2>);
  r.add("", "ReduceSumSquare", cuda, num, reduce_kernel<Kind::SumSquare>);
  r.add("", "ReduceLogSum", cuda, num, reduce_kernel<Kind::LogSum>);
  r.add("", "ReduceLogSumExp", cuda, num, reduce_kernel<Kind::LogSumExp>);
  r.add("otter", "ReduceGrad", cuda, f, reduce_grad_kernel);
  r.add("otter", "ReduceOutputGrad", cuda, f, reduce_output_grad_kernel);
}

}  // namespace otter::cuda
