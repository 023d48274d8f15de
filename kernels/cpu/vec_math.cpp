// Vectorised float32 math (see vec_math.h).
#include "kernels/cpu/vec_math.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "runtime/core/convert.h"
#include "runtime/core/half.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12 warns about the deliberately undefined pass-through operand inside the AVX-512 min/max/
// roundscale intrinsics (a known false positive; clang has no such warning group).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // _mm512_reduce_add_pd's undefined upper half
#endif
#include <immintrin.h>
#define OTTER_VEC_X86 1
#endif

namespace otter::cpu {
#if defined(OTTER_VEC_X86)
namespace {

#define OTTER_AVX512 __attribute__((target("avx512f")))

// exp(x), Cephes' expf: x = n ln2 + r, |r| <= ln2/2, a degree-6 polynomial for exp(r), 2^n by
// scalef (which also underflows to 0 and overflows to inf correctly).
OTTER_AVX512 inline __m512 exp16(__m512 x_in) {
  const __m512 x = _mm512_max_ps(_mm512_min_ps(x_in, _mm512_set1_ps(88.8f)), _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  // Below ln(2^-150) the result rounds to zero, as the scalar exp's does: the clamped input would
  // give the smallest subnormal instead, which costs every GEMM reading it (a softmax gradient over
  // a large vocabulary) a microcode assist per operand. NaN stays NaN.
  const __mmask16 live = _mm512_cmp_ps_mask(x_in, _mm512_set1_ps(-103.972077f), _CMP_NLT_UQ);
  const __m512 y = _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, n));
  return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x_in, x_in, _CMP_UNORD_Q), x_in);
}

// erf(z) given e = exp(-z^2): sign(z) (1 - t P(t) e), t = 1 / (1 + 0.3275911 |z|).
OTTER_AVX512 inline __m512 erf16(__m512 z, __m512 e) {
  const __m512 sign = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32(INT32_MIN)));
  const __m512 a = _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_set1_epi32(INT32_MIN), _mm512_castps_si512(z)));
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), a, one));
  __m512 p = _mm512_set1_ps(1.061405429f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
  const __m512 r = _mm512_fnmadd_ps(_mm512_mul_ps(p, t), e, one);  // 1 - t P(t) e
  return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(r), _mm512_castps_si512(sign)));
}

// The tanh form through e = exp(2u) and r = 1 / (e + 1), without the cancellation of 1 + tanh(u)
// and 1 - tanh(u)^2 in the negative tail: 1 + t = 2 e r, 1 - t = 2 r, 1 - t^2 = 4 e r^2.
OTTER_AVX512 inline void tanh_parts16(__m512 u, __m512& e, __m512& r) {
  e = exp16(_mm512_min_ps(_mm512_add_ps(u, u), _mm512_set1_ps(80.0f)));  // e r stays 1, not inf * 0
  r = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f)));
}

constexpr float kRsqrt2 = 0.7071067811865476f, kSqrt2OverPi = 0.7978845608028654f, kCubic = 0.044715f,
                kInvSqrt2Pi = 0.3989422804014327f;

OTTER_AVX512 __m512 gelu16(__m512 x, bool tanh_approx) {
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
  if (tanh_approx) {  // 0.5 x (1 + t) = x e r
    const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    const __m512 u = _mm512_mul_ps(_mm512_set1_ps(kSqrt2OverPi), _mm512_fmadd_ps(_mm512_set1_ps(kCubic), x3, x));
    __m512 e, r;
    tanh_parts16(u, e, r);
    return _mm512_mul_ps(x, _mm512_mul_ps(e, r));
  }
  const __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(kRsqrt2));
  const __m512 e = exp16(_mm512_mul_ps(_mm512_mul_ps(z, z), _mm512_set1_ps(-1.0f)));
  return _mm512_mul_ps(_mm512_mul_ps(half, x), _mm512_add_ps(one, erf16(z, e)));
}

