// The CPU's flat-buffer operations of a training step (kernels/step_ops.h): one OpenMP loop each
// over the whole model, with the per-element arithmetic of kernels/common/train_math.h. The
// scaler state and the step counters are host memory here, read and written by pointer exactly
// as the CUDA implementation does on the device.
#include <algorithm>
#include <cmath>
#include <cstring>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if !defined(__clang__)
// GCC 12 reports the intrinsics' own undefined pass-through operands as uninitialized (a known
// false positive, as in vec_math.cpp).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#define OTTER_UPDATE_AVX512 1
#define OTTER_AVX512 __attribute__((target("avx512f")))
#endif

#include "kernels/registry.h"
#include "kernels/step_ops.h"
#include "runtime/core/convert.h"
#include "runtime/core/error.h"
#include "runtime/core/half.h"

namespace otter {
namespace {

constexpr int64_t kParallel = 65536;  // below this many elements a loop runs on one thread

bool found_inf(const float* scaler) { return scaler && scaler[math::kScalerFoundInf] != 0.0f; }

// The Adam/AdamW element loop is bound by its division and square root per element: built for
// AVX-512 and AVX2 besides the baseline x86-64 (SSE2) and picked by the dynamic loader for this
// CPU (GCC target_clones), it runs 2-4x faster on 16 lanes. Contraction into FMA is off so every
// clone rounds exactly as the baseline does (results do not depend on the CPU).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#define OTTER_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), optimize("fp-contract=off")))
#else
#define OTTER_ISA_CLONES
#endif

OTTER_ISA_CLONES void adam_range_clones(float* __restrict p, const float* __restrict g, float* __restrict m,
                                        float* __restrict v, int64_t b, int64_t e, bool decoupled,
                                        const math::UpdateScalars& u) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) math::adam_element(p[i], g[i], m[i], v[i], decoupled, u);
}

