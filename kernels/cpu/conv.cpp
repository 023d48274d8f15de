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

// dW over the whole batch in one GEMM per group, dW = dY' cols^T with dY' [grid channels, batch x
// grid] and cols [image channels x live taps, batch x grid]: for grids of a few positions, the
// last stages of a CNN at low resolution, where weight_grad's per-item GEMMs have k = the grid
// size and oneDNN's backward-weights kernel ran at a fifth of a GEMM's speed or less (ResNet-18
// at 32x32: 5-7 ms a call for its 512x512 3x3 convolutions on 1x1 grids). Taps that reach no
// image position for any grid position (8 of 9 on a 1x1 grid with pad 1) have zero gradients and
// stay out of the GEMM.
constexpr int64_t kBatchedGridMax = 8;        // grid positions per item
constexpr int64_t kBatchedColsMax = 1 << 22;  // floats of the batch's column matrix (16 MB)

bool batched_weight_grad_fits(const Geometry& g) {
  return g.grid_size <= kBatchedGridMax && g.batch > 1 &&
         g.image_channels * g.kernel_size * g.batch * g.grid_size <= kBatchedColsMax;
}

// dW (FP32) written through emit(values, first, count), elements [first, first + count) of the
// whole gradient, in blocks; or, where every tap is live, by the GEMM straight into `direct`
// when it is given (the FP32 kernel's own output).
template <class Emit>
void weight_grad_batched(const float* grid, const float* image, const Geometry& g, float* direct, Emit emit) {
  const int64_t ci = g.image_channels, co = g.grid_channels, K = g.kernel_size, G = g.grid_size;
  const int64_t NG = g.batch * G, last = g.grid[g.dims - 1], s = g.strides[g.dims - 1], n = g.image[g.dims - 1];
  // at[k * G + pos]: the image offset tap k reads at grid position pos, or -1 (padding).
  std::vector<int64_t> at(static_cast<size_t>(K * G), -1);
  std::vector<int64_t> live;  // the taps that read the image somewhere
  for (int64_t k = 0; k < K; ++k) {
    for_each_run(g, k, [&](int64_t gofs, int64_t iofs, int64_t i0) {
      if (iofs < 0) return;
      for (int64_t x = 0; x < last; ++x)
        if (i0 + x * s >= 0 && i0 + x * s < n) at[static_cast<size_t>(k * G + gofs + x)] = iofs + i0 + x * s;
    });
    for (int64_t pos = 0; pos < G; ++pos)
      if (at[static_cast<size_t>(k * G + pos)] >= 0) { live.push_back(k); break; }
  }
  const int64_t L = static_cast<int64_t>(live.size()), rows = ci * L;
  const bool straight = direct && L == K;
  std::vector<float> cols(static_cast<size_t>(rows * NG)), dy(static_cast<size_t>(co * NG));
  std::vector<float> packed(straight ? 0 : static_cast<size_t>(co * rows));
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(NG, 1));
  for (int64_t grp = 0; grp < g.group; ++grp) {
    const float* img = image + grp * ci * g.image_size;  // item n at + n * group * ci * image_size
    const int64_t item_stride = g.group * ci * g.image_size;
    parallel_for(rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* src = img + (r / L) * g.image_size;
        const int64_t* tap = at.data() + live[static_cast<size_t>(r % L)] * G;
        float* dst = cols.data() + r * NG;
        for (int64_t item = 0; item < g.batch; ++item, src += item_stride, dst += G)
          for (int64_t pos = 0; pos < G; ++pos) dst[pos] = tap[pos] < 0 ? 0.0f : src[tap[pos]];
      }
    }, grain);
    parallel_for(co, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t item = 0; item < g.batch; ++item)
          std::memcpy(dy.data() + c * NG + item * G, grid + ((item * g.group + grp) * co + c) * G,
                      static_cast<size_t>(G) * sizeof(float));
    }, grain);
    const int64_t first = grp * co * ci * K;
    if (straight) {
      gemm<float>(false, true, co, rows, NG, dy.data(), NG, cols.data(), NG, 0.0f, direct + first, rows);
      continue;
    }
    gemm<float>(false, true, co, rows, NG, dy.data(), NG, cols.data(), NG, 0.0f, packed.data(), rows);
    // Rows (output channel, image channel) of K taps in blocks, dead taps' gradients zeros (with
    // every tap live the GEMM's rows are dW's).
    constexpr int64_t kBlockRows = 256;
    parallel_for((co * ci + kBlockRows - 1) / kBlockRows, [&](int64_t b0, int64_t b1) {
      std::vector<float> block(L == K ? 0 : static_cast<size_t>(kBlockRows * K));
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t r0 = blk * kBlockRows, r1 = std::min(co * ci, r0 + kBlockRows);
        if (L == K) {
          emit(packed.data() + r0 * K, first + r0 * K, (r1 - r0) * K);
          continue;
        }
        std::fill(block.begin(), block.end(), 0.0f);
        for (int64_t oc = r0; oc < r1; ++oc)
          for (int64_t l = 0; l < L; ++l)
            block[static_cast<size_t>((oc - r0) * K + live[static_cast<size_t>(l)])] = packed[static_cast<size_t>(oc * L + l)];
        emit(block.data(), first + r0 * K, (r1 - r0) * K);
      }
    }, std::max<int64_t>(1, 4096 / (kBlockRows * std::max<int64_t>(K, 1))));
  }
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
  if (ctx.in(0).dtype() == DType::Float32 && c.move == conv::Move::WeightGrad) {
    Geometry g(c.geometry);
    if (batched_weight_grad_fits(g)) {
      float* dw = c.out->data<float>();
      return weight_grad_batched(c.grid->data<float>(), c.image->data<float>(), g, dw,
                                 [&](const float* v, int64_t first, int64_t count) {
                                   std::memcpy(dw + first, v, static_cast<size_t>(count) * sizeof(float));
                                 });
    }
  }
  if (ctx.in(0).dtype() == DType::Float32 && onednn_form(c.geometry, DType::Float32, d)) return onednn_run(c, d);
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), conv_family_typed<scalar_t>(c));
}

