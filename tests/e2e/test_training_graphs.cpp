// ONNX training graphs (ModelProto.training_info; docs/training-graphs.md) end to end: the models
// and float64 NumPy references of tests/training/make_training_cases.py (a linear model with
// Gradient + Adam, a Relu MLP with Gradient + Nesterov Momentum and an initialization graph),
// trained step by step through Session; export and checkpoints continue exactly; mixed precision;
// and every malformed variant fails with an error that names the problem.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "runtime/train/npz.h"
#include "runtime/train/session.h"

using namespace otter;
namespace fs = std::filesystem;

namespace {

std::string dir() { return std::string(OTTER_TESTDATA) + "/training_graphs"; }

Tensor step_slice(const Tensor& t, int64_t s) {  // t[s] of a [steps, ...] array
  Shape shape(t.shape().begin() + 1, t.shape().end());
  Tensor r(t.dtype(), shape);
  std::memcpy(r.raw(), static_cast<const char*>(t.raw()) + s * r.nbytes(), r.nbytes());
  return r;
}

void expect_close(const Tensor& got, const Tensor& want, double rtol, double atol, const std::string& what) {
  std::vector<double> a = got.to_double_vector(), b = want.to_double_vector();
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], atol + rtol * std::fabs(b[i])) << what << " element " << i;
}

const TrainConfig& defaults() {
  static const TrainConfig c;
  return c;
}

