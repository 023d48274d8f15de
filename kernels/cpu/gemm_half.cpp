// The FP16 GEMM of the CPU widening kernels (see gemm_half.h).
#include "kernels/cpu/gemm_half.h"

#include <algorithm>
#include <cstring>

#include "runtime/core/convert.h"
#include "runtime/core/half.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if !defined(__clang__)
// GCC 12 reports the intrinsics' own undefined pass-through operands (_mm512_cvtps_ph's) as
// uninitialized (a known false positive, as in vec_math.cpp).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#define OTTER_HALF_GEMM_X86 1
#endif

namespace otter::cpu {
namespace {

constexpr int kRows = 12;      // rows of a register tile
constexpr int kVectors = 2;    // 16-float vectors across a tile: 32 columns (a K x 32 panel stays in L1)
constexpr int kCols = 16 * kVectors;
// oneDNN 2.6's sgemm (one thread) sums k <= 384 in one chain, and 384 < k <= 768 in two: the
// first ceil(k / 2) terms, the rest, then their sum (checked against it, see gemm_half.h).
constexpr int64_t kOneChain = 384;
constexpr int64_t kTwoChains = 768;

float element(const void* p, DType t, int64_t i) {
  return t == DType::Float16 ? math::half_bits_to_float(static_cast<const uint16_t*>(p)[i])
                             : static_cast<const float*>(p)[i];
}

#if defined(OTTER_HALF_GEMM_X86)
#define OTTER_AVX512 __attribute__((target("avx512f")))

// One tile: R rows x 32 columns of Y from widened A (row r, term p at a[r * k + p], or with
// KMajor at a[p * lda + r]) and a packed panel (b[p * 32 + j]). Each output is one FMA chain over
// p from zero (two with `split` < k: [0, split) and [split, k), then their sum), then + bias,
// rounded to FP16 (NaN lanes through the scalar conversion, as runtime/core/convert.h narrows).
// chain(): acc = the FMA chains over terms [p0, p1).
template <int R, bool KMajor>
OTTER_AVX512 __attribute__((always_inline)) inline void chain(__m512 (&acc)[R][kVectors], const float* a, int64_t lda,
                                                              const float* b, int64_t p0, int64_t p1) {
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t p = p0; p < p1; ++p) {
    __m512 bv[kVectors];
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) bv[v] = _mm512_loadu_ps(b + p * kCols + 16 * v);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(KMajor ? a[p * lda + r] : a[r * lda + p]);
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
}

template <int R, bool KMajor>
OTTER_AVX512 void tile(const float* a, int64_t lda, int64_t k, int64_t split, const float* b, const float* bias,
                       uint16_t* y, float* y_wide, int64_t ldy, int cols) {
  __m512 acc[R][kVectors];
  if (split < k) {
    alignas(64) float first[R][kCols];  // the first chain's sums
    chain<R, KMajor>(acc, a, lda, b, 0, split);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) _mm512_store_ps(first[r] + 16 * v, acc[r][v]);
    chain<R, KMajor>(acc, a, lda, b, split, k);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm512_add_ps(_mm512_load_ps(first[r] + 16 * v), acc[r][v]);
  } else {
    chain<R, KMajor>(acc, a, lda, b, 0, k);
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) {
      const int c0 = 16 * v;
      if (c0 >= cols) break;
      const __m512 sum = bias ? _mm512_add_ps(acc[r][v], _mm512_loadu_ps(bias + c0)) : acc[r][v];
      const __m256i h = _mm512_cvtps_ph(sum, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __mmask16 nan = _mm512_cmp_ps_mask(sum, sum, _CMP_UNORD_Q);
      if (!nan && cols - c0 >= 16) {
        if (y_wide) _mm512_storeu_ps(y_wide + r * ldy + c0, _mm512_cvtph_ps(h));  // the FP16 value, widened
        else _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + r * ldy + c0), h);
        continue;
      }
      // A partial vector, or NaN lanes (the scalar conversions, as runtime/core/convert.h narrows).
      alignas(32) uint16_t bits[16];
      alignas(64) float f[16];
      _mm256_store_si256(reinterpret_cast<__m256i*>(bits), h);
      _mm512_store_ps(f, sum);
      for (int l = 0; l < std::min(16, cols - c0); ++l) {
        const uint16_t b16 = (nan >> l) & 1u ? math::float_to_half_bits(f[l]) : bits[l];
        if (y_wide) y_wide[r * ldy + c0 + l] = math::half_bits_to_float(b16);
        else y[r * ldy + c0 + l] = b16;
      }
    }
  _mm256_zeroupper();  // leave no dirty upper state for SSE code after us (docs/architecture.md)
}

// FP16 rows (row stride ld) as dense rows of n floats: one conversion call when they are
// contiguous.
void widen_rows(const uint16_t* s, int64_t ld, float* d, int64_t rows, int64_t n) {
  if (ld == n) return widen_n(DType::Float16, s, d, rows * n);
  for (int64_t r = 0; r < rows; ++r) widen_n(DType::Float16, s + r * ld, d + r * n, n);
}

