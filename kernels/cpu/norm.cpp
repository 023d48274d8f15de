// CPU kernels for the norm op family: BatchNormalization, LayerNormalization,
// InstanceNormalization, GroupNormalization and their otter.*Grad ops. Statistics (mean, biased
// variance) are accumulated in double with two passes; the gradient kernels recompute them from X.
// X, Y, dy and dX have the kernel's dtype; scale, bias and the statistics are read and written
// through double vectors, so they may have another floating dtype (BatchNormalization's T1/T2).
//
// Layouts (kernels/common/norm_host.h, shared with the CUDA kernels): BatchNormalization and
// Instance/GroupNormalization view X as [N, C, S] (S = product of the spatial dims); a group
// (n, g) of GroupNormalization is the contiguous block of C/G channels; LayerNormalization views
// X as [rows, cols] split at `axis`, with Scale and B broadcast to X through per-row plus
// per-column offsets.
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/common/norm_host.h"
#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/vec_math.h"
#include "runtime/core/convert.h"

namespace otter::cpu {
namespace {

// Layouts shared with the CUDA kernels (kernels/common/norm_host.h).
using namespace norm;

// Serial below about 32K element visits, split over items above.
int64_t grain(int64_t work_per_item) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, work_per_item)); }

int max_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Writes doubles into a floating tensor of any dtype.
void store(Tensor& out, const std::vector<double>& v) {
  OTTER_CHECK(static_cast<size_t>(out.numel()) == v.size(), "norm kernel: output of ", out.numel(),
              " elements written with ", v.size());
  switch (out.dtype()) {
    case DType::Float64: std::memcpy(out.raw(), v.data(), v.size() * sizeof(double)); break;
    case DType::Float32: {
      float* p = out.data<float>();
      for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<float>(v[i]);
      break;
    }
    default: {
      Tensor t = Tensor::from_vector(v, out.shape()).cast(out.dtype());
      std::memcpy(out.raw(), t.raw(), t.nbytes());
    }
  }
}

// Mean and biased variance (two passes, in double) of the values p[b * block_stride + k] for
// b < blocks, k < block_len.
template <class T>
void moments(const T* p, int64_t blocks, int64_t block_stride, int64_t block_len, double& mean, double& var) {
  int64_t count = blocks * block_len;
  if (count == 0) { mean = 0; var = 0; return; }
  double s = 0;
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t k = 0; k < block_len; ++k) s += p[b * block_stride + k];
  mean = s / static_cast<double>(count);
  double q = 0;
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t k = 0; k < block_len; ++k) {
      double d = p[b * block_stride + k] - mean;
      q += d * d;
    }
  var = q / static_cast<double>(count);
}

// ---- BatchNormalization ----

// Outputs 1-4: running statistics (ONNX: input * momentum + batch * (1 - momentum), biased batch
// variance); in evaluation they pass through. Opset <= 13's saved_mean/saved_var are the batch
// statistics.
void store_batch_norm_statistics(KernelContext& ctx, bool batch, double momentum, const std::vector<double>& in_mean,
                                 const std::vector<double>& in_var, const std::vector<double>& mean,
                                 const std::vector<double>& var) {
  auto running = [&](const std::vector<double>& in, const std::vector<double>& batch_stat) {
    std::vector<double> r(in.size());
    for (size_t c = 0; c < in.size(); ++c) r[c] = in[c] * momentum + batch_stat[c] * (1.0 - momentum);
    return r;
  };
  if (ctx.has_output(1)) store(ctx.out(1), batch ? running(in_mean, mean) : in_mean);
  if (ctx.has_output(2)) store(ctx.out(2), batch ? running(in_var, var) : in_var);
  if (ctx.has_output(3)) store(ctx.out(3), mean);
  if (ctx.has_output(4)) store(ctx.out(4), var);
}

