// Optimizers over the flat parameter buffers (all FP32 masters in one buffer, their gradients in
// one, each moment in one), with PyTorch's semantics and defaults: SGD (momentum, dampening 0,
// Nesterov, L2 weight decay), Adam (L2 weight decay added to the gradient), AdamW (decoupled
// weight decay). Learning-rate schedules (constant; linear warmup then linear decay; linear
// warmup then cosine decay, as in Hugging Face's schedulers) and clipping by the global norm.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "kernels/common/train_math.h"
#include "runtime/core/tensor.h"

namespace otter {

struct OptimizerConfig {
  std::string kind = "sgd";  // sgd | adam | adamw
  std::optional<double> lr;  // unset: the optimizer's default (sgd 0.01, adam/adamw 1e-3)
  double momentum = 0.0;
  bool nesterov = false;
  std::optional<double> weight_decay;  // unset: default (0 for sgd/adam, 0.01 for adamw)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

struct ScheduleConfig {
  std::string kind = "constant";  // constant | linear | cosine
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;        // needed by linear and cosine
};

// Validates and fills defaults; throws with a message naming the bad setting.
OptimizerConfig resolve_optimizer(OptimizerConfig c);
void validate_schedule(const ScheduleConfig& s);
// The learning rate for optimizer step `step` (0-based).
double scheduled_lr(double base_lr, const ScheduleConfig& s, int64_t step);
math::ScheduleParams schedule_params(const ScheduleConfig& s);

// The optimizer's configuration and state (its moments, flat FP32 buffers on the session's
// device). The update itself is StepOps::optimizer_step (kernels/step_ops.h).
class Optimizer {
 public:
  Optimizer(OptimizerConfig config, size_t num_params, Device device = Device::CPU);
  const OptimizerConfig& config() const { return config_; }
  // Named state buffers (for checkpoints): momentum, or exp_avg and exp_avg_sq.
  std::vector<std::pair<std::string, Tensor*>> state();
  // (momentum or exp_avg, exp_avg_sq) as StepOps takes them; null where the optimizer has none.
  using Moments = std::pair<float*, float*>;
  Moments moments();

 private:
  OptimizerConfig config_;
  int64_t size_;
  Tensor momentum_, exp_avg_, exp_avg_sq_;
};


}  // namespace otter