OTTER_AVX512 __m512 gelu_grad16(__m512 x, __m512 dy, bool tanh_approx) {
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
  if (tanh_approx) {  // 0.5 (1 + t) + 0.5 x (1 - t^2) du = e r + 2 x e r^2 du, du = sqrt(2/pi) (1 + 3 c x^2)
    const __m512 x2 = _mm512_mul_ps(x, x);
    const __m512 u = _mm512_mul_ps(_mm512_set1_ps(kSqrt2OverPi),
                                   _mm512_fmadd_ps(_mm512_set1_ps(kCubic), _mm512_mul_ps(x2, x), x));
    __m512 e, r;
    tanh_parts16(u, e, r);
    const __m512 du = _mm512_mul_ps(_mm512_set1_ps(kSqrt2OverPi), _mm512_fmadd_ps(_mm512_set1_ps(3 * kCubic), x2, one));
    const __m512 er = _mm512_mul_ps(e, r);
    const __m512 b = _mm512_mul_ps(_mm512_mul_ps(_mm512_add_ps(x, x), _mm512_mul_ps(er, r)), du);
    return _mm512_mul_ps(dy, _mm512_add_ps(er, b));
  }
  // cdf + x pdf: cdf = 0.5 (1 + erf(x / sqrt 2)), pdf = exp(-x^2 / 2) / sqrt(2 pi), one exp for both.
  const __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(kRsqrt2));
  const __m512 e = exp16(_mm512_mul_ps(_mm512_mul_ps(z, z), _mm512_set1_ps(-1.0f)));
  const __m512 cdf = _mm512_mul_ps(half, _mm512_add_ps(one, erf16(z, e)));
  const __m512 pdf = _mm512_mul_ps(_mm512_set1_ps(kInvSqrt2Pi), e);
  return _mm512_mul_ps(dy, _mm512_fmadd_ps(x, pdf, cdf));
}

OTTER_AVX512 void gelu_avx512(const float* x, float* y, int64_t n, bool tanh_approx) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, gelu16(_mm512_loadu_ps(x + i), tanh_approx));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, gelu16(_mm512_maskz_loadu_ps(m, x + i), tanh_approx));
  }
  _mm256_zeroupper();  // leave no dirty upper state for SSE code after us (docs/architecture.md)
}

OTTER_AVX512 void gelu_grad_avx512(const float* x, const float* dy, float* dx, int64_t n, bool tanh_approx) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dx + i, gelu_grad16(_mm512_loadu_ps(x + i), _mm512_loadu_ps(dy + i), tanh_approx));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(dx + i, m,
                          gelu_grad16(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, dy + i), tanh_approx));
  }
  _mm256_zeroupper();
}

// GELU and its gradient on FP16 storage: the lanes widened, computed and rounded in registers;
// the tail takes the chunked path of the kernels (widen_n, the FP32 function, narrow_n). Every
// result that is a number has the bits of that path; a NaN result is a NaN (its sign and payload
// may differ: which NaN operand an instruction passes on is not kept across these two paths).
void gelu_half_chunk(const uint16_t* x, uint16_t* y, int64_t n, bool tanh_approx);
void gelu_grad_half_chunk(const uint16_t* x, const uint16_t* dy, uint16_t* dx, int64_t n, bool tanh_approx);

OTTER_AVX512 inline __m512 load_half16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
OTTER_AVX512 inline void store_half16(uint16_t* p, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

OTTER_AVX512 void gelu_half_avx512(const uint16_t* x, uint16_t* y, int64_t n, bool tanh_approx) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) store_half16(y + i, gelu16(load_half16(x + i), tanh_approx));
  _mm256_zeroupper();  // leave no dirty upper state for SSE code after us (docs/architecture.md)
  if (i < n) gelu_half_chunk(x + i, y + i, n - i, tanh_approx);
}

OTTER_AVX512 void gelu_grad_half_avx512(const uint16_t* x, const uint16_t* dy, uint16_t* dx, int64_t n,
                                        bool tanh_approx) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) store_half16(dx + i, gelu_grad16(load_half16(x + i), load_half16(dy + i), tanh_approx));
  _mm256_zeroupper();
  if (i < n) gelu_grad_half_chunk(x + i, dy + i, dx + i, n - i, tanh_approx);
}

void gelu_half_chunk(const uint16_t* x, uint16_t* y, int64_t n, bool tanh_approx) {
  float fx[16], fy[16];
  widen_n(DType::Float16, x, fx, n);
  gelu_avx512(fx, fy, n, tanh_approx);
  narrow_n(DType::Float16, fy, y, n);
}

