// The flat-buffer operations of a training step, per device (docs/architecture.md, decision 4):
// each model-wide pass of the optimizer step is one call over the flat master / gradient / moment
// buffers. The calls read and write the loss-scaler state (float[4], runtime/train/loss_scaler.h)
// and the step counters (int64[kStepCounters]) by pointer, so that on CUDA a whole training step
// runs without a host round trip and can be captured as one CUDA graph; the decisions that depend
// on values (skip the update on a non-finite gradient, clip when the norm is large, the learning
// rate of the step actually taken) are made where the data is. CPU: kernels/cpu/step_ops.cpp;
// CUDA: kernels/cuda/step_ops.cu; both use the arithmetic of kernels/common/train_math.h.
#pragma once
#include <cstdint>

#include "kernels/common/train_math.h"
#include "runtime/core/device.h"
#include "runtime/core/dtype.h"

namespace otter {

// Slots of the int64 step-counter buffer.
enum StepCounter : int {
  kStepsTaken = 0,    // optimizer updates applied
  kStepsSkipped = 1,  // effective batches skipped for a non-finite gradient
  kRngStep = 2,       // the step random ops draw from: steps_taken * grad_accum + micro step
  kMicroStep = 3,     // micro-batches of the current effective batch already accumulated
  kStepCounters = 4
};

// The per-step low-precision copy of the masters (runtime/train/session.h): masters [src, src + n)
// rounded to `dtype` (FP16/BF16) into `low` at dst, or, for a `wide` run (the CPU only, FP16),
// rounded to FP16 and kept as FP32 values in `wide` at dst. Runs are sorted by src.
struct LowCopyRun {
  int64_t src = 0, dst = 0, n = 0;
  bool wide = false;
};
struct LowCopies {
  DType dtype = DType::Float32;
  void* low = nullptr;
  float* wide = nullptr;
  const LowCopyRun* runs = nullptr;
  size_t count = 0;
};

class StepOps {
 public:
  virtual ~StepOps() = default;
  // Start of a micro-step: counters[kRngStep] = steps_taken * accum + micro; the backward pass's
  // seed (one element of seed_dtype) = scale / accum.
  virtual void begin_micro_step(int64_t* counters, const float* scaler, void* seed, DType seed_dtype,
                                int64_t accum) = 0;
  // acc = g on the first micro-step of an effective batch, acc += g after (reads kMicroStep).
  virtual void accumulate(float* acc, const float* g, int64_t n, const int64_t* counters) = 0;
  // A micro-step that is not the last of its effective batch: counters[kMicroStep] += 1.
  virtual void end_micro_step(int64_t* counters) = 0;
  // g *= 1/scale when `unscale` (1/scale in double, narrowed, as PyTorch), and
  // scaler[kFoundInf] = 1 if any element is not finite (0 otherwise).
  virtual void unscale_and_check(float* g, int64_t n, float* scaler, bool unscale) = 0;
  virtual void update_loss_scale(const math::LossScaleParams& params, float* scaler) = 0;
  // norm[0] = ||g||_2; if it exceeds max_norm, g *= max_norm / (norm + 1e-6). Nothing when
  // scaler[kFoundInf] is set.
  virtual void clip_grad_norm(float* g, int64_t n, double max_norm, const float* scaler, double* norm) = 0;
  // The optimizer update at the learning rate scheduled for counters[kStepsTaken], unless
  // scaler[kFoundInf]; then kStepsTaken += 1 (or kStepsSkipped += 1) and kMicroStep = 0.
  // m: momentum (SGD, may be null) or exp_avg; v: exp_avg_sq (Adam/AdamW).
  virtual void optimizer_step(const math::OptimizerParams& opt, const math::ScheduleParams& schedule, double base_lr,
                              float* params, const float* g, float* m, float* v, int64_t n, const float* scaler,
                              int64_t* counters) = 0;
  // low = masters rounded to nearest even (FP16 or BF16).
  virtual void to_low(const float* masters, void* low, DType low_dtype, int64_t n) = 0;
  // Every run of `copies` from the masters (to_low per run; the CPU also writes wide runs).
  virtual void refresh_low(const float* masters, const LowCopies& copies);
  // optimizer_step, then refresh_low of the updated masters when the update was applied (the
  // copies of a skipped step are still those of the unchanged masters). The CPU converts each
  // block right after updating it, while it is in cache.
  virtual void optimizer_step_and_refresh(const math::OptimizerParams& opt, const math::ScheduleParams& schedule,
                                          double base_lr, float* params, const float* g, float* m, float* v, int64_t n,
                                          const float* scaler, int64_t* counters, const LowCopies& copies);
  // dst (FP32) = src (any float dtype), unless scaler is given and scaler[kFoundInf] is set.
  virtual void commit(float* dst, const void* src, DType src_dtype, int64_t n, const float* scaler) = 0;
};

// The operations for `d` (the CPU's always exist; CUDA's when the CUDA backend is installed).
StepOps* step_ops(Device d);
void set_step_ops(Device d, StepOps* ops);

}  // namespace otter