std::string error_of(const std::string& model, const TrainConfig& c = defaults()) {
  try {
    Session s(load_model_file(model), c);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string tmp(const std::string& name) {
  fs::path d = fs::temp_directory_path() / "otter_training_graphs";
  fs::create_directories(d);
  return (d / name).string();
}

}  // namespace

TEST(TrainingGraphs, LinearAdamMatchesReference) {
  auto ref = read_npz(dir() + "/linear_adam.npz");
  Session s(load_model_file(dir() + "/linear_adam.onnx"), defaults());
  ASSERT_TRUE(s.runs_training_graph());
  ASSERT_EQ(s.train_inputs().size(), 2u);  // X, label
  const int64_t steps = ref.at("loss").numel();
  std::vector<double> losses = ref.at("loss").to_double_vector();
  for (int64_t k = 0; k < steps; ++k) {
    double loss = s.train_step({{"X", step_slice(ref.at("X"), k)}, {"label", step_slice(ref.at("label"), k)}});
    EXPECT_NEAR(loss, losses[k], 1e-5 * std::fabs(losses[k]) + 1e-6) << "step " << k;
    expect_close(s.get_parameter("W"), ref.at("W" + std::to_string(k + 1)), 1e-4, 1e-6, "W step " + std::to_string(k));
    expect_close(s.get_parameter("B"), ref.at("B" + std::to_string(k + 1)), 1e-4, 1e-6, "B step " + std::to_string(k));
    expect_close(s.get_parameter("VW"), ref.at("VW" + std::to_string(k + 1)), 1e-4, 1e-7, "VW");
    expect_close(s.get_parameter("HB"), ref.at("HB" + std::to_string(k + 1)), 1e-4, 1e-9, "HB");
  }
  EXPECT_EQ(s.get_parameter("T").to_int64_vector().at(0), ref.at("T_final").to_int64_vector().at(0));
  EXPECT_EQ(s.stats().step, steps);
  EXPECT_EQ(s.stats().last_loss, s.stats().last_loss);  // the loss is the Gradient's y
  // Parameters: the FP32 state variables (weights and moments; T and R are not listed).
  std::set<std::string> names;
  for (auto& p : s.parameters()) names.insert(p.name);
  EXPECT_EQ(names, (std::set<std::string>{"B", "HB", "HW", "VB", "VW", "W"}));
  // eval_step runs the inference graph with the trained state.
  auto out = s.eval_step({{"X", step_slice(ref.at("X"), 0)}});
  ASSERT_TRUE(out.count("Y"));
  EXPECT_EQ(out.at("Y").shape(), (Shape{8, 3}));
}

TEST(TrainingGraphs, MlpNesterovWithInitializationGraph) {
  auto ref = read_npz(dir() + "/mlp_momentum.npz");
  Session s(load_model_file(dir() + "/mlp_momentum.onnx"), defaults());
  // The initialization graph replaced the nonsense initializers (V = 7, T = 99).
  EXPECT_EQ(s.get_parameter("T").to_int64_vector().at(0), 0);
  EXPECT_EQ(s.get_parameter("V1").to_double_vector().at(0), 0.0);
  const int64_t steps = ref.at("loss").numel();
  std::vector<double> losses = ref.at("loss").to_double_vector();
  std::vector<double> lrs = ref.at("R").to_double_vector();
  for (int64_t k = 0; k < steps; ++k) {
    double loss = s.train_step({{"X", step_slice(ref.at("X"), k)},
                                {"label", step_slice(ref.at("label"), k)},
                                {"R", Tensor::scalar<float>(static_cast<float>(lrs[k]))}});
    EXPECT_NEAR(loss, losses[k], 1e-5 * std::fabs(losses[k]) + 1e-6) << "step " << k;
    expect_close(s.get_parameter("W1"), ref.at("W1_" + std::to_string(k + 1)), 1e-4, 1e-6, "W1");
    expect_close(s.get_parameter("W2"), ref.at("W2_" + std::to_string(k + 1)), 1e-4, 1e-6, "W2");
    expect_close(s.get_parameter("V2"), ref.at("V2_" + std::to_string(k + 1)), 1e-4, 1e-6, "V2");
  }
  EXPECT_EQ(s.get_parameter("T").to_int64_vector().at(0), steps);
  // training_init=skip keeps the initializers.
  TrainConfig skip;
  skip.training_init = "skip";
  Session s2(load_model_file(dir() + "/mlp_momentum.onnx"), skip);
  EXPECT_EQ(s2.get_parameter("T").to_int64_vector().at(0), 99);
}

// Exported after 2 steps, reloaded (the initialization does not run again) and trained 3 more:
// the same bits as 5 steps in one session. The same through a checkpoint, with user metadata.
TEST(TrainingGraphs, ExportAndCheckpointContinueExactly) {
  auto ref = read_npz(dir() + "/mlp_momentum.npz");
  std::vector<double> lrs = ref.at("R").to_double_vector();
  auto feeds = [&](int64_t k) {
    return std::map<std::string, Tensor>{{"X", step_slice(ref.at("X"), k)},
                                         {"label", step_slice(ref.at("label"), k)},
                                         {"R", Tensor::scalar<float>(static_cast<float>(lrs[k]))}};
  };
  Session whole(load_model_file(dir() + "/mlp_momentum.onnx"), defaults());
  for (int64_t k = 0; k < 5; ++k) whole.train_step(feeds(k));

  Session first(load_model_file(dir() + "/mlp_momentum.onnx"), defaults());
  for (int64_t k = 0; k < 2; ++k) first.train_step(feeds(k));
  first.export_model(tmp("mlp_exported.onnx"));
  first.set_user_metadata("epoch", "3");
  first.save_checkpoint(tmp("mlp_checkpoint.onnx"));

  Session resumed(load_model_file(tmp("mlp_exported.onnx")), defaults());
  ASSERT_TRUE(resumed.runs_training_graph());
  EXPECT_EQ(resumed.get_parameter("T").to_int64_vector().at(0), 2);  // not re-initialized
  EXPECT_FALSE(resumed.notes().empty());
  for (int64_t k = 2; k < 5; ++k) resumed.train_step(feeds(k));

  Session restored(load_model_file(dir() + "/mlp_momentum.onnx"), defaults());
  restored.load_checkpoint(tmp("mlp_checkpoint.onnx"));
  EXPECT_EQ(restored.user_metadata().at("epoch"), "3");
  EXPECT_EQ(restored.stats().step, 2);
  for (int64_t k = 2; k < 5; ++k) restored.train_step(feeds(k));

  for (const char* name : {"W1", "W2", "V1", "V2", "T"}) {
    EXPECT_EQ(resumed.get_parameter(name).to_double_vector(), whole.get_parameter(name).to_double_vector()) << name;
    EXPECT_EQ(restored.get_parameter(name).to_double_vector(), whole.get_parameter(name).to_double_vector()) << name;
  }
  // A checkpoint of another model is refused and changes nothing.
  Session other(load_model_file(dir() + "/linear_adam.onnx"), defaults());
  EXPECT_THROW(other.load_checkpoint(tmp("mlp_checkpoint.onnx")), Error);
}

// Mixed precision: the inference graph runs in BF16/FP16, the loss, gradients, optimizer and every
// state variable stay FP32; training follows the FP32 trajectory closely.
TEST(TrainingGraphs, MixedPrecision) {
  auto ref = read_npz(dir() + "/linear_adam.npz");
  std::vector<double> losses = ref.at("loss").to_double_vector();
  for (const char* precision : {"bf16", "fp16"}) {
    TrainConfig c;
    c.precision = precision;
    Session s(load_model_file(dir() + "/linear_adam.onnx"), c);
    for (int64_t k = 0; k < ref.at("loss").numel(); ++k) {
      double loss = s.train_step({{"X", step_slice(ref.at("X"), k)}, {"label", step_slice(ref.at("label"), k)}});
      EXPECT_NEAR(loss, losses[k], 3e-2 * std::fabs(losses[k])) << precision << " step " << k;
    }
    EXPECT_EQ(s.get_parameter("W").dtype(), DType::Float32);
    expect_close(s.get_parameter("W"), ref.at("W6"), 5e-2, 5e-3, std::string(precision) + " W");
  }
}

TEST(TrainingGraphs, OptionsAndDetection) {
  // training_graph=off ignores training_info: the inference graph trains with Otter's loss.
  TrainConfig off;
  off.training_graph = "off";
  off.loss.kind = "mse";
  Session plain(load_model_file(dir() + "/linear_adam.onnx"), off);
  EXPECT_FALSE(plain.runs_training_graph());
  // training_graph=on needs training_info.
  TrainConfig on;
  on.training_graph = "on";
  EXPECT_NE(error_of(std::string(OTTER_TESTDATA) + "/digits/mlp.onnx", on).find("no training_info"), std::string::npos);
  // Otter's own loss does not apply to a training graph.
  TrainConfig with_loss;
  with_loss.loss.kind = "mse";
  EXPECT_NE(error_of(dir() + "/linear_adam.onnx", with_loss).find("defines the loss"), std::string::npos);
  TrainConfig bad_loss;
  bad_loss.loss.output = "nothing";
  EXPECT_NE(error_of(dir() + "/linear_adam.onnx", bad_loss).find("loss_output 'nothing'"), std::string::npos);
  // A missing or unknown feed.
  Session s(load_model_file(dir() + "/linear_adam.onnx"), defaults());
  auto ref = read_npz(dir() + "/linear_adam.npz");
  try {
    s.train_step({{"X", step_slice(ref.at("X"), 0)}});
    FAIL() << "a missing label was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing input 'label'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(s.set_learning_rate(0.1), Error);
  EXPECT_EQ(s.stats().step, 0);
}

TEST(TrainingGraphs, MalformedModelsNameTheProblem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"key_missing", "'no_such_weight' is not an initializer"},
      {"value_missing", "'no_such_output', which is not an output"},
      {"bound_twice", "'W' is bound more than once"},
      {"ir6", "IR version 6"},
      {"init_input", "an initialization graph has none"},
      {"init_binding_value", "'not_an_init_output', which is not an output of the initialization graph"},
      {"unsupported_op", "SVMRegressor"},
      {"dtype_mismatch", "'T' is int64 but its new value 'loss' is float32"},
      {"gradient_xs", "xs[1] 'no_such_x' is not a value of the graph"},
  };
  for (auto& c : cases) {
    std::string e = error_of(dir() + "/bad_" + c.first + ".onnx");
    EXPECT_NE(e.find(c.second), std::string::npos) << c.first << ": " << e;
  }
}