void gelu_grad_half_chunk(const uint16_t* x, const uint16_t* dy, uint16_t* dx, int64_t n, bool tanh_approx) {
  float fx[16], fdy[16], fdx[16];
  widen_n(DType::Float16, x, fx, n);
  widen_n(DType::Float16, dy, fdy, n);
  gelu_grad_avx512(fx, fdy, fdx, n, tanh_approx);
  narrow_n(DType::Float16, fdx, dx, n);
}

OTTER_AVX512 void softmax_row_avx512(const float* x, float* y, int64_t n, bool log) {
  auto mask_of = [](int64_t left) { return static_cast<__mmask16>(left >= 16 ? 0xffff : (1u << left) - 1); };
  __m512 mx = _mm512_set1_ps(-INFINITY);
  for (int64_t i = 0; i < n; i += 16) mx = _mm512_mask_max_ps(mx, mask_of(n - i), mx, _mm512_maskz_loadu_ps(mask_of(n - i), x + i));
  const float m = _mm512_reduce_max_ps(mx);
  const __m512 vm = _mm512_set1_ps(m);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = mask_of(n - i);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm));
    acc = _mm512_mask_add_ps(acc, k, acc, e);
    if (!log) _mm512_mask_storeu_ps(y + i, k, e);
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, acc);
  double sum = 0;
  for (float l : lanes) sum += l;
  if (log) {
    const __m512 log_sum = _mm512_set1_ps(static_cast<float>(std::log(sum)));
    for (int64_t i = 0; i < n; i += 16) {  // (x - max) - log(sum), as the scalar code rounds
      const __mmask16 k = mask_of(n - i);
      _mm512_mask_storeu_ps(y + i, k, _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm), log_sum));
    }
  } else {
    const __m512 vs = _mm512_set1_ps(static_cast<float>(sum));
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 k = mask_of(n - i);
      _mm512_mask_storeu_ps(y + i, k, _mm512_div_ps(_mm512_maskz_loadu_ps(k, y + i), vs));
    }
  }
  _mm256_zeroupper();
}

// softmax_row_avx512(log = true) down the d columns of a [c, d] block, 16 columns a vector: the
// row kernel's lane j sums the classes k = j (mod 16) in order, so column sums keep 16
// accumulators a column (acc[j * d + col]), added in double in lane order. The block is read in
// memory order (class by class) in each of the three passes, as the row kernel reads a line.
// `ld` is the class stride (the caller's d when it hands over a slice of columns).
OTTER_AVX512 void log_softmax_column_slice(const float* x, float* y, int64_t c, int64_t d, int64_t ld) {
  auto mask_of = [](int64_t left) { return static_cast<__mmask16>(left >= 16 ? 0xffff : (1u << left) - 1); };
  thread_local std::vector<float> mx, acc;
  mx.assign(static_cast<size_t>(d), -INFINITY);
  acc.assign(static_cast<size_t>(16 * d), 0.0f);
  for (int64_t k = 0; k < c; ++k)
    for (int64_t j = 0; j < d; j += 16) {
      const __mmask16 m = mask_of(d - j);
      const __m512 cur = _mm512_maskz_loadu_ps(m, mx.data() + j);
      _mm512_mask_storeu_ps(mx.data() + j, m, _mm512_max_ps(cur, _mm512_maskz_loadu_ps(m, x + k * ld + j)));
    }
  for (int64_t k = 0; k < c; ++k) {
    float* lane = acc.data() + (k % 16) * d;
    for (int64_t j = 0; j < d; j += 16) {
      const __mmask16 m = mask_of(d - j);
      const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + k * ld + j), _mm512_maskz_loadu_ps(m, mx.data() + j)));
      _mm512_mask_storeu_ps(lane + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, lane + j), e));
    }
  }
  std::vector<float>& log_sum = acc;  // column j's log(sum) goes to acc[j] once its lanes are summed
  for (int64_t j = 0; j < d; ++j) {
    double sum = 0;
    for (int64_t l = 0; l < 16; ++l) sum += acc[static_cast<size_t>(l * d + j)];
    log_sum[static_cast<size_t>(j)] = static_cast<float>(std::log(sum));
  }
  for (int64_t k = 0; k < c; ++k)
    for (int64_t j = 0; j < d; j += 16) {  // (x - max) - log(sum), as the row kernel rounds
      const __mmask16 m = mask_of(d - j);
      const __m512 shifted = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + k * ld + j), _mm512_maskz_loadu_ps(m, mx.data() + j));
      _mm512_mask_storeu_ps(y + k * ld + j, m, _mm512_sub_ps(shifted, _mm512_maskz_loadu_ps(m, log_sum.data() + j)));
    }
}

