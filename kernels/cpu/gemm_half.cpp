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
// A weight gradient (trans_a) over more than 2 * kBlockK rows, and any k past one chain, walk k in
// blocks of kBlockK terms (half_gemm_rows): a whole panel of B no longer stays in L1 across the
// row tiles, a block of it does (measured on the BERT-tiny and GPT d64 weight gradients).
constexpr int64_t kBlockK = 64;

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
OTTER_AVX512 __attribute__((always_inline)) inline void chain_on(__m512 (&acc)[R][kVectors], const float* a, int64_t lda,
                                                                 const float* b, int64_t p0, int64_t p1) {
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
OTTER_AVX512 __attribute__((always_inline)) inline void chain(__m512 (&acc)[R][kVectors], const float* a, int64_t lda,
                                                              const float* b, int64_t p0, int64_t p1) {
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm512_setzero_ps();
  chain_on<R, KMajor>(acc, a, lda, b, p0, p1);
}

// The tile's sums + bias, rounded to FP16 into Y (or into y_wide, widened again).
template <int R>
OTTER_AVX512 __attribute__((always_inline)) inline void round_out(__m512 (&acc)[R][kVectors], const float* bias,
                                                                  uint16_t* y, float* y_wide, int64_t ldy, int cols) {
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
  round_out<R>(acc, bias, y, y_wide, ldy, cols);
  _mm256_zeroupper();  // leave no dirty upper state for SSE code after us (docs/architecture.md)
}

// Terms [0, steps) of a k block (a and b at its first term) for one tile, on from the sums in
// `sums` (R x 32 floats; from zero with `fresh`) and back there; with `last`, the last block of
// the last chain, the sums (after `first`'s, the first chain's, where k has two) go out instead.
// FP32 stores and loads are exact, so the chains are the unblocked tile's.
template <int R, bool KMajor>
OTTER_AVX512 void tile_block(const float* a, int64_t lda, const float* b, int64_t steps, float* sums, bool fresh,
                             const float* first, bool last, const float* bias, uint16_t* y, float* y_wide,
                             int64_t ldy, int cols) {
  __m512 acc[R][kVectors];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) acc[r][v] = fresh ? _mm512_setzero_ps() : _mm512_loadu_ps(sums + r * kCols + 16 * v);
  chain_on<R, KMajor>(acc, a, lda, b, 0, steps);
  if (!last) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) _mm512_storeu_ps(sums + r * kCols + 16 * v, acc[r][v]);
  } else {
    if (first)
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm512_add_ps(_mm512_loadu_ps(first + r * kCols + 16 * v), acc[r][v]);
    round_out<R>(acc, bias, y, y_wide, ldy, cols);
  }
  _mm256_zeroupper();
}

// 16 FP16 values widened (as runtime/core/convert.h widens: NaN lanes through the scalar
// conversion, which keeps a signalling NaN's payload as it is).
OTTER_AVX512 inline __m512 widen16(const uint16_t* s) {
  const __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s)));
  if (__builtin_expect(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) == 0, 1)) return v;
  alignas(64) float f[16];
  for (int l = 0; l < 16; ++l) f[l] = math::half_bits_to_float(s[l]);
  return _mm512_load_ps(f);
}

// Terms [p0, p1) of a tile's rows of A (rows i .. i + R of op(A)), widened into scratch: R rows
// of p1 - p0 floats (`out[r * (p1 - p0) + p - p0]`), or with trans_a term-major
// (`out[(p - p0) * kRows + r]`: A is [k, m], and the tile's values of each term are contiguous).
OTTER_AVX512 void widen_tile(const HalfGemm& g, int64_t i, int rows, int64_t p0, int64_t p1, float* out) {
  const int64_t len = p1 - p0;
  if (!g.trans_a) {
    const bool dense = len == g.lda;  // the rows are one contiguous run (short rows: one loop, one tail)
    for (int r = 0; r < (dense ? 1 : rows); ++r) {
      const uint16_t* s = g.a + (i + r) * g.lda + p0;
      float* d = out + r * len;
      const int64_t n = dense ? rows * len : len;
      int64_t p = 0;
      for (; p + 16 <= n; p += 16) _mm512_storeu_ps(d + p, widen16(s + p));
      for (; p < n; ++p) d[p] = math::half_bits_to_float(s[p]);
    }
  } else if (i + 16 <= g.m) {  // 16 values of each row of A are in bounds: one conversion per term
    const __mmask16 keep = static_cast<__mmask16>((1u << rows) - 1);
    for (int64_t p = p0; p < p1; ++p) _mm512_mask_storeu_ps(out + (p - p0) * kRows, keep, widen16(g.a + p * g.lda + i));
  } else {
    for (int64_t p = p0; p < p1; ++p)
      for (int r = 0; r < rows; ++r) out[(p - p0) * kRows + r] = math::half_bits_to_float(g.a[p * g.lda + i + r]);
  }
  _mm256_zeroupper();
}

