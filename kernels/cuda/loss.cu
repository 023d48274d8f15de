// CUDA kernels for the loss family: SoftmaxCrossEntropyLoss, NegativeLogLikelihoodLoss and their
// gradients, with the CPU's semantics (kernels/cpu/loss.cpp). The scores are viewed as [N, C, D];
// one warp computes each sample's log-softmax line, per-sample losses and the sum of weights are
// reduced by one block in a fixed order (deterministic). A label outside [0, C) that is not
// ignore_index sets a device flag that the host reads after the launch (a stream sync), unless the
// caller checked the labels on the host first (training sessions on CUDA do, so their steps never
// wait: KernelContext::checked_inputs). FP16/BF16/FP32 compute in FP32, FP64 in FP64.
#include <cmath>
#include <string>

#include "kernels/cuda/warp_reduce.cuh"

namespace otter::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// Losses. Scores [N, C, d...] are [N, C, D]; labels [N, D] (sample i = n * D + d).

struct ClassLayout {
  int64_t n = 0, c = 0, d = 1;
  int64_t samples() const { return n * d; }
};

ClassLayout class_layout(const Shape& x) {
  ClassLayout l;
  l.n = x[0];
  l.c = x[1];
  for (size_t i = 2; i < x.size(); ++i) l.d *= x[i];
  return l;
}

enum class Reduction { None, Sum, Mean };

Reduction reduction_of(const KernelContext& ctx) {
  std::string r = ctx.node.attr_string("reduction", "mean");
  if (r == "none") return Reduction::None;
  if (r == "sum") return Reduction::Sum;
  OTTER_CHECK(r == "mean", ctx.node.describe(), ": unknown reduction '", r, "'");
  return Reduction::Mean;
}

// How labels are read: ignore_index (when the node has one) and the class count.
struct LabelRule {
  bool has_ignore = false;
  int64_t ignore = 0;
  int64_t classes = 0;
  int64_t samples = 0;
  unsigned long long* bad = nullptr;  // samples - (first bad position), 0 when none
};

LabelRule label_rule(const KernelContext& ctx, const ClassLayout& l, unsigned long long* bad) {
  LabelRule r;
  r.has_ignore = ctx.node.has_attr("ignore_index");
  r.ignore = ctx.node.attr_int("ignore_index", 0);
  r.classes = l.c;
  r.samples = l.samples();
  r.bad = bad;
  return r;
}

// The weight of sample i (0 when ignored or out of range, which is flagged) and its label.
template <class C, class L, class W>
__device__ __forceinline__ C sample_weight(const L* labels, const W* cw, int64_t i, const LabelRule& r, int64_t* t) {
  int64_t label = static_cast<int64_t>(labels[i]);
  *t = label;
  if (r.has_ignore && label == r.ignore) return C(0);
  if (label < 0 || label >= r.classes) {
    atomicMax(r.bad, static_cast<unsigned long long>(r.samples - i));  // the first bad position wins
    return C(0);
  }
  return cw ? static_cast<C>(load(cw, label)) : C(1);
}

// A zeroed device flag for out-of-range labels, and its check (synchronises the stream, unless the
// caller checked the labels on the host: KernelContext::checked_inputs).
struct BadLabelFlag {
  Tensor flag{DType::Int64, {1}, Device::CUDA};
  unsigned long long* ptr() { return static_cast<unsigned long long*>(flag.raw()); }
  void check(const KernelContext& ctx, const Tensor& labels, const ClassLayout& l) {
    if (ctx.input_checked(1)) return;  // checked on the host before the upload (device sessions)
    int64_t v = flag.to(Device::CPU).to_int64_vector()[0];  // host sync (acceptable for the losses for now)
    if (v == 0) return;
    int64_t pos = l.samples() - v;
    int64_t label = labels.to(Device::CPU).to_int64_vector().at(static_cast<size_t>(pos));
    OTTER_FAIL(ctx.node.describe(), ": label ", label, " at position ", pos, " is out of range [0, ", l.c, ")");
  }
};

