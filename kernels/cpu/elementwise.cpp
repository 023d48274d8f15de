// CPU kernels for the elementwise family (runtime/ops/elementwise.cpp): loops over the shared
// functors in kernels/common/elementwise_math.h (unary, binary, PRelu, the variadic Max/Min/Sum/
// Mean over any number of broadcast inputs, and the gradient ops), with contiguous fast paths and
// general broadcasting, parallel for large tensors. GELU and its gradient take the vectorised
// float32 path of kernels/cpu/vec_math.h where the CPU has AVX-512.
#include "kernels/common/elementwise_math.h"
#include "kernels/common/unary_functors.h"

#include <map>
#include <string>

#include "kernels/common/philox.h"
#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/vec_math.h"
#include "runtime/core/convert.h"

namespace otter::cpu {
namespace {

template <class T, class F>
void unary_loop(const Tensor& x, Tensor& y, F f) {
  const T* px = x.data<T>();
  T* py = y.data<T>();
  parallel_for(x.numel(), [&](int64_t b, int64_t e) {
    if constexpr (std::is_same_v<F, math::Gelu> && std::is_same_v<T, float>)
      if (vec_gelu(px + b, py + b, e - b, f.tanh_approx)) return;
    for (int64_t i = b; i < e; ++i) py[i] = f(px[i]);
  });
}

template <class F>
void unary_kernel(KernelContext& ctx) {
  F f = math::make_functor<F>(ctx.node);
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), unary_loop<scalar_t>(ctx.in(0), ctx.out(0), f));
}

template <class F>
void unary_numeric_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_NUMERIC(ctx.in(0).dtype(), ctx.node.describe(), unary_loop<scalar_t>(ctx.in(0), ctx.out(0), F{}));
}

void neg_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_NUMERIC(ctx.in(0).dtype(), ctx.node.describe(),
                         unary_loop<scalar_t>(ctx.in(0), ctx.out(0), [](scalar_t v) { return static_cast<scalar_t>(-v); }));
}

void identity_kernel(KernelContext& ctx) {
  std::memcpy(ctx.out(0).raw(), ctx.in(0).raw(), ctx.in(0).nbytes());
}

void not_kernel(KernelContext& ctx) {
  const bool* x = ctx.in(0).data<bool>();
  bool* y = ctx.out(0).data<bool>();
  for (int64_t i = 0; i < ctx.in(0).numel(); ++i) y[i] = !x[i];
}

template <class T, class F>
void unary_grad_loop(KernelContext& ctx, F f) {
  const T* dy = ctx.in(0).data<T>();
  const T* x = ctx.in(1).data<T>();
  const T* y = ctx.in(2).data<T>();
  T* dx = ctx.out(0).data<T>();
  parallel_for(ctx.in(0).numel(), [&](int64_t b, int64_t e) {
    if constexpr (std::is_same_v<F, math::Gelu> && std::is_same_v<T, float>)
      if (vec_gelu_grad(x + b, dy + b, dx + b, e - b, f.tanh_approx)) return;
    for (int64_t i = b; i < e; ++i) dx[i] = f.grad(x[i], y[i], dy[i]);
  });
}

// UnaryGrad(dy, x, y)[op]: dx = math::<op>::grad(x, y, dy).
void unary_grad_kernel(KernelContext& ctx) {
  math::visit_grad_functor(ctx.node, [&](auto f) {
    OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), unary_grad_loop<scalar_t>(ctx, f));
  });
}