using TileFn = void (*)(const float*, int64_t, int64_t, int64_t, const float*, const float*, uint16_t*, float*, int64_t,
                       int);
template <bool KMajor>
constexpr TileFn kTiles[kRows + 1] = {nullptr,
                                      tile<1, KMajor>,
                                      tile<2, KMajor>,
                                      tile<3, KMajor>,
                                      tile<4, KMajor>,
                                      tile<5, KMajor>,
                                      tile<6, KMajor>,
                                      tile<7, KMajor>,
                                      tile<8, KMajor>,
                                      tile<9, KMajor>,
                                      tile<10, KMajor>,
                                      tile<11, KMajor>,
                                      tile<12, KMajor>};
#endif

}  // namespace

bool half_gemm_supported(int64_t m, int64_t n, int64_t k, bool bias) {
#if defined(OTTER_HALF_GEMM_X86)
  // Two chains only without a bias (where it is added among the chains' sums is not checked).
  return host_avx512() && m >= 2 && n >= 1 && k >= 1 && (k <= kOneChain || (k <= kTwoChains && !bias));
#else
  (void)m, (void)n, (void)k, (void)bias;
  return false;
#endif
}

int half_gemm_panel_width() { return kCols; }

int64_t half_gemm_packed_size(const HalfGemm& g) {
  const int64_t panels = (g.n + kCols - 1) / kCols;
  return panels * kCols * (g.k + 1);  // the panels, then the bias in panel order
}

void half_gemm_pack(const HalfGemm& g, float* packed, int64_t q0, int64_t q1) {
  const int64_t panels = (g.n + kCols - 1) / kCols;
  const bool wide = g.b_type == DType::Float32;
  const auto* bf = static_cast<const float*>(g.b);
  for (int64_t q = q0; q < q1; ++q) {
    float* panel = packed + q * g.k * kCols;
    const int64_t cols = std::min<int64_t>(kCols, g.n - q * kCols);
    if (cols < kCols)
      for (int64_t p = 0; p < g.k; ++p) std::fill(panel + p * kCols + cols, panel + (p + 1) * kCols, 0.0f);
    if (g.trans_b) {  // B is [n, k]: each column of the panel is a row of B
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t row = (q * kCols + j) * g.ldb;
        if (wide)
          for (int64_t p = 0; p < g.k; ++p) panel[p * kCols + j] = bf[row + p];
        else
          for (int64_t p = 0; p < g.k; ++p) panel[p * kCols + j] = element(g.b, g.b_type, row + p);
      }
    } else {  // B is [k, n]: each row of the panel is part of a row of B (copied, or widened)
      const auto* b = static_cast<const char*>(g.b);
      for (int64_t p = 0; p < g.k; ++p)
        widen_n(g.b_type, b + (p * g.ldb + q * kCols) * dtype_size(g.b_type), panel + p * kCols, cols);
    }
  }
  if (q0 > 0) return;
  float* bias = packed + panels * g.k * kCols;
  for (int64_t j = 0; j < panels * kCols; ++j) bias[j] = g.bias && j < g.n ? element(g.bias, g.bias_type, j) : 0.0f;
}

void half_gemm_rows(const HalfGemm& g, const float* packed, int64_t r0, int64_t r1, float* a_rows) {
#if defined(OTTER_HALF_GEMM_X86)
  const int64_t panels = (g.n + kCols - 1) / kCols;
  const float* bias = g.bias ? packed + panels * g.k * kCols : nullptr;
  const int64_t rows = r1 - r0;
  const int64_t split = g.k <= kOneChain ? g.k : (g.k + 1) / 2;
  if (g.trans_a) widen_rows(g.a + r0, g.lda, a_rows, g.k, rows);  // A is [k, m]: k-major rows
  else widen_rows(g.a + r0 * g.lda, g.lda, a_rows, rows, g.k);
  for (int64_t q = 0; q < panels; ++q) {  // each panel of B once, from L1, over all the rows
    const int cols = static_cast<int>(std::min<int64_t>(kCols, g.n - q * kCols));
    for (int64_t i = r0; i < r1; i += kRows) {
      const int n_rows = static_cast<int>(std::min<int64_t>(kRows, r1 - i));
      const int64_t at = i * g.ldy + q * kCols;
      const float* a = g.trans_a ? a_rows + (i - r0) : a_rows + (i - r0) * g.k;
      (g.trans_a ? kTiles<true> : kTiles<false>)[n_rows](a, g.trans_a ? rows : g.k, g.k, split, packed + q * g.k * kCols,
                                                       bias ? bias + q * kCols : nullptr, g.y ? g.y + at : nullptr,
                                                       g.y_wide ? g.y_wide + at : nullptr, g.ldy, cols);
    }
  }
#else
  (void)g, (void)packed, (void)r0, (void)r1, (void)a_rows;
#endif
}

}  // namespace otter::cpu
