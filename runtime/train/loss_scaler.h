// Loss scaling for mixed-precision training (shared/references.md, "Dynamic loss scaling").
//
// The scaler's state — scale, growth counter, found-inf flag, hysteresis left — lives in a small
// FP32 buffer that the flat-buffer kernels read and write by pointer, so that on a GPU a step
// needs no host round trip (design decision 3); the CPU runs the same functions on host memory.
//
// Modes: none (scale 1, no check: the default for fp32 and bf16), static (a fixed scale; a
// non-finite gradient still skips the step), dynamic (PyTorch GradScaler semantics: backoff x0.5
// on inf/NaN, growth x2 after `growth_interval` clean steps, optional DeepSpeed-style hysteresis,
// clamped to [min_scale, max_scale]).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/common/train_math.h"

namespace otter {

struct LossScaleConfig {
  std::string mode = "none";  // none | static | dynamic
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  int64_t hysteresis = 1;      // overflows tolerated before backing off (1: back off at once)
  double min_scale = 1.0;
  double max_scale = 16777216.0;  // 2^24, as Apex
};

void validate_loss_scale(const LossScaleConfig& c);

// State slots in the scaler buffer.
enum LossScaleSlot {
  kScale = math::kScalerScale,
  kGrowthTracker = math::kScalerGrowthTracker,
  kFoundInf = math::kScalerFoundInf,
  kHysteresisLeft = math::kScalerHysteresisLeft,
  kLossScaleSlots = 4
};

// One fused pass over a flat gradient buffer: g *= 1/scale (1/scale computed in double, then
// narrowed to float, as PyTorch) and state[kFoundInf] = 1 if any element is not finite.
void unscale_and_check(float* grads, size_t n, float* state);
// Only the finite check (static scale 1, or after an unscale done elsewhere).
void check_finite(const float* grads, size_t n, float* state);
// The scale update after a step, reading state[kFoundInf]; a no-op for none/static modes.
void update_loss_scale(const LossScaleConfig& c, float* state);
math::LossScaleParams loss_scale_params(const LossScaleConfig& c);

}  // namespace otter
