// CPU kernels for SoftmaxCrossEntropyLoss, NegativeLogLikelihoodLoss and their gradients.
// Scores are [N, C, d1, ...] viewed as [N, C, D]; labels [N, D]. A label equal to ignore_index
// contributes nothing and is left out of the mean's denominator (ONNX semantics); any other
// label outside [0, C) is an error that names it. FP32 takes the vectorised log-softmax and exp of
// kernels/cpu/vec_math.h where the CPU has AVX-512, with the same bits for contiguous classes
// ([N, C]) and strided ones ([N, C, D], e.g. a language model's [batch, vocab, time] scores).
#include <cmath>

#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/vec_math.h"
#include "runtime/core/convert.h"

namespace otter::cpu {
namespace {

struct ClassLayout {
  int64_t n = 0, c = 0, d = 1;
};

ClassLayout class_layout(const Shape& x) {
  ClassLayout l;
  l.n = x[0];
  l.c = x[1];
  for (size_t i = 2; i < x.size(); ++i) l.d *= x[i];
  return l;
}

// Per-sample weight (0 if ignored), validating labels; returns the sum of weights.
template <class T>
double sample_weights(const KernelContext& ctx, const Tensor& labels, const Tensor* class_weights,
                      const ClassLayout& l, std::vector<T>& w, std::vector<int64_t>& t) {
  t = labels.to_int64_vector();
  bool has_ignore = ctx.node.has_attr("ignore_index");
  int64_t ignore = ctx.node.attr_int("ignore_index", 0);
  const T* cw = class_weights ? class_weights->data<T>() : nullptr;
  w.assign(t.size(), T(1));
  double total = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    if (has_ignore && t[i] == ignore) { w[i] = T(0); continue; }
    OTTER_CHECK(t[i] >= 0 && t[i] < l.c, ctx.node.describe(), ": label ", t[i], " at position ", i,
                " is out of range [0, ", l.c, ")");
    if (cw) w[i] = cw[t[i]];
    total += static_cast<double>(w[i]);
  }
  return total;
}

template <class T>
void write_reduced(const KernelContext& ctx, const std::vector<T>& per_sample, double weight_sum, Tensor& out) {
  std::string reduction = ctx.node.attr_string("reduction", "mean");
  T* po = out.data<T>();
  if (reduction == "none") {
    std::copy(per_sample.begin(), per_sample.end(), po);
    return;
  }
  double s = 0;
  for (T v : per_sample) s += static_cast<double>(v);
  po[0] = static_cast<T>(reduction == "sum" ? s : s / weight_sum);
}

template <class T>
void sce_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  ClassLayout l = class_layout(x.shape());
  Tensor scratch;
  Tensor* log_prob = ctx.has_output(1) ? &ctx.out(1) : nullptr;
  if (!log_prob) { scratch = Tensor(x.dtype(), x.shape()); log_prob = &scratch; }
  const T* px = x.data<T>();
  T* lp = log_prob->data<T>();
  // FP32: log-softmax per row of contiguous classes, or down the columns of each item's [C, D]
  // block, with the same bits (vec_math.h); items on all threads (each is its own arithmetic).
  bool vectorised = false;
  if constexpr (std::is_same_v<T, float>) {
    const int64_t item = l.c * l.d;
    if (host_avx512() && item > 0) {
      parallel_for(l.n, [&](int64_t b, int64_t e) {
        for (int64_t n = b; n < e; ++n) {
          if (l.d == 1) vec_softmax_row(px + n * item, lp + n * item, l.c, true);
          else vec_log_softmax_columns(px + n * item, lp + n * item, l.c, l.d);
        }
      }, std::max<int64_t>(1, 32768 / item));
      vectorised = true;
    }
  }
  if (!vectorised)
    for (int64_t n = 0; n < l.n; ++n)
      for (int64_t d = 0; d < l.d; ++d) {
        const T* line = px + n * l.c * l.d + d;
        T* out = lp + n * l.c * l.d + d;
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t c = 0; c < l.c; ++c) mx = std::max(mx, line[c * l.d]);
        double sum = 0;
        for (int64_t c = 0; c < l.c; ++c) sum += std::exp(static_cast<double>(line[c * l.d] - mx));
        T ls = static_cast<T>(std::log(sum));
        for (int64_t c = 0; c < l.c; ++c) out[c * l.d] = line[c * l.d] - mx - ls;
      }
  std::vector<T> w;
  std::vector<int64_t> t;
  double wsum = sample_weights<T>(ctx, ctx.in(1), ctx.has_input(2) ? &ctx.in(2) : nullptr, l, w, t);
  std::vector<T> per(t.size());
  for (int64_t n = 0; n < l.n; ++n)
    for (int64_t d = 0; d < l.d; ++d) {
      size_t i = static_cast<size_t>(n * l.d + d);
      per[i] = w[i] == T(0) ? T(0) : -w[i] * lp[n * l.c * l.d + t[i] * l.d + d];
    }
  write_reduced<T>(ctx, per, wsum, ctx.out(0));
}

template <class T>
void nll_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  ClassLayout l = class_layout(x.shape());
  const T* px = x.data<T>();
  std::vector<T> w;
  std::vector<int64_t> t;
  double wsum = sample_weights<T>(ctx, ctx.in(1), ctx.has_input(2) ? &ctx.in(2) : nullptr, l, w, t);
  std::vector<T> per(t.size());
  for (int64_t n = 0; n < l.n; ++n)
    for (int64_t d = 0; d < l.d; ++d) {
      size_t i = static_cast<size_t>(n * l.d + d);
      per[i] = w[i] == T(0) ? T(0) : -w[i] * px[n * l.c * l.d + t[i] * l.d + d];
    }
  write_reduced<T>(ctx, per, wsum, ctx.out(0));
}