#if defined(OTTER_UPDATE_AVX512)
// The optimizer updates on 16 lanes (Adam/AdamW here, SGD below), with math::adam_element's and
// math::sgd_element's operations in their order, for CPUs whose float
// multiplies, divides and square roots take a microcode assist on a subnormal operand or result
// (x86: 35-80 ns an instruction on the benchmark VM, against ~1; adds, conversions and
// compares take none). Moment estimates become subnormal in ordinary training: the weights of a ReLU unit
// that stays off get exact-zero gradients, and their first moment decays by beta1 a step (digits:
// 11% of the first moments after a few thousand steps, which made the update 3-4x slower).
//
// Each multiply, divide and square root whose operands or result may be subnormal in some lane
// (bounds from the operands' bits and the step's constants, checked per vector) is done in double
// on the widened operands and rounded to float: float values, subnormal ones too, are normal
// doubles, and the result has the float operation's bits (rounding twice is harmless for *, / and
// sqrt when the wider format has at least 2p + 2 bits, 53 >= 2 * 24 + 2: S. Figueroa, "When is
// double rounding innocuous?", 1995). The other vectors run in float at full speed.
namespace update_avx512 {

using Vec = __m512;

// The bits of 2^-125 / |c| (at least 2^-125, at most the largest float): a product c * x can be
// subnormal (or x itself) only where |x| is below it.
uint32_t product_bound(float c) {
  const double b = std::ldexp(1.0, -125) / std::max(std::fabs(static_cast<double>(c)), 1e-300);
  const float f = static_cast<float>(std::min(std::max(b, std::ldexp(1.0, -125)), 3.0e38));
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

// Some lane has 0 < |x| < bound (zeros take no assist; NaN is never below).
OTTER_AVX512 inline bool any_below(Vec x, uint32_t bound) {
  const __m512i a = _mm512_and_epi32(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff));
  const __m512i one = _mm512_set1_epi32(1);  // a - 1 < bound - 1, unsigned: zero wraps to the top
  return _mm512_cmplt_epu32_mask(_mm512_sub_epi32(a, one), _mm512_set1_epi32(static_cast<int>(bound - 1))) != 0;
}
OTTER_AVX512 inline __m512d low(Vec x) { return _mm512_cvtps_pd(_mm512_castps512_ps256(x)); }
OTTER_AVX512 inline __m512d high(Vec x) {
  return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
}
OTTER_AVX512 inline Vec join(__m512d lo, __m512d hi) {  // rounded to float
  const __m512d l = _mm512_castps_pd(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)));
  return _mm512_castpd_ps(_mm512_insertf64x4(l, _mm256_castps_pd(_mm512_cvtpd_ps(hi)), 1));
}
OTTER_AVX512 inline Vec mul(Vec x, Vec y, bool wide) {
  if (!wide) return _mm512_mul_ps(x, y);
  return join(_mm512_mul_pd(low(x), low(y)), _mm512_mul_pd(high(x), high(y)));
}
OTTER_AVX512 inline Vec div(Vec x, Vec y, bool wide) {
  if (!wide) return _mm512_div_ps(x, y);
  return join(_mm512_div_pd(low(x), low(y)), _mm512_div_pd(high(x), high(y)));
}
OTTER_AVX512 inline Vec sqrt(Vec x, bool wide) {
  if (!wide) return _mm512_sqrt_ps(x);
  return join(_mm512_sqrt_pd(low(x)), _mm512_sqrt_pd(high(x)));
}
// Some lane of q / d may be subnormal: q is, or q's exponent is within 125 of d's (d >= 2^-125).
OTTER_AVX512 inline bool quotient_may_be_tiny(Vec q, Vec d) {
  const __m512i exp_q = _mm512_srli_epi32(_mm512_and_epi32(_mm512_castps_si512(q), _mm512_set1_epi32(0x7f800000)), 23);
  const __m512i exp_d = _mm512_srli_epi32(_mm512_and_epi32(_mm512_castps_si512(d), _mm512_set1_epi32(0x7f800000)), 23);
  const __m512i gap = _mm512_sub_epi32(exp_d, exp_q);  // q / d < 2^(1 - gap)
  return _mm512_cmpgt_epi32_mask(gap, _mm512_set1_epi32(124)) != 0 || any_below(d, 0x01000000u);  // 2^-125
}

// Elements [0, n) (n a multiple of 16).
OTTER_AVX512 __attribute__((optimize("fp-contract=off"))) void update(float* p, const float* g, float* m, float* v,
                                                                     int64_t n, bool decoupled,
                                                                     const math::UpdateScalars& u) {
  const float decay_s = 1.0f - u.lr * u.wd, b1c_s = 1.0f - u.b1, b2c_s = 1.0f - u.b2;
  const Vec decay = _mm512_set1_ps(decay_s), wd = _mm512_set1_ps(u.wd), b1 = _mm512_set1_ps(u.b1),
            b1c = _mm512_set1_ps(b1c_s), b2 = _mm512_set1_ps(u.b2), b2c = _mm512_set1_ps(b2c_s),
            bc2 = _mm512_set1_ps(u.bc2_sqrt), eps = _mm512_set1_ps(u.eps), step = _mm512_set1_ps(u.step_size);
  const uint32_t p_bound = product_bound(decoupled ? decay_s : u.wd), m_bound = product_bound(u.b1),
                 g_bound = std::max(product_bound(b1c_s), product_bound(b2c_s)), v_bound = product_bound(u.b2),
                 step_bound = product_bound(u.step_size), subnormal_bound = 0x01000000u;  // 2^-125
  // ((1 - b2) g) g may be subnormal where |g| < sqrt(2^-125 / (1 - b2)) (times 2: conservative).
  const float gg = static_cast<float>(
      std::min(2.0 * std::sqrt(std::ldexp(1.0, -125) / std::max(static_cast<double>(std::fabs(b2c_s)), 1e-300)), 3.0e38));
  uint32_t gg_bound;
  std::memcpy(&gg_bound, &gg, sizeof gg_bound);
  for (int64_t i = 0; i < n; i += 16) {
    Vec P = _mm512_loadu_ps(p + i), G = _mm512_loadu_ps(g + i), M = _mm512_loadu_ps(m + i), V = _mm512_loadu_ps(v + i);
    if (decoupled) P = mul(P, decay, any_below(P, p_bound));
    else G = _mm512_add_ps(G, mul(wd, P, any_below(P, p_bound)));
    const bool g_tiny = any_below(G, g_bound);
    M = _mm512_add_ps(mul(b1, M, any_below(M, m_bound)), mul(b1c, G, g_tiny));
    const Vec g_scaled = mul(b2c, G, g_tiny);
    V = _mm512_add_ps(mul(b2, V, any_below(V, v_bound)), mul(g_scaled, G, g_tiny || any_below(G, gg_bound)));
    const bool v_tiny = any_below(V, subnormal_bound);  // sqrt(v) >= 2^-63 otherwise, and bc2 <= 1
    const Vec denom = _mm512_add_ps(div(sqrt(V, v_tiny), bc2, v_tiny), eps);
    const Vec q = mul(step, M, any_below(M, step_bound));
    P = _mm512_sub_ps(P, div(q, denom, quotient_may_be_tiny(q, denom)));
    _mm512_storeu_ps(p + i, P);
    _mm512_storeu_ps(m + i, M);
    _mm512_storeu_ps(v + i, V);
  }
  _mm256_zeroupper();
}