// out[i] = f(a[ia], b[ib]) with broadcasting.
template <class T, class R, class F>
void binary_loop(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  R* po = out.data<R>();
  int64_t n = out.numel();
  if (a.shape() == out.shape() && b.shape() == out.shape()) {
    parallel_for(n, [&](int64_t s, int64_t e) { for (int64_t i = s; i < e; ++i) po[i] = f(pa[i], pb[i]); });
  } else if (a.shape() == out.shape() && b.numel() == 1) {
    T v = pb[0];
    parallel_for(n, [&](int64_t s, int64_t e) { for (int64_t i = s; i < e; ++i) po[i] = f(pa[i], v); });
  } else if (b.shape() == out.shape() && a.numel() == 1) {
    T v = pa[0];
    parallel_for(n, [&](int64_t s, int64_t e) { for (int64_t i = s; i < e; ++i) po[i] = f(v, pb[i]); });
  } else {  // broadcasting: rows of the merged geometry, a tight loop per row
    const CollapsedBroadcast g = collapse_broadcast(out.shape(), {&a.shape(), &b.shape()});
    const int64_t inner = g.inner(), sa = g.inner_stride(0), sb = g.inner_stride(1);
    parallel_for(g.rows(), [&](int64_t r0, int64_t r1) {
      std::vector<int64_t> off;
      for (int64_t r = r0; r < r1; ++r) {
        g.row_offsets(r, off);
        const T* ra = pa + off[0];
        const T* rb = pb + off[1];
        R* ro = po + r * inner;
        if (sa == 1 && sb == 1) {
          for (int64_t j = 0; j < inner; ++j) ro[j] = f(ra[j], rb[j]);
        } else if (sa == 1 && sb == 0) {
          const T v = rb[0];
          for (int64_t j = 0; j < inner; ++j) ro[j] = f(ra[j], v);
        } else if (sa == 0 && sb == 1) {
          const T v = ra[0];
          for (int64_t j = 0; j < inner; ++j) ro[j] = f(v, rb[j]);
        } else {
          for (int64_t j = 0; j < inner; ++j) ro[j] = f(ra[j * sa], rb[j * sb]);
        }
      }
    }, std::max<int64_t>(1, 32768 / std::max<int64_t>(inner, 1)));
  }
}

template <class F>
void arith_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_NUMERIC(ctx.in(0).dtype(), ctx.node.describe(),
                         binary_loop<scalar_t, scalar_t>(ctx.in(0), ctx.in(1), ctx.out(0), F{}));
}

// Mod: the functor follows the fmod attribute.
void mod_kernel(KernelContext& ctx) {
  if (ctx.node.attr_int("fmod", 0) != 0) arith_kernel<math::ModTrunc>(ctx);
  else arith_kernel<math::ModFloor>(ctx);
}

// Variadic Max / Min / Sum / Mean: out[i] = f(x0[i0], x1[i1], ...) with numpy broadcasting over
// any number of inputs (Mean divides the sum by the input count).
template <class T, class F>
void variadic_loop(KernelContext& ctx, F f, bool mean) {
  Tensor& out = ctx.out(0);
  size_t n = ctx.inputs.size();
  std::vector<const T*> p;
  std::vector<const Shape*> shapes;
  bool same = true;
  for (size_t j = 0; j < n; ++j) {
    p.push_back(ctx.in(j).data<T>());
    shapes.push_back(&ctx.in(j).shape());
    same = same && ctx.in(j).shape() == out.shape();
  }
  T* po = out.data<T>();
  T count = static_cast<T>(n);
  parallel_for(out.numel(), [&](int64_t s, int64_t e) {
    if (same) {
      for (int64_t i = s; i < e; ++i) {
        T acc = p[0][i];
        for (size_t j = 1; j < n; ++j) acc = f(acc, p[j][i]);
        po[i] = mean ? acc / count : acc;
      }
      return;
    }
    BroadcastIndexer it(out.shape(), shapes);
    it.seek(s);
    for (int64_t i = s; i < e; ++i, it.next()) {
      T acc = p[0][it.offset(0)];
      for (size_t j = 1; j < n; ++j) acc = f(acc, p[j][it.offset(j)]);
      po[i] = mean ? acc / count : acc;
    }
  }, std::max<int64_t>(1, 32768 / static_cast<int64_t>(n)));
}

template <class F, bool Mean = false>
void variadic_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_NUMERIC(ctx.in(0).dtype(), ctx.node.describe(), variadic_loop<scalar_t>(ctx, F{}, Mean));
}

// MinMaxGrad(dy, y, x0, ..., xn-1)[index]: the gradient of input `index` of a variadic Max/Min,
// already reduced to that input's shape. Where several inputs hold the extreme, each of them gets
// dy divided by their count.
void min_max_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  const Tensor& y = ctx.in(1);
  size_t n = ctx.inputs.size() - 2;
  size_t index = static_cast<size_t>(ctx.node.attr_int("index", 0));
  OTTER_CHECK(index < n, ctx.node.describe(), ": index ", index, " is out of range for ", n, " inputs");
  Tensor& dx = ctx.out(0);
  std::vector<const Shape*> shapes;
  for (size_t j = 0; j < n; ++j) shapes.push_back(&ctx.in(j + 2).shape());
  OTTER_DISPATCH_FLOAT(dy.dtype(), ctx.node.describe(), {
    std::vector<const scalar_t*> p;
    for (size_t j = 0; j < n; ++j) p.push_back(ctx.in(j + 2).data<scalar_t>());
    const scalar_t* pdy = dy.data<scalar_t>();
    const scalar_t* py = y.data<scalar_t>();
    scalar_t* pdx = dx.data<scalar_t>();
    auto body = [&](int64_t s, int64_t e) {
      BroadcastIndexer it(dy.shape(), shapes);
      it.seek(s);
      for (int64_t i = s; i < e; ++i, it.next()) {
        scalar_t v = py[i];
        int ties = 0;
        for (size_t j = 0; j < n; ++j) ties += p[j][it.offset(j)] == v;
        if (ties) pdx[it.offset(index)] += math::extreme_grad(p[index][it.offset(index)], v, pdy[i],
                                                              scalar_t(1) / static_cast<scalar_t>(ties));
      }
    };
    std::fill(pdx, pdx + dx.numel(), scalar_t(0));
    if (dx.shape() == dy.shape()) parallel_for(dy.numel(), body);  // no two elements share a target
    else body(0, dy.numel());
  });
}