template <class T>
void batch_norm_typed(KernelContext& ctx, bool batch) {
  const Tensor& x = ctx.in(0);
  NCS d = ncs_view(ctx, x.shape());
  std::vector<double> scale = ctx.in(1).to_double_vector(), bias = ctx.in(2).to_double_vector();
  std::vector<double> in_mean = ctx.in(3).to_double_vector(), in_var = ctx.in(4).to_double_vector();
  double eps = ctx.node.attr_float("epsilon", 1e-5), momentum = ctx.node.attr_float("momentum", 0.9);
  const T* px = x.data<T>();
  std::vector<double> mean = in_mean, var = in_var;
  if (batch) {
    parallel_for(d.c, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) moments(px + c * d.s, d.n, d.c * d.s, d.s, mean[c], var[c]);
    }, grain(2 * d.n * d.s));
  }
  std::vector<double> a(d.c), shift(d.c);
  for (int64_t c = 0; c < d.c; ++c) {
    a[c] = scale[c] / std::sqrt(var[c] + eps);
    shift[c] = bias[c] - mean[c] * a[c];
  }
  T* py = ctx.out(0).data<T>();
  parallel_for(d.n * d.c, [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      int64_t c = nc % d.c;
      const T* xi = px + nc * d.s;
      T* yi = py + nc * d.s;
      for (int64_t k = 0; k < d.s; ++k) yi[k] = static_cast<T>(xi[k] * a[c] + shift[c]);
    }
  }, grain(d.s));
  store_batch_norm_statistics(ctx, batch, momentum, in_mean, in_var, mean, var);
}

void batch_norm_kernel(KernelContext& ctx) {
  bool batch = batch_norm_training_form(ctx.node) && ctx.training;
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), batch_norm_typed<scalar_t>(ctx, batch));
}

// (dy, X, scale, input_mean, input_var, B) -> dX, dscale, dB. With batch statistics:
// dx = scale * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)); otherwise the statistics are
// constants and dx = dy * scale * invstd. dscale = sum(dy * xhat), dB = sum(dy) per channel.
template <class T>
void batch_norm_grad_typed(KernelContext& ctx, bool batch) {
  const Tensor& x = ctx.in(1);
  NCS d = ncs_view(ctx, x.shape());
  const T* pdy = ctx.in(0).data<T>();
  const T* px = x.data<T>();
  T* pdx = ctx.out(0).data<T>();
  std::vector<double> scale = ctx.in(2).to_double_vector();
  std::vector<double> in_mean = ctx.in(3).to_double_vector(), in_var = ctx.in(4).to_double_vector();
  double eps = ctx.node.attr_float("epsilon", 1e-5);
  std::vector<double> dscale(d.c), dbias(d.c);
  double count = static_cast<double>(d.n * d.s);
  parallel_for(d.c, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      double mean = in_mean[c], var = in_var[c];
      if (batch) moments(px + c * d.s, d.n, d.c * d.s, d.s, mean, var);
      double inv = 1.0 / std::sqrt(var + eps);
      double sdy = 0, sdyx = 0;
      for (int64_t n = 0; n < d.n; ++n) {
        int64_t base = (n * d.c + c) * d.s;
        for (int64_t k = 0; k < d.s; ++k) {
          double g = pdy[base + k];
          sdy += g;
          sdyx += g * (px[base + k] - mean) * inv;
        }
      }
      dscale[c] = sdyx;
      dbias[c] = sdy;
      double k0 = scale[c] * inv;
      double m1 = count > 0 ? sdy / count : 0, m2 = count > 0 ? sdyx / count : 0;
      for (int64_t n = 0; n < d.n; ++n) {
        int64_t base = (n * d.c + c) * d.s;
        for (int64_t k = 0; k < d.s; ++k) {
          double g = pdy[base + k];
          if (batch) {
            double xhat = (px[base + k] - mean) * inv;
            pdx[base + k] = static_cast<T>(k0 * (g - m1 - xhat * m2));
          } else {
            pdx[base + k] = static_cast<T>(k0 * g);
          }
        }
      }
    }
  }, grain(3 * d.n * d.s));
  if (ctx.has_output(1)) store(ctx.out(1), dscale);
  if (ctx.has_output(2)) store(ctx.out(2), dbias);
}