// The weight gradient of a small grid (batched_weight_grad_fits) from FP16/BF16 dY and image:
// both widened (they are small: a few grid positions), the FP32 batched GEMM, and dW written
// from it block by block into `out`: 16-bit (rounded), or FP32, rounded through `round` where
// that is FP16/BF16 (a fused output Cast). The FP32 values are those of the FP32 kernel on the
// widened operands, so the bits are the widened path's, without its full-size FP32 dW.
void weight_grad_batched_16(const conv::Call& c, const Geometry& g, Tensor& out, DType round) {
  auto wide = [](const Tensor& t) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    widen_n(t.dtype(), t.raw(), v.data(), t.numel());
    return v;
  };
  const std::vector<float> grid = wide(*c.grid), image = wide(*c.image);
  const DType to = out.dtype();
  weight_grad_batched(grid.data(), image.data(), g, nullptr, [&](const float* v, int64_t first, int64_t count) {
    if (to != DType::Float32) return narrow_n(to, v, static_cast<uint16_t*>(out.raw()) + first, count);
    float* o = out.data<float>() + first;
    if (round == DType::Float16 || round == DType::BFloat16) return round_through_n(v, o, count, round == DType::Float16);
    std::memcpy(o, v, static_cast<size_t>(count) * sizeof(float));
  });
}

// The widening kernel (registry.h) of ConvGradWeight for grids of a few positions; other cases
// return false (the plan widens the operands for conv_family_kernel).
bool conv_grad_weight_widening_kernel(KernelContext& ctx) {
  for (size_t i = 0; i < ctx.inputs.size(); ++i)
    if (ctx.rounded_input(i) != DType::Undefined) return false;
  conv::Call c = conv::resolve(ctx);
  if (c.move != conv::Move::WeightGrad) return false;
  const DType t = c.grid->dtype();
  const bool half = t == DType::Float16 || t == DType::BFloat16;
  if (!half || c.image->dtype() != t || (c.out->dtype() != t && c.out->dtype() != DType::Float32)) return false;
  Geometry g(c.geometry);
  if (!batched_weight_grad_fits(g)) return false;
  weight_grad_batched_16(c, g, *c.out, ctx.rounded_output(0));
  return true;
}

// BF16 storage, BF16 dot products with FP32 accumulation (registered only with native BF16). A
// geometry oneDNN cannot take is computed in FP32 on widened copies and rounded once, as the
// plan's widening would; so is the weight gradient of a small grid, where oneDNN's BF16 kernels
// are slower than the FP32 batched GEMM (ResNet-18 at 32x32: 6.6 ms a call on its 1x1 grids).
void conv_family_bf16_kernel(KernelContext& ctx) {
  conv::Call c = conv::resolve(ctx);
  if (c.move == conv::Move::WeightGrad) {
    Geometry g(c.geometry);
    if (batched_weight_grad_fits(g)) return weight_grad_batched_16(c, g, *c.out, DType::Undefined);
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
  r.add_widening("otter", "ConvGradWeight", conv_grad_weight_widening_kernel);
  if (onednn::native_bf16()) {
    for (const char* op : {"Conv", "ConvTranspose"}) r.add("", op, Device::CPU, {DType::BFloat16}, conv_family_bf16_kernel);
    for (const char* op : {"ConvGradInput", "ConvGradWeight", "ConvTransposeGradInput", "ConvTransposeGradWeight"})
      r.add("otter", op, Device::CPU, {DType::BFloat16}, conv_family_bf16_kernel);
  }
}

}  // namespace otter::cpu
