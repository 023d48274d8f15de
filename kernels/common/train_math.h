// The arithmetic of a training step's flat-buffer operations, shared by the CPU
// (kernels/cpu/step_ops.cpp) and CUDA (kernels/cuda/step_ops.cu) so that both give the same bits:
// the learning-rate schedule, SGD/Adam/AdamW per element (PyTorch semantics: bias corrections in
// double, then narrowed to float), and the dynamic loss-scale update over the scaler state
// (runtime/train/loss_scaler.h has the slots). Everything here is plain data and OTTER_HD
// functions; the runtime converts its configuration structs into these.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common/elementwise_math.h"

namespace otter::math {

// ---- learning-rate schedule ----

enum class ScheduleKind : int { Constant = 0, Linear = 1, Cosine = 2 };

struct ScheduleParams {
  ScheduleKind kind = ScheduleKind::Constant;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;
};

// The learning rate for optimizer step `step` (0-based): linear warmup, then constant, linear decay
// or cosine decay over the remaining steps (Hugging Face's schedulers).
OTTER_HD double scheduled_lr(double base_lr, const ScheduleParams& s, int64_t step) {
  double t = static_cast<double>(step);
  if (s.warmup_steps > 0 && step < s.warmup_steps) return base_lr * t / static_cast<double>(s.warmup_steps);
  if (s.kind == ScheduleKind::Constant) return base_lr;
  int64_t span_steps = s.total_steps - s.warmup_steps;
  double span = static_cast<double>(span_steps < 1 ? 1 : span_steps);
  double progress = (t - static_cast<double>(s.warmup_steps)) / span;
  if (progress > 1.0) progress = 1.0;
  if (s.kind == ScheduleKind::Linear) return base_lr * (1.0 - progress > 0.0 ? 1.0 - progress : 0.0);
  return base_lr * 0.5 * (1.0 + ::cos(3.14159265358979323846 * progress));
}

// ---- optimizers ----

enum class OptimizerKind : int { SGD = 0, Adam = 1, AdamW = 2 };

struct OptimizerParams {
  OptimizerKind kind = OptimizerKind::SGD;
  double momentum = 0;
  bool nesterov = false;
  double weight_decay = 0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

// The per-step scalars of an update, computed once per step (on the host for the CPU, by every
// thread for CUDA, which reads the step count from device memory): the same doubles narrowed the
// same way on both.
struct UpdateScalars {
  float lr, wd, mu;          // SGD and the decay terms
  float step_size, bc2_sqrt, b1, b2, eps;  // Adam/AdamW
  bool first;                // SGD: the first step initialises the momentum buffer
};

OTTER_HD UpdateScalars update_scalars(const OptimizerParams& c, double lr, int64_t step) {
  UpdateScalars u;
  u.lr = static_cast<float>(lr);
  u.wd = static_cast<float>(c.weight_decay);
  u.mu = static_cast<float>(c.momentum);
  u.first = step == 0;
  const double t = static_cast<double>(step + 1);
  const double bc1 = 1.0 - ::pow(c.beta1, t), bc2 = 1.0 - ::pow(c.beta2, t);
  u.step_size = static_cast<float>(lr / bc1);
  u.bc2_sqrt = static_cast<float>(::sqrt(bc2));
  u.b1 = static_cast<float>(c.beta1);
  u.b2 = static_cast<float>(c.beta2);
  u.eps = static_cast<float>(c.eps);
  return u;
}

// SGD with optional momentum (dampening 0), Nesterov, L2 weight decay. buf == nullptr: no momentum.
OTTER_HD void sgd_element(float& p, float g, float* buf, bool nesterov, const UpdateScalars& u) {
  float d = g + u.wd * p;
  if (buf) {
    *buf = u.first ? d : u.mu * *buf + d;
    d = nesterov ? d + u.mu * *buf : *buf;
  }
  p -= u.lr * d;
}

// Adam (L2 decay added to the gradient) or AdamW (decoupled decay), as torch.optim.
OTTER_HD void adam_element(float& p, float g, float& m, float& v, bool decoupled, const UpdateScalars& u) {
  if (decoupled) p *= 1.0f - u.lr * u.wd;
  else g += u.wd * p;
  m = u.b1 * m + (1.0f - u.b1) * g;
  v = u.b2 * v + (1.0f - u.b2) * g * g;
  float denom = ::sqrtf(v) / u.bc2_sqrt + u.eps;
  p -= u.step_size * m / denom;
}

// ---- loss scaling ----

// Slots of the scaler state buffer (float[4]).
enum ScalerSlot : int { kScalerScale = 0, kScalerGrowthTracker = 1, kScalerFoundInf = 2, kScalerHysteresisLeft = 3 };

struct LossScaleParams {
  bool dynamic = false;  // none/static: the scale never changes
  double growth_factor = 2.0, backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  int64_t hysteresis = 1;
  double min_scale = 1.0, max_scale = 16777216.0;
};

// The scale update after a step, reading state[kScalerFoundInf] (PyTorch GradScaler semantics with
// DeepSpeed-style hysteresis, clamped to [min_scale, max_scale]).
OTTER_HD void update_loss_scale(const LossScaleParams& c, float* state) {
  if (!c.dynamic) return;
  if (state[kScalerFoundInf] != 0.0f) {
    state[kScalerGrowthTracker] = 0;
    if (state[kScalerHysteresisLeft] > 1) {
      state[kScalerHysteresisLeft] -= 1;  // tolerate this overflow: skip the step, keep the scale
      return;
    }
    double backed = static_cast<double>(state[kScalerScale]) * c.backoff_factor;
    state[kScalerScale] = static_cast<float>(backed > c.min_scale ? backed : c.min_scale);
    return;
  }
  state[kScalerGrowthTracker] += 1;
  if (state[kScalerGrowthTracker] >= static_cast<float>(c.growth_interval)) {
    double grown = static_cast<double>(state[kScalerScale]) * c.growth_factor;  // finite iff grown - grown == 0
    if (grown - grown == 0.0) state[kScalerScale] = static_cast<float>(grown < c.max_scale ? grown : c.max_scale);
    state[kScalerGrowthTracker] = 0;
    state[kScalerHysteresisLeft] = static_cast<float>(c.hysteresis);
  }
}

}  // namespace otter::math