void prelu_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_NUMERIC(ctx.in(0).dtype(), ctx.node.describe(),
                         binary_loop<scalar_t, scalar_t>(ctx.in(0), ctx.in(1), ctx.out(0), math::PRelu{}));
}

// PReluGrad(dy, x, slope)[wrt]: the gradient for x (wrt 0) or slope (wrt 1) at the output's
// shape; the builder reduces it to the input's shape.
void prelu_grad_kernel(KernelContext& ctx) {
  const Tensor &dy = ctx.in(0), &x = ctx.in(1), &slope = ctx.in(2);
  bool wrt_slope = ctx.node.attr_int("wrt", 0) == 1;
  OTTER_DISPATCH_FLOAT(dy.dtype(), ctx.node.describe(), {
    const scalar_t* pdy = dy.data<scalar_t>();
    const scalar_t* px = x.data<scalar_t>();
    const scalar_t* ps = slope.data<scalar_t>();
    scalar_t* po = ctx.out(0).data<scalar_t>();
    math::PRelu f;
    parallel_for(dy.numel(), [&](int64_t s, int64_t e) {
      BroadcastIndexer it(dy.shape(), {&x.shape(), &slope.shape()});
      it.seek(s);
      for (int64_t i = s; i < e; ++i, it.next()) {
        scalar_t xv = px[it.offset(0)], sv = ps[it.offset(1)];
        po[i] = wrt_slope ? f.grad_slope(xv, sv, pdy[i]) : f.grad_x(xv, sv, pdy[i]);
      }
    });
  });
}

void pow_kernel(KernelContext& ctx) {
  // The exponent may have another type: bring it to the base's type first.
  Tensor exponent = ctx.in(1).dtype() == ctx.in(0).dtype() ? ctx.in(1) : ctx.in(1).cast(ctx.in(0).dtype());
  OTTER_DISPATCH_NUMERIC(ctx.in(0).dtype(), ctx.node.describe(),
                         binary_loop<scalar_t, scalar_t>(ctx.in(0), exponent, ctx.out(0), math::Pow{}));
}

template <class F>
void compare_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_ALL(ctx.in(0).dtype(), ctx.node.describe(),
                     binary_loop<scalar_t, bool>(ctx.in(0), ctx.in(1), ctx.out(0), F{}));
}

template <class F>
void logical_kernel(KernelContext& ctx) {
  binary_loop<bool, bool>(ctx.in(0), ctx.in(1), ctx.out(0), F{});
}

void where_kernel(KernelContext& ctx) {
  const Tensor &c = ctx.in(0), &a = ctx.in(1), &b = ctx.in(2);
  Tensor& out = ctx.out(0);
  OTTER_DISPATCH_ALL(a.dtype(), ctx.node.describe(), {
    const bool* pc = c.data<bool>();
    const scalar_t* pa = a.data<scalar_t>();
    const scalar_t* pb = b.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    parallel_for(out.numel(), [&](int64_t s, int64_t e) {
      BroadcastIndexer it(out.shape(), {&c.shape(), &a.shape(), &b.shape()});
      it.seek(s);
      for (int64_t i = s; i < e; ++i, it.next()) po[i] = pc[it.offset(0)] ? pa[it.offset(1)] : pb[it.offset(2)];
    });
  });
}

void cast_kernel(KernelContext& ctx) { ctx.in(0).cast_into(ctx.out(0)); }