void batch_norm_grad_kernel(KernelContext& ctx) {
  bool batch = ctx.node.attr_int("training_mode", 0) != 0 && ctx.training;
  OTTER_DISPATCH_FLOAT(ctx.in(1).dtype(), ctx.node.describe(), batch_norm_grad_typed<scalar_t>(ctx, batch));
}

// ---- BatchNormalization on 16-bit data: the widening kernels (registry.h) ----
//
// The two kernels above on FP16/BF16 X, dY, Y and dX read and written as they are. Each thread
// takes a range of channels and walks the items in memory order, widening item n's rows of its
// channels (one contiguous run) into scratch; every per-channel sum then accumulates in the FP32
// kernel's order (items, then positions), in double, and each result is the FP32 kernel's float
// rounded once to 16 bits: the bits of widening the operands, the FP32 kernel and rounding.
// Declined (false): rounded FP32 operands, mixed 16-bit dtypes, statistics outputs that are not
// FP32 (the FP32 kernel would round them through float first), empty tensors.

bool is_16bit(DType t) { return t == DType::Float16 || t == DType::BFloat16; }

bool fp32_outputs_from(const KernelContext& ctx, size_t first) {
  for (size_t i = first; i < ctx.outputs.size(); ++i)
    if (ctx.has_output(i) && ctx.out(i).dtype() != DType::Float32) return false;
  return true;
}

// Item n's run of channels [c0, c1) (S positions each) of a 16-bit [N, C, S] tensor.
const uint16_t* run_of(const Tensor& t, const NCS& d, int64_t n, int64_t c0) {
  return static_cast<const uint16_t*>(t.raw()) + (n * d.c + c0) * d.s;
}

// Batch mean and biased variance of channels [c0, c1) as moments() computes them (two passes).
void moments_16bit(const Tensor& x, const NCS& d, int64_t c0, int64_t c1, std::vector<float>& buf, double* mean,
                   double* var) {
  const int64_t len = (c1 - c0) * d.s;
  const double count = static_cast<double>(d.n * d.s);
  std::vector<double> s(static_cast<size_t>(c1 - c0), 0.0), q(static_cast<size_t>(c1 - c0), 0.0);
  for (int64_t n = 0; n < d.n; ++n) {
    widen_n(x.dtype(), run_of(x, d, n, c0), buf.data(), len);
    for (int64_t c = 0; c < c1 - c0; ++c)
      for (int64_t k = 0; k < d.s; ++k) s[c] += buf[c * d.s + k];
  }
  for (int64_t c = 0; c < c1 - c0; ++c) mean[c] = s[c] / count;
  for (int64_t n = 0; n < d.n; ++n) {
    widen_n(x.dtype(), run_of(x, d, n, c0), buf.data(), len);
    for (int64_t c = 0; c < c1 - c0; ++c)
      for (int64_t k = 0; k < d.s; ++k) {
        double dev = buf[c * d.s + k] - mean[c];
        q[c] += dev * dev;
      }
  }
  for (int64_t c = 0; c < c1 - c0; ++c) var[c] = q[c] / count;
}

