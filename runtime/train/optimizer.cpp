// Optimizer configuration, schedules and state (see optimizer.h); the updates are StepOps.
#include "runtime/train/optimizer.h"

#include <cmath>

namespace otter {

OptimizerConfig resolve_optimizer(OptimizerConfig c) {
  OTTER_CHECK(c.kind == "sgd" || c.kind == "adam" || c.kind == "adamw", "unknown optimizer '", c.kind,
              "' (expected sgd, adam or adamw)");
  if (!c.lr) c.lr = c.kind == "sgd" ? 0.01 : 1e-3;
  if (!c.weight_decay) c.weight_decay = c.kind == "adamw" ? 0.01 : 0.0;
  OTTER_CHECK(std::isfinite(*c.lr) && *c.lr >= 0, "learning rate must be a finite number >= 0, got ", *c.lr);
  OTTER_CHECK(c.momentum >= 0 && c.momentum < 1, "momentum must be in [0, 1), got ", c.momentum);
  OTTER_CHECK(!c.nesterov || c.momentum > 0, "Nesterov momentum needs momentum > 0");
  OTTER_CHECK(*c.weight_decay >= 0, "weight decay must be >= 0, got ", *c.weight_decay);
  OTTER_CHECK(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1, "betas must be in [0, 1)");
  OTTER_CHECK(c.eps > 0, "eps must be > 0");
  return c;
}

void validate_schedule(const ScheduleConfig& s) {
  OTTER_CHECK(s.kind == "constant" || s.kind == "linear" || s.kind == "cosine", "unknown schedule '", s.kind,
              "' (expected constant, linear or cosine)");
  OTTER_CHECK(s.warmup_steps >= 0, "warmup steps must be >= 0");
  OTTER_CHECK(s.kind == "constant" || s.total_steps > 0, "the ", s.kind, " schedule needs the total number of steps");
  OTTER_CHECK(s.kind == "constant" || s.warmup_steps <= s.total_steps, "warmup (", s.warmup_steps,
              ") is longer than the run (", s.total_steps, " steps)");
}

math::ScheduleParams schedule_params(const ScheduleConfig& s) {
  math::ScheduleParams p;
  p.kind = s.kind == "linear" ? math::ScheduleKind::Linear : s.kind == "cosine" ? math::ScheduleKind::Cosine : math::ScheduleKind::Constant;
  p.warmup_steps = s.warmup_steps;
  p.total_steps = s.total_steps;
  return p;
}

double scheduled_lr(double base_lr, const ScheduleConfig& s, int64_t step) {
  return math::scheduled_lr(base_lr, schedule_params(s), step);
}

Optimizer::Optimizer(OptimizerConfig config, size_t n, Device device)
    : config_(resolve_optimizer(std::move(config))), size_(static_cast<int64_t>(n)) {
  if (config_.kind == "sgd") {
    if (config_.momentum > 0) momentum_ = Tensor(DType::Float32, {size_}, device);
  } else {
    exp_avg_ = Tensor(DType::Float32, {size_}, device);
    exp_avg_sq_ = Tensor(DType::Float32, {size_}, device);
  }
}

std::vector<std::pair<std::string, Tensor*>> Optimizer::state() {
  std::vector<std::pair<std::string, Tensor*>> s;
  if (momentum_.defined()) s.push_back({"momentum", &momentum_});
  if (exp_avg_.defined()) {
    s.push_back({"exp_avg", &exp_avg_});
    s.push_back({"exp_avg_sq", &exp_avg_sq_});
  }
  return s;
}

Optimizer::Moments Optimizer::moments() {
  if (momentum_.defined()) return {momentum_.data<float>(), nullptr};
  if (exp_avg_.defined()) return {exp_avg_.data<float>(), exp_avg_sq_.data<float>()};
  return {nullptr, nullptr};
}

}  // namespace otter