void clip_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_NUMERIC(ctx.in(0).dtype(), ctx.node.describe(), {
    scalar_t lo = ctx.has_input(1) ? ctx.in(1).data<scalar_t>()[0] : std::numeric_limits<scalar_t>::lowest();
    scalar_t hi = ctx.has_input(2) ? ctx.in(2).data<scalar_t>()[0] : std::numeric_limits<scalar_t>::max();
    unary_loop<scalar_t>(ctx.in(0), ctx.out(0), [=](scalar_t v) { scalar_t r = v < lo ? lo : v;
      return r > hi ? hi : r; });  // min > max gives max, as the spec says
  });
}

void clip_grad_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), {
    scalar_t lo = ctx.has_input(2) ? ctx.in(2).data<scalar_t>()[0] : std::numeric_limits<scalar_t>::lowest();
    scalar_t hi = ctx.has_input(3) ? ctx.in(3).data<scalar_t>()[0] : std::numeric_limits<scalar_t>::max();
    const scalar_t* dy = ctx.in(0).data<scalar_t>();
    const scalar_t* x = ctx.in(1).data<scalar_t>();
    scalar_t* dx = ctx.out(0).data<scalar_t>();
    for (int64_t i = 0; i < ctx.in(0).numel(); ++i) dx[i] = math::clip_grad(x[i], lo, hi, dy[i]);
  });
}

// Dropout: in training, element i is kept when philox_uniform(seed, counter, i) >= ratio and
// scaled by 1/(1-ratio); in eval (or with ratio 0) it is the identity and the mask is all true.
void dropout_kernel(KernelContext& ctx) {
  double ratio = ctx.scalar_value(1, 0.5);
  OTTER_CHECK(ratio >= 0.0 && ratio < 1.0, ctx.node.describe(), ": ratio ", ratio, " must be in [0, 1)");
  const Tensor& x = ctx.in(0);
  bool active = ctx.training && ratio > 0.0;
  std::vector<bool> keep;
  bool* mask = ctx.has_output(1) ? ctx.out(1).data<bool>() : nullptr;
  OTTER_DISPATCH_FLOAT(x.dtype(), ctx.node.describe(), {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* py = ctx.out(0).data<scalar_t>();
    scalar_t scale = static_cast<scalar_t>(1.0 / (1.0 - ratio));
    uint64_t seed = ctx.seed, stream = ctx.counter;
    float threshold = static_cast<float>(ratio);
    parallel_for(x.numel(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        bool k = !active || math::philox_uniform(seed, stream, static_cast<uint64_t>(i)) >= threshold;
        py[i] = k ? (active ? px[i] * scale : px[i]) : scalar_t(0);
        if (mask) mask[i] = k;
      }
    });
  });
}

void dropout_grad_kernel(KernelContext& ctx) {
  double ratio = ctx.scalar_value(2, 0.5);
  const bool* mask = ctx.in(1).data<bool>();
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), {
    const scalar_t* dy = ctx.in(0).data<scalar_t>();
    scalar_t* dx = ctx.out(0).data<scalar_t>();
    // In eval mode the mask is all true and ratio still scales; the forward recorded which
    // case applied by its mask alone, so scale only when some element was dropped or ratio > 0
    // in training. Training is the only case a gradient is taken, so scale by 1/(1-ratio).
    scalar_t scale = static_cast<scalar_t>(1.0 / (1.0 - ratio));
    for (int64_t i = 0; i < ctx.in(0).numel(); ++i) dx[i] = mask[i] ? dy[i] * scale : scalar_t(0);
  });
}

// SumToShapeOf keeps g's trailing dims (a bias [n] or [1, n] against [..., n]): the sum is over
// contiguous rows of out.numel() elements.
bool sums_trailing_rows(const Tensor& g, const Tensor& out) {
  bool trailing = out.shape().size() <= g.shape().size();
  for (size_t k = 0; trailing && k < out.shape().size(); ++k) {
    size_t gk = g.shape().size() - out.shape().size() + k;
    bool leading_ones = true;
    for (size_t j = 0; j < k; ++j) leading_ones = leading_ones && out.shape()[j] == 1;
    trailing = out.shape()[k] == g.shape()[gk] || (out.shape()[k] == 1 && leading_ones);
  }
  if (!trailing) return false;
  int64_t p = 1;  // the product of g's trailing dims covered by out must be out's size
  for (size_t k = 0; k < out.shape().size(); ++k)
    if (out.shape()[k] != 1 || p > 1) p *= g.shape()[g.shape().size() - out.shape().size() + k];
  return p == out.numel() && g.numel() % out.numel() == 0;
}

