// CPU kernels for the conv op family: Conv, ConvTranspose and their internal gradient ops. FP32
// (and BF16 where the CPU has BF16 dot products) goes to oneDNN's convolution primitives
// (kernels/cpu/onednn.h) when the geometry allows; FP64 (the gradient checker's reference) and
// the geometries oneDNN cannot take (negative pads, > 3 spatial dims, empty tensors) use
// im2col/col2im and OpenBLAS GEMM (cblas_sgemm/dgemm) per batch item and group.
//
// Every op here pairs an "image" (the tensor a window slides over) with a "grid" (one position
// per window placement): image position = grid position * stride - pad + tap * dilation. Three
// cores cover all six ops:
//   correlate:   grid = W @ im2col(image) (+ bias)    Conv forward, ConvTranspose's dx
//   scatter:     image = col2im(W^T @ grid) (+ bias)  Conv's dx, ConvTranspose forward
//   weight_grad: dW = sum_n grid @ im2col(image)^T     dW of both
// with W viewed per group as [grid channels, image channels x kernel]. Work is spread over the
// batch (and groups) with parallel_for when each item's GEMM is small enough that OpenBLAS runs
// it on the calling thread; larger GEMMs run one after another and OpenBLAS threads them. The
// geometry (output dims, pads, channels) comes from kernels/common/conv_host.h.
#include <cblas.h>

#include <cstring>
#include <map>
#include <mutex>

#include "kernels/common/conv_host.h"
#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/onednn.h"
#include "runtime/core/convert.h"
#include "runtime/core/half.h"

namespace otter::cpu {
namespace {

// OpenBLAS runs a GEMM with m*n*k at most this on the calling thread (SMP_THRESHOLD_MIN x
// GEMM_MULTITHREAD_THRESHOLD); below it we parallelise over the batch ourselves.
constexpr int64_t kBlasSingleThreadWork = 65536 * 4;
// Total multiply-adds below which a loop over items stays on one thread.
constexpr int64_t kParallelWork = 1 << 17;

void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
              1.0f, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}
void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* a, int64_t lda, const double* b,
               int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
              1.0, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

// C = op(A) op(B) + beta C, row-major, with the empty cases handled (BLAS rejects k = 0).
template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb, T beta,
          T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    return;
  }
  blas_gemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

// The shared geometry (kernels/common/conv_host.h) with the sizes im2col works with.
struct Geometry : conv::ConvGeometry {
  size_t dims = 0;
  int64_t image_size = 1, grid_size = 1, kernel_size = 1;
  bool identity = false;  // 1x1 kernel, stride 1, no pads, image == grid: im2col is the image itself

  explicit Geometry(conv::ConvGeometry g) : conv::ConvGeometry(std::move(g)) {
    dims = image.size();
    OTTER_CHECK(dims >= 1 && grid.size() == dims && kernel.size() == dims, "conv geometry: rank mismatch");
    image_size = shape_numel(image);
    grid_size = shape_numel(grid);
    kernel_size = shape_numel(kernel);
    identity = image == grid;
    for (size_t d = 0; d < dims; ++d)
      if (kernel[d] != 1 || strides[d] != 1 || pads[d] != 0) identity = false;
  }
};

// Along the last spatial dim, the grid positions x in [lo, hi) whose image position
// i0 + x * s lies in [0, n).
inline void valid_range(int64_t i0, int64_t s, int64_t n, int64_t len, int64_t& lo, int64_t& hi) {
  lo = i0 >= 0 ? 0 : (-i0 + s - 1) / s;
  hi = i0 > n - 1 ? 0 : (n - 1 - i0) / s + 1;
  lo = std::min(lo, len);
  hi = std::max(lo, std::min(hi, len));
}

