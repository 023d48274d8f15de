// CPU kernels of the ONNX training ops (ai.onnx.preview.training: Adam, Adagrad, Momentum) in
// their single- and multi-tensor forms. The per-element arithmetic is kernels/common/training_math.h
// (shared with CUDA): double inside, rounded to X's type once. R and T are scalars read on the host.
#include "kernels/common/training_math.h"
#include "kernels/cpu/cpu_common.h"

namespace otter::cpu {
namespace {

// The number of tensors a node updates: (inputs - 2) / inputs per tensor.
size_t tensor_count(const KernelContext& ctx, size_t per_tensor) { return (ctx.inputs.size() - 2) / per_tensor; }

template <class T>
void adam_typed(KernelContext& ctx) {
  const size_t n = tensor_count(ctx, 4);
  const int64_t t = ctx.int64_values(1).at(0);
  math::AdamScalars s;
  s.alpha = ctx.node.attr_float("alpha", 0.9f);
  s.beta = ctx.node.attr_float("beta", 0.999f);
  s.epsilon = ctx.node.attr_float("epsilon", 1e-6f);
  s.norm_coefficient = ctx.node.attr_float("norm_coefficient", 0.0);
  s.norm_coefficient_post = ctx.node.attr_float("norm_coefficient_post", 0.0);
  s.r = math::adam_rate(ctx.scalar_value(0, 0), t, s.alpha, s.beta);
  for (size_t i = 0; i < n; ++i) {
    const T* x = ctx.in(2 + i).data<T>();
    const T* g = ctx.in(2 + n + i).data<T>();
    const T* v = ctx.in(2 + 2 * n + i).data<T>();
    const T* h = ctx.in(2 + 3 * n + i).data<T>();
    T* xo = ctx.out(i).data<T>();
    T* vo = ctx.out(n + i).data<T>();
    T* ho = ctx.out(2 * n + i).data<T>();
    parallel_for(ctx.in(2 + i).numel(), [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        double xn, vn, hn;
        math::adam_element(s, x[k], g[k], v[k], h[k], &xn, &vn, &hn);
        xo[k] = static_cast<T>(xn);
        vo[k] = static_cast<T>(vn);
        ho[k] = static_cast<T>(hn);
      }
    });
  }
}

template <class T>
void adagrad_typed(KernelContext& ctx) {
  const size_t n = tensor_count(ctx, 3);
  const int64_t t = ctx.int64_values(1).at(0);
  const double r = math::adagrad_rate(ctx.scalar_value(0, 0), t, ctx.node.attr_float("decay_factor", 0.0));
  const double eps = ctx.node.attr_float("epsilon", 1e-6f);
  const double norm = ctx.node.attr_float("norm_coefficient", 0.0);
  for (size_t i = 0; i < n; ++i) {
    const T* x = ctx.in(2 + i).data<T>();
    const T* g = ctx.in(2 + n + i).data<T>();
    const T* h = ctx.in(2 + 2 * n + i).data<T>();
    T* xo = ctx.out(i).data<T>();
    T* ho = ctx.out(n + i).data<T>();
    parallel_for(ctx.in(2 + i).numel(), [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        double xn, hn;
        math::adagrad_element(r, eps, norm, x[k], g[k], h[k], &xn, &hn);
        xo[k] = static_cast<T>(xn);
        ho[k] = static_cast<T>(hn);
      }
    });
  }
}

template <class T>
void momentum_typed(KernelContext& ctx) {
  const size_t n = tensor_count(ctx, 3);
  const int64_t t = ctx.int64_values(1).at(0);
  const double r = ctx.scalar_value(0, 0);
  const double alpha = ctx.node.attr_float("alpha", 0.0);
  const double beta = t > 0 ? ctx.node.attr_float("beta", 0.0) : 1.0;
  const double norm = ctx.node.attr_float("norm_coefficient", 0.0);
  const bool nesterov = ctx.node.attr_string("mode", "standard") == "nesterov";
  for (size_t i = 0; i < n; ++i) {
    const T* x = ctx.in(2 + i).data<T>();
    const T* g = ctx.in(2 + n + i).data<T>();
    const T* v = ctx.in(2 + 2 * n + i).data<T>();
    T* xo = ctx.out(i).data<T>();
    T* vo = ctx.out(n + i).data<T>();
    parallel_for(ctx.in(2 + i).numel(), [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        double xn, vn;
        math::momentum_element(r, alpha, beta, norm, nesterov, x[k], g[k], v[k], &xn, &vn);
        xo[k] = static_cast<T>(xn);
        vo[k] = static_cast<T>(vn);
      }
    });
  }
}

void adam_kernel(KernelContext& ctx) { OTTER_DISPATCH_FLOAT(ctx.in(2).dtype(), ctx.node.describe(), adam_typed<scalar_t>(ctx)); }
void adagrad_kernel(KernelContext& ctx) { OTTER_DISPATCH_FLOAT(ctx.in(2).dtype(), ctx.node.describe(), adagrad_typed<scalar_t>(ctx)); }
void momentum_kernel(KernelContext& ctx) { OTTER_DISPATCH_FLOAT(ctx.in(2).dtype(), ctx.node.describe(), momentum_typed<scalar_t>(ctx)); }

}  // namespace

void register_training_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64};
  const char* domain = "ai.onnx.preview.training";
  r.add(domain, "Adam", Device::CPU, f, adam_kernel);
  r.add(domain, "Adagrad", Device::CPU, f, adagrad_kernel);
  r.add(domain, "Momentum", Device::CPU, f, momentum_kernel);
}

}  // namespace otter::cpu