bool batch_norm_widening_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  if (!ctx.rounds_nothing() || !is_16bit(x.dtype()) || ctx.out(0).dtype() != x.dtype() || x.numel() == 0 ||
      !fp32_outputs_from(ctx, 1))
    return false;
  const bool batch = batch_norm_training_form(ctx.node) && ctx.training;
  const NCS d = ncs_view(ctx, x.shape());
  std::vector<double> scale = ctx.in(1).to_double_vector(), bias = ctx.in(2).to_double_vector();
  std::vector<double> in_mean = ctx.in(3).to_double_vector(), in_var = ctx.in(4).to_double_vector();
  const double eps = ctx.node.attr_float("epsilon", 1e-5), momentum = ctx.node.attr_float("momentum", 0.9);
  std::vector<double> mean = in_mean, var = in_var;
  Tensor& y = ctx.out(0);
  parallel_for(d.c, [&](int64_t c0, int64_t c1) {
    thread_local std::vector<float> buf;
    const int64_t len = (c1 - c0) * d.s;
    buf.resize(static_cast<size_t>(len));
    if (batch) moments_16bit(x, d, c0, c1, buf, mean.data() + c0, var.data() + c0);
    std::vector<double> a(static_cast<size_t>(c1 - c0)), shift(static_cast<size_t>(c1 - c0));
    for (int64_t c = c0; c < c1; ++c) {
      a[c - c0] = scale[c] / std::sqrt(var[c] + eps);
      shift[c - c0] = bias[c] - mean[c] * a[c - c0];
    }
    for (int64_t n = 0; n < d.n; ++n) {
      widen_n(x.dtype(), run_of(x, d, n, c0), buf.data(), len);
      for (int64_t c = 0; c < c1 - c0; ++c)
        for (int64_t k = 0; k < d.s; ++k) buf[c * d.s + k] = static_cast<float>(buf[c * d.s + k] * a[c] + shift[c]);
      narrow_n(y.dtype(), buf.data(), const_cast<uint16_t*>(run_of(y, d, n, c0)), len);
    }
  }, grain(3 * d.n * d.s));
  store_batch_norm_statistics(ctx, batch, momentum, in_mean, in_var, mean, var);
  return true;
}

bool batch_norm_grad_widening_kernel(KernelContext& ctx) {
  const Tensor &dy = ctx.in(0), &x = ctx.in(1);
  if (!ctx.rounds_nothing() || !is_16bit(x.dtype()) || dy.dtype() != x.dtype() || ctx.out(0).dtype() != x.dtype() ||
      x.numel() == 0 || !fp32_outputs_from(ctx, 1))
    return false;
  const bool batch = ctx.node.attr_int("training_mode", 0) != 0 && ctx.training;
  const NCS d = ncs_view(ctx, x.shape());
  std::vector<double> scale = ctx.in(2).to_double_vector();
  std::vector<double> in_mean = ctx.in(3).to_double_vector(), in_var = ctx.in(4).to_double_vector();
  const double eps = ctx.node.attr_float("epsilon", 1e-5);
  const double count = static_cast<double>(d.n * d.s);
  std::vector<double> dscale(static_cast<size_t>(d.c)), dbias(static_cast<size_t>(d.c));
  Tensor& dx = ctx.out(0);
  parallel_for(d.c, [&](int64_t c0, int64_t c1) {
    thread_local std::vector<float> gbuf, xbuf;
    const int64_t len = (c1 - c0) * d.s, nc = c1 - c0;
    gbuf.resize(static_cast<size_t>(len));
    xbuf.resize(static_cast<size_t>(len));
    std::vector<double> mean(in_mean.begin() + c0, in_mean.begin() + c1), var(in_var.begin() + c0, in_var.begin() + c1);
    if (batch) moments_16bit(x, d, c0, c1, xbuf, mean.data(), var.data());
    std::vector<double> inv(static_cast<size_t>(nc)), sdy(static_cast<size_t>(nc), 0.0), sdyx(static_cast<size_t>(nc), 0.0);
    for (int64_t c = 0; c < nc; ++c) inv[c] = 1.0 / std::sqrt(var[c] + eps);
    for (int64_t n = 0; n < d.n; ++n) {
      widen_n(dy.dtype(), run_of(dy, d, n, c0), gbuf.data(), len);
      widen_n(x.dtype(), run_of(x, d, n, c0), xbuf.data(), len);
      for (int64_t c = 0; c < nc; ++c)
        for (int64_t k = 0; k < d.s; ++k) {
          double g = gbuf[c * d.s + k];
          sdy[c] += g;
          sdyx[c] += g * (xbuf[c * d.s + k] - mean[c]) * inv[c];
        }
    }
    std::vector<double> k0(static_cast<size_t>(nc)), m1(static_cast<size_t>(nc)), m2(static_cast<size_t>(nc));
    for (int64_t c = 0; c < nc; ++c) {
      dscale[c0 + c] = sdyx[c];
      dbias[c0 + c] = sdy[c];
      k0[c] = scale[c0 + c] * inv[c];
      m1[c] = count > 0 ? sdy[c] / count : 0;
      m2[c] = count > 0 ? sdyx[c] / count : 0;
    }
    for (int64_t n = 0; n < d.n; ++n) {
      widen_n(dy.dtype(), run_of(dy, d, n, c0), gbuf.data(), len);
      if (batch) widen_n(x.dtype(), run_of(x, d, n, c0), xbuf.data(), len);
      for (int64_t c = 0; c < nc; ++c)
        for (int64_t k = 0; k < d.s; ++k) {
          double g = gbuf[c * d.s + k];
          if (batch) {
            double xhat = (xbuf[c * d.s + k] - mean[c]) * inv[c];
            gbuf[c * d.s + k] = static_cast<float>(k0[c] * (g - m1[c] - xhat * m2[c]));
          } else {
            gbuf[c * d.s + k] = static_cast<float>(k0[c] * g);
          }
        }
      narrow_n(dx.dtype(), gbuf.data(), const_cast<uint16_t*>(run_of(dx, d, n, c0)), len);
    }
  }, grain(3 * d.n * d.s));
  if (ctx.has_output(1)) store(ctx.out(1), dscale);
  if (ctx.has_output(2)) store(ctx.out(2), dbias);
  return true;
}