// Sum (or mean over the summed weights) of per-sample losses, by one block in a fixed order.
template <class T, class C, class L>
__global__ void finish_loss_k(const C* per, const L* labels, const T* cw, LabelRule r, bool mean, T* out) {
  __shared__ C buf[kThreads];
  C s = 0, w = 0;
  for (int64_t i = threadIdx.x; i < r.samples; i += blockDim.x) {
    s += per[i];
    if (mean) {
      int64_t label = static_cast<int64_t>(labels[i]);
      if ((r.has_ignore && label == r.ignore) || label < 0 || label >= r.classes) continue;
      w += cw ? static_cast<C>(load(cw, label)) : C(1);
    }
  }
  s = block_sum(s, buf);
  if (mean) w = block_sum(w, buf);
  if (threadIdx.x == 0) store(out, 0, mean ? s / w : s);
}

// SoftmaxCrossEntropyLoss: one warp per sample line: log-softmax over the classes (written to
// log_prob when present), then the sample's loss -w[t] * log_prob[t] (0 when ignored).
template <class T, class L>
__global__ void sce_k(const T* x, const L* labels, const T* cw, T* log_prob, T* out_none,
                      typename Compute<T>::type* per, LabelRule r, int64_t depth) {
  using C = typename Compute<T>::type;
  const int64_t classes = r.classes;
  WARP_STRIDE(i, r.samples) {
    int64_t base = (i / depth) * classes * depth + i % depth;
    C mx = C(-INFINITY);
    for (int64_t k = lane; k < classes; k += 32) {
      C v = static_cast<C>(load(x, base + k * depth));
      mx = v > mx ? v : mx;
    }
    mx = warp_max(mx);
    C s = 0;
    for (int64_t k = lane; k < classes; k += 32) s += dexp(static_cast<C>(load(x, base + k * depth)) - mx);
    s = warp_sum(s);
    C ls = dlog(s);
    if (log_prob)
      for (int64_t k = lane; k < classes; k += 32) {
        int64_t j = base + k * depth;
        store(log_prob, j, static_cast<C>(load(x, j)) - mx - ls);
      }
    if (lane == 0) {
      int64_t t = 0;
      C w = sample_weight<C>(labels, cw, i, r, &t);
      C loss = w == C(0) ? C(0) : -w * (static_cast<C>(load(x, base + t * depth)) - mx - ls);
      if (out_none) store(out_none, i, loss);
      else per[i] = loss;
    }
  }
}

// NegativeLogLikelihoodLoss: one thread per sample, -w[t] * x[n, t, d] (0 when ignored).
template <class T, class L>
__global__ void nll_k(const T* x, const L* labels, const T* cw, T* out_none, typename Compute<T>::type* per,
                      LabelRule r, int64_t depth) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, r.samples) {
    int64_t t = 0;
    C w = sample_weight<C>(labels, cw, i, r, &t);
    C loss = w == C(0) ? C(0) : -w * static_cast<C>(load(x, (i / depth) * r.classes * depth + t * depth + i % depth));
    if (out_none) store(out_none, i, loss);
    else per[i] = loss;
  }
}