// SumToShapeOf: reduce `grad` (out shape G) to `like`'s shape L (broadcastable to G).
void sum_to_shape_kernel(KernelContext& ctx) {
  const Tensor& g = ctx.in(0);
  Tensor& out = ctx.out(0);
  OTTER_DISPATCH_FLOAT(g.dtype(), ctx.node.describe(), {
    const scalar_t* pg = g.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    int64_t n_out = out.numel();
    std::fill(po, po + n_out, scalar_t(0));
    if (n_out == 1) {
      double acc = 0;  // accumulate in double: the sum of many terms
      for (int64_t i = 0; i < g.numel(); ++i) acc += pg[i];
      po[0] = static_cast<scalar_t>(acc);
    } else if (sums_trailing_rows(g, out)) {
      int64_t rows = g.numel() / n_out;
      for (int64_t r = 0; r < rows; ++r) {
        const scalar_t* row = pg + r * n_out;
        for (int64_t j = 0; j < n_out; ++j) po[j] += row[j];
      }
    } else {
      BroadcastIndexer it(g.shape(), {&out.shape()});
      it.seek(0);
      for (int64_t i = 0; i < g.numel(); ++i, it.next()) po[it.offset(0)] += pg[i];
    }
  });
}

// ---- 16-bit storage (FP16/BF16): the FP32 functors over chunks widened in the kernel ----
//
// The CPU computes FP16/BF16 in FP32 (design decision 7). Instead of the plan widening whole
// tensors into FP32 scratch and rounding the whole result back (three extra passes over memory),
// these kernels widen chunks of a few KB that stay in L1, run the same FP32 functor and round
// each chunk back: the same bits as the widened path (the same conversions and the same FP32
// arithmetic per element), at the memory traffic of the 16-bit data.

constexpr int64_t kChunk = 512;
constexpr int64_t kSumBlock = 4096;  // floats of rows widened at once by SumToShapeOf (16 KB, in L1)

// Element i of a 16- or 32-bit float tensor's storage.
const void* element(const Tensor& t, int64_t i) { return static_cast<const char*>(t.raw()) + i * dtype_size(t.dtype()); }
void* element(Tensor& t, int64_t i) { return static_cast<char*>(t.raw()) + i * dtype_size(t.dtype()); }


template <class F>
void unary_half_kernel(KernelContext& ctx) {
  F f = math::make_functor<F>(ctx.node);
  const Tensor& tx = ctx.in(0);
  Tensor& ty = ctx.out(0);
  parallel_for(tx.numel(), [&](int64_t b, int64_t e) {
    if constexpr (std::is_same_v<F, math::Gelu>)  // FP16 GELU in registers, one pass
      if (tx.dtype() == DType::Float16 && ty.dtype() == DType::Float16 &&
          vec_gelu_half(static_cast<const uint16_t*>(tx.raw()) + b, static_cast<uint16_t*>(ty.raw()) + b, e - b,
                        f.tanh_approx))
        return;
    float x[kChunk], y[kChunk];
    for (int64_t c = b; c < e; c += kChunk) {
      const int64_t n = std::min(kChunk, e - c);
      widen_n(tx.dtype(), element(tx, c), x, n);
      bool done = false;
      if constexpr (std::is_same_v<F, math::Gelu>) done = vec_gelu(x, y, n, f.tanh_approx);
      if (!done)
        for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
      narrow_n(ty.dtype(), y, element(ty, c), n);
    }
  });
}

// UnaryGrad(dy, x, y) with 16-bit inputs and output (an FP32 one among them is read as it is).
void unary_grad_half_kernel(KernelContext& ctx) {
  const Tensor &tdy = ctx.in(0), &tx = ctx.in(1), &ty = ctx.in(2);
  Tensor& tdx = ctx.out(0);
  math::visit_grad_functor(ctx.node, [&](auto f) {
    using F = decltype(f);
    parallel_for(tdy.numel(), [&](int64_t b, int64_t e) {
      if constexpr (std::is_same_v<F, math::Gelu>)  // FP16 GELU gradient in registers, one pass
        if (tdy.dtype() == DType::Float16 && tx.dtype() == DType::Float16 && tdx.dtype() == DType::Float16 &&
            vec_gelu_grad_half(static_cast<const uint16_t*>(tx.raw()) + b, static_cast<const uint16_t*>(tdy.raw()) + b,
                               static_cast<uint16_t*>(tdx.raw()) + b, e - b, f.tanh_approx))
          return;
      float dy[kChunk], x[kChunk], y[kChunk], dx[kChunk];
      for (int64_t c = b; c < e; c += kChunk) {
        const int64_t n = std::min(kChunk, e - c);
        widen_n(tdy.dtype(), element(tdy, c), dy, n);
        widen_n(tx.dtype(), element(tx, c), x, n);
        bool done = false;
        if constexpr (std::is_same_v<F, math::Gelu>) done = vec_gelu_grad(x, dy, dx, n, f.tanh_approx);
        if (!done) {
          widen_n(ty.dtype(), element(ty, c), y, n);
          for (int64_t i = 0; i < n; ++i) dx[i] = f.grad(x[i], y[i], dy[i]);
        }
        narrow_n(tdx.dtype(), dx, element(tdx, c), n);
      }
    });
  });
}

