// Optimizer updates and schedules (see optimizer.h). Each update is one loop over the flat
// buffers, parallel over elements.
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

double scheduled_lr(double base_lr, const ScheduleConfig& s, int64_t step) {
  double t = static_cast<double>(step);
  if (s.warmup_steps > 0 && step < s.warmup_steps) return base_lr * t / static_cast<double>(s.warmup_steps);
  if (s.kind == "constant") return base_lr;
  double span = static_cast<double>(std::max<int64_t>(1, s.total_steps - s.warmup_steps));
  double progress = std::min(1.0, (t - static_cast<double>(s.warmup_steps)) / span);
  if (s.kind == "linear") return base_lr * std::max(0.0, 1.0 - progress);
  return base_lr * 0.5 * (1.0 + std::cos(M_PI * progress));
}

Optimizer::Optimizer(OptimizerConfig config, size_t n)
    : config_(resolve_optimizer(std::move(config))), size_(static_cast<int64_t>(n)) {
  if (config_.kind == "sgd") {
    if (config_.momentum > 0) momentum_ = Tensor(DType::Float32, {size_});
  } else {
    exp_avg_ = Tensor(DType::Float32, {size_});
    exp_avg_sq_ = Tensor(DType::Float32, {size_});
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

void Optimizer::update(float* __restrict p, const float* __restrict g, double lr, int64_t step) {
  const OptimizerConfig& c = config_;
  const int64_t n = size_;
  const float flr = static_cast<float>(lr), wd = static_cast<float>(*c.weight_decay);
  if (c.kind == "sgd") {
    const float mu = static_cast<float>(c.momentum);
    float* buf = momentum_.defined() ? momentum_.data<float>() : nullptr;
    const bool first = step == 0, nesterov = c.nesterov;
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      float d = g[i] + wd * p[i];
      if (buf) {
        buf[i] = first ? d : mu * buf[i] + d;
        d = nesterov ? d + mu * buf[i] : buf[i];
      }
      p[i] -= flr * d;
    }
    return;
  }
  // Adam / AdamW, as torch.optim (bias corrections in double, then narrowed).
  const double t = static_cast<double>(step + 1);
  const double bc1 = 1.0 - std::pow(c.beta1, t), bc2 = 1.0 - std::pow(c.beta2, t);
  const float step_size = static_cast<float>(lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float b1 = static_cast<float>(c.beta1), b2 = static_cast<float>(c.beta2), eps = static_cast<float>(c.eps);
  const bool decoupled = c.kind == "adamw";
  float* __restrict m = exp_avg_.data<float>();
  float* __restrict v = exp_avg_sq_.data<float>();
#pragma omp parallel for simd if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    float grad = g[i];
    if (decoupled) p[i] *= 1.0f - flr * wd;
    else grad += wd * p[i];
    m[i] = b1 * m[i] + (1.0f - b1) * grad;
    v[i] = b2 * v[i] + (1.0f - b2) * grad * grad;
    float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
    p[i] -= step_size * m[i] / denom;
  }
}

double global_norm(const float* g, size_t n) {
  // Blocks of 4096 summed in float (vectorised), blocks accumulated in double.
  double s = 0;
  const int64_t block = 4096, count = static_cast<int64_t>(n);
#pragma omp parallel for reduction(+ : s) if (n > 65536)
  for (int64_t b = 0; b < count; b += block) {
    float part = 0;
    int64_t e = std::min(count, b + block);
#pragma omp simd reduction(+ : part)
    for (int64_t i = b; i < e; ++i) part += g[i] * g[i];
    s += part;
  }
  return std::sqrt(s);
}

void scale_buffer(float* g, size_t n, float s) {
  for (size_t i = 0; i < n; ++i) g[i] *= s;
}

}  // namespace otter