// ---- LayerNormalization ----

// Offsets, in row-major order over dims [from, to) of `shape`, of a tensor with broadcast
// `strides` (0 along broadcast dims).
std::vector<int64_t> dim_offsets(const Shape& shape, const std::vector<int64_t>& strides, size_t from, size_t to) {
  std::vector<int64_t> off = {0};
  for (size_t k = from; k < to; ++k) {
    std::vector<int64_t> next;
    next.reserve(off.size() * static_cast<size_t>(shape[k]));
    for (int64_t o : off)
      for (int64_t i = 0; i < shape[k]; ++i) next.push_back(o + i * strides[k]);
    off.swap(next);
  }
  return off;
}

// A parameter (Scale or B) broadcast to X: element (r, j) is at row[r] + col[j].
struct Broadcast {
  std::vector<double> v;
  std::vector<int64_t> row, col;
  Broadcast(const Tensor& t, const Shape& x, size_t axis) : v(t.to_double_vector()) {
    std::vector<int64_t> strides = broadcast_strides(t.shape(), x);
    row = dim_offsets(x, strides, 0, axis);
    col = dim_offsets(x, strides, axis, x.size());
  }
};

// Element (r, j) of the broadcast parameter is element j (a [cols] Scale or B, the usual case).
bool plain_row_param(const Broadcast& t, int64_t cols) {
  if (static_cast<int64_t>(t.v.size()) != cols) return false;
  for (int64_t o : t.row)
    if (o != 0) return false;
  for (int64_t j = 0; j < cols; ++j)
    if (t.col[static_cast<size_t>(j)] != j) return false;
  return true;
}

template <class T>
void layer_norm_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  RowView v = row_view(ctx, x.shape());
  double eps = ctx.node.attr_float("epsilon", 1e-5);
  Broadcast w(ctx.in(1), x.shape(), v.axis);
  bool has_b = ctx.has_input(2);
  Broadcast bias = has_b ? Broadcast(ctx.in(2), x.shape(), v.axis) : Broadcast(Tensor::scalar(0.0), x.shape(), v.axis);
  const T* px = x.data<T>();
  T* py = ctx.out(0).data<T>();
  std::vector<double> means(v.rows), invs(v.rows);
  // FP32 with a [cols] Scale and B: AVX-512 rows (kernels/cpu/vec_math.h), the same arithmetic.
  const bool vector_rows = std::is_same_v<T, float> && plain_row_param(w, v.cols) &&
                           (!has_b || plain_row_param(bias, v.cols));
  parallel_for(v.rows, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* xr = px + r * v.cols;
      T* yr = py + r * v.cols;
      if constexpr (std::is_same_v<T, float>)
        if (vector_rows && vec_layer_norm_row(xr, w.v.data(), has_b ? bias.v.data() : nullptr, yr, v.cols, eps,
                                              &means[r], &invs[r]))
          continue;
      double mean, var;
      moments(xr, 1, 0, v.cols, mean, var);
      double inv = 1.0 / std::sqrt(var + eps);
      const double* wr = w.v.data() + w.row[r];
      const double* br = bias.v.data() + bias.row[r];
      for (int64_t j = 0; j < v.cols; ++j)
        yr[j] = static_cast<T>((xr[j] - mean) * inv * wr[w.col[j]] + br[bias.col[j]]);
      means[r] = mean;
      invs[r] = inv;
    }
  }, grain(3 * v.cols));
  if (ctx.has_output(1)) store(ctx.out(1), means);
  if (ctx.has_output(2)) store(ctx.out(2), invs);
}