// Walks the rows of the column matrix of one channel: for each kernel tap `kr` and each run of
// grid positions along the last dim, calls fn(grid_offset, image_offset_or_-1, i0) where the
// run's image position along the last dim is i0 + x * stride.
template <class Fn>
void for_each_run(const Geometry& g, int64_t kr, Fn fn) {
  size_t D = g.dims;
  int64_t k[8] = {0}, o[8] = {0};
  std::vector<int64_t> kv, ov;
  int64_t* kp = k;
  int64_t* op = o;
  if (D > 8) { kv.assign(D, 0); ov.assign(D, 0); kp = kv.data(); op = ov.data(); }
  for (size_t d = D; d-- > 0;) { kp[d] = kr % g.kernel[d]; kr /= g.kernel[d]; }
  int64_t last = g.grid[D - 1];
  int64_t outer = last ? g.grid_size / last : 0;
  int64_t i0 = -g.pads[D - 1] + kp[D - 1] * g.dilations[D - 1];
  for (int64_t r = 0; r < outer; ++r) {
    int64_t off = 0;
    bool valid = true;
    for (size_t d = 0; d + 1 < D; ++d) {
      int64_t i = op[d] * g.strides[d] - g.pads[d] + kp[d] * g.dilations[d];
      if (i < 0 || i >= g.image[d]) { valid = false; break; }
      off = off * g.image[d] + i;
    }
    fn(r * last, valid ? off * g.image[D - 1] : int64_t(-1), i0);
    for (size_t d = D - 1; d-- > 0;) {
      if (++op[d] < g.grid[d]) break;
      op[d] = 0;
    }
  }
}

// col [channels * K, G] from image [channels, image...].
template <class T>
void im2col(const T* img, int64_t channels, const Geometry& g, T* col) {
  int64_t K = g.kernel_size, G = g.grid_size, rows = channels * K;
  int64_t last = g.grid[g.dims - 1], s = g.strides[g.dims - 1], n = g.image[g.dims - 1];
  for (int64_t row = 0; row < rows; ++row) {
    const T* src = img + (row / K) * g.image_size;
    T* dst = col + row * G;
    for_each_run(g, row % K, [&](int64_t gofs, int64_t iofs, int64_t i0) {
      T* out = dst + gofs;
      if (iofs < 0) { std::fill(out, out + last, T(0)); return; }
      int64_t lo, hi;
      valid_range(i0, s, n, last, lo, hi);
      std::fill(out, out + lo, T(0));
      int64_t base = iofs + i0;  // image offset of grid position x: base + x * s (valid for x in [lo, hi))
      if (s == 1 && hi > lo) std::memcpy(out + lo, src + base + lo, static_cast<size_t>(hi - lo) * sizeof(T));
      else for (int64_t x = lo; x < hi; ++x) out[x] = src[base + x * s];
      std::fill(out + hi, out + last, T(0));
    });
  }
}

// image [channels, image...] = the sum of col [channels * K, G] back over the windows.
template <class T>
void col2im(const T* col, int64_t channels, const Geometry& g, T* img) {
  int64_t K = g.kernel_size, G = g.grid_size;
  int64_t last = g.grid[g.dims - 1], s = g.strides[g.dims - 1], n = g.image[g.dims - 1];
  for (int64_t c = 0; c < channels; ++c) {
    T* dst = img + c * g.image_size;
    std::fill(dst, dst + g.image_size, T(0));
    for (int64_t kr = 0; kr < K; ++kr) {
      const T* src = col + (c * K + kr) * G;
      for_each_run(g, kr, [&](int64_t gofs, int64_t iofs, int64_t i0) {
        if (iofs < 0) return;
        int64_t lo, hi;
        valid_range(i0, s, n, last, lo, hi);
        const T* in = src + gofs;
        int64_t base = iofs + i0;
        for (int64_t x = lo; x < hi; ++x) dst[base + x * s] += in[x];
      });
    }
  }
}

// Runs item(i, scratch) for i in [0, items): in parallel over items when each item's GEMM is
// small enough for OpenBLAS to run it on the calling thread, else one after another with
// OpenBLAS threading each GEMM. (No OpenMP region runs between threaded GEMMs: OpenBLAS's
// threads spin after a call and would starve OpenMP's workers.)
template <class T, class Fn>
void for_items(int64_t items, int64_t gemm_work, int64_t scratch_size, Fn item) {
  if (items <= 0) return;
  bool batch_parallel = items > 1 && gemm_work <= kBlasSingleThreadWork;
  if (batch_parallel) {
    int64_t min_items = std::max<int64_t>(1, kParallelWork / std::max<int64_t>(gemm_work, 1));
    parallel_for(items, [&](int64_t b, int64_t e) {
      std::vector<T> scratch(static_cast<size_t>(scratch_size));
      for (int64_t i = b; i < e; ++i) item(i, scratch.data());
    }, min_items);
  } else {
    std::vector<T> scratch(static_cast<size_t>(scratch_size));
    for (int64_t i = 0; i < items; ++i) item(i, scratch.data());
  }
}