template <class T, class L, bool Softmax>
void class_loss_typed(KernelContext& ctx) {
  using C = typename Compute<T>::type;
  const Tensor& x = ctx.in(0);
  const Tensor& labels = ctx.in(1);
  ClassLayout l = class_layout(x.shape());
  Reduction red = reduction_of(ctx);
  const T* cw = nullptr;
  if (ctx.has_input(2)) {
    OTTER_CHECK(ctx.in(2).dtype() == x.dtype(), ctx.node.describe(), ": weights must have the scores' dtype");
    cw = static_cast<const T*>(ctx.in(2).raw());
  }
  T* log_prob = Softmax && ctx.has_output(1) ? static_cast<T*>(ctx.out(1).raw()) : nullptr;
  Tensor& out = ctx.out(0);
  BadLabelFlag bad;
  LabelRule rule = label_rule(ctx, l, bad.ptr());
  int64_t samples = l.samples();
  Tensor per_buf;
  C* per = nullptr;
  T* out_none = nullptr;
  if (red == Reduction::None) out_none = static_cast<T*>(out.raw());
  else if (samples > 0) {
    per_buf = Tensor(DTypeOf<C>::value, {samples}, Device::CUDA);
    per = static_cast<C*>(per_buf.raw());
  }
  const L* pl = static_cast<const L*>(labels.raw());
  const T* px = static_cast<const T*>(x.raw());
  cudaStream_t st = stream_of(ctx);
  if (samples > 0) {
    if constexpr (Softmax)
      sce_k<T, L><<<blocks_for_lines(samples), kThreads, 0, st>>>(px, pl, cw, log_prob, out_none, per, rule, l.d);
    else
      nll_k<T, L><<<blocks_for(samples), kThreads, 0, st>>>(px, pl, cw, out_none, per, rule, l.d);
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  }
  if (red != Reduction::None) {  // no samples: sum 0, mean 0 / 0 (NaN), as on the CPU
    finish_loss_k<T, C, L><<<1, kThreads, 0, st>>>(per, pl, cw, rule, red == Reduction::Mean, static_cast<T*>(out.raw()));
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  }
  bad.check(ctx, labels, l);
}

// The sum of the sample weights (validating labels), by one block in a fixed order.
template <class T, class C, class L>
__global__ void weight_sum_k(const L* labels, const T* cw, LabelRule r, C* wsum) {
  __shared__ C buf[kThreads];
  C w = 0;
  for (int64_t i = threadIdx.x; i < r.samples; i += blockDim.x) {
    int64_t t = 0;
    w += sample_weight<C>(labels, cw, i, r, &t);
  }
  w = block_sum(w, buf);
  if (threadIdx.x == 0) *wsum = w;
}

// The factor sample i's gradient is scaled by: dy[i] (none), dy (sum), dy / sum(w) (mean).
template <class T, class C>
__device__ __forceinline__ C upstream(const T* dy, int64_t i, Reduction red, const C* wsum) {
  if (red == Reduction::None) return static_cast<C>(load(dy, i));
  if (red == Reduction::Sum) return static_cast<C>(load(dy, 0));
  return static_cast<C>(load(dy, 0)) / *wsum;
}

// dscores[n, c, d] = f * w[t] * (exp(log_prob) - [c == t]) (0 when the scale is 0).
template <class T, class L>
__global__ void sce_grad_k(const T* dy, const T* log_prob, const L* labels, const T* cw, T* dx, int64_t n,
                           LabelRule r, int64_t depth, Reduction red, const typename Compute<T>::type* wsum) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(k, n) {
    int64_t d = k % depth, c = (k / depth) % r.classes, i = (k / depth / r.classes) * depth + d;
    int64_t t = 0;
    C w = sample_weight<C>(labels, cw, i, r, &t);
    C scale = w * upstream<T, C>(dy, i, red, wsum);
    C p = dexp(static_cast<C>(load(log_prob, k)));
    store(dx, k, scale == C(0) ? C(0) : scale * (p - (c == t ? C(1) : C(0))));
  }
}

// dx[n, c, d] = -f * w[t] at c == t, 0 elsewhere.
template <class T, class L>
__global__ void nll_grad_k(const T* dy, const L* labels, const T* cw, T* dx, int64_t n, LabelRule r, int64_t depth,
                           Reduction red, const typename Compute<T>::type* wsum) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(k, n) {
    int64_t d = k % depth, c = (k / depth) % r.classes, i = (k / depth / r.classes) * depth + d;
    int64_t t = 0;
    C w = sample_weight<C>(labels, cw, i, r, &t);
    store(dx, k, w != C(0) && c == t ? -w * upstream<T, C>(dy, i, red, wsum) : C(0));
  }
}

