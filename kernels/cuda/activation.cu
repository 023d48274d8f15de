// CUDA kernels for Sign (integers too), PRelu and its otter.PReluGrad, the variadic
// Max/Min/Sum/Mean (up to 4 broadcast inputs) and otter.MinMaxGrad. The unary ops of
// kernels/common/unary_ops.h are registered in kernels/cuda/elementwise.cu; the shared unary
// launchers and otter.UnaryGrad are in kernels/cuda/unary.cuh. FP16/BF16 are widened to FP32 on
// load and rounded on store.
#include <string>
#include <type_traits>

#include "kernels/common/elementwise_math.h"
#include "kernels/cuda/unary.cuh"


namespace otter::cuda {
namespace {


// Sign also runs on integers (as on the CPU).
void sign_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  int64_t n = x.numel();
  OTTER_CUDA_DISPATCH_NUM(x.dtype(), ctx.node.describe(), {
    unary_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const scalar_t*>(x.raw()), static_cast<scalar_t*>(ctx.out(0).raw()), n, math::Sign{});
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// ---- PRelu and PReluGrad ----

template <class T>
__global__ void prelu_k(const T* x, const T* slope, T* y, int64_t n, Strides s) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) {
    int64_t off[2];
    offsets_of(s, i, 2, off);
    store(y, i, math::PRelu{}(static_cast<C>(load(x, off[0])), static_cast<C>(load(slope, off[1]))));
  }
}

void prelu_kernel(KernelContext& ctx) {
  const Tensor &x = ctx.in(0), &slope = ctx.in(1);
  Tensor& out = ctx.out(0);
  Strides s = broadcast_strides(out.shape(), {&x.shape(), &slope.shape()});
  int64_t n = out.numel();
  OTTER_CUDA_DISPATCH_NUM(x.dtype(), ctx.node.describe(), {
    prelu_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const scalar_t*>(x.raw()), static_cast<const scalar_t*>(slope.raw()),
        static_cast<scalar_t*>(out.raw()), n, s);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// PReluGrad(dy, x, slope)[wrt]: the unreduced gradient for x (wrt 0) or slope (wrt 1), at dy's shape.
template <class T>
__global__ void prelu_grad_k(const T* dy, const T* x, const T* slope, T* out, int64_t n, Strides s, bool wrt_slope) {
  using C = typename Compute<T>::type;
  math::PRelu f;
  GRID_STRIDE(i, n) {
    int64_t off[2];
    offsets_of(s, i, 2, off);
    C xv = static_cast<C>(load(x, off[0])), sv = static_cast<C>(load(slope, off[1])), g = static_cast<C>(load(dy, i));
    store(out, i, wrt_slope ? f.grad_slope(xv, sv, g) : f.grad_x(xv, sv, g));
  }
}

void prelu_grad_kernel(KernelContext& ctx) {
  const Tensor &dy = ctx.in(0), &x = ctx.in(1), &slope = ctx.in(2);
  bool wrt_slope = ctx.node.attr_int("wrt", 0) == 1;
  Strides s = broadcast_strides(dy.shape(), {&x.shape(), &slope.shape()});
  int64_t n = dy.numel();
  OTTER_CUDA_DISPATCH_FLOAT(dy.dtype(), ctx.node.describe(), {
    prelu_grad_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const scalar_t*>(dy.raw()), static_cast<const scalar_t*>(x.raw()),
        static_cast<const scalar_t*>(slope.raw()), static_cast<scalar_t*>(ctx.out(0).raw()), n, s, wrt_slope);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// ---- variadic Max / Min / Sum / Mean (up to 4 inputs) ----

constexpr size_t kMaxVariadic = 4;

template <class T>
struct Ptrs { const T* p[kMaxVariadic]; };

void check_variadic_count(const KernelContext& ctx, size_t n) {
  OTTER_CHECK_KIND(Unsupported, n >= 1 && n <= kMaxVariadic, ctx.node.describe(), ": the CUDA kernel takes 1 to ",
                   kMaxVariadic, " inputs, got ", n);
}

template <class T, class F>
__global__ void variadic_k(Ptrs<T> in, int n_in, T* out, int64_t n, Strides s, F f, bool mean) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) {
    int64_t off[kMaxVariadic];
    offsets_of(s, i, n_in, off);
    C acc = static_cast<C>(load(in.p[0], off[0]));
    for (int j = 1; j < n_in; ++j) acc = f(acc, static_cast<C>(load(in.p[j], off[j])));
    store(out, i, mean ? acc / static_cast<C>(n_in) : acc);
  }
}

template <class F, bool Mean = false>
void variadic_kernel(KernelContext& ctx) {
  size_t n_in = ctx.inputs.size();
  check_variadic_count(ctx, n_in);
  Tensor& out = ctx.out(0);
  std::vector<const Shape*> shapes;
  for (size_t j = 0; j < n_in; ++j) shapes.push_back(&ctx.in(j).shape());
  Strides s = broadcast_strides(out.shape(), shapes);
  int64_t n = out.numel();
  OTTER_CUDA_DISPATCH_NUM(out.dtype(), ctx.node.describe(), {
    Ptrs<scalar_t> p{};
    for (size_t j = 0; j < n_in; ++j) p.p[j] = static_cast<const scalar_t*>(ctx.in(j).raw());
    variadic_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        p, static_cast<int>(n_in), static_cast<scalar_t*>(out.raw()), n, s, F{}, Mean);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// ---- MinMaxGrad(dy, y, x0, ..., xn-1)[index] ----
// Each dx element (at input `index`'s shape) sums, in dy's flat order as the CPU does, over the
// dy positions it was broadcast to: extreme_grad(x_index, y, dy, 1 / ties), where ties counts the
// inputs equal to y at that position (skipped when no input equals y, e.g. a NaN extreme).
template <class T>
__global__ void min_max_grad_k(const T* dy, const T* y, Ptrs<T> xs, int n_in, int index, T* dx, int64_t n_out,
                               Strides keep, int64_t reduce_count, Strides red, Strides bs) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(o, n_out) {
    int64_t base[1];
    offsets_of(keep, o, 1, base);
    C acc = C(0);
    for (int64_t k = 0; k < reduce_count; ++k) {
      int64_t r[1];
      offsets_of(red, k, 1, r);
      int64_t flat = base[0] + r[0];  // dy is contiguous: its offset is its flat index
      int64_t off[kMaxVariadic];
      offsets_of(bs, flat, n_in, off);
      C v = static_cast<C>(load(y, flat));
      int ties = 0;
      for (int j = 0; j < n_in; ++j) ties += static_cast<C>(load(xs.p[j], off[j])) == v;
      if (ties)
        acc += math::extreme_grad(static_cast<C>(load(xs.p[index], off[index])), v, static_cast<C>(load(dy, flat)),
                                  C(1) / static_cast<C>(ties));
    }
    store(dx, o, acc);
  }
}

void min_max_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  OTTER_CHECK(ctx.inputs.size() >= 3, ctx.node.describe(), ": needs dy, y and at least one input");
  size_t n_in = ctx.inputs.size() - 2;
  check_variadic_count(ctx, n_in);
  int64_t index = ctx.node.attr_int("index", 0);
  OTTER_CHECK(index >= 0 && static_cast<size_t>(index) < n_in, ctx.node.describe(), ": index ", index,
              " is out of range for ", n_in, " inputs");
  Tensor& dx = ctx.out(0);
  std::vector<const Shape*> shapes;
  for (size_t j = 0; j < n_in; ++j) shapes.push_back(&ctx.in(j + 2).shape());
  Strides bs = broadcast_strides(dy.shape(), shapes);

  OTTER_CHECK(dx.shape().size() <= dy.shape().size(), ctx.node.describe(), ": input rank exceeds the output's");
  ReduceToShape rt = reduce_to_shape(dy.shape(), dx.shape());
  const Strides &keep = rt.keep, &red = rt.reduced;
  const int64_t reduce_count = rt.count;
  int64_t n_out = dx.numel();
  OTTER_CUDA_DISPATCH_FLOAT(dy.dtype(), ctx.node.describe(), {
    Ptrs<scalar_t> p{};
    for (size_t j = 0; j < n_in; ++j) p.p[j] = static_cast<const scalar_t*>(ctx.in(j + 2).raw());
    min_max_grad_k<scalar_t><<<blocks_for(n_out), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const scalar_t*>(dy.raw()), static_cast<const scalar_t*>(ctx.in(1).raw()), p,
        static_cast<int>(n_in), static_cast<int>(index), static_cast<scalar_t*>(dx.raw()), n_out, keep, reduce_count,
        red, bs);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

}  // namespace

void register_activation_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};
  const std::vector<DType> num = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int64,
                                  DType::Int32};
  const Device cuda = Device::CUDA;
  r.add("", "Sign", cuda, num, sign_kernel);
  r.add("", "PRelu", cuda, num, prelu_kernel);
  r.add("", "Max", cuda, num, variadic_kernel<math::Max>);
  r.add("", "Min", cuda, num, variadic_kernel<math::Min>);
  r.add("", "Sum", cuda, f, variadic_kernel<math::Add>);
  r.add("", "Mean", cuda, f, variadic_kernel<math::Add, true>);
  r.add("otter", "PReluGrad", cuda, f, prelu_grad_kernel);
  r.add("otter", "MinMaxGrad", cuda, f, min_max_grad_kernel);
}

}  // namespace otter::cuda