// grid[n, grp*co + m] = W[grp*co + m] @ im2col(image[n, grp*ci ...]) (+ bias[grp*co + m]).
template <class T>
void correlate(const T* image, const T* w, const T* bias, T* grid, const Geometry& g) {
  int64_t ci = g.image_channels, co = g.grid_channels, CK = ci * g.kernel_size, G = g.grid_size;
  int64_t scratch = g.identity ? 0 : CK * G;
  for_items<T>(g.batch * g.group, co * G * CK, scratch, [&](int64_t item, T* col) {
    int64_t n = item / g.group, grp = item % g.group;
    const T* img = image + (n * g.group + grp) * ci * g.image_size;
    const T* cols = img;
    if (!g.identity) { im2col(img, ci, g, col); cols = col; }
    T* out = grid + (n * g.group + grp) * co * G;
    gemm<T>(false, false, co, G, CK, w + grp * co * CK, CK, cols, G, T(0), out, G);
    if (bias)
      for (int64_t m = 0; m < co; ++m) {
        T b = bias[grp * co + m];
        T* row = out + m * G;
        for (int64_t x = 0; x < G; ++x) row[x] += b;
      }
  });
}

// image[n, grp*ci + c] = col2im(W_grp^T @ grid[n, grp*co ...]) (+ bias[grp*ci + c]).
template <class T>
void scatter(const T* grid, const T* w, const T* bias, T* image, const Geometry& g) {
  int64_t ci = g.image_channels, co = g.grid_channels, CK = ci * g.kernel_size, G = g.grid_size;
  int64_t scratch = g.identity ? 0 : CK * G;
  for_items<T>(g.batch * g.group, co * G * CK, scratch, [&](int64_t item, T* col) {
    int64_t n = item / g.group, grp = item % g.group;
    const T* in = grid + (n * g.group + grp) * co * G;
    T* img = image + (n * g.group + grp) * ci * g.image_size;
    if (g.identity) {
      gemm<T>(true, false, CK, G, co, w + grp * co * CK, CK, in, G, T(0), img, G);
    } else {
      gemm<T>(true, false, CK, G, co, w + grp * co * CK, CK, in, G, T(0), col, G);
      col2im(col, ci, g, img);
    }
    if (bias)
      for (int64_t c = 0; c < ci; ++c) {
        T b = bias[grp * ci + c];
        T* plane = img + c * g.image_size;
        for (int64_t x = 0; x < g.image_size; ++x) plane[x] += b;
      }
  });
}

// dW[grp*co + m] = sum_n grid[n, grp*co + m] @ im2col(image[n, grp*ci ...])^T.
template <class T>
void weight_grad(const T* grid, const T* image, T* dw, const Geometry& g) {
  int64_t ci = g.image_channels, co = g.grid_channels, CK = ci * g.kernel_size, G = g.grid_size;
  int64_t wsize = g.group * co * CK;
  std::fill(dw, dw + wsize, T(0));
  int64_t scratch = g.identity ? 0 : CK * G;
  // Accumulates batch items [b, e) into acc.
  auto accumulate = [&](int64_t b, int64_t e, T* acc, T* col) {
    for (int64_t n = b; n < e; ++n)
      for (int64_t grp = 0; grp < g.group; ++grp) {
        const T* img = image + (n * g.group + grp) * ci * g.image_size;
        const T* cols = img;
        if (!g.identity) { im2col(img, ci, g, col); cols = col; }
        const T* in = grid + (n * g.group + grp) * co * G;
        gemm<T>(false, true, co, CK, G, in, G, cols, G, T(1), acc + grp * co * CK, CK);
      }
  };
  int64_t item_work = g.group * co * G * CK;
  if (g.batch > 1 && co * G * CK <= kBlasSingleThreadWork) {
    // Per-chunk partial sums, added in chunk order so the result does not depend on timing.
    std::map<int64_t, std::vector<T>> partials;
    std::mutex mu;
    int64_t min_items = std::max<int64_t>(1, kParallelWork / std::max<int64_t>(item_work, 1));
    parallel_for(g.batch, [&](int64_t b, int64_t e) {
      std::vector<T> acc(static_cast<size_t>(wsize), T(0)), col(static_cast<size_t>(scratch));
      accumulate(b, e, acc.data(), col.data());
      std::lock_guard<std::mutex> lock(mu);
      partials[b] = std::move(acc);
    }, min_items);
    for (auto& kv : partials)
      for (int64_t i = 0; i < wsize; ++i) dw[i] += kv.second[static_cast<size_t>(i)];
  } else {
    std::vector<T> col(static_cast<size_t>(scratch));
    accumulate(0, g.batch, dw, col.data());
  }
}

