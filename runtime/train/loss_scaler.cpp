// Loss-scaler arithmetic over the state buffer (see loss_scaler.h).
#include "runtime/train/loss_scaler.h"

#include <cmath>

#include "runtime/core/error.h"

namespace otter {

void validate_loss_scale(const LossScaleConfig& c) {
  OTTER_CHECK(c.mode == "none" || c.mode == "static" || c.mode == "dynamic", "loss scale mode must be none, static or dynamic, got '",
              c.mode, "'");
  OTTER_CHECK(std::isfinite(c.init_scale) && c.init_scale > 0, "the initial loss scale must be a positive number, got ", c.init_scale);
  OTTER_CHECK(c.growth_factor > 1, "the loss-scale growth factor must be > 1, got ", c.growth_factor);
  OTTER_CHECK(c.backoff_factor > 0 && c.backoff_factor < 1, "the loss-scale backoff factor must be in (0, 1), got ", c.backoff_factor);
  OTTER_CHECK(c.growth_interval >= 1, "the loss-scale growth interval must be >= 1, got ", c.growth_interval);
  OTTER_CHECK(c.hysteresis >= 1, "loss-scale hysteresis must be >= 1, got ", c.hysteresis);
  OTTER_CHECK(c.min_scale > 0 && c.min_scale <= c.max_scale, "loss-scale bounds must satisfy 0 < min <= max");
}

void unscale_and_check(float* g, size_t n, float* state) {
  const float inv = static_cast<float>(1.0 / static_cast<double>(state[kScale]));
  int found = 0;
#pragma omp parallel for reduction(| : found) if (n > 65536)
  for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) {
    float v = g[i] * inv;
    g[i] = v;
    found |= !std::isfinite(v);
  }
  state[kFoundInf] = found ? 1.0f : 0.0f;
}

void check_finite(const float* g, size_t n, float* state) {
  int found = 0;
#pragma omp parallel for reduction(| : found) if (n > 65536)
  for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) found |= !std::isfinite(g[i]);
  state[kFoundInf] = found ? 1.0f : 0.0f;
}

void update_loss_scale(const LossScaleConfig& c, float* state) {
  if (c.mode != "dynamic") return;
  if (state[kFoundInf] != 0.0f) {
    state[kGrowthTracker] = 0;
    if (state[kHysteresisLeft] > 1) {
      state[kHysteresisLeft] -= 1;  // tolerate this overflow: skip the step, keep the scale
      return;
    }
    state[kScale] = static_cast<float>(std::max(c.min_scale, static_cast<double>(state[kScale]) * c.backoff_factor));
    return;
  }
  state[kGrowthTracker] += 1;
  if (state[kGrowthTracker] >= static_cast<float>(c.growth_interval)) {
    double grown = static_cast<double>(state[kScale]) * c.growth_factor;
    if (std::isfinite(grown)) state[kScale] = static_cast<float>(std::min(c.max_scale, grown));
    state[kGrowthTracker] = 0;
    state[kHysteresisLeft] = static_cast<float>(c.hysteresis);
  }
}

}  // namespace otter
