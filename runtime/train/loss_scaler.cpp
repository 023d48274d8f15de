// Loss-scaler arithmetic over the state buffer (see loss_scaler.h).
#include "runtime/train/loss_scaler.h"

#include <cmath>

#include "kernels/step_ops.h"
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
  step_ops(Device::CPU)->unscale_and_check(g, static_cast<int64_t>(n), state, true);
}

void check_finite(const float* g, size_t n, float* state) {
  step_ops(Device::CPU)->unscale_and_check(const_cast<float*>(g), static_cast<int64_t>(n), state, false);
}

math::LossScaleParams loss_scale_params(const LossScaleConfig& c) {
  math::LossScaleParams p;
  p.dynamic = c.mode == "dynamic";
  p.growth_factor = c.growth_factor;
  p.backoff_factor = c.backoff_factor;
  p.growth_interval = c.growth_interval;
  p.hysteresis = c.hysteresis;
  p.min_scale = c.min_scale;
  p.max_scale = c.max_scale;
  return p;
}

void update_loss_scale(const LossScaleConfig& c, float* state) { math::update_loss_scale(loss_scale_params(c), state); }

}  // namespace otter