// Grids of a few positions (the last stages of a CNN at low resolution: ResNet-18 at 32x32 ends on
// 2x2 and 1x1 grids) run as one GEMM over the whole batch per group, on the taps that read the
// image somewhere (a 3x3 window with pad 1 over a 1x1 grid reads it with its centre tap only):
//   Correlate:  Y'[grid ch, batch x grid] = W_live[grid ch, image ch x live taps] @ cols
//   Scatter:    cols' = W_live^T @ dY', added back into the image (col2im over the live taps)
//   WeightGrad: dW_live = dY' @ cols^T, the other taps' gradients zeros
// where cols [image ch x live taps, batch x grid] is every item's im2col side by side. Per-item
// GEMMs there have k or n = the grid size, and oneDNN's kernels ran at a fifth of a GEMM's speed
// or less (5-7 ms a call for the 512x512 3x3 convolutions on 1x1 grids; AMX BF16 alike).
//
// The operands are read in any of FP32, FP16 and BF16 (converted exactly as they are gathered:
// the BF16 kernels and the FP16 widening kernels take this path without widening whole weights),
// the arithmetic is FP32, and the output is written through one conversion at the end: FP32,
// 16-bit, or FP32 rounded through FP16/BF16 (a fused output Cast). On 16-bit operands the FP32
// values are the widened path's, so the bits are too.
constexpr int64_t kSmallGridMax = 8;         // grid positions per item
constexpr int64_t kSmallGridCols = 1 << 22;  // floats of the batch's column matrix (16 MB)

bool small_grid(const Geometry& g) {
  return g.grid_size <= kSmallGridMax && g.batch > 1 && g.group >= 1 &&
         g.image_channels * g.kernel_size * g.batch * g.grid_size <= kSmallGridCols;
}

// Calls fn(read) with read(i) = element i of `t` as FP32 (exact), the dtype chosen once.
template <class Fn>
void with_reader(const Tensor& t, Fn fn) {
  const void* p = t.raw();
  switch (t.dtype()) {
    case DType::Float16: {
      const auto* h = static_cast<const uint16_t*>(p);
      return fn([h](int64_t i) { return math::half_bits_to_float(h[i]); });
    }
    case DType::BFloat16: {
      const auto* b = static_cast<const uint16_t*>(p);
      return fn([b](int64_t i) { return math::bfloat16_bits_to_float(b[i]); });
    }
    default: {
      const auto* f = static_cast<const float*>(p);
      return fn([f](int64_t i) { return f[i]; });
    }
  }
}

struct SmallGrid {
  std::vector<int64_t> at;    // at[k * G + pos]: the image offset tap k reads at grid position pos, or -1
  std::vector<int64_t> live;  // the taps that read the image somewhere
};

SmallGrid small_grid_taps(const Geometry& g) {
  const int64_t K = g.kernel_size, G = g.grid_size;
  const int64_t last = g.grid[g.dims - 1], s = g.strides[g.dims - 1], n = g.image[g.dims - 1];
  SmallGrid t;
  t.at.assign(static_cast<size_t>(K * G), -1);
  for (int64_t k = 0; k < K; ++k) {
    for_each_run(g, k, [&](int64_t gofs, int64_t iofs, int64_t i0) {
      if (iofs < 0) return;
      for (int64_t x = 0; x < last; ++x)
        if (i0 + x * s >= 0 && i0 + x * s < n) t.at[static_cast<size_t>(k * G + gofs + x)] = iofs + i0 + x * s;
    });
    for (int64_t pos = 0; pos < G; ++pos)
      if (t.at[static_cast<size_t>(k * G + pos)] >= 0) {
        t.live.push_back(k);
        break;
      }
  }
  return t;
}

// Whether the FP32 kernel (and so the FP16 widening kernel) takes small_grid_conv: a weight
// gradient, or a window with taps that read no image position. oneDNN's FP32 forward and
// backward-data kernels keep up on small grids where every tap is live (2x2 grids: ~1.4 ms a
// call); its weight gradient does not.
bool takes_small_grid_fp32(const conv::Call& c, const Geometry& g) {
  if (!small_grid(g)) return false;
  return c.move == conv::Move::WeightGrad || static_cast<int64_t>(small_grid_taps(g).live.size()) < g.kernel_size;
}