// Terms [p0, p1) of panel q (32 full columns) of a not-transposed FP16 B, widened in registers.
OTTER_AVX512 void pack_half_panel(const HalfGemm& g, float* panel, int64_t q, int64_t p0, int64_t p1) {
  const auto* b = static_cast<const uint16_t*>(g.b) + q * kCols + p0 * g.ldb;
  for (int64_t p = 0; p < p1 - p0; ++p)
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) _mm512_storeu_ps(panel + p * kCols + 16 * v, widen16(b + p * g.ldb + 16 * v));
  _mm256_zeroupper();
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
using BlockFn = void (*)(const float*, int64_t, const float*, int64_t, float*, bool, const float*, bool, const float*,
                        uint16_t*, float*, int64_t, int);
template <bool KMajor>
constexpr BlockFn kBlocks[kRows + 1] = {nullptr,
                                        tile_block<1, KMajor>,
                                        tile_block<2, KMajor>,
                                        tile_block<3, KMajor>,
                                        tile_block<4, KMajor>,
                                        tile_block<5, KMajor>,
                                        tile_block<6, KMajor>,
                                        tile_block<7, KMajor>,
                                        tile_block<8, KMajor>,
                                        tile_block<9, KMajor>,
                                        tile_block<10, KMajor>,
                                        tile_block<11, KMajor>,
                                        tile_block<12, KMajor>};
#endif

// Terms [p0, p1) of panel q of B, widened (or copied) into `panel` ((p1 - p0) x 32 floats).
void pack_panel(const HalfGemm& g, int64_t q, int64_t p0, int64_t p1, float* panel) {
  const int64_t cols = std::min<int64_t>(kCols, g.n - q * kCols);
#if defined(OTTER_HALF_GEMM_X86)
  if (g.b_type == DType::Float16 && !g.trans_b && cols == kCols) return pack_half_panel(g, panel, q, p0, p1);
#endif
  const int64_t len = p1 - p0;
  if (cols < kCols)
    for (int64_t p = 0; p < len; ++p) std::fill(panel + p * kCols + cols, panel + (p + 1) * kCols, 0.0f);
  if (g.trans_b) {  // B is [n, k]: each column of the panel is a row of B
    const auto* bf = static_cast<const float*>(g.b);
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t row = (q * kCols + j) * g.ldb + p0;
      if (g.b_type == DType::Float32)
        for (int64_t p = 0; p < len; ++p) panel[p * kCols + j] = bf[row + p];
      else
        for (int64_t p = 0; p < len; ++p) panel[p * kCols + j] = element(g.b, g.b_type, row + p);
    }
  } else {  // B is [k, n]: each row of the panel is part of a row of B (copied, or widened)
    const auto* b = static_cast<const char*>(g.b);
    for (int64_t p = 0; p < len; ++p)
      widen_n(g.b_type, b + ((p0 + p) * g.ldb + q * kCols) * dtype_size(g.b_type), panel + p * kCols, cols);
  }
}

void pack_bias(const HalfGemm& g, float* bias) {
  const int64_t panels = (g.n + kCols - 1) / kCols;
  for (int64_t j = 0; j < panels * kCols; ++j) bias[j] = g.bias && j < g.n ? element(g.bias, g.bias_type, j) : 0.0f;
}

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
  for (int64_t q = q0; q < q1; ++q) pack_panel(g, q, 0, g.k, packed + q * g.k * kCols);
  if (q0 == 0) pack_bias(g, packed + panels * g.k * kCols);
}

