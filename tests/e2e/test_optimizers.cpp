// Optimizers and schedules: the digits MLP trained with Adam (L2 weight decay) and SGD with
// Nesterov momentum against the NumPy float64 reference trajectories (tests/e2e/numpy_reference.py),
// learning-rate schedules against hand-computed values, and invalid settings.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>

#include "tests/common/batches.h"
#include "runtime/train/npz.h"
#include "runtime/train/optimizer.h"
#include "runtime/train/session.h"

using namespace otter;
using otter::testing::rows;

namespace {

std::string dir() { return std::string(OTTER_TESTDATA) + "/digits"; }

struct Data {
  std::map<std::string, Tensor> train = read_npz(dir() + "/train.npz");
  std::map<std::string, Tensor> batch(int64_t i, int64_t size = 32) const {
    int64_t n = train.at("x").shape()[0];
    int64_t b = (i * size) % n;
    int64_t e = std::min(n, b + size);
    return {{"x", rows(train.at("x"), b, e)}, {"label", rows(train.at("y"), b, e)}};
  }
};

TrainConfig base_config() {
  TrainConfig c;
  c.loss.kind = "cross_entropy";
  c.loss.output = "logits";
  return c;
}

std::vector<double> reference_losses(const std::string& key) {
  std::ifstream in(dir() + "/reference.json");
  std::stringstream s;
  s << in.rdbuf();
  std::string j = s.str();
  size_t k = j.find("\"" + key + "\"");
  EXPECT_NE(k, std::string::npos) << "reference.json has no '" << key << "': rerun the generate_testdata fixture";
  if (k == std::string::npos) return {};
  size_t b = j.find('[', k), e = j.find(']', b);
  std::vector<double> r;
  std::stringstream list(j.substr(b + 1, e - b - 1));
  std::string item;
  while (std::getline(list, item, ',')) r.push_back(std::stod(item));
  return r;
}

void expect_error(const std::function<void()>& fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "expected an otter::Error containing '" << needles.at(0) << "'";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "missing '" << n << "' in: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected an otter::Error, got: " << e.what();
  }
}

// A resolved setting as a number, whether the config field is a double or an optional<double>.
[[maybe_unused]] double num(double v) { return v; }
[[maybe_unused]] double num(const std::optional<double>& v) { return v.value_or(std::nan("")); }

}  // namespace

TEST(Digits, MatchesNumPyReferenceAdamAndNesterov) {
  Data d;
  struct Case {
    std::string key;
    TrainConfig config;
  };
  std::vector<Case> cases;
  {
    TrainConfig c = base_config();
    c.optimizer.kind = "adam";
    c.optimizer.lr = 1e-3;
    c.optimizer.weight_decay = 0.01;  // L2: added to the gradient (torch.optim.Adam)
    cases.push_back({"adam", c});
  }
  {
    TrainConfig c = base_config();
    c.optimizer.kind = "sgd";
    c.optimizer.lr = 0.05;
    c.optimizer.momentum = 0.9;
    c.optimizer.nesterov = true;
    c.optimizer.weight_decay = 1e-3;
    cases.push_back({"sgd_nesterov", c});
  }
  // Tolerance 1e-5 relative: float32 forward/backward against a float64 reference over 20 steps.
  for (const Case& k : cases) {
    Session s(load_model_file(dir() + "/mlp.onnx"), k.config);
    std::vector<double> want = reference_losses(k.key);
    ASSERT_EQ(want.size(), 20u) << k.key;
    for (int i = 0; i < 20; ++i) {
      double loss = s.train_step(d.batch(i));
      EXPECT_NEAR(loss, want[i], 1e-5 * std::fabs(want[i])) << k.key << " step " << i;
    }
  }
}

