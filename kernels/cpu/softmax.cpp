// CPU kernels for Softmax, LogSoftmax and their gradients over one axis. The tensor is viewed
// as [outer, axis, inner]; each (outer, inner) line is processed with the max subtracted first
// for stability, in parallel over outer. FP32 rows along the last axis take the vectorised path
// of kernels/cpu/vec_math.h where the CPU has AVX-512 (float exp; the generic path sums double exps).
#include <cmath>

#include "kernels/common/softmax_host.h"
#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/vec_math.h"

namespace otter::cpu {
namespace {

using softmax::AxisView;  // kernels/common/softmax_host.h
using softmax::axis_view;

// exp(d) for d = x - max <= 0, skipping std::exp where its result cannot reach the output: below
// -746 exp is 0 in double; for a float output, below -110 the term (< 2e-48) rounds to 0 after the
// division by sum >= 1 and cannot change sum either. Masked positions (-inf, or the -65504 of an
// FP16 mask) otherwise send exp down its underflow path, which costs a microcode assist per call
// on x86 (FP16 softmax steps were 7x slower than FP32 ones). Bit-identical to std::exp here.
template <class T>
inline double exp_or_zero(double d) {
  constexpr double kCut = sizeof(T) <= 4 ? -110.0 : -746.0;
  return d < kCut ? 0.0 : std::exp(d);
}

template <class T, bool Log>
void softmax_typed(const Tensor& x, Tensor& y, int64_t axis) {
  AxisView v = axis_view(x.shape(), axis);
  const T* px = x.data<T>();
  T* py = y.data<T>();
  parallel_for(v.outer, [&](int64_t b, int64_t e) {
    if constexpr (std::is_same_v<T, float>) {  // rows along the last axis: vectorised (vec_math.h)
      if (v.inner == 1 && vec_softmax_row(px + b * v.dim, py + b * v.dim, v.dim, Log)) {
        for (int64_t o = b + 1; o < e; ++o) vec_softmax_row(px + o * v.dim, py + o * v.dim, v.dim, Log);
        return;
      }
    }
    for (int64_t o = b; o < e; ++o)
      for (int64_t in = 0; in < v.inner; ++in) {
        const T* line = px + o * v.dim * v.inner + in;
        T* out = py + o * v.dim * v.inner + in;
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t k = 0; k < v.dim; ++k) mx = std::max(mx, line[k * v.inner]);
        double sum = 0;
        for (int64_t k = 0; k < v.dim; ++k) sum += exp_or_zero<T>(static_cast<double>(line[k * v.inner] - mx));
        if (Log) {
          T log_sum = static_cast<T>(std::log(sum));
          for (int64_t k = 0; k < v.dim; ++k) out[k * v.inner] = line[k * v.inner] - mx - log_sum;
        } else {
          for (int64_t k = 0; k < v.dim; ++k)
            out[k * v.inner] = static_cast<T>(exp_or_zero<T>(static_cast<double>(line[k * v.inner] - mx)) / sum);
        }
      }
  }, 64);
}

template <bool Log>
void softmax_kernel(KernelContext& ctx) {
  int64_t axis = ctx.node.attr_int("axis", -1);
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(),
                       softmax_typed<scalar_t, Log>(ctx.in(0), ctx.out(0), axis));
}

// (dy, y) -> dx. Softmax: dx = y (dy - sum(dy y)); LogSoftmax: dx = dy - exp(y) sum(dy).
template <class T, bool Log>
void softmax_grad_typed(const Tensor& dy, const Tensor& y, Tensor& dx, int64_t axis) {
  AxisView v = axis_view(y.shape(), axis);
  const T* pdy = dy.data<T>();
  const T* py = y.data<T>();
  T* pdx = dx.data<T>();
  parallel_for(v.outer, [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o)
      for (int64_t in = 0; in < v.inner; ++in) {
        int64_t base = o * v.dim * v.inner + in;
        double s = 0;
        for (int64_t k = 0; k < v.dim; ++k) {
          int64_t i = base + k * v.inner;
          s += Log ? static_cast<double>(pdy[i]) : static_cast<double>(pdy[i]) * py[i];
        }
        for (int64_t k = 0; k < v.dim; ++k) {
          int64_t i = base + k * v.inner;
          pdx[i] = Log ? static_cast<T>(pdy[i] - std::exp(static_cast<double>(py[i])) * s)
                       : static_cast<T>(py[i] * (pdy[i] - s));
        }
      }
  }, 64);
}

template <bool Log>
void softmax_grad_kernel(KernelContext& ctx) {
  int64_t axis = ctx.node.attr_int("axis", -1);
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(),
                       softmax_grad_typed<scalar_t, Log>(ctx.in(0), ctx.in(1), ctx.out(0), axis));
}

}  // namespace

void register_softmax_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64};
  r.add("", "Softmax", Device::CPU, f, softmax_kernel<false>);
  r.add("", "LogSoftmax", Device::CPU, f, softmax_kernel<true>);
  r.add("otter", "SoftmaxGrad", Device::CPU, f, softmax_grad_kernel<false>);
  r.add("otter", "LogSoftmaxGrad", Device::CPU, f, softmax_grad_kernel<true>);
}

}  // namespace otter::cpu
