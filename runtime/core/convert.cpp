// Bulk FP16/BF16 <-> FP32 conversions (see convert.h). The AVX-512 path uses vcvtps2ph/vcvtph2ps
// (IEEE round to nearest even, subnormals exact) for FP16 and integer rounding for BF16 (the same
// arithmetic as half.h; vcvtneps2bf16 would flush subnormals), and sends the rare NaN lanes
// through the scalar code so that NaN bits match it too.
#include "runtime/core/convert.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "runtime/core/half.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define OTTER_X86_DISPATCH 1
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace otter {
namespace {

bool use_avx512() {
#if defined(OTTER_X86_DISPATCH)
  static const bool yes = [] {
    const char* forced = std::getenv("OTTER_CPU_ISA");
    if (forced && std::strcmp(forced, "scalar") == 0) return false;
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return yes;
#else
  return false;
#endif
}

void scalar_f2h(const float* s, uint16_t* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = math::float_to_half_bits(s[i]);
}
void scalar_h2f(const uint16_t* s, float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = math::half_bits_to_float(s[i]);
}
void scalar_f2b(const float* s, uint16_t* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = math::float_to_bfloat16_bits(s[i]);
}
void scalar_b2f(const uint16_t* s, float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = math::bfloat16_bits_to_float(s[i]);
}

#if defined(OTTER_X86_DISPATCH)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 reports the intrinsics' own _mm512_undefined_* placeholders as maybe-uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
__attribute__((target("avx512f"))) void avx512_f2h(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(s + i);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i),
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (__mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q))
      for (int k = 0; k < 16; ++k)
        if (nan & (1u << k)) d[i + k] = math::float_to_half_bits(s[i + k]);
  }
  // Clean upper vector state before the scalar tail and the return (the tail call skipped GCC's
  // vzeroupper): left dirty, it made every later SSE instruction (glibc's exp, erf) pay an
  // AVX-SSE transition penalty, ~15x on the FP16 GPT step's GELU gradient and softmax.
  _mm256_zeroupper();
  scalar_f2h(s + i, d + i, n - i);
}

__attribute__((target("avx512f"))) void avx512_h2f(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
    _mm512_storeu_ps(d + i, v);
    if (__mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q))
      for (int k = 0; k < 16; ++k)
        if (nan & (1u << k)) d[i + k] = math::half_bits_to_float(s[i + k]);
  }
  // Clean upper vector state before the scalar tail and the return (the tail call skipped GCC's
  // vzeroupper): left dirty, it made every later SSE instruction (glibc's exp, erf) pay an
  // AVX-SSE transition penalty, ~15x on the FP16 GPT step's GELU gradient and softmax.
  _mm256_zeroupper();
  scalar_h2f(s + i, d + i, n - i);
}

// FP32 -> FP16 -> FP32 in registers (round_through_n's FP16 case): one pass instead of two. NaN
// lanes take the scalar round trip, as the two passes' fix-ups would.
__attribute__((target("avx512f"))) void avx512_round_half(const float* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(s + i);
    _mm512_storeu_ps(d + i, _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
    if (__mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q))
      for (int k = 0; k < 16; ++k)
        if (nan & (1u << k)) d[i + k] = math::half_bits_to_float(math::float_to_half_bits(s[i + k]));
  }
  _mm256_zeroupper();  // as in avx512_f2h
  for (; i < n; ++i) d[i] = math::half_bits_to_float(math::float_to_half_bits(s[i]));
}

__attribute__((target("avx512f"))) void avx512_f2b(const float* s, uint16_t* d, int64_t n) {
  const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(s + i);
    __m512i x = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), one);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(x, _mm512_add_epi32(bias, lsb)), 16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm512_cvtepi32_epi16(r));
    if (__mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q))
      for (int k = 0; k < 16; ++k)
        if (nan & (1u << k)) d[i + k] = math::float_to_bfloat16_bits(s[i + k]);
  }
  // Clean upper vector state before the scalar tail and the return (the tail call skipped GCC's
  // vzeroupper): left dirty, it made every later SSE instruction (glibc's exp, erf) pay an
  // AVX-SSE transition penalty, ~15x on the FP16 GPT step's GELU gradient and softmax.
  _mm256_zeroupper();
  scalar_f2b(s + i, d + i, n - i);
}