// The columns in slices of 1024 (each column's arithmetic is its own, so the bits do not depend
// on the slicing): the scratch stays 68 KB however many columns a segmentation map has.
OTTER_AVX512 void log_softmax_columns_avx512(const float* x, float* y, int64_t c, int64_t d) {
  constexpr int64_t kSlice = 1024;
  for (int64_t j0 = 0; j0 < d; j0 += kSlice) log_softmax_column_slice(x + j0, y + j0, c, std::min(kSlice, d - j0), d);
  _mm256_zeroupper();
}

OTTER_AVX512 void exp_avx512(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
  }
  _mm256_zeroupper();
}

// ---- LayerNormalization rows, in double lanes ----

OTTER_AVX512 inline __m512d load8(const float* p) { return _mm512_cvtps_pd(_mm256_loadu_ps(p)); }

// Mean and variance of x[0, n) as the scalar moments() computes them (two passes, double), the
// sums in 8 lanes.
OTTER_AVX512 void row_moments(const float* x, int64_t n, double* mean, double* var) {
  __m512d acc = _mm512_setzero_pd();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) acc = _mm512_add_pd(acc, load8(x + j));
  double s = _mm512_reduce_add_pd(acc);
  for (; j < n; ++j) s += x[j];
  const double m = s / static_cast<double>(n);
  const __m512d mv = _mm512_set1_pd(m);
  acc = _mm512_setzero_pd();
  j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m512d d = _mm512_sub_pd(load8(x + j), mv);
    acc = _mm512_add_pd(acc, _mm512_mul_pd(d, d));
  }
  double q = _mm512_reduce_add_pd(acc);
  for (; j < n; ++j) {
    const double d = x[j] - m;
    q += d * d;
  }
  *mean = m;
  *var = q / static_cast<double>(n);
}

OTTER_AVX512 void layer_norm_row_avx512(const float* x, const double* w, const double* b, float* y, int64_t n,
                                        double eps, double* mean_out, double* inv_out) {
  double mean, var;
  row_moments(x, n, &mean, &var);
  const double inv = 1.0 / std::sqrt(var + eps);
  const __m512d mv = _mm512_set1_pd(mean), iv = _mm512_set1_pd(inv);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m512d v = _mm512_mul_pd(_mm512_mul_pd(_mm512_sub_pd(load8(x + j), mv), iv), _mm512_loadu_pd(w + j));
    v = _mm512_add_pd(v, b ? _mm512_loadu_pd(b + j) : _mm512_setzero_pd());
    _mm256_storeu_ps(y + j, _mm512_cvtpd_ps(v));
  }
  for (; j < n; ++j) y[j] = static_cast<float>((x[j] - mean) * inv * w[j] + (b ? b[j] : 0.0));
  *mean_out = mean;
  *inv_out = inv;
  _mm256_zeroupper();
}