void layer_norm_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), layer_norm_typed<scalar_t>(ctx));
}

// (dy, X, Scale, B?) -> dX, dScale, dB. Per row, with g = dy * w:
// dx = invstd * (g - mean(g) - xhat * mean(g * xhat)); dScale and dB sum dy * xhat and dy into
// the parameters' broadcast positions (per-block partial sums, then added).
template <class T>
void layer_norm_grad_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(1);
  RowView v = row_view(ctx, x.shape());
  double eps = ctx.node.attr_float("epsilon", 1e-5);
  Broadcast w(ctx.in(2), x.shape(), v.axis);
  bool want_db = ctx.has_input(3) && ctx.has_output(2);
  Broadcast bias = want_db ? Broadcast(ctx.in(3), x.shape(), v.axis) : Broadcast(Tensor::scalar(0.0), x.shape(), v.axis);
  const T* pdy = ctx.in(0).data<T>();
  const T* px = x.data<T>();
  T* pdx = ctx.out(0).data<T>();
  size_t nw = w.v.size(), nb = bias.v.size();
  int64_t numel = v.rows * v.cols;
  int64_t blocks = numel < 16384 ? 1 : std::min<int64_t>(v.rows, max_threads());
  blocks = std::max<int64_t>(1, std::min<int64_t>(blocks, numel / static_cast<int64_t>(std::max<size_t>({nw, nb, 1}))));
  std::vector<double> part_w(static_cast<size_t>(blocks) * nw, 0.0), part_b(static_cast<size_t>(blocks) * nb, 0.0);
  double cols = static_cast<double>(v.cols);
  const bool plain = plain_row_param(w, v.cols) && (!want_db || plain_row_param(bias, v.cols));
  parallel_for(blocks, [&](int64_t bb, int64_t be) {
    for (int64_t blk = bb; blk < be; ++blk) {
      double* gw = part_w.data() + blk * nw;
      double* gb = part_b.data() + blk * nb;
      for (int64_t r = v.rows * blk / blocks; r < v.rows * (blk + 1) / blocks; ++r) {
        const T* xr = px + r * v.cols;
        const T* dyr = pdy + r * v.cols;
        T* dxr = pdx + r * v.cols;
        if constexpr (std::is_same_v<T, float>)
          if (plain && vec_layer_norm_grad_row(xr, dyr, w.v.data(), dxr, gw, want_db ? gb : nullptr, v.cols, eps))
            continue;
        double mean, var;
        moments(xr, 1, 0, v.cols, mean, var);
        double inv = 1.0 / std::sqrt(var + eps);
        const double* wr = w.v.data() + w.row[r];
        double s1 = 0, s2 = 0;
        for (int64_t j = 0; j < v.cols; ++j) {
          double g = dyr[j] * wr[w.col[j]];
          s1 += g;
          s2 += g * (xr[j] - mean) * inv;
        }
        double m1 = s1 / cols, m2 = s2 / cols;
        if (plain) {  // Scale and B are [cols] (the usual case): direct indexing, which vectorises
          for (int64_t j = 0; j < v.cols; ++j) {
            double xhat = (xr[j] - mean) * inv;
            double dy = dyr[j];
            dxr[j] = static_cast<T>(inv * (dy * wr[j] - m1 - xhat * m2));
            gw[j] += dy * xhat;
          }
          if (want_db)
            for (int64_t j = 0; j < v.cols; ++j) gb[j] += dyr[j];
          continue;
        }
        for (int64_t j = 0; j < v.cols; ++j) {
          double xhat = (xr[j] - mean) * inv;
          double dy = dyr[j];
          dxr[j] = static_cast<T>(inv * (dy * wr[w.col[j]] - m1 - xhat * m2));
          gw[w.row[r] + w.col[j]] += dy * xhat;
          if (want_db) gb[bias.row[r] + bias.col[j]] += dy;
        }
      }
    }
  }, 1);
  std::vector<double> dw(nw, 0.0), db(nb, 0.0);
  for (int64_t blk = 0; blk < blocks; ++blk) {
    for (size_t i = 0; i < nw; ++i) dw[i] += part_w[blk * nw + i];
    for (size_t i = 0; i < nb; ++i) db[i] += part_b[blk * nb + i];
  }
  if (ctx.has_output(1)) store(ctx.out(1), dw);
  if (want_db) store(ctx.out(2), db);
}