// Writes FP32 values as elements [first, first + n) of `out` (FP32, FP16 or BF16), rounded through
// `round` (FP16/BF16) where an FP32 output stands for a 16-bit one.
void store(const float* v, Tensor& out, int64_t first, int64_t n, DType round) {
  if (out.dtype() != DType::Float32)
    return narrow_n(out.dtype(), v, static_cast<uint16_t*>(out.raw()) + first, n);
  float* o = out.data<float>() + first;
  if (round == DType::Float16 || round == DType::BFloat16) return round_through_n(v, o, n, round == DType::Float16);
  std::memcpy(o, v, static_cast<size_t>(n) * sizeof(float));
}

void small_grid_conv(const conv::Call& c, const Geometry& g, DType round) {
  const int64_t ci = g.image_channels, co = g.grid_channels, K = g.kernel_size, G = g.grid_size;
  const int64_t NG = g.batch * g.grid_size, IS = g.image_size;
  const SmallGrid t = small_grid_taps(g);
  const int64_t L = static_cast<int64_t>(t.live.size()), rows = ci * L;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(NG, 1));
  const bool correlate = c.move == conv::Move::Correlate, scatter = c.move == conv::Move::Scatter;
  const Tensor& image_t = correlate ? *c.source : scatter ? *c.out : *c.image;
  const Tensor& grid_t = correlate ? *c.out : scatter ? *c.source : *c.grid;
  // FP32 results straight into an FP32 output; into a scratch copy for a 16-bit or rounded one
  // (the weight gradient, the large one, in blocks instead).
  const bool direct = c.out->dtype() == DType::Float32 && round != DType::Float16 && round != DType::BFloat16;
  const bool blocks = !direct && c.move == conv::Move::WeightGrad;
  std::vector<float> scratch(direct || blocks ? 0 : static_cast<size_t>(c.out->numel()));
  float* const out = direct ? c.out->data<float>() : scratch.data();
  if (scatter) std::fill(out, out + c.out->numel(), 0.0f);  // summed into; the other moves write every element
  auto bias_at = [&](int64_t i) {
    float v = 0.0f;
    with_reader(*c.bias, [&](auto b) { v = b(i); });
    return v;
  };
  // A 16-bit image or grid (an operand, not the output; small here) widened whole, vectorised:
  // the gathers below then read FP32.
  auto widened = [](const Tensor& x, bool operand) {
    if (!operand || x.dtype() == DType::Float32) return x;
    Tensor w(DType::Float32, x.shape());
    widen_n(x.dtype(), x.raw(), w.data<float>(), x.numel());
    return w;
  };
  const Tensor image_wide = widened(image_t, !scatter), grid_wide = widened(grid_t, !correlate);
  std::vector<float> cols(static_cast<size_t>(rows * NG)), gridp(static_cast<size_t>(co * NG));
  std::vector<float> wl(c.move == conv::Move::WeightGrad ? 0 : static_cast<size_t>(co * rows));
  for (int64_t grp = 0; grp < g.group; ++grp) {
    // The image's columns (Correlate, WeightGrad) and the grid as [grid ch, batch x grid] (Scatter,
    // WeightGrad); W's live taps as [grid ch, image ch x live taps] (Correlate, Scatter).
    if (!scatter)
      with_reader(image_wide, [&](auto img) {
        parallel_for(rows, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t* tap = t.at.data() + t.live[static_cast<size_t>(r % L)] * G;
            const int64_t plane = (grp * ci + r / L) * IS;
            float* dst = cols.data() + r * NG;
            for (int64_t item = 0; item < g.batch; ++item, dst += G) {
              const int64_t base = item * g.group * ci * IS + plane;
              for (int64_t pos = 0; pos < G; ++pos) dst[pos] = tap[pos] < 0 ? 0.0f : img(base + tap[pos]);
            }
          }
        }, grain);
      });
    if (!correlate)
      with_reader(grid_wide, [&](auto grid) {
        parallel_for(co, [&](int64_t c0, int64_t c1) {
          for (int64_t m = c0; m < c1; ++m)
            for (int64_t item = 0; item < g.batch; ++item) {
              const int64_t base = ((item * g.group + grp) * co + m) * G;
              float* dst = gridp.data() + m * NG + item * G;
              for (int64_t pos = 0; pos < G; ++pos) dst[pos] = grid(base + pos);
            }
        }, grain);
      });
    // W's live taps: W itself (this group's rows) when every tap is live and W is FP32.
    const float* w_live = wl.data();
    if (c.move != conv::Move::WeightGrad && L == K && c.weight->dtype() == DType::Float32)
      w_live = c.weight->data<float>() + grp * co * rows;
    else if (c.move != conv::Move::WeightGrad)
      with_reader(*c.weight, [&](auto w) {
        parallel_for(co, [&](int64_t c0, int64_t c1) {
          for (int64_t m = c0; m < c1; ++m)
            for (int64_t r = 0; r < rows; ++r)
              wl[static_cast<size_t>(m * rows + r)] = w(((grp * co + m) * ci + r / L) * K + t.live[static_cast<size_t>(r % L)]);
        }, std::max<int64_t>(1, 16384 / std::max<int64_t>(rows, 1)));
      });
    switch (c.move) {
      case conv::Move::Correlate: {
        gemm<float>(false, false, co, NG, rows, w_live, rows, cols.data(), NG, 0.0f, gridp.data(), NG);
        parallel_for(co, [&](int64_t c0, int64_t c1) {
          for (int64_t m = c0; m < c1; ++m) {
            const float b = c.bias ? bias_at(grp * co + m) : 0.0f;
            for (int64_t item = 0; item < g.batch; ++item)
              for (int64_t pos = 0; pos < G; ++pos) {
                float v = gridp[static_cast<size_t>(m * NG + item * G + pos)];
                if (c.bias) v += b;
                out[((item * g.group + grp) * co + m) * G + pos] = v;
              }
          }
        }, grain);
        break;
      }
      case conv::Move::Scatter: {
        gemm<float>(true, false, rows, NG, co, w_live, rows, gridp.data(), NG, 0.0f, cols.data(), NG);
        parallel_for(ci, [&](int64_t c0, int64_t c1) {  // each image channel from its own rows
          for (int64_t ch = c0; ch < c1; ++ch)
            for (int64_t l = 0; l < L; ++l) {
              const int64_t* tap = t.at.data() + t.live[static_cast<size_t>(l)] * G;
              const float* src = cols.data() + (ch * L + l) * NG;
              for (int64_t item = 0; item < g.batch; ++item)
                for (int64_t pos = 0; pos < G; ++pos)
                  if (tap[pos] >= 0)
                    out[((item * g.group + grp) * ci + ch) * IS + tap[pos]] += src[item * G + pos];
            }
          if (c.bias)
            for (int64_t ch = c0; ch < c1; ++ch) {
              const float b = bias_at(grp * ci + ch);
              for (int64_t item = 0; item < g.batch; ++item) {
                float* plane = out + ((item * g.group + grp) * ci + ch) * IS;
                for (int64_t x = 0; x < IS; ++x) plane[x] += b;
              }
            }
        }, std::max<int64_t>(1, grain / std::max<int64_t>(L, 1)));
        break;
      }
      case conv::Move::WeightGrad: {
        std::vector<float> dwl(static_cast<size_t>(co * rows));
        gemm<float>(false, true, co, rows, NG, gridp.data(), NG, cols.data(), NG, 0.0f, dwl.data(), rows);
        // Rows (grid channel, image channel) of K taps, zeros where no tap is live, in blocks:
        // each written, and converted into a 16-bit or rounded output, while it is in cache.
        const int64_t first = grp * co * ci * K;
        constexpr int64_t kBlockRows = 256;
        parallel_for((co * ci + kBlockRows - 1) / kBlockRows, [&](int64_t b0, int64_t b1) {
          std::vector<float> buffer(direct ? 0 : static_cast<size_t>(kBlockRows * K));
          for (int64_t blk = b0; blk < b1; ++blk) {
            const int64_t r0 = blk * kBlockRows, r1 = std::min(co * ci, r0 + kBlockRows);
            float* dw = direct ? out + first + r0 * K : buffer.data();
            if (L == K) {
              std::memcpy(dw, dwl.data() + r0 * K, static_cast<size_t>((r1 - r0) * K) * sizeof(float));
            } else {
              std::fill(dw, dw + (r1 - r0) * K, 0.0f);
              for (int64_t oc = r0; oc < r1; ++oc)
                for (int64_t l = 0; l < L; ++l)
                  dw[(oc - r0) * K + t.live[static_cast<size_t>(l)]] = dwl[static_cast<size_t>(oc * L + l)];
            }
            if (!direct) store(dw, *c.out, first + r0 * K, (r1 - r0) * K, round);
          }
        }, std::max<int64_t>(1, 8192 / (kBlockRows * std::max<int64_t>(K, 1))));
        break;
      }
    }
  }
  if (!direct && !blocks) store(out, *c.out, 0, c.out->numel(), round);
}

