// The CPU's flat-buffer operations of a training step (kernels/step_ops.h): one OpenMP loop each
// over the whole model, with the per-element arithmetic of kernels/common/train_math.h. The
// scaler state and the step counters are host memory here, read and written by pointer exactly
// as the CUDA implementation does on the device.
#include <algorithm>
#include <cmath>
#include <cstring>

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

OTTER_ISA_CLONES void adam_range(float* __restrict p, const float* __restrict g, float* __restrict m,
                                 float* __restrict v, int64_t b, int64_t e, bool decoupled, const math::UpdateScalars& u) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) math::adam_element(p[i], g[i], m[i], v[i], decoupled, u);
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
      } else if (m) {
        for (int64_t i = b; i < e; ++i) math::sgd_element(p[i], g[i], m + i, nesterov, u);
      } else {
#pragma omp simd
        for (int64_t i = b; i < e; ++i) math::sgd_element(p[i], g[i], nullptr, false, u);
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