OTTER_AVX512 void layer_norm_grad_row_avx512(const float* x, const float* dy, const double* w, float* dx, double* gw,
                                             double* gb, int64_t n, double eps) {
  double mean, var;
  row_moments(x, n, &mean, &var);
  const double inv = 1.0 / std::sqrt(var + eps);
  const __m512d mv = _mm512_set1_pd(mean), iv = _mm512_set1_pd(inv);
  __m512d a1 = _mm512_setzero_pd(), a2 = _mm512_setzero_pd();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m512d g = _mm512_mul_pd(load8(dy + j), _mm512_loadu_pd(w + j));
    a1 = _mm512_add_pd(a1, g);
    a2 = _mm512_add_pd(a2, _mm512_mul_pd(_mm512_mul_pd(g, _mm512_sub_pd(load8(x + j), mv)), iv));
  }
  double s1 = _mm512_reduce_add_pd(a1), s2 = _mm512_reduce_add_pd(a2);
  for (; j < n; ++j) {
    const double g = dy[j] * w[j];
    s1 += g;
    s2 += g * (x[j] - mean) * inv;
  }
  const double m1 = s1 / static_cast<double>(n), m2 = s2 / static_cast<double>(n);
  const __m512d m1v = _mm512_set1_pd(m1), m2v = _mm512_set1_pd(m2);
  j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m512d xhat = _mm512_mul_pd(_mm512_sub_pd(load8(x + j), mv), iv);
    const __m512d d = load8(dy + j);
    const __m512d t = _mm512_sub_pd(_mm512_sub_pd(_mm512_mul_pd(d, _mm512_loadu_pd(w + j)), m1v), _mm512_mul_pd(xhat, m2v));
    _mm256_storeu_ps(dx + j, _mm512_cvtpd_ps(_mm512_mul_pd(iv, t)));
    _mm512_storeu_pd(gw + j, _mm512_add_pd(_mm512_loadu_pd(gw + j), _mm512_mul_pd(d, xhat)));
    if (gb) _mm512_storeu_pd(gb + j, _mm512_add_pd(_mm512_loadu_pd(gb + j), d));
  }
  for (; j < n; ++j) {
    const double xhat = (x[j] - mean) * inv;
    const double d = dy[j];
    dx[j] = static_cast<float>(inv * (d * w[j] - m1 - xhat * m2));
    gw[j] += d * xhat;
    if (gb) gb[j] += d;
  }
  _mm256_zeroupper();
}

}  // namespace

bool vec_layer_norm_row(const float* x, const double* w, const double* b, float* y, int64_t n, double eps,
                        double* mean, double* inv_std) {
  if (!host_avx512() || n <= 0) return false;
  layer_norm_row_avx512(x, w, b, y, n, eps, mean, inv_std);
  return true;
}

bool vec_layer_norm_grad_row(const float* x, const float* dy, const double* w, float* dx, double* gw, double* gb,
                             int64_t n, double eps) {
  if (!host_avx512() || n <= 0) return false;
  layer_norm_grad_row_avx512(x, dy, w, dx, gw, gb, n, eps);
  return true;
}

bool vec_exp(const float* x, float* y, int64_t n) {
  if (!host_avx512()) return false;
  exp_avx512(x, y, n);
  return true;
}

bool vec_softmax_row(const float* x, float* y, int64_t n, bool log) {
  if (!host_avx512() || n <= 0) return false;
  softmax_row_avx512(x, y, n, log);
  return true;
}

bool vec_log_softmax_columns(const float* x, float* y, int64_t c, int64_t d) {
  if (!host_avx512() || c <= 0 || d <= 0) return false;
  log_softmax_columns_avx512(x, y, c, d);
  return true;
}