void layer_norm_grad_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_FLOAT(ctx.in(1).dtype(), ctx.node.describe(), layer_norm_grad_typed<scalar_t>(ctx));
}

// ---- InstanceNormalization (one group per channel), GroupNormalization ----

// Index into a [C] (opset 21) or [num_groups] (opset 18) parameter for channel c.
std::vector<int64_t> channel_index(const GroupView& v, size_t param_size, const KernelContext& ctx) {
  std::vector<int64_t> idx(v.d.c);
  bool per_channel = per_channel_param(v, static_cast<int64_t>(param_size), ctx);
  for (int64_t c = 0; c < v.d.c; ++c) idx[c] = per_channel ? c : c / v.per_group;
  return idx;
}

template <class T>
void group_norm_typed(KernelContext& ctx, bool instance) {
  const Tensor& x = ctx.in(0);
  GroupView v = group_view(ctx, x.shape(), instance);
  double eps = ctx.node.attr_float("epsilon", 1e-5);
  std::vector<double> scale = ctx.in(1).to_double_vector(), bias = ctx.in(2).to_double_vector();
  std::vector<int64_t> si = channel_index(v, scale.size(), ctx), bi = channel_index(v, bias.size(), ctx);
  const T* px = x.data<T>();
  T* py = ctx.out(0).data<T>();
  parallel_for(v.d.n * v.groups, [&](int64_t b, int64_t e) {
    for (int64_t ng = b; ng < e; ++ng) {
      const T* xb = px + ng * v.block;
      T* yb = py + ng * v.block;
      double mean, var;
      moments(xb, 1, 0, v.block, mean, var);
      double inv = 1.0 / std::sqrt(var + eps);
      for (int64_t cc = 0; cc < v.per_group; ++cc) {
        int64_t c = (ng % v.groups) * v.per_group + cc;
        double a = inv * scale[si[c]], shift = bias[bi[c]] - mean * a;
        for (int64_t k = 0; k < v.d.s; ++k) yb[cc * v.d.s + k] = static_cast<T>(xb[cc * v.d.s + k] * a + shift);
      }
    }
  }, grain(3 * v.block));
}

template <bool Instance>
void group_norm_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), group_norm_typed<scalar_t>(ctx, Instance));
}