TEST(Optim, ScheduleValues) {
  const double lr = 0.1, tol = 1e-12;
  ScheduleConfig constant;
  for (int64_t step : {0, 1, 7, 1000}) EXPECT_NEAR(scheduled_lr(lr, constant, step), lr, tol) << step;

  ScheduleConfig constant_warm;
  constant_warm.warmup_steps = 4;
  EXPECT_NEAR(scheduled_lr(lr, constant_warm, 0), 0.0, tol);
  EXPECT_NEAR(scheduled_lr(lr, constant_warm, 1), 0.025, tol);
  EXPECT_NEAR(scheduled_lr(lr, constant_warm, 2), 0.05, tol);
  EXPECT_NEAR(scheduled_lr(lr, constant_warm, 4), 0.1, tol);
  EXPECT_NEAR(scheduled_lr(lr, constant_warm, 50), 0.1, tol);

  // Linear: warmup 2, total 10 -> decay over 8 steps (Hugging Face's get_linear_schedule_with_warmup).
  ScheduleConfig linear;
  linear.kind = "linear";
  linear.warmup_steps = 2;
  linear.total_steps = 10;
  EXPECT_NEAR(scheduled_lr(lr, linear, 0), 0.0, tol);
  EXPECT_NEAR(scheduled_lr(lr, linear, 1), 0.05, tol);
  EXPECT_NEAR(scheduled_lr(lr, linear, 2), 0.1, tol);
  EXPECT_NEAR(scheduled_lr(lr, linear, 4), 0.075, tol);   // (10-4)/8
  EXPECT_NEAR(scheduled_lr(lr, linear, 6), 0.05, tol);    // (10-6)/8
  EXPECT_NEAR(scheduled_lr(lr, linear, 9), 0.0125, tol);  // (10-9)/8
  EXPECT_NEAR(scheduled_lr(lr, linear, 10), 0.0, tol);
  EXPECT_NEAR(scheduled_lr(lr, linear, 15), 0.0, tol);  // stays at 0 after the run

  ScheduleConfig linear_nowarm = linear;
  linear_nowarm.warmup_steps = 0;
  EXPECT_NEAR(scheduled_lr(lr, linear_nowarm, 0), 0.1, tol);
  EXPECT_NEAR(scheduled_lr(lr, linear_nowarm, 5), 0.05, tol);

  // Cosine: warmup 2, total 10: lr * 0.5 * (1 + cos(pi * (step-2)/8)).
  ScheduleConfig cosine;
  cosine.kind = "cosine";
  cosine.warmup_steps = 2;
  cosine.total_steps = 10;
  EXPECT_NEAR(scheduled_lr(lr, cosine, 0), 0.0, tol);
  EXPECT_NEAR(scheduled_lr(lr, cosine, 1), 0.05, tol);
  EXPECT_NEAR(scheduled_lr(lr, cosine, 2), 0.1, tol);
  EXPECT_NEAR(scheduled_lr(lr, cosine, 4), 0.1 * 0.5 * (1 + std::sqrt(0.5)), tol);  // progress 1/4
  EXPECT_NEAR(scheduled_lr(lr, cosine, 4), 0.08535533905932737, 1e-12);
  EXPECT_NEAR(scheduled_lr(lr, cosine, 6), 0.05, tol);                               // progress 1/2
  EXPECT_NEAR(scheduled_lr(lr, cosine, 8), 0.014644660940672627, 1e-12);           // progress 3/4
  EXPECT_NEAR(scheduled_lr(lr, cosine, 10), 0.0, tol);
  // Past the end the rate stays at 0 (Hugging Face's formula would rise again; Otter clamps).
  EXPECT_NEAR(scheduled_lr(lr, cosine, 14), 0.0, tol);

  // The session applies the schedule: stats().lr is the rate of the next step.
  TrainConfig c = base_config();
  c.optimizer.kind = "sgd";
  c.optimizer.lr = lr;
  c.schedule = cosine;
  Session s(load_model_file(dir() + "/mlp.onnx"), c);
  EXPECT_NEAR(s.stats().lr, 0.0, tol);
  Data d;
  for (int i = 0; i < 4; ++i) s.train_step(d.batch(i));
  EXPECT_NEAR(s.stats().lr, 0.08535533905932737, 1e-12);
}