namespace {
template <BinaryOp OP>
inline float binary_scalar(float x, float y) {
  if constexpr (OP == BinaryOp::Add) return x + y;
  if constexpr (OP == BinaryOp::Sub) return x - y;
  if constexpr (OP == BinaryOp::Mul) return x * y;
  return x / y;
}
template <BinaryOp OP>
OTTER_AVX512 inline __m512 binary16(__m512 x, __m512 y) {
  if constexpr (OP == BinaryOp::Add) return _mm512_add_ps(x, y);
  if constexpr (OP == BinaryOp::Sub) return _mm512_sub_ps(x, y);
  if constexpr (OP == BinaryOp::Mul) return _mm512_mul_ps(x, y);
  return _mm512_div_ps(x, y);
}
// Operand i of an FP16-bits-or-FP32 array, or its one value.
struct HalfOrFloat {
  const void* p;
  bool half, one;
  float one_value;
  float at(int64_t i) const {
    if (one) return one_value;
    return half ? otter::math::half_bits_to_float(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
  }
  OTTER_AVX512 __m512 load16(int64_t i, __m512 one16) const {
    if (one) return one16;
    if (half) return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i)));
    return _mm512_loadu_ps(static_cast<const float*>(p) + i);
  }
};
template <BinaryOp OP>
OTTER_AVX512 void binary_half_avx512(const HalfOrFloat& a, const HalfOrFloat& b, void* z, bool z_half, int64_t n) {
  const __m512 a1 = _mm512_set1_ps(a.one_value), b1 = _mm512_set1_ps(b.one_value);
  auto scalar = [&](int64_t i) {
    const float r = binary_scalar<OP>(a.at(i), b.at(i));
    if (z_half) static_cast<uint16_t*>(z)[i] = otter::math::float_to_half_bits(r);
    else static_cast<float*>(z)[i] = r;
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 r = binary16<OP>(a.load16(i, a1), b.load16(i, b1));
    if (_mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q)) {  // a NaN: the scalar conversions keep its bits
      for (int64_t k = i; k < i + 16; ++k) scalar(k);
      continue;
    }
    if (z_half)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<uint16_t*>(z) + i),
                          _mm512_cvtps_ph(r, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    else
      _mm512_storeu_ps(static_cast<float*>(z) + i, r);
  }
  if (i < n) {  // the tail through 16-element buffers, one vector like the others
    const int64_t rest = n - i;
    alignas(64) float fa[16] = {}, fb[16] = {};
    for (int64_t k = 0; k < rest; ++k) {
      fa[k] = a.at(i + k);
      fb[k] = b.at(i + k);
    }
    const __m512 r = binary16<OP>(_mm512_load_ps(fa), _mm512_load_ps(fb));
    if (_mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q) & ((1u << rest) - 1)) {
      for (; i < n; ++i) scalar(i);
    } else if (z_half) {
      alignas(32) uint16_t h[16];
      _mm256_store_si256(reinterpret_cast<__m256i*>(h), _mm512_cvtps_ph(r, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      std::memcpy(static_cast<uint16_t*>(z) + i, h, static_cast<size_t>(rest) * sizeof(uint16_t));
    } else {
      alignas(64) float f[16];
      _mm512_store_ps(f, r);
      std::memcpy(static_cast<float*>(z) + i, f, static_cast<size_t>(rest) * sizeof(float));
    }
  }
  _mm256_zeroupper();  // leave no dirty upper state for SSE code after us (docs/architecture.md)
}
// ---- 2-D max pooling (vec_max_pool_2d) ----

// The first maximum of output (r, c)'s window, scanned as the window table orders its taps.
void max_pool_at(const float* x, const MaxPool2d& g, int64_t r, int64_t c, float* y, int32_t* argmax) {
  float v = 0.0f;
  int64_t best = -1;
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t ih = r * g.sh - g.ph + i * g.dh;
    if (ih < 0 || ih >= g.h) continue;
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t iw = c * g.sw - g.pw + j * g.dw;
      if (iw < 0 || iw >= g.w) continue;
      const float u = x[ih * g.w + iw];
      if (best < 0 || u > v) {
        v = u;
        best = ih * g.w + iw;
      }
    }
  }
  if (y) y[r * g.ow + c] = v;
  if (argmax) argmax[r * g.ow + c] = static_cast<int32_t>(best);
}

// 16 input values at p[0], p[stride], ..., p[15 * stride] (all inside the plane's row).
OTTER_AVX512 inline __m512 load_strided16(const float* p, int64_t stride, __m512i gather_index) {
  if (stride == 1) return _mm512_loadu_ps(p);
  if (stride == 2) {  // the even lanes of 31 floats (the 32nd may be past the row: masked)
    const __m512 lo = _mm512_loadu_ps(p), hi = _mm512_maskz_loadu_ps(0x7fff, p + 16);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(lo, even, hi);
  }
  return _mm512_i32gather_ps(gather_index, p, 4);
}

