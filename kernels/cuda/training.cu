// CUDA kernels of the ONNX training ops (ai.onnx.preview.training: Adam, Adagrad, Momentum), the
// same arithmetic as the CPU (kernels/common/training_math.h, double inside). R and T are read
// on the device by every thread (no host synchronisation), one launch per optimized tensor.
#include "kernels/common/training_math.h"
#include "kernels/cuda/cuda_common.cuh"

namespace otter::cuda {
namespace {

// The scalar learning rate R (float or double) and step count T (int64), in device memory.
struct Scalars {
  const void* r;
  bool r_double;
  const int64_t* t;
};

__device__ __forceinline__ double read_r(const Scalars& s) {
  return s.r_double ? *static_cast<const double*>(s.r) : static_cast<double>(*static_cast<const float*>(s.r));
}

template <class T>
__global__ void adam_k(Scalars sc, math::AdamScalars s, const T* x, const T* g, const T* v, const T* h, T* xo, T* vo,
                       T* ho, int64_t n) {
  s.r = math::adam_rate(read_r(sc), *sc.t, s.alpha, s.beta);
  GRID_STRIDE(k, n) {
    double xn, vn, hn;
    math::adam_element(s, x[k], g[k], v[k], h[k], &xn, &vn, &hn);
    xo[k] = static_cast<T>(xn);
    vo[k] = static_cast<T>(vn);
    ho[k] = static_cast<T>(hn);
  }
}

template <class T>
__global__ void adagrad_k(Scalars sc, double decay, double eps, double norm, const T* x, const T* g, const T* h, T* xo,
                          T* ho, int64_t n) {
  const double r = math::adagrad_rate(read_r(sc), *sc.t, decay);
  GRID_STRIDE(k, n) {
    double xn, hn;
    math::adagrad_element(r, eps, norm, x[k], g[k], h[k], &xn, &hn);
    xo[k] = static_cast<T>(xn);
    ho[k] = static_cast<T>(hn);
  }
}

template <class T>
__global__ void momentum_k(Scalars sc, double alpha, double beta, double norm, bool nesterov, const T* x, const T* g,
                           const T* v, T* xo, T* vo, int64_t n) {
  const double r = read_r(sc);
  const double b = *sc.t > 0 ? beta : 1.0;
  GRID_STRIDE(k, n) {
    double xn, vn;
    math::momentum_element(r, alpha, b, norm, nesterov, x[k], g[k], v[k], &xn, &vn);
    xo[k] = static_cast<T>(xn);
    vo[k] = static_cast<T>(vn);
  }
}

Scalars scalars(const KernelContext& ctx) {
  return {ctx.in(0).raw(), ctx.in(0).dtype() == DType::Float64, ctx.in(1).data<int64_t>()};
}

template <class T>
void adam_typed(KernelContext& ctx) {
  const size_t n = (ctx.inputs.size() - 2) / 4;
  math::AdamScalars s;
  s.alpha = ctx.node.attr_float("alpha", 0.9f);
  s.beta = ctx.node.attr_float("beta", 0.999f);
  s.epsilon = ctx.node.attr_float("epsilon", 1e-6f);
  s.norm_coefficient = ctx.node.attr_float("norm_coefficient", 0.0);
  s.norm_coefficient_post = ctx.node.attr_float("norm_coefficient_post", 0.0);
  for (size_t i = 0; i < n; ++i) {
    const int64_t m = ctx.in(2 + i).numel();
    if (m == 0) continue;
    adam_k<T><<<blocks_for(m), kThreads, 0, stream_of(ctx)>>>(
        scalars(ctx), s, ctx.in(2 + i).data<T>(), ctx.in(2 + n + i).data<T>(), ctx.in(2 + 2 * n + i).data<T>(),
        ctx.in(2 + 3 * n + i).data<T>(), ctx.out(i).data<T>(), ctx.out(n + i).data<T>(), ctx.out(2 * n + i).data<T>(), m);
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  }
}

template <class T>
void adagrad_typed(KernelContext& ctx) {
  const size_t n = (ctx.inputs.size() - 2) / 3;
  const double decay = ctx.node.attr_float("decay_factor", 0.0);
  const double eps = ctx.node.attr_float("epsilon", 1e-6f);
  const double norm = ctx.node.attr_float("norm_coefficient", 0.0);
  for (size_t i = 0; i < n; ++i) {
    const int64_t m = ctx.in(2 + i).numel();
    if (m == 0) continue;
    adagrad_k<T><<<blocks_for(m), kThreads, 0, stream_of(ctx)>>>(
        scalars(ctx), decay, eps, norm, ctx.in(2 + i).data<T>(), ctx.in(2 + n + i).data<T>(),
        ctx.in(2 + 2 * n + i).data<T>(), ctx.out(i).data<T>(), ctx.out(n + i).data<T>(), m);
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  }
}

template <class T>
void momentum_typed(KernelContext& ctx) {
  const size_t n = (ctx.inputs.size() - 2) / 3;
  const double alpha = ctx.node.attr_float("alpha", 0.0);
  const double beta = ctx.node.attr_float("beta", 0.0);
  const double norm = ctx.node.attr_float("norm_coefficient", 0.0);
  const bool nesterov = ctx.node.attr_string("mode", "standard") == "nesterov";
  for (size_t i = 0; i < n; ++i) {
    const int64_t m = ctx.in(2 + i).numel();
    if (m == 0) continue;
    momentum_k<T><<<blocks_for(m), kThreads, 0, stream_of(ctx)>>>(
        scalars(ctx), alpha, beta, norm, nesterov, ctx.in(2 + i).data<T>(), ctx.in(2 + n + i).data<T>(),
        ctx.in(2 + 2 * n + i).data<T>(), ctx.out(i).data<T>(), ctx.out(n + i).data<T>(), m);
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  }
}

template <template <class> class F>
void dispatch(KernelContext& ctx) {
  switch (ctx.in(2).dtype()) {
    case DType::Float32: F<float>::run(ctx); break;
    case DType::Float64: F<double>::run(ctx); break;
    default: OTTER_FAIL(ctx.node.describe(), ": no CUDA kernel for dtype ", dtype_name(ctx.in(2).dtype()));
  }
}
template <class T> struct Adam { static void run(KernelContext& c) { adam_typed<T>(c); } };
template <class T> struct Adagrad { static void run(KernelContext& c) { adagrad_typed<T>(c); } };
template <class T> struct Momentum { static void run(KernelContext& c) { momentum_typed<T>(c); } };

}  // namespace

void register_training_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64};
  const char* domain = "ai.onnx.preview.training";
  r.add(domain, "Adam", Device::CUDA, f, dispatch<Adam>);
  r.add(domain, "Adagrad", Device::CUDA, f, dispatch<Adagrad>);
  r.add(domain, "Momentum", Device::CUDA, f, dispatch<Momentum>);
}

}  // namespace otter::cuda