TEST(Optim, InvalidSettingsAreClearErrors) {
  auto opt = [](std::function<void(OptimizerConfig&)> edit) {
    OptimizerConfig c;
    edit(c);
    return c;
  };
  auto sched = [](std::string kind, int64_t warmup, int64_t total) {
    ScheduleConfig s;
    s.kind = std::move(kind);
    s.warmup_steps = warmup;
    s.total_steps = total;
    return s;
  };
  // Regression: lr was once a double where "< 0" meant "default", so -0.1 silently trained at
  // the default rate. It is now std::optional and a negative rate is an error.
  expect_error([&] { resolve_optimizer(opt([](OptimizerConfig& c) { c.lr = -0.1; })); }, {"learning rate", "-0.1"});
  expect_error([&] { resolve_optimizer(opt([](OptimizerConfig& c) { c.lr = std::nan(""); })); }, {"learning rate"});
  expect_error([&] { resolve_optimizer(opt([](OptimizerConfig& c) { c.kind = "adagrad"; })); },
               {"unknown optimizer", "adagrad"});
  expect_error([&] { resolve_optimizer(opt([](OptimizerConfig& c) { c.momentum = 1.0; })); }, {"momentum", "1"});
  expect_error([&] { resolve_optimizer(opt([](OptimizerConfig& c) { c.momentum = -0.5; })); }, {"momentum"});
  expect_error([&] { resolve_optimizer(opt([](OptimizerConfig& c) { c.nesterov = true; })); }, {"esterov", "momentum"});
  expect_error([&] { resolve_optimizer(opt([](OptimizerConfig& c) { c.kind = "adam"; c.beta1 = 1.0; })); }, {"beta"});
  expect_error([&] { resolve_optimizer(opt([](OptimizerConfig& c) { c.kind = "adam"; c.eps = 0; })); }, {"eps"});
  expect_error([&] { validate_schedule(sched("step", 0, 10)); }, {"unknown schedule", "step"});
  expect_error([&] { validate_schedule(sched("cosine", 20, 10)); }, {"warmup", "20", "10"});
  expect_error([&] { validate_schedule(sched("linear", 0, 0)); }, {"linear", "total"});
  expect_error([&] { validate_schedule(sched("constant", -1, 0)); }, {"warmup"});
  // Valid settings pass and get PyTorch's defaults.
  OptimizerConfig adamw = resolve_optimizer(opt([](OptimizerConfig& c) { c.kind = "adamw"; }));
  EXPECT_EQ(num(adamw.lr), 1e-3);
  EXPECT_EQ(num(adamw.weight_decay), 0.01);
  OptimizerConfig sgd = resolve_optimizer(OptimizerConfig{});
  EXPECT_EQ(num(sgd.lr), 0.01);
  EXPECT_EQ(num(sgd.weight_decay), 0.0);
  EXPECT_NO_THROW(validate_schedule(sched("cosine", 10, 10)));

  // The session refuses them when it is created, with the same messages.
  std::string model = dir() + "/mlp.onnx";
  TrainConfig bad_opt = base_config();
  bad_opt.optimizer.kind = "rmsprop";
  expect_error([&] { Session s(load_model_file(model), bad_opt); }, {"unknown optimizer", "rmsprop"});
  TrainConfig bad_mom = base_config();
  bad_mom.optimizer.momentum = 1.0;
  expect_error([&] { Session s(load_model_file(model), bad_mom); }, {"momentum"});
  TrainConfig bad_nesterov = base_config();
  bad_nesterov.optimizer.nesterov = true;
  expect_error([&] { Session s(load_model_file(model), bad_nesterov); }, {"esterov"});
  TrainConfig bad_sched = base_config();
  bad_sched.schedule.kind = "exponential";
  expect_error([&] { Session s(load_model_file(model), bad_sched); }, {"unknown schedule", "exponential"});
  TrainConfig bad_warmup = base_config();
  bad_warmup.schedule.kind = "linear";
  bad_warmup.schedule.warmup_steps = 100;
  bad_warmup.schedule.total_steps = 50;
  expect_error([&] { Session s(load_model_file(model), bad_warmup); }, {"warmup", "100", "50"});
  TrainConfig bad_lr = base_config();
  bad_lr.optimizer.lr = -0.1;  // regression: see above
  expect_error([&] { Session s(load_model_file(model), bad_lr); }, {"learning rate"});
  Session ok(load_model_file(model), base_config());
  expect_error([&] { ok.set_learning_rate(-1); }, {"learning rate"});
}