// SoftmaxCrossEntropyLossGrad (dy, log_prob, labels, weights?) and NegativeLogLikelihoodLossGrad
// (dy, target, x, weight?) where x is read for its shape only (it may come without data).
template <class T, class L, bool Softmax>
void class_loss_grad_typed(KernelContext& ctx) {
  using C = typename Compute<T>::type;
  const Tensor& dy = ctx.in(0);
  const Tensor& ref = Softmax ? ctx.in(1) : ctx.in(2);  // log_prob / x: the dx layout
  const Tensor& labels = Softmax ? ctx.in(2) : ctx.in(1);
  size_t weight_input = 3;
  OTTER_CHECK(dy.dtype() == ref.dtype(), ctx.node.describe(), ": dy is ", dtype_name(dy.dtype()), " but the scores are ",
              dtype_name(ref.dtype()));
  ClassLayout l = class_layout(ref.shape());
  Reduction red = reduction_of(ctx);
  const T* cw = nullptr;
  if (ctx.has_input(weight_input)) {
    OTTER_CHECK(ctx.in(weight_input).dtype() == ref.dtype(), ctx.node.describe(), ": weights must have the scores' dtype");
    cw = static_cast<const T*>(ctx.in(weight_input).raw());
  }
  BadLabelFlag bad;
  LabelRule rule = label_rule(ctx, l, bad.ptr());
  Tensor wsum_buf(DTypeOf<C>::value, {1}, Device::CUDA);
  C* wsum = static_cast<C*>(wsum_buf.raw());
  const L* pl = static_cast<const L*>(labels.raw());
  cudaStream_t st = stream_of(ctx);
  weight_sum_k<T, C, L><<<1, kThreads, 0, st>>>(pl, cw, rule, wsum);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  int64_t n = ctx.out(0).numel();
  if (n > 0) {
    const T* pdy = static_cast<const T*>(dy.raw());
    T* pdx = static_cast<T*>(ctx.out(0).raw());
    if constexpr (Softmax)
      sce_grad_k<T, L><<<blocks_for(n), kThreads, 0, st>>>(pdy, static_cast<const T*>(ref.raw()), pl, cw, pdx, n, rule,
                                                             l.d, red, wsum);
    else
      nll_grad_k<T, L><<<blocks_for(n), kThreads, 0, st>>>(pdy, pl, cw, pdx, n, rule, l.d, red, wsum);
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  }
  bad.check(ctx, labels, l);
}

// Dispatch on the key dtype (scores: input 0; grads: the kernel_type_input) and the label dtype.
template <bool Softmax, bool Grad>
void class_loss_kernel(KernelContext& ctx) {
  const Tensor& key = Grad ? (Softmax ? ctx.in(1) : ctx.in(2)) : ctx.in(0);
  const Tensor& labels = Grad ? (Softmax ? ctx.in(2) : ctx.in(1)) : ctx.in(1);
  OTTER_CHECK(key.rank() >= 2, ctx.node.describe(), ": scores must be [N, C, ...]");
  OTTER_CUDA_DISPATCH_FLOAT(key.dtype(), ctx.node.describe(), {
    if (labels.dtype() == DType::Int64) {
      if constexpr (Grad) class_loss_grad_typed<scalar_t, int64_t, Softmax>(ctx);
      else class_loss_typed<scalar_t, int64_t, Softmax>(ctx);
    } else if (labels.dtype() == DType::Int32) {
      if constexpr (Grad) class_loss_grad_typed<scalar_t, int32_t, Softmax>(ctx);
      else class_loss_typed<scalar_t, int32_t, Softmax>(ctx);
    } else {
      OTTER_FAIL(ctx.node.describe(), ": labels must be int32 or int64, got ", dtype_name(labels.dtype()));
    }
  });
}


}  // namespace

void register_loss_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};
  const Device cuda = Device::CUDA;
  r.add("", "SoftmaxCrossEntropyLoss", cuda, f, class_loss_kernel<true, false>);
  r.add("", "NegativeLogLikelihoodLoss", cuda, f, class_loss_kernel<false, false>);
  r.add("otter", "SoftmaxCrossEntropyLossGrad", cuda, f, class_loss_kernel<true, true>);
  r.add("otter", "NegativeLogLikelihoodLossGrad", cuda, f, class_loss_kernel<false, true>);
}

}  // namespace otter::cuda