// Any op of the family, resolved by kernels/common/conv_host.h.
template <class T>
void conv_family_typed(const conv::Call& c) {
  Geometry g(c.geometry);
  const T* bias = c.bias ? c.bias->data<T>() : nullptr;
  switch (c.move) {
    case conv::Move::Correlate: correlate<T>(c.source->data<T>(), c.weight->data<T>(), bias, c.out->data<T>(), g); break;
    case conv::Move::Scatter: scatter<T>(c.source->data<T>(), c.weight->data<T>(), bias, c.out->data<T>(), g); break;
    case conv::Move::WeightGrad: weight_grad<T>(c.grid->data<T>(), c.image->data<T>(), c.out->data<T>(), g); break;
  }
}

// The oneDNN form of a resolved call (kernels/cpu/onednn.h), or false when oneDNN cannot take it:
// no oneDNN, an empty tensor, more than 3 spatial dims, a negative begin pad, or an end pad below
// -(stride - 1). (An end pad in [-(stride - 1), 0) only drops trailing positions no window
// reaches, so it becomes 0 with the same grid.)
bool onednn_form(const conv::ConvGeometry& g, DType dtype, onednn::Conv& d) {
  size_t dims = g.image.size();
  if (!onednn::available() || dims < 1 || dims > 3) return false;
  if (g.batch == 0 || g.image_channels == 0 || g.grid_channels == 0 || shape_numel(g.image) == 0 ||
      shape_numel(g.grid) == 0)
    return false;
  d.data = dtype;
  d.batch = g.batch;
  d.group = g.group;
  d.in_channels = g.image_channels * g.group;
  d.out_channels = g.grid_channels * g.group;
  d.in = g.image;
  d.out = g.grid;
  d.kernel = g.kernel;
  d.strides = g.strides;
  d.dilations = g.dilations;
  d.pads_begin = g.pads;
  d.pads_end.resize(dims);
  for (size_t i = 0; i < dims; ++i) {
    int64_t reach = g.strides[i] * (g.grid[i] - 1) + g.dilations[i] * (g.kernel[i] - 1) + 1;
    int64_t end = reach - g.image[i] - g.pads[i];
    if (g.pads[i] < 0 || end < -(g.strides[i] - 1)) return false;
    d.pads_end[i] = std::max<int64_t>(0, end);
  }
  return true;
}