// SGD (math::sgd_element) on elements [0, n) (n a multiple of 16), the same way: its multiplies
// (wd * p, mu * buf, lr * d) in double where a vector may meet a subnormal. A dead unit's momentum
// decays by mu a step into subnormals, as Adam's first moment does. `buf` null: no momentum.
OTTER_AVX512 __attribute__((optimize("fp-contract=off"))) void sgd(float* p, const float* g, float* buf, int64_t n,
                                                                  bool nesterov, const math::UpdateScalars& u) {
  const Vec wd = _mm512_set1_ps(u.wd), mu = _mm512_set1_ps(u.mu), lr = _mm512_set1_ps(u.lr);
  const uint32_t p_bound = product_bound(u.wd), buf_bound = product_bound(u.mu), d_bound = product_bound(u.lr);
  for (int64_t i = 0; i < n; i += 16) {
    Vec P = _mm512_loadu_ps(p + i);
    Vec D = _mm512_add_ps(_mm512_loadu_ps(g + i), mul(wd, P, any_below(P, p_bound)));
    if (buf) {
      Vec B = _mm512_loadu_ps(buf + i);
      B = u.first ? D : _mm512_add_ps(mul(mu, B, any_below(B, buf_bound)), D);
      _mm512_storeu_ps(buf + i, B);
      D = nesterov ? _mm512_add_ps(D, mul(mu, B, any_below(B, buf_bound))) : B;
    }
    P = _mm512_sub_ps(P, mul(lr, D, any_below(D, d_bound)));
    _mm512_storeu_ps(p + i, P);
  }
  _mm256_zeroupper();
}

}  // namespace update_avx512
#endif

void adam_range(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, int64_t b,
                int64_t e, bool decoupled, const math::UpdateScalars& u) {
#if defined(OTTER_UPDATE_AVX512)
  if (host_avx512()) {
    const int64_t whole = (e - b) / 16 * 16;
    update_avx512::update(p + b, g + b, m + b, v + b, whole, decoupled, u);
    b += whole;
  }
#endif
  adam_range_clones(p, g, m, v, b, e, decoupled, u);
}

// SGD over [b, e): the AVX-512 loop above where the CPU has it, then the scalar element.
void sgd_range(float* p, const float* g, float* buf, int64_t b, int64_t e, bool nesterov, const math::UpdateScalars& u) {
#if defined(OTTER_UPDATE_AVX512)
  if (host_avx512()) {
    const int64_t whole = (e - b) / 16 * 16;
    update_avx512::sgd(p + b, g + b, buf ? buf + b : nullptr, whole, nesterov, u);
    b += whole;
  }
#endif
  if (buf) {
    for (int64_t i = b; i < e; ++i) math::sgd_element(p[i], g[i], buf + i, nesterov, u);
  } else {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) math::sgd_element(p[i], g[i], nullptr, false, u);
  }
}

