// CPU kernels for the reductions (ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd,
// ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum, ReduceLogSumExp) and their gradients
// (otter.ReduceGrad, otter.ReduceOutputGrad). Every output element is reduced independently
// (parallel over outputs) from a precomputed layout of the input offsets it covers. Sums and
// products accumulate in double so that a float32 reduction over many elements keeps its
// precision; ReduceLogSumExp subtracts the maximum first. A reduction over no axes
// (noop_with_empty_axes) is the reduction of each element alone, as in the ONNX reference: the
// input for Sum/Mean/Max/Min/Prod, |x| for L1 and L2, x^2 for SumSquare, log x for LogSum.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include "kernels/common/elementwise_math.h"
#include "kernels/common/reduce_host.h"
#include "kernels/cpu/cpu_common.h"

namespace otter::cpu {
namespace {

using reduce::Kind;

// The flat offsets of every index of `dims` laid out with `strides`, in row-major order.
std::vector<int64_t> offsets(const Shape& dims, const std::vector<int64_t>& strides) {
  int64_t n = shape_numel(dims);
  std::vector<int64_t> r(static_cast<size_t>(n));
  std::vector<int64_t> index(dims.size(), 0);
  int64_t off = 0;
  for (int64_t i = 0; i < n; ++i) {
    r[static_cast<size_t>(i)] = off;
    for (int64_t k = static_cast<int64_t>(dims.size()) - 1; k >= 0; --k) {
      off += strides[k];
      if (++index[k] < dims[k]) break;
      off -= strides[k] * dims[k];
      index[k] = 0;
    }
  }
  return r;
}

// Which input elements each output element reduces: output o covers base[o] + start + t for each
// start in `starts` and t in [0, run) (the trailing reduced axes are contiguous: one run).
struct Layout {
  std::vector<int64_t> bases;
  std::vector<int64_t> starts;
  int64_t run = 1;
  int64_t count = 0;  // elements per output

  int64_t outputs() const { return static_cast<int64_t>(bases.size()); }
  template <class Fn>
  void visit(int64_t o, Fn fn) const {
    int64_t base = bases[static_cast<size_t>(o)];
    for (int64_t s : starts)
      for (int64_t t = 0, b = base + s; t < run; ++t) fn(b + t);
  }
  // Items per thread for parallel_for over outputs.
  int64_t grain() const { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, count)); }
};

Layout make_layout(const Shape& in, const std::vector<int64_t>& axes) {
  int64_t rank = static_cast<int64_t>(in.size());
  std::vector<int64_t> strides = shape_strides(in);
  std::vector<bool> reduced(in.size(), false);
  for (int64_t a : axes) reduced[a] = true;
  Shape outer = in, inner(in.size(), 1);
  for (int64_t k = 0; k < rank; ++k)
    if (reduced[k]) { outer[k] = 1; inner[k] = in[k]; }
  Layout l;
  for (int64_t k = rank - 1; k >= 0 && (reduced[k] || in[k] == 1); --k) {
    l.run *= in[k];
    inner[k] = 1;
  }
  l.bases = offsets(outer, strides);
  l.starts = offsets(inner, strides);
  l.count = l.run * static_cast<int64_t>(l.starts.size());
  return l;
}

Layout node_layout(const KernelContext& ctx, size_t axes_input, const Shape& in) {
  return make_layout(in, reduce::node_axes(ctx, axes_input, static_cast<int64_t>(in.size())));
}

template <class T>
T lowest_value() {
  return std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::lowest();
}
template <class T>
T highest_value() {
  return std::numeric_limits<T>::has_infinity ? std::numeric_limits<T>::infinity() : std::numeric_limits<T>::max();
}