// Adds bias[c] to every element of channel c of an [N, C, spatial...] tensor (ConvTranspose's bias,
// which oneDNN's backward-data primitive does not take), in FP32 and stored back as T: float, or
// uint16_t holding BF16.
template <class T>
void add_channel_bias(T* y, const T* bias, int64_t batch, int64_t channels, int64_t plane) {
  auto load = [](T v) { if constexpr (std::is_same_v<T, uint16_t>) return math::bfloat16_bits_to_float(v); else return v; };
  auto store = [](float v) { if constexpr (std::is_same_v<T, uint16_t>) return math::float_to_bfloat16_bits(v); else return v; };
  parallel_for(batch * channels, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float v = load(bias[i % channels]);
      T* p = y + i * plane;
      for (int64_t j = 0; j < plane; ++j) p[j] = store(load(p[j]) + v);
    }
  }, std::max<int64_t>(1, 32768 / std::max<int64_t>(plane, 1)));
}

// Runs a resolved call through oneDNN (FP32 or BF16 storage, per d.data).
void onednn_run(const conv::Call& c, const onednn::Conv& d) {
  switch (c.move) {
    case conv::Move::Correlate:
      onednn::conv_forward(d, c.source->raw(), c.weight->raw(), c.bias ? c.bias->raw() : nullptr, c.out->raw());
      break;
    case conv::Move::Scatter: {
      onednn::conv_backward_data(d, c.source->raw(), c.weight->raw(), c.out->raw());
      if (!c.bias) break;
      int64_t plane = shape_numel(d.in);
      if (d.data == DType::BFloat16)
        add_channel_bias(static_cast<uint16_t*>(c.out->raw()), static_cast<const uint16_t*>(c.bias->raw()), d.batch,
                         d.in_channels, plane);
      else
        add_channel_bias(c.out->data<float>(), c.bias->data<float>(), d.batch, d.in_channels, plane);
      break;
    }
    case conv::Move::WeightGrad: onednn::conv_backward_weights(d, c.image->raw(), c.grid->raw(), c.out->raw()); break;
  }
}