// The factor each sample's gradient is scaled by: dy (none), dy (sum), dy / sum(w) (mean).
template <class T>
std::vector<T> upstream_factors(const KernelContext& ctx, const Tensor& dy, size_t count, double weight_sum) {
  std::string reduction = ctx.node.attr_string("reduction", "mean");
  const T* pdy = dy.data<T>();
  std::vector<T> f(count);
  for (size_t i = 0; i < count; ++i)
    f[i] = reduction == "none" ? pdy[i] : (reduction == "sum" ? pdy[0] : static_cast<T>(pdy[0] / weight_sum));
  return f;
}

// (dy, log_prob, labels, weights?) -> dscores = f * w[t] * (softmax - onehot(t))
template <class T>
void sce_grad_typed(KernelContext& ctx) {
  const Tensor& lp = ctx.in(1);
  ClassLayout l = class_layout(lp.shape());
  std::vector<T> w;
  std::vector<int64_t> t;
  double wsum = sample_weights<T>(ctx, ctx.in(2), ctx.has_input(3) ? &ctx.in(3) : nullptr, l, w, t);
  std::vector<T> f = upstream_factors<T>(ctx, ctx.in(0), t.size(), wsum);
  const T* plp = lp.data<T>();
  T* pdx = ctx.out(0).data<T>();
  if constexpr (std::is_same_v<T, float>) {  // softmax = exp(log_prob), vectorised over the whole tensor
    if (host_avx512()) {
      std::vector<T> scale(t.size());
      for (size_t i = 0; i < t.size(); ++i) scale[i] = w[i] * f[i];
      const int64_t item = l.c * l.d;
      parallel_for(l.n, [&](int64_t b, int64_t e) {  // items on all threads (elementwise: same bits)
        vec_exp(plp + b * item, pdx + b * item, (e - b) * item);
        for (int64_t n = b; n < e; ++n)
          for (int64_t c = 0; c < l.c; ++c) {  // in memory order: class c of item n's D columns
            T* row = pdx + (n * l.c + c) * l.d;
            const size_t i0 = static_cast<size_t>(n * l.d);
            for (int64_t d = 0; d < l.d; ++d) {
              const T s = scale[i0 + static_cast<size_t>(d)];
              row[d] = s == T(0) ? T(0) : s * (row[d] - (c == t[i0 + static_cast<size_t>(d)] ? T(1) : T(0)));
            }
          }
      }, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, item)));
      return;
    }
  }
  for (int64_t n = 0; n < l.n; ++n)
    for (int64_t d = 0; d < l.d; ++d) {
      size_t i = static_cast<size_t>(n * l.d + d);
      T scale = w[i] * f[i];
      for (int64_t c = 0; c < l.c; ++c) {
        int64_t k = n * l.c * l.d + c * l.d + d;
        T p = static_cast<T>(std::exp(static_cast<double>(plp[k])));
        pdx[k] = scale == T(0) ? T(0) : scale * (p - (c == t[i] ? T(1) : T(0)));
      }
    }
}

// (dy, target, x, weight?) -> dx = -f * w[t] at the target class, 0 elsewhere
template <class T>
void nll_grad_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(2);
  ClassLayout l = class_layout(x.shape());
  std::vector<T> w;
  std::vector<int64_t> t;
  double wsum = sample_weights<T>(ctx, ctx.in(1), ctx.has_input(3) ? &ctx.in(3) : nullptr, l, w, t);
  std::vector<T> f = upstream_factors<T>(ctx, ctx.in(0), t.size(), wsum);
  T* pdx = ctx.out(0).data<T>();
  std::fill(pdx, pdx + x.numel(), T(0));
  for (int64_t n = 0; n < l.n; ++n)
    for (int64_t d = 0; d < l.d; ++d) {
      size_t i = static_cast<size_t>(n * l.d + d);
      if (w[i] != T(0)) pdx[n * l.c * l.d + t[i] * l.d + d] = -w[i] * f[i];
    }
}

void sce_kernel(KernelContext& ctx) { OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), sce_typed<scalar_t>(ctx)); }
void nll_kernel(KernelContext& ctx) { OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), nll_typed<scalar_t>(ctx)); }
void sce_grad_kernel(KernelContext& ctx) { OTTER_DISPATCH_FLOAT(ctx.in(1).dtype(), ctx.node.describe(), sce_grad_typed<scalar_t>(ctx)); }
void nll_grad_kernel(KernelContext& ctx) { OTTER_DISPATCH_FLOAT(ctx.in(2).dtype(), ctx.node.describe(), nll_grad_typed<scalar_t>(ctx)); }

}  // namespace

void register_loss_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64};
  r.add("", "SoftmaxCrossEntropyLoss", Device::CPU, f, sce_kernel);
  r.add("", "NegativeLogLikelihoodLoss", Device::CPU, f, nll_kernel);
  r.add("otter", "SoftmaxCrossEntropyLossGrad", Device::CPU, f, sce_grad_kernel);
  r.add("otter", "NegativeLogLikelihoodLossGrad", Device::CPU, f, nll_grad_kernel);
}

}  // namespace otter::cpu