class CpuStepOps : public StepOps {
 public:
  void begin_micro_step(int64_t* c, const float* scaler, void* seed, DType seed_dtype, int64_t accum) override {
    c[kRngStep] = c[kStepsTaken] * accum + c[kMicroStep];
    double v = static_cast<double>(scaler[math::kScalerScale]) / static_cast<double>(accum);
    switch (seed_dtype) {
      case DType::Float32: *static_cast<float*>(seed) = static_cast<float>(v); break;
      case DType::Float64: *static_cast<double*>(seed) = v; break;
      case DType::Float16: *static_cast<uint16_t*>(seed) = math::float_to_half_bits(static_cast<float>(v)); break;
      case DType::BFloat16: *static_cast<uint16_t*>(seed) = math::float_to_bfloat16_bits(static_cast<float>(v)); break;
      default: OTTER_FAIL("the loss has dtype ", dtype_name(seed_dtype), "; training needs a floating loss");
    }
  }

  void accumulate(float* acc, const float* g, int64_t n, const int64_t* c) override {
    if (c[kMicroStep] == 0) {
      std::memcpy(acc, g, static_cast<size_t>(n) * sizeof(float));
      return;
    }
#pragma omp parallel for simd if (n > kParallel)
    for (int64_t i = 0; i < n; ++i) acc[i] += g[i];
  }

  void end_micro_step(int64_t* c) override { c[kMicroStep] += 1; }

  void unscale_and_check(float* g, int64_t n, float* scaler, bool unscale) override {
    const float inv = static_cast<float>(1.0 / static_cast<double>(scaler[math::kScalerScale]));
    int found = 0;
    if (unscale) {
#pragma omp parallel for reduction(| : found) if (n > kParallel)
      for (int64_t i = 0; i < n; ++i) {
        float v = g[i] * inv;
        g[i] = v;
        found |= !std::isfinite(v);
      }
    } else {
#pragma omp parallel for reduction(| : found) if (n > kParallel)
      for (int64_t i = 0; i < n; ++i) found |= !std::isfinite(g[i]);
    }
    scaler[math::kScalerFoundInf] = found ? 1.0f : 0.0f;
  }

  void update_loss_scale(const math::LossScaleParams& p, float* scaler) override { math::update_loss_scale(p, scaler); }

  void clip_grad_norm(float* g, int64_t n, double max_norm, const float* scaler, double* norm_out) override {
    if (found_inf(scaler)) return;
    // Blocks of 4096 summed in float (vectorised), blocks accumulated in double.
    double s = 0;
    const int64_t block = 4096;
#pragma omp parallel for reduction(+ : s) if (n > kParallel)
    for (int64_t b = 0; b < n; b += block) {
      float part = 0;
      int64_t e = std::min(n, b + block);
#pragma omp simd reduction(+ : part)
      for (int64_t i = b; i < e; ++i) part += g[i] * g[i];
      s += part;
    }
    double norm = std::sqrt(s);
    *norm_out = norm;
    if (norm <= max_norm) return;
    const float f = static_cast<float>(max_norm / (norm + 1e-6));
#pragma omp parallel for simd if (n > kParallel)
    for (int64_t i = 0; i < n; ++i) g[i] *= f;
  }

  void optimizer_step(const math::OptimizerParams& opt, const math::ScheduleParams& schedule, double base_lr,
                      float* p, const float* g, float* m, float* v, int64_t n, const float* scaler,
                      int64_t* c) override {
    update(opt, schedule, base_lr, p, g, m, v, n, scaler, c, nullptr);
  }