// Rows of 16 outputs or more: the output columns whose windows lie inside the row (c * sw - pw >= 0
// and c * sw - pw + (kw - 1) * dw <= w - 1) 16 a vector, the others max_pool_at.
OTTER_AVX512 void max_pool_2d_avx512(const float* x, const MaxPool2d& g, float* y, int32_t* argmax) {
  const int64_t reach = (g.kw - 1) * g.dw;
  const int64_t lo = std::min(g.ow, (g.pw + g.sw - 1) / g.sw);
  const int64_t hi = g.w - 1 - reach + g.pw < 0 ? lo : std::max(lo, std::min(g.ow, (g.w - 1 - reach + g.pw) / g.sw + 1));
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i lane_step = _mm512_mullo_epi32(lane, _mm512_set1_epi32(static_cast<int32_t>(g.sw)));
  for (int64_t r = 0; r < g.oh; ++r) {
    int64_t first_row = -1;  // the first tap row inside the plane
    for (int64_t i = 0; i < g.kh && first_row < 0; ++i) {
      const int64_t ih = r * g.sh - g.ph + i * g.dh;
      if (ih >= 0 && ih < g.h) first_row = i;
    }
    int64_t vector_end = lo;  // [lo, vector_end) is done in vectors
    if (first_row >= 0)
      for (; vector_end + 16 <= hi; vector_end += 16) {
        const int64_t c = vector_end;
        __m512 v = _mm512_setzero_ps();
        __m512i best = _mm512_setzero_si512();
        bool first = true;
        for (int64_t i = first_row; i < g.kh; ++i) {
          const int64_t ih = r * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.h) continue;
          for (int64_t j = 0; j < g.kw; ++j) {
            const int64_t at = ih * g.w + c * g.sw - g.pw + j * g.dw;  // lane 0's tap
            const __m512 u = load_strided16(x + at, g.sw, lane_step);
            const __m512i off = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(at)), lane_step);
            if (first) {
              v = u;
              best = off;
              first = false;
            } else {
              const __mmask16 m = _mm512_cmp_ps_mask(u, v, _CMP_GT_OQ);
              v = _mm512_mask_mov_ps(v, m, u);
              best = _mm512_mask_mov_epi32(best, m, off);
            }
          }
        }
        if (y) _mm512_storeu_ps(y + r * g.ow + c, v);
        if (argmax) _mm512_storeu_si512(argmax + r * g.ow + c, best);
      }
    for (int64_t k = 0; k < g.ow; ++k)
      if (k < lo || k >= vector_end) max_pool_at(x, g, r, k, y, argmax);
  }
  _mm256_zeroupper();
}

// Planes whose output rows are narrower than a vector: 16 output positions of the flattened
// [oh, ow] plane a vector, each tap gathered where it lies inside the input (a lane's first such
// tap is taken whatever its value, as the scalar loop does).
OTTER_AVX512 void max_pool_2d_flat_avx512(const float* x, const MaxPool2d& g, float* y, int32_t* argmax) {
  const int64_t n = g.oh * g.ow;
  thread_local std::vector<int32_t> top, left;  // each output's window origin (may be negative)
  top.resize(static_cast<size_t>(n));
  left.resize(static_cast<size_t>(n));
  for (int64_t r = 0, o = 0; r < g.oh; ++r)
    for (int64_t c = 0; c < g.ow; ++c, ++o) {
      top[o] = static_cast<int32_t>(r * g.sh - g.ph);
      left[o] = static_cast<int32_t>(c * g.sw - g.pw);
    }
  const __m512i h = _mm512_set1_epi32(static_cast<int32_t>(g.h)), w = _mm512_set1_epi32(static_cast<int32_t>(g.w));
  for (int64_t o0 = 0; o0 < n; o0 += 16) {
    const __mmask16 live = static_cast<__mmask16>(n - o0 >= 16 ? 0xffff : (1u << (n - o0)) - 1);
    const __m512i r0 = _mm512_maskz_loadu_epi32(live, top.data() + o0), c0 = _mm512_maskz_loadu_epi32(live, left.data() + o0);
    __m512 v = _mm512_setzero_ps();
    __m512i best = _mm512_set1_epi32(-1);
    __mmask16 untaken = live;
    for (int64_t i = 0; i < g.kh; ++i) {
      const __m512i ih = _mm512_add_epi32(r0, _mm512_set1_epi32(static_cast<int32_t>(i * g.dh)));
      const __mmask16 row_ok = _mm512_mask_cmplt_epu32_mask(live, ih, h);  // 0 <= ih < h, unsigned
      if (!row_ok) continue;
      const __m512i row = _mm512_mullo_epi32(ih, w);
      for (int64_t j = 0; j < g.kw; ++j) {
        const __m512i iw = _mm512_add_epi32(c0, _mm512_set1_epi32(static_cast<int32_t>(j * g.dw)));
        const __mmask16 ok = _mm512_mask_cmplt_epu32_mask(row_ok, iw, w);
        const __m512i off = _mm512_add_epi32(row, iw);
        const __m512 u = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), ok, off, x, 4);
        const __mmask16 take = ok & (untaken | _mm512_cmp_ps_mask(u, v, _CMP_GT_OQ));
        v = _mm512_mask_mov_ps(v, take, u);
        best = _mm512_mask_mov_epi32(best, take, off);
        untaken &= static_cast<__mmask16>(~ok);
      }
    }
    if (y) _mm512_mask_storeu_ps(y + o0, live, v);
    if (argmax) _mm512_mask_storeu_epi32(argmax + o0, live, best);
  }
  _mm256_zeroupper();
}

}  // namespace