// Binary arithmetic with broadcasting, per row of the merged geometry, in chunks.
template <class F>
void arith_half_kernel(KernelContext& ctx) {
  F f{};
  const Tensor& a = ctx.in(0);
  const Tensor& b = ctx.in(1);
  Tensor& out = ctx.out(0);
  const CollapsedBroadcast g = collapse_broadcast(out.shape(), {&a.shape(), &b.shape()});
  const int64_t inner = g.inner(), sa = g.inner_stride(0), sb = g.inner_stride(1);
  // One operand's chunk from element `at`: contiguous (widened), one broadcast value, or strided.
  auto load = [&](const Tensor& t, int64_t at, int64_t stride, int64_t n, float* buf) {
    if (stride == 1) {
      widen_n(t.dtype(), element(t, at), buf, n);
    } else if (stride == 0) {
      float v;
      widen_n(t.dtype(), element(t, at), &v, 1);
      std::fill(buf, buf + n, v);
    } else {
      for (int64_t i = 0; i < n; ++i) widen_n(t.dtype(), element(t, at + i * stride), buf + i, 1);
    }
  };
  // The threads split (row, chunk) pairs, so that one long row (same shapes, a scalar operand)
  // runs in parallel too.
  const int64_t per_row = std::max<int64_t>(1, (inner + kChunk - 1) / kChunk);
  // FP16 or FP32 operands, contiguous or one value, into FP16 or FP32: one AVX-512 pass per chunk.
  auto fp16_or_fp32 = [](const Tensor& t) { return t.dtype() == DType::Float16 || t.dtype() == DType::Float32; };
  static_assert(std::is_same_v<F, math::Add> || std::is_same_v<F, math::Sub> || std::is_same_v<F, math::Mul> ||
                std::is_same_v<F, math::Div>);
  constexpr BinaryOp kOp = std::is_same_v<F, math::Add>   ? BinaryOp::Add
                           : std::is_same_v<F, math::Sub> ? BinaryOp::Sub
                           : std::is_same_v<F, math::Mul> ? BinaryOp::Mul
                                                          : BinaryOp::Div;
  const bool one_pass = fp16_or_fp32(a) && fp16_or_fp32(b) && fp16_or_fp32(out) && (sa == 0 || sa == 1) &&
                        (sb == 0 || sb == 1);
  parallel_for(g.rows() * per_row, [&](int64_t p0, int64_t p1) {
    std::vector<int64_t> off;
    float x[kChunk], y[kChunk], z[kChunk];
    int64_t row = -1;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t r = p / per_row, c = (p % per_row) * kChunk;
      if (r != row) g.row_offsets(row = r, off);
      const int64_t n = std::min(kChunk, inner - c);
      if (n <= 0) continue;
      if (one_pass && vec_binary_half(kOp, element(a, off[0] + c * sa), a.dtype() == DType::Float16, sa == 0,
                                      element(b, off[1] + c * sb), b.dtype() == DType::Float16, sb == 0,
                                      element(out, r * inner + c), out.dtype() == DType::Float16, n))
        continue;
      load(a, off[0] + c * sa, sa, n, x);
      load(b, off[1] + c * sb, sb, n, y);
      for (int64_t i = 0; i < n; ++i) z[i] = f(x[i], y[i]);
      narrow_n(out.dtype(), z, element(out, r * inner + c), n);
    }
  }, std::max<int64_t>(1, 32768 / kChunk));
}