void conv_family_kernel(KernelContext& ctx) {
  conv::Call c = conv::resolve(ctx);
  onednn::Conv d;
  if (ctx.in(0).dtype() == DType::Float32) {
    Geometry g(c.geometry);
    if (takes_small_grid_fp32(c, g)) return small_grid_conv(c, g, DType::Undefined);
  }
  if (ctx.in(0).dtype() == DType::Float32 && onednn_form(c.geometry, DType::Float32, d)) return onednn_run(c, d);
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), conv_family_typed<scalar_t>(c));
}

// The widening kernel (registry.h) of the family for grids of a few positions (small_grid_conv:
// 16-bit operands read as they are); other cases return false (the plan widens the operands for
// conv_family_kernel).
bool conv_widening_kernel(KernelContext& ctx) {
  for (size_t i = 0; i < ctx.inputs.size(); ++i)
    if (ctx.rounded_input(i) != DType::Undefined) return false;
  conv::Call c = conv::resolve(ctx);
  for (const Tensor* x : {c.source, c.weight, c.bias, c.grid, c.image, static_cast<const Tensor*>(c.out)})
    if (x && x->dtype() != DType::Float32 && x->dtype() != DType::Float16 && x->dtype() != DType::BFloat16) return false;
  Geometry g(c.geometry);
  if (!takes_small_grid_fp32(c, g)) return false;  // the FP32 kernel's choice: the same sums
  small_grid_conv(c, g, ctx.rounded_output(0));
  return true;
}

// BF16 storage, BF16 dot products with FP32 accumulation (registered only with native BF16). A
// geometry oneDNN cannot take is computed in FP32 on widened copies and rounded once, as the
// plan's widening would; so is a grid of a few positions (small_grid_conv), where oneDNN's AMX
// kernels took 3.5-6.6 ms a call on ResNet-18's 1x1 grids.
void conv_family_bf16_kernel(KernelContext& ctx) {
  conv::Call c = conv::resolve(ctx);
  {
    Geometry g(c.geometry);
    if (small_grid(g)) return small_grid_conv(c, g, DType::Undefined);
  }
  onednn::Conv d;
  if (onednn_form(c.geometry, DType::BFloat16, d)) return onednn_run(c, d);
  std::vector<Tensor> wide;
  wide.reserve(6);
  auto widen = [&](const Tensor*& t) {
    if (!t) return;
    wide.push_back(t->cast(DType::Float32));
    t = &wide.back();
  };
  for (const Tensor** t : {&c.source, &c.weight, &c.bias, &c.grid, &c.image}) widen(*t);
  Tensor out(DType::Float32, c.out->shape());
  Tensor* narrow = c.out;
  c.out = &out;
  conv_family_typed<float>(c);
  out.cast_into(*narrow);
}

}  // namespace

void register_conv_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64};
  for (const char* op : {"Conv", "ConvTranspose"}) r.add("", op, Device::CPU, f, conv_family_kernel);
  for (const char* op : {"ConvGradInput", "ConvGradWeight", "ConvTransposeGradInput", "ConvTransposeGradWeight"})
    r.add("otter", op, Device::CPU, f, conv_family_kernel);
  for (const char* op : {"Conv", "ConvTranspose"}) r.add_widening("", op, conv_widening_kernel);
  for (const char* op : {"ConvGradInput", "ConvGradWeight", "ConvTransposeGradInput", "ConvTransposeGradWeight"})
    r.add_widening("otter", op, conv_widening_kernel);
  if (onednn::native_bf16()) {
    for (const char* op : {"Conv", "ConvTranspose"}) r.add("", op, Device::CPU, {DType::BFloat16}, conv_family_bf16_kernel);
    for (const char* op : {"ConvGradInput", "ConvGradWeight", "ConvTransposeGradInput", "ConvTransposeGradWeight"})
      r.add("otter", op, Device::CPU, {DType::BFloat16}, conv_family_bf16_kernel);
  }
}

}  // namespace otter::cpu