// The double accumulator as the output type. An integer output saturates (a product or a
// LogSum of zero leaves the range; the cast itself would be undefined); the NaN of an empty mean
// is refused before the loop (reduce_typed).
template <class T>
T result_as(double acc) {
  if constexpr (std::is_integral_v<T>) {
    if (std::isnan(acc)) return T(0);
    if (acc <= static_cast<double>(std::numeric_limits<T>::lowest())) return std::numeric_limits<T>::lowest();
    if (acc >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  }
  return static_cast<T>(acc);
}

// Max/Min keep the input type (exact for integers, NaN propagates); the others go through double.
template <class T>
T reduce_one(Kind kind, const Layout& l, int64_t o, const T* x) {
  if (kind == Kind::Max || kind == Kind::Min) {
    bool max = kind == Kind::Max;
    T acc = max ? lowest_value<T>() : highest_value<T>();
    l.visit(o, [&](int64_t i) {
      T v = x[i];
      if (v != v || (max ? v > acc : v < acc)) acc = v;
    });
    return acc;
  }
  double acc = 0;
  switch (kind) {
    case Kind::Sum:
    case Kind::Mean:
    case Kind::LogSum: l.visit(o, [&](int64_t i) { acc += static_cast<double>(x[i]); }); break;
    case Kind::L1: l.visit(o, [&](int64_t i) { acc += std::fabs(static_cast<double>(x[i])); }); break;
    case Kind::L2:
    case Kind::SumSquare:
      l.visit(o, [&](int64_t i) { double v = static_cast<double>(x[i]); acc += v * v; });
      break;
    case Kind::Prod:
      acc = 1;
      l.visit(o, [&](int64_t i) { acc *= static_cast<double>(x[i]); });
      break;
    case Kind::LogSumExp: {
      double m = -std::numeric_limits<double>::infinity();
      l.visit(o, [&](int64_t i) { m = std::max(m, static_cast<double>(x[i])); });
      if (!std::isfinite(m)) { acc = m; break; }  // empty or all -inf: -inf; any +inf: +inf
      double s = 0;
      l.visit(o, [&](int64_t i) { s += std::exp(static_cast<double>(x[i]) - m); });
      acc = m + std::log(s);
      break;
    }
    default: break;
  }
  if (kind == Kind::Mean) acc = l.count ? acc / static_cast<double>(l.count) : std::nan("");
  if (kind == Kind::L2) acc = std::sqrt(acc);
  if (kind == Kind::LogSum) acc = std::log(acc);
  return result_as<T>(acc);
}

template <class T>
void reduce_typed(KernelContext& ctx, Kind kind) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  Layout l = node_layout(ctx, 1, x.shape());
  OTTER_CHECK(l.outputs() == y.numel(), ctx.node.describe(), ": output has ", y.numel(), " elements, expected ",
              l.outputs());
  if constexpr (std::is_integral_v<T>)
    OTTER_CHECK(kind != Kind::Mean || l.count > 0 || l.outputs() == 0, ctx.node.describe(), ": the mean of an empty ",
                dtype_name(x.dtype()), " set (input ", shape_str(x.shape()), ") has no integer value");
  const T* px = x.data<T>();
  T* py = y.data<T>();
  parallel_for(l.outputs(), [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) py[o] = reduce_one<T>(kind, l, o, px);
  }, l.grain());
}

template <Kind K>
void reduce_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_NUMERIC(ctx.in(0).dtype(), ctx.node.describe(), reduce_typed<scalar_t>(ctx, K));
}

template <Kind K>
void reduce_extreme_kernel(KernelContext& ctx) {  // ReduceMax / ReduceMin also take bool
  OTTER_DISPATCH_ALL(ctx.in(0).dtype(), ctx.node.describe(), reduce_typed<scalar_t>(ctx, K));
}

// ReduceGrad(dy, x, axes?): dx[i] = dy[reduced index of i] (/ count for the mean).
void reduce_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  const Tensor& x = ctx.in(1);
  Tensor& dx = ctx.out(0);
  Layout l = node_layout(ctx, 2, x.shape());
  bool mean = ctx.node.attr_int("mean", 0) != 0;
  OTTER_DISPATCH_FLOAT(dy.dtype(), ctx.node.describe(), {
    const scalar_t* pdy = dy.data<scalar_t>();
    scalar_t* pdx = dx.data<scalar_t>();
    scalar_t scale = mean && l.count ? scalar_t(1) / static_cast<scalar_t>(l.count) : scalar_t(1);
    parallel_for(l.outputs(), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        scalar_t d = pdy[o] * scale;
        l.visit(o, [&](int64_t i) { pdx[i] = d; });
      }
    }, l.grain());
  });
}

template <class T, class F>
void output_grad_loop(const Layout& l, int64_t o, const T* x, T y, T dy, T* dx, F f) {
  l.visit(o, [&](int64_t i) { dx[i] = f(x[i], y, dy); });
}