// The widening kernel (registry.h) of Add/Sub/Mul/Div: a promoted step whose inputs and output
// are FP16/BF16 or FP32 in any mix (an FP16 branch added to the FP32 residual, an FP16 tensor
// times an FP32 scalar) runs the chunked kernel above; the same FP32 functor on the same values.
template <class F>
bool arith_widening_kernel(KernelContext& ctx) {
  auto ok = [](const Tensor& t) {
    return t.dtype() == DType::Float16 || t.dtype() == DType::BFloat16 || t.dtype() == DType::Float32;
  };
  if (!ctx.rounds_nothing() || !ok(ctx.in(0)) || !ok(ctx.in(1)) || !ok(ctx.out(0))) return false;
  // Short rows (a [B, 1, 1, T] mask broadcast over [B, H, T, T] scores) cost a call per row:
  // widening the whole tensor once and the FP32 kernel's row loop are faster there.
  if (collapse_broadcast(ctx.out(0).shape(), {&ctx.in(0).shape(), &ctx.in(1).shape()}).inner() < kChunk / 2) return false;
  arith_half_kernel<F>(ctx);
  return true;
}

// SumToShapeOf for 16-bit data: widened into FP32, summed exactly as the FP32 kernel sums, rounded
// once (the trailing-dims case, a bias gradient, accumulates rows chunk by chunk).
void sum_to_shape_half_kernel(KernelContext& ctx) {
  const Tensor& g = ctx.in(0);
  Tensor& out = ctx.out(0);
  const int64_t n_out = out.numel();
  if (g.numel() > 0 && (n_out == 1 || sums_trailing_rows(g, out))) {  // chunks widened in L1, summed in order
    float x[kChunk];
    if (n_out == 1) {
      double acc = 0;
      for (int64_t c = 0; c < g.numel(); c += kChunk) {
        const int64_t n = std::min(kChunk, g.numel() - c);
        widen_n(g.dtype(), element(g, c), x, n);
        for (int64_t i = 0; i < n; ++i) acc += x[i];
      }
      const float sum = static_cast<float>(acc);
      narrow_n(out.dtype(), &sum, out.raw(), 1);
      return;
    }
    std::vector<float> acc(static_cast<size_t>(n_out), 0.0f);
    const int64_t rows = g.numel() / n_out;
    if (n_out <= kSumBlock / 2) {  // short rows (a bias gradient): many rows widened per call
      std::vector<float> block(static_cast<size_t>(kSumBlock));
      const int64_t per_block = kSumBlock / n_out;
      for (int64_t r0 = 0; r0 < rows; r0 += per_block) {
        const int64_t nr = std::min(per_block, rows - r0);
        widen_n(g.dtype(), element(g, r0 * n_out), block.data(), nr * n_out);
        for (int64_t r = 0; r < nr; ++r) {
          const float* row = block.data() + r * n_out;
          float* a = acc.data();
          for (int64_t i = 0; i < n_out; ++i) a[i] += row[i];
        }
      }
    } else {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < n_out; c += kChunk) {
          const int64_t n = std::min(kChunk, n_out - c);
          widen_n(g.dtype(), element(g, r * n_out + c), x, n);
          float* a = acc.data() + c;
          for (int64_t i = 0; i < n; ++i) a[i] += x[i];
        }
    }
    narrow_n(out.dtype(), acc.data(), out.raw(), n_out);
    return;
  }
  // Scratch written in full before it is read (the FP32 kernel zero-fills its output itself).
  Tensor wide_g = Tensor::uninitialized(DType::Float32, g.shape());
  Tensor wide_out = Tensor::uninitialized(DType::Float32, out.shape());
  widen_n(g.dtype(), g.raw(), wide_g.data<float>(), g.numel());
  KernelContext wide(ctx.node);
  wide.inputs = {&wide_g, ctx.inputs.size() > 1 ? ctx.inputs[1] : nullptr};
  wide.outputs = {&wide_out};
  sum_to_shape_kernel(wide);
  narrow_n(out.dtype(), wide_out.data<float>(), out.raw(), out.numel());
}

}  // namespace

void register_elementwise_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64};
  const std::vector<DType> num = {DType::Float32, DType::Float64, DType::Int64, DType::Int32, DType::Int8, DType::Uint8};
  const std::vector<DType> all = {DType::Float32, DType::Float64, DType::Int64, DType::Int32,
                                  DType::Int8, DType::Uint8, DType::Bool};
  const Device cpu = Device::CPU;
#define OTTER_UNARY_KERNEL(op, grad) r.add("", #op, cpu, f, unary_kernel<math::op>);
  OTTER_UNARY_OPS(OTTER_UNARY_KERNEL)  // kernels/common/unary_ops.h