// (dy, X, scale, bias) -> dX, dscale, dbias. Per group, with g = dy * scale[c]:
// dx = invstd * (g - mean(g) - xhat * mean(g * xhat)); dscale/dbias sum dy * xhat and dy per
// (n, c), then over n (and over the channels of a group for opset-18 per-group parameters).
template <class T>
void group_norm_grad_typed(KernelContext& ctx, bool instance) {
  const Tensor& x = ctx.in(1);
  GroupView v = group_view(ctx, x.shape(), instance);
  double eps = ctx.node.attr_float("epsilon", 1e-5);
  std::vector<double> scale = ctx.in(2).to_double_vector();
  size_t nbias = static_cast<size_t>(ctx.in(3).numel());
  std::vector<int64_t> si = channel_index(v, scale.size(), ctx), bi = channel_index(v, nbias, ctx);
  const T* pdy = ctx.in(0).data<T>();
  const T* px = x.data<T>();
  T* pdx = ctx.out(0).data<T>();
  std::vector<double> ds_nc(v.d.n * v.d.c), db_nc(v.d.n * v.d.c);
  double count = static_cast<double>(v.block);
  parallel_for(v.d.n * v.groups, [&](int64_t b, int64_t e) {
    for (int64_t ng = b; ng < e; ++ng) {
      int64_t base = ng * v.block;
      double mean, var;
      moments(px + base, 1, 0, v.block, mean, var);
      double inv = 1.0 / std::sqrt(var + eps);
      int64_t c0 = (ng % v.groups) * v.per_group, n = ng / v.groups;
      double s1 = 0, s2 = 0;
      for (int64_t cc = 0; cc < v.per_group; ++cc) {
        double w = scale[si[c0 + cc]], sdy = 0, sdyx = 0;
        for (int64_t k = 0; k < v.d.s; ++k) {
          int64_t i = base + cc * v.d.s + k;
          double dy = pdy[i];
          sdy += dy;
          sdyx += dy * (px[i] - mean) * inv;
        }
        s1 += w * sdy;
        s2 += w * sdyx;
        ds_nc[n * v.d.c + c0 + cc] = sdyx;
        db_nc[n * v.d.c + c0 + cc] = sdy;
      }
      double m1 = count > 0 ? s1 / count : 0, m2 = count > 0 ? s2 / count : 0;
      for (int64_t cc = 0; cc < v.per_group; ++cc) {
        double w = scale[si[c0 + cc]];
        for (int64_t k = 0; k < v.d.s; ++k) {
          int64_t i = base + cc * v.d.s + k;
          double xhat = (px[i] - mean) * inv;
          pdx[i] = static_cast<T>(inv * (pdy[i] * w - m1 - xhat * m2));
        }
      }
    }
  }, grain(3 * v.block));
  std::vector<double> dscale(scale.size(), 0.0), dbias(nbias, 0.0);
  for (int64_t n = 0; n < v.d.n; ++n)
    for (int64_t c = 0; c < v.d.c; ++c) {
      dscale[si[c]] += ds_nc[n * v.d.c + c];
      dbias[bi[c]] += db_nc[n * v.d.c + c];
    }
  if (ctx.has_output(1)) store(ctx.out(1), dscale);
  if (ctx.has_output(2)) store(ctx.out(2), dbias);
}

template <bool Instance>
void group_norm_grad_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_FLOAT(ctx.in(1).dtype(), ctx.node.describe(), group_norm_grad_typed<scalar_t>(ctx, Instance));
}

}  // namespace

void register_norm_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64};
  r.add("", "BatchNormalization", Device::CPU, f, batch_norm_kernel);
  r.add("otter", "BatchNormalizationGrad", Device::CPU, f, batch_norm_grad_kernel);
  r.add_widening("", "BatchNormalization", batch_norm_widening_kernel);
  r.add_widening("otter", "BatchNormalizationGrad", batch_norm_grad_widening_kernel);
  r.add("", "LayerNormalization", Device::CPU, f, layer_norm_kernel);
  r.add("otter", "LayerNormalizationGrad", Device::CPU, f, layer_norm_grad_kernel);
  r.add("", "InstanceNormalization", Device::CPU, f, group_norm_kernel<true>);
  r.add("otter", "InstanceNormalizationGrad", Device::CPU, f, group_norm_grad_kernel<true>);
  r.add("", "GroupNormalization", Device::CPU, f, group_norm_kernel<false>);
  r.add("otter", "GroupNormalizationGrad", Device::CPU, f, group_norm_grad_kernel<false>);
}

}  // namespace otter::cpu