// ReduceOutputGrad(dy, x, y, axes?)[op]: dx from dy, the input and the output (the output and its
// gradient are indexed by the kept-dims position, which keepdims does not change).
void reduce_output_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  const Tensor& x = ctx.in(1);
  const Tensor& y = ctx.in(2);
  Tensor& dx = ctx.out(0);
  Kind kind = reduce::kind_of(ctx, ctx.node.attr_string("op", ""));
  Layout l = node_layout(ctx, 3, x.shape());
  OTTER_CHECK(l.outputs() == y.numel() && y.numel() == dy.numel(), ctx.node.describe(),
              ": the output and its gradient do not match the reduction of x");
  OTTER_DISPATCH_FLOAT(dy.dtype(), ctx.node.describe(), {
    const scalar_t* pdy = dy.data<scalar_t>();
    const scalar_t* px = x.data<scalar_t>();
    const scalar_t* py = y.data<scalar_t>();
    scalar_t* pdx = dx.data<scalar_t>();
    parallel_for(l.outputs(), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        scalar_t d = pdy[o], v = py[o];
        switch (kind) {
          case Kind::Max:
          case Kind::Min: {
            int64_t ties = 0;
            l.visit(o, [&](int64_t i) { ties += px[i] == v; });
            scalar_t inv = ties ? scalar_t(1) / static_cast<scalar_t>(ties) : scalar_t(0);
            l.visit(o, [&](int64_t i) { pdx[i] = math::extreme_grad(px[i], v, d, inv); });
            break;
          }
          case Kind::L1: output_grad_loop(l, o, px, v, d, pdx, math::ReduceL1Grad{}); break;
          case Kind::L2: output_grad_loop(l, o, px, v, d, pdx, math::ReduceL2Grad{}); break;
          case Kind::SumSquare: output_grad_loop(l, o, px, v, d, pdx, math::ReduceSumSquareGrad{}); break;
          case Kind::LogSum: output_grad_loop(l, o, px, v, d, pdx, math::ReduceLogSumGrad{}); break;
          case Kind::LogSumExp: output_grad_loop(l, o, px, v, d, pdx, math::ReduceLogSumExpGrad{}); break;
          case Kind::Prod: output_grad_loop(l, o, px, v, d, pdx, math::ReduceProdGrad{}); break;
          default: OTTER_FAIL(ctx.node.describe(), ": no output-based gradient for this reduction");
        }
      }
    }, l.grain());
  });
}

}  // namespace

void register_reduce_kernels(KernelRegistry& r) {
  const std::vector<DType> num = {DType::Float32, DType::Float64, DType::Int64, DType::Int32};
  const std::vector<DType> extreme = {DType::Float32, DType::Float64, DType::Int64, DType::Int32,
                                      DType::Int8,    DType::Uint8,   DType::Bool};
  const std::vector<DType> f = {DType::Float32, DType::Float64};
  const Device cpu = Device::CPU;
  r.add("", "ReduceSum", cpu, num, reduce_kernel<Kind::Sum>);
  r.add("", "ReduceMean", cpu, num, reduce_kernel<Kind::Mean>);
  r.add("", "ReduceMax", cpu, extreme, reduce_extreme_kernel<Kind::Max>);
  r.add("", "ReduceMin", cpu, extreme, reduce_extreme_kernel<Kind::Min>);
  r.add("", "ReduceProd", cpu, num, reduce_kernel<Kind::Prod>);
  r.add("", "ReduceL1", cpu, num, reduce_kernel<Kind::L1>);
  r.add("", "ReduceL2", cpu, num, reduce_kernel<Kind::L2>);
  r.add("", "ReduceSumSquare", cpu, num, reduce_kernel<Kind::SumSquare>);
  r.add("", "ReduceLogSum", cpu, num, reduce_kernel<Kind::LogSum>);
  r.add("", "ReduceLogSumExp", cpu, num, reduce_kernel<Kind::LogSumExp>);
  r.add("otter", "ReduceGrad", cpu, f, reduce_grad_kernel);
  r.add("otter", "ReduceOutputGrad", cpu, f, reduce_output_grad_kernel);
}

}  // namespace otter::cpu