#undef OTTER_UNARY_KERNEL
  r.add("", "Sign", cpu, num, unary_numeric_kernel<math::Sign>);
  r.add("", "PRelu", cpu, num, prelu_kernel);
  r.add("", "Max", cpu, num, variadic_kernel<math::Max>);
  r.add("", "Min", cpu, num, variadic_kernel<math::Min>);
  r.add("", "Sum", cpu, f, variadic_kernel<math::Add>);
  r.add("", "Mean", cpu, f, variadic_kernel<math::Add, true>);
  r.add("", "Neg", cpu, {DType::Float32, DType::Float64, DType::Int64, DType::Int32, DType::Int8}, neg_kernel);
  std::vector<DType> all_and_half = all;  // Identity copies bytes: no widening for 16-bit floats
  all_and_half.push_back(DType::Float16);
  all_and_half.push_back(DType::BFloat16);
  r.add("", "Identity", cpu, all_and_half, identity_kernel);
  r.add("", "Not", cpu, {DType::Bool}, not_kernel);
  r.add("", "Cast", cpu, all, cast_kernel);
  r.add("", "CastLike", cpu, all, cast_kernel);  // the output's dtype is the target
  r.add("", "Clip", cpu, num, clip_kernel);
  r.add("", "Add", cpu, num, arith_kernel<math::Add>);
  r.add("", "Sub", cpu, num, arith_kernel<math::Sub>);
  r.add("", "Mul", cpu, num, arith_kernel<math::Mul>);
  r.add("", "Div", cpu, num, arith_kernel<math::Div>);
  r.add("", "Pow", cpu, num, pow_kernel);
  r.add("", "Mod", cpu, num, mod_kernel);
  r.add("", "Equal", cpu, all, compare_kernel<math::Equal>);
  r.add("", "Less", cpu, all, compare_kernel<math::Less>);
  r.add("", "Greater", cpu, all, compare_kernel<math::Greater>);
  r.add("", "LessOrEqual", cpu, all, compare_kernel<math::LessOrEqual>);
  r.add("", "GreaterOrEqual", cpu, all, compare_kernel<math::GreaterOrEqual>);
  r.add("", "And", cpu, {DType::Bool}, logical_kernel<math::And>);
  r.add("", "Or", cpu, {DType::Bool}, logical_kernel<math::Or>);
  r.add("", "Xor", cpu, {DType::Bool}, logical_kernel<math::Xor>);
  r.add("", "Where", cpu, all, where_kernel);
  r.add("", "Dropout", cpu, f, dropout_kernel);
  r.add("otter", "UnaryGrad", cpu, f, unary_grad_kernel);
  r.add("otter", "ClipGrad", cpu, f, clip_grad_kernel);
  r.add("otter", "PReluGrad", cpu, f, prelu_grad_kernel);
  r.add("otter", "MinMaxGrad", cpu, f, min_max_grad_kernel);
  r.add("otter", "DropoutGrad", cpu, f, dropout_grad_kernel);
  r.add("otter", "SumToShapeOf", cpu, f, sum_to_shape_kernel);
  // FP16/BF16 storage: chunked widening in the kernel (above) instead of the plan's widened copies.
  const std::vector<DType> half = {DType::Float16, DType::BFloat16};
#define OTTER_UNARY_HALF_KERNEL(op, grad) r.add("", #op, cpu, half, unary_half_kernel<math::op>);
  OTTER_UNARY_OPS(OTTER_UNARY_HALF_KERNEL)
#undef OTTER_UNARY_HALF_KERNEL
  r.add("otter", "UnaryGrad", cpu, half, unary_grad_half_kernel);
  r.add("", "Add", cpu, half, arith_half_kernel<math::Add>);
  r.add("", "Sub", cpu, half, arith_half_kernel<math::Sub>);
  r.add("", "Mul", cpu, half, arith_half_kernel<math::Mul>);
  r.add("", "Div", cpu, half, arith_half_kernel<math::Div>);
  r.add_widening("", "Add", arith_widening_kernel<math::Add>);
  r.add_widening("", "Sub", arith_widening_kernel<math::Sub>);
  r.add_widening("", "Mul", arith_widening_kernel<math::Mul>);
  r.add_widening("", "Div", arith_widening_kernel<math::Div>);
  r.add("otter", "SumToShapeOf", cpu, half, sum_to_shape_half_kernel);
  for (const char* op : {"Cast", "CastLike"}) r.add("", op, cpu, half, cast_kernel);  // Tensor::cast_into converts
}

}  // namespace otter::cpu