__attribute__((target("avx512f"))) void avx512_b2f(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
    _mm512_storeu_ps(d + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
  }
  // Clean upper vector state before the scalar tail and the return (the tail call skipped GCC's
  // vzeroupper): left dirty, it made every later SSE instruction (glibc's exp, erf) pay an
  // AVX-SSE transition penalty, ~15x on the FP16 GPT step's GELU gradient and softmax.
  _mm256_zeroupper();
  scalar_b2f(s + i, d + i, n - i);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

// Runs fn over [0, n) in chunks of at least 16K elements per thread.
template <class Fn>
void chunked(int64_t n, Fn fn) {
  constexpr int64_t kMinPerThread = 1 << 14;
#if defined(_OPENMP)
  if (n >= 2 * kMinPerThread && !omp_in_parallel()) {
    int threads = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), n / kMinPerThread));
#pragma omp parallel num_threads(threads)
    {
      int t = omp_get_thread_num(), T = omp_get_num_threads();
      int64_t chunk = (n + T - 1) / T;
      chunk = (chunk + 15) / 16 * 16;
      int64_t b = std::min(n, t * chunk), e = std::min(n, b + chunk);
      if (b < e) fn(b, e);
    }
    return;
  }
#endif
  fn(int64_t(0), n);
}

}  // namespace

#if defined(OTTER_X86_DISPATCH)
#define OTTER_CONVERT(NAME, SRC, DST, AVX, SCALAR)                                        \
  void NAME(const SRC* src, DST* dst, int64_t n) {                                        \
    bool avx = use_avx512();                                                              \
    chunked(n, [&](int64_t b, int64_t e) { (avx ? AVX : SCALAR)(src + b, dst + b, e - b); }); \
  }
#else
#define OTTER_CONVERT(NAME, SRC, DST, AVX, SCALAR) \
  void NAME(const SRC* src, DST* dst, int64_t n) { chunked(n, [&](int64_t b, int64_t e) { SCALAR(src + b, dst + b, e - b); }); }
#endif
OTTER_CONVERT(float_to_half_n, float, uint16_t, avx512_f2h, scalar_f2h)
OTTER_CONVERT(half_to_float_n, uint16_t, float, avx512_h2f, scalar_h2f)
OTTER_CONVERT(float_to_bfloat16_n, float, uint16_t, avx512_f2b, scalar_f2b)
OTTER_CONVERT(bfloat16_to_float_n, uint16_t, float, avx512_b2f, scalar_b2f)
#undef OTTER_CONVERT

void widen_n(DType from, const void* src, float* dst, int64_t n) {
  if (from == DType::Float16) half_to_float_n(static_cast<const uint16_t*>(src), dst, n);
  else if (from == DType::BFloat16) bfloat16_to_float_n(static_cast<const uint16_t*>(src), dst, n);
  else std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void narrow_n(DType to, const float* src, void* dst, int64_t n) {
  if (to == DType::Float16) float_to_half_n(src, static_cast<uint16_t*>(dst), n);
  else if (to == DType::BFloat16) float_to_bfloat16_n(src, static_cast<uint16_t*>(dst), n);
  else std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void round_through_n(const float* src, float* dst, int64_t n, bool to_half) {
#if defined(OTTER_X86_DISPATCH)
  if (to_half && use_avx512()) {
    chunked(n, [&](int64_t b, int64_t e) { avx512_round_half(src + b, dst + b, e - b); });
    return;
  }
#endif
  chunked(n, [&](int64_t b, int64_t e) {
    constexpr int64_t kBlock = 2048;  // the 16-bit values of one block stay in L1
    uint16_t low[kBlock];
    for (int64_t c = b; c < e; c += kBlock) {
      const int64_t len = std::min(kBlock, e - c);
      if (to_half) {
        float_to_half_n(src + c, low, len);
        half_to_float_n(low, dst + c, len);
      } else {
        float_to_bfloat16_n(src + c, low, len);
        bfloat16_to_float_n(low, dst + c, len);
      }
    }
  });
}

const char* conversion_path() { return use_avx512() ? "avx512f" : "scalar"; }

bool host_avx512() { return use_avx512(); }

}  // namespace otter