int64_t half_gemm_scratch_size(const HalfGemm& g, int64_t rows) {
  if (!half_gemm_blocked(g)) return kRows * g.k;
  const int64_t tiles = (rows + kRows - 1) / kRows, panels = (g.n + kCols - 1) / kCols;
  return tiles * kRows * kBlockK + 2 * tiles * panels * kRows * kCols + panels * kCols * (kBlockK + 1);
}

bool half_gemm_blocked(const HalfGemm& g) { return g.k > kOneChain || (g.trans_a && g.k > 2 * kBlockK); }

void half_gemm_rows(const HalfGemm& g, const float* packed, int64_t r0, int64_t r1, float* scratch) {
#if defined(OTTER_HALF_GEMM_X86)
  const int64_t panels = (g.n + kCols - 1) / kCols;
  const int64_t split = g.k <= kOneChain ? g.k : (g.k + 1) / 2;
  const auto tiles_fn = g.trans_a ? kTiles<true> : kTiles<false>;
  if (!half_gemm_blocked(g)) {
    const float* bias = g.bias ? packed + panels * g.k * kCols : nullptr;
    // Each row tile's A once into L1, then every panel of B against it.
    for (int64_t i = r0; i < r1; i += kRows) {
      const int n_rows = static_cast<int>(std::min<int64_t>(kRows, r1 - i));
      widen_tile(g, i, n_rows, 0, g.k, scratch);
      for (int64_t q = 0; q < panels; ++q) {
        const int cols = static_cast<int>(std::min<int64_t>(kCols, g.n - q * kCols));
        const int64_t at = i * g.ldy + q * kCols;
        tiles_fn[n_rows](scratch, g.trans_a ? kRows : g.k, g.k, split, packed + q * g.k * kCols,
                         bias ? bias + q * kCols : nullptr, g.y ? g.y + at : nullptr,
                         g.y_wide ? g.y_wide + at : nullptr, g.ldy, cols);
      }
    }
    return;
  }
  const int64_t kc = kBlockK, tiles = (r1 - r0 + kRows - 1) / kRows;
  float* a_block = scratch;                         // [tiles][kRows * kc]
  float* sums = a_block + tiles * kRows * kc;       // per chain: [tiles][panels][kRows * kCols]
  const int64_t chain_floats = tiles * panels * kRows * kCols;
  float* b_block = sums + 2 * chain_floats;         // [panels][kc * kCols]
  float* bias = g.bias ? b_block + panels * kc * kCols : nullptr;
  if (bias) pack_bias(g, bias);
  const auto blocks_fn = g.trans_a ? kBlocks<true> : kBlocks<false>;
  const int64_t bounds[3] = {0, split, g.k};
  const int chains = split < g.k ? 2 : 1;
  for (int c = 0; c < chains; ++c)
    for (int64_t p0 = bounds[c]; p0 < bounds[c + 1]; p0 += kc) {
      const int64_t p1 = std::min(p0 + kc, bounds[c + 1]), len = p1 - p0;
      const bool fresh = p0 == bounds[c], last = p1 == g.k;
      for (int64_t q = 0; q < panels; ++q) pack_panel(g, q, p0, p1, b_block + q * kc * kCols);
      for (int64_t t = 0; t < tiles; ++t)
        widen_tile(g, r0 + t * kRows, static_cast<int>(std::min<int64_t>(kRows, r1 - r0 - t * kRows)), p0, p1,
                   a_block + t * kRows * kc);
      for (int64_t q = 0; q < panels; ++q) {
        const int cols = static_cast<int>(std::min<int64_t>(kCols, g.n - q * kCols));
        for (int64_t t = 0; t < tiles; ++t) {
          const int64_t i = r0 + t * kRows;
          const int n_rows = static_cast<int>(std::min<int64_t>(kRows, r1 - i));
          const int64_t at = i * g.ldy + q * kCols, slot = (t * panels + q) * kRows * kCols;
          blocks_fn[n_rows](a_block + t * kRows * kc, g.trans_a ? kRows : len, b_block + q * kc * kCols,
                            len, sums + c * chain_floats + slot, fresh, chains == 2 ? sums + slot : nullptr, last,
                            bias ? bias + q * kCols : nullptr, g.y ? g.y + at : nullptr,
                            g.y_wide ? g.y_wide + at : nullptr, g.ldy, cols);
        }
      }
    }
#else
  (void)g, (void)packed, (void)r0, (void)r1, (void)scratch;
#endif
}

}  // namespace otter::cpu