bool vec_max_pool_2d(const float* x, const MaxPool2d& g, float* y, int32_t* argmax) {
  // Offsets are int32 lanes; the scalar loop takes planes past that.
  if (!host_avx512() || g.h * g.w > (int64_t(1) << 31) - 1 || g.oh * g.ow > (int64_t(1) << 31) - 1) return false;
  if (g.ow >= 16) max_pool_2d_avx512(x, g, y, argmax);
  else max_pool_2d_flat_avx512(x, g, y, argmax);
  return true;
}

bool vec_binary_half(BinaryOp op, const void* a, bool a_half, bool a_one, const void* b, bool b_half, bool b_one,
                     void* z, bool z_half, int64_t n) {
  if (!host_avx512()) return false;
  auto operand = [](const void* p, bool half, bool one) {
    HalfOrFloat o{p, half, one, 0.0f};
    if (one) o.one_value = half ? otter::math::half_bits_to_float(*static_cast<const uint16_t*>(p)) : *static_cast<const float*>(p);
    return o;
  };
  const HalfOrFloat x = operand(a, a_half, a_one), y = operand(b, b_half, b_one);
  switch (op) {
    case BinaryOp::Add: binary_half_avx512<BinaryOp::Add>(x, y, z, z_half, n); break;
    case BinaryOp::Sub: binary_half_avx512<BinaryOp::Sub>(x, y, z, z_half, n); break;
    case BinaryOp::Mul: binary_half_avx512<BinaryOp::Mul>(x, y, z, z_half, n); break;
    case BinaryOp::Div: binary_half_avx512<BinaryOp::Div>(x, y, z, z_half, n); break;
  }
  return true;
}

bool vec_gelu(const float* x, float* y, int64_t n, bool tanh_approx) {
  if (!host_avx512()) return false;
  gelu_avx512(x, y, n, tanh_approx);
  return true;
}

bool vec_gelu_grad(const float* x, const float* dy, float* dx, int64_t n, bool tanh_approx) {
  if (!host_avx512()) return false;
  gelu_grad_avx512(x, dy, dx, n, tanh_approx);
  return true;
}

bool vec_gelu_half(const uint16_t* x, uint16_t* y, int64_t n, bool tanh_approx) {
  if (!host_avx512()) return false;
  gelu_half_avx512(x, y, n, tanh_approx);
  return true;
}

bool vec_gelu_grad_half(const uint16_t* x, const uint16_t* dy, uint16_t* dx, int64_t n, bool tanh_approx) {
  if (!host_avx512()) return false;
  gelu_grad_half_avx512(x, dy, dx, n, tanh_approx);
  return true;
}

#else
bool vec_layer_norm_row(const float*, const double*, const double*, float*, int64_t, double, double*, double*) {
  return false;
}
bool vec_layer_norm_grad_row(const float*, const float*, const double*, float*, double*, double*, int64_t, double) {
  return false;
}
bool vec_exp(const float*, float*, int64_t) { return false; }
bool vec_softmax_row(const float*, float*, int64_t, bool) { return false; }
bool vec_log_softmax_columns(const float*, float*, int64_t, int64_t) { return false; }
bool vec_gelu(const float*, float*, int64_t, bool) { return false; }
bool vec_binary_half(BinaryOp, const void*, bool, bool, const void*, bool, bool, void*, bool, int64_t) { return false; }
bool vec_gelu_grad(const float*, const float*, float*, int64_t, bool) { return false; }
bool vec_gelu_half(const uint16_t*, uint16_t*, int64_t, bool) { return false; }
bool vec_gelu_grad_half(const uint16_t*, const uint16_t*, uint16_t*, int64_t, bool) { return false; }
bool vec_max_pool_2d(const float*, const MaxPool2d&, float*, int32_t*) { return false; }
#endif

}  // namespace otter::cpu