  void optimizer_step_and_refresh(const math::OptimizerParams& opt, const math::ScheduleParams& schedule,
                                  double base_lr, float* p, const float* g, float* m, float* v, int64_t n,
                                  const float* scaler, int64_t* c, const LowCopies& copies) override {
    update(opt, schedule, base_lr, p, g, m, v, n, scaler, c, copies.count ? &copies : nullptr);
  }

  void refresh_low(const float* masters, const LowCopies& copies) override {
    for (size_t i = 0; i < copies.count; ++i) {
      const LowCopyRun& r = copies.runs[i];
      copy_run(masters, copies, r, r.src, r.src + r.n);
    }
  }

  // The update in blocks of kBlock elements (whole cache lines, a few per thread), each block's
  // low-precision copies written right after it while it is in cache. The arithmetic per element
  // is the same whatever the blocking (no reductions), so the bits do not depend on it.
  void update(const math::OptimizerParams& opt, const math::ScheduleParams& schedule, double base_lr,
              float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, int64_t n,
              const float* scaler, int64_t* c, const LowCopies* copies) {
    c[kMicroStep] = 0;
    if (found_inf(scaler)) {
      c[kStepsSkipped] += 1;
      return;
    }
    const int64_t step = c[kStepsTaken];
    const math::UpdateScalars u = math::update_scalars(opt, math::scheduled_lr(base_lr, schedule, step), step);
    const bool sgd = opt.kind == math::OptimizerKind::SGD, nesterov = opt.nesterov;
    const bool decoupled = opt.kind == math::OptimizerKind::AdamW;
    constexpr int64_t kBlock = 16384;
#pragma omp parallel for if (n > kParallel) schedule(static)
    for (int64_t b = 0; b < n; b += kBlock) {
      const int64_t e = std::min(n, b + kBlock);
      if (!sgd) {
        adam_range(p, g, m, v, b, e, decoupled, u);
      } else {
        sgd_range(p, g, m, b, e, nesterov, u);
      }
      if (copies) {  // the runs overlapping [b, e)
        const LowCopyRun* end = copies->runs + copies->count;
        const LowCopyRun* r = std::upper_bound(copies->runs, end, b,
                                               [](int64_t x, const LowCopyRun& run) { return x < run.src + run.n; });
        for (; r != end && r->src < e; ++r) copy_run(p, *copies, *r, std::max(b, r->src), std::min(e, r->src + r->n));
      }
    }
    c[kStepsTaken] += 1;
  }

  // Elements [from, to) of masters of run r into its copy.
  static void copy_run(const float* masters, const LowCopies& copies, const LowCopyRun& r, int64_t from, int64_t to) {
    const int64_t at = r.dst + (from - r.src);
    if (r.wide) round_through_n(masters + from, copies.wide + at, to - from, true);
    else if (copies.dtype == DType::Float16) float_to_half_n(masters + from, static_cast<uint16_t*>(copies.low) + at, to - from);
    else float_to_bfloat16_n(masters + from, static_cast<uint16_t*>(copies.low) + at, to - from);
  }

  void to_low(const float* src, void* low, DType low_dtype, int64_t n) override {
    uint16_t* dst = static_cast<uint16_t*>(low);
    const bool half = low_dtype == DType::Float16;
    OTTER_CHECK(half || low_dtype == DType::BFloat16, "the low-precision weight copy must be float16 or bfloat16");
    if (half) float_to_half_n(src, dst, n);
    else float_to_bfloat16_n(src, dst, n);
  }

  void commit(float* dst, const void* src, DType src_dtype, int64_t n, const float* scaler) override {
    if (found_inf(scaler)) return;
    if (src_dtype == DType::Float32) {
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    }
    Tensor wide = Tensor::view(src_dtype, {n}, nullptr, const_cast<void*>(src)).cast(DType::Float32);
    std::memcpy(dst, wide.raw(), static_cast<size_t>(n) * sizeof(float));
  }
};

}  // namespace

StepOps* cpu_step_ops() {
  static CpuStepOps ops;
  return &ops;
}

}  // namespace otter
