// ONNX Runtime on-device training artifacts (tests/ort_artifacts, written by onnxruntime-training
// 1.19.2: tests/ort_artifacts/make_ort_artifacts.py; committed, so these tests need no ORT): the
// MLP's and the CNN's artifacts (AdamW) and the MLP's with SGD train in Otter step by step like
// they trained in ORT (loss and parameters), ORT's own checkpoint after training is read exactly,
// Otter's checkpoints round-trip and resume exactly, mixed precision follows, and unsupported ops,
// optimizers and missing files are named.
#include <gtest/gtest.h>

#include <onnx/onnx_pb.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "onnx_import/ort_artifacts.h"
#include "runtime/exec/infer.h"
#include "runtime/exec/plan.h"
#include "runtime/passes/ort_grad_ops.h"
#include "runtime/core/file_io.h"
#include "runtime/train/npz.h"
#include "runtime/train/session.h"

using namespace otter;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) { return std::string(OTTER_SOURCE_DIR) + "/tests/ort_artifacts/" + name; }
std::string mlp() { return fixture("mlp"); }

Tensor step_slice(const Tensor& t, int64_t s) {
  Shape shape(t.shape().begin() + 1, t.shape().end());
  Tensor r(t.dtype(), shape);
  std::memcpy(r.raw(), static_cast<const char*>(t.raw()) + s * r.nbytes(), r.nbytes());
  return r;
}

TrainConfig with_lr(double lr) {
  TrainConfig c;
  c.optimizer.lr = lr;
  return c;
}

std::string tmp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("otter_ort_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

double max_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_double_vector(), y = b.to_double_vector();
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::fabs(x[i] - y[i]));
  return m;
}

}  // namespace

const char* const kFixtures[] = {"mlp", "cnn", "mlp_sgd", "cnn_bn", "transformer"};

// Step k's feeds: every array of data.npz (named like the training model's data inputs), sliced.
std::map<std::string, Tensor> step_feeds(const std::map<std::string, Tensor>& data, int64_t k) {
  std::map<std::string, Tensor> f;
  for (auto& kv : data) f[kv.first] = step_slice(kv.second, k);
  return f;
}

double rel_err(double got, double want) { return std::fabs(got - want) / std::max(std::fabs(want), 1e-12); }

// Every fixture trains 10 steps in Otter to ORT's own loss trajectory (1e-4 relative; the print
// gives the largest error), ends with ORT's parameters, frozen parameters unchanged and the
// BatchNormalization running statistics ORT's training updated, and the eval model (running
// statistics for BatchNormalization) gives ORT's eval loss.
TEST(OrtArtifacts, EveryFixtureTrainsLikeOnnxRuntime) {
  for (const char* name : kFixtures) {
    auto data = read_npz(fixture(name) + "/data.npz");
    auto ref = read_npz(fixture(name) + "/ort_losses.npz");
    const double lr = ref.at("lr").to_double_vector().at(0);
    OrtCheckpoint initial = read_ort_checkpoint(fixture(name) + "/checkpoint");
    Session s(load_model_file(fixture(name) + "/training_model.onnx"), with_lr(lr));
    ASSERT_TRUE(s.runs_ort_artifacts());
    ASSERT_EQ(s.train_inputs().size(), 2u) << name;  // x (or ids), labels
    EXPECT_EQ(s.parameters().size(), initial.trainable.size()) << name;
    std::vector<double> losses = ref.at("loss").to_double_vector();
    ASSERT_EQ(losses.size(), 10u);
    double worst = 0;
    for (size_t k = 0; k < losses.size(); ++k) {
      double loss = s.train_step(step_feeds(data, static_cast<int64_t>(k)));
      worst = std::max(worst, rel_err(loss, losses[k]));
      EXPECT_LT(rel_err(loss, losses[k]), 1e-4) << name << " step " << k << ": " << loss << " vs ORT " << losses[k];
    }
    std::printf("[ort] %-12s fp32 max relative loss error over %zu steps: %.3g\n", name, losses.size(), worst);
    double worst_param = 0;
    for (auto& kv : ref) {
      if (kv.first.rfind("param/", 0) != 0) continue;
      const std::string p = kv.first.substr(6);
      const double d = max_diff(s.get_parameter(p), kv.second);
      worst_param = std::max(worst_param, d);
      EXPECT_LT(d, 1e-5) << name << " " << p;
    }
    std::printf("[ort] %-12s max |parameter - ORT's| after training: %.3g\n", name, worst_param);
    for (auto& kv : initial.frozen) {  // frozen parameters: unchanged, except running statistics
      const bool running = kv.first.find("running_") != std::string::npos;
      const double d = max_diff(s.get_parameter(kv.first), kv.second);
      if (running) EXPECT_GT(d, 1e-4) << name << " " << kv.first << " was not updated";
      else EXPECT_EQ(d, 0.0) << name << " frozen " << kv.first << " changed";
    }
    EXPECT_EQ(s.stats().step, static_cast<int64_t>(losses.size()));
    EXPECT_DOUBLE_EQ(s.learning_rate(), lr);
    double eval_loss = 0;
    bool has_loss = false;
    s.eval_step(step_feeds(data, 0), &eval_loss, &has_loss);
    ASSERT_TRUE(has_loss);
    const double want = ref.at("eval_loss").to_double_vector().at(0);
    EXPECT_LT(rel_err(eval_loss, want), 1e-4) << name << " eval " << eval_loss << " vs ORT " << want;
    std::printf("[ort] %-12s eval loss %.7g (ORT %.7g)\n", name, eval_loss, want);
  }
  auto data = read_npz(mlp() + "/data.npz");
  Session s(load_model_file(mlp() + "/training_model.onnx"), with_lr(0.01));
  EXPECT_EQ(s.parameters().size(), 3u);  // fc2.bias is frozen
  // Export: eval_model.onnx with the parameters (frozen ones too) as initializers, which loads as a
  // plain model.
  const std::string dir = tmp_dir("export");
  s.export_model(dir + "/trained.onnx");
  LoadedModel exported = load_model_file(dir + "/trained.onnx");
  EXPECT_EQ(exported.graph.initializers.size(), 4u);
}

// Each com.microsoft op Otter rewrites, alone, against ORT's own CPU kernel on the same inputs
// (tests/ort_artifacts/ms_ops, written by make_ort_artifacts.py).
TEST(OrtArtifacts, MsOpsMatchOrtKernels) {
  const std::string dir = fixture("ms_ops");
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".onnx") continue;
    const std::string name = entry.path().stem().string();
    SCOPED_TRACE(name);
    LoadedModel m = load_model_file(entry.path().string());
    Graph& g = m.graph;
    rewrite_ort_ops(g, name + ".onnx");
    annotate_graph(g, {});
    expand_ort_grad_ops(g);
    annotate_graph(g, {});
    for (const Node& n : g.nodes) EXPECT_NE(n.domain, "com.microsoft") << n.describe();
    auto arrays = read_npz(dir + "/" + name + ".npz");
    std::map<int, Shape> shapes;
    std::map<int, Tensor> feeds;
    for (auto& kv : arrays)
      if (kv.first.rfind("in/", 0) == 0) {
        int id = g.value_id(kv.first.substr(3));
        shapes[id] = kv.second.shape();
        feeds[id] = kv.second;
      }
    PlanOptions options;
    options.targets = g.outputs;
    Plan plan(g, shapes, options);
    RunOptions ro;
    ro.training = true;
    plan.run(feeds, ro);
    for (int v : g.outputs) {
      const Tensor& want = arrays.at("out/" + g.values[v].name);
      Tensor got = plan.value(v);
      ASSERT_EQ(got.shape(), want.shape()) << g.values[v].name;
      std::vector<double> x = got.to_double_vector(), y = want.to_double_vector();
      for (size_t i = 0; i < x.size(); ++i)
        ASSERT_NEAR(x[i], y[i], 2e-5 * (1 + std::fabs(y[i]))) << g.values[v].name << "[" << i << "]";
    }
    ++cases;
  }
  EXPECT_GE(cases, 25);
}

TEST(OrtArtifacts, ReadsOnnxRuntimeCheckpointAfterTraining) {
  auto ref = read_npz(mlp() + "/ort_losses.npz");
  OrtCheckpoint c = read_ort_checkpoint(mlp() + "/ort_trained_checkpoint");
  ASSERT_EQ(c.trainable.size(), 3u);
  ASSERT_EQ(c.frozen.size(), 1u);  // fc2.bias
  ASSERT_EQ(c.groups.size(), 1u);
  EXPECT_EQ(c.groups[0].step, 10);
  for (auto& kv : c.trainable) EXPECT_EQ(max_diff(kv.second, ref.at("param/" + kv.first)), 0.0) << kv.first;
  for (auto& kv : c.frozen) EXPECT_EQ(max_diff(kv.second, ref.at("param/" + kv.first)), 0.0) << kv.first;
  // A session started from it continues at step 10 with ORT's moments.
  TrainConfig cfg = with_lr(0.01);
  cfg.ort_checkpoint = mlp() + "/ort_trained_checkpoint";
  Session s(load_model_file(mlp() + "/training_model.onnx"), cfg);
  EXPECT_EQ(s.stats().step, 10);
  // Written by Otter and read back: the same tensors, the same step.
  const std::string dir = tmp_dir("roundtrip");
  s.save_checkpoint(dir + "/checkpoint");
  OrtCheckpoint back = read_ort_checkpoint(dir + "/checkpoint");
  ASSERT_EQ(back.groups.size(), 1u);
  EXPECT_EQ(back.groups[0].step, 10);
  ASSERT_EQ(back.groups[0].states.size(), 3u);
  ASSERT_EQ(back.frozen.size(), 1u);
  for (size_t i = 0; i < c.trainable.size(); ++i) {
    EXPECT_EQ(back.trainable[i].first, c.trainable[i].first);
    EXPECT_EQ(max_diff(back.trainable[i].second, c.trainable[i].second), 0.0);
  }
  // A damaged file is refused with a clear message.
  std::string bytes = read_file(dir + "/checkpoint", "test");
  bytes.resize(bytes.size() / 2);
  write_file_atomic(dir + "/damaged", bytes.data(), bytes.size(), "test");
  try {
    read_ort_checkpoint(dir + "/damaged");
    FAIL() << "a truncated checkpoint was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("damaged"), std::string::npos) << e.what();
  }
}

TEST(OrtArtifacts, CheckpointResumeIsExact) {
  auto data = read_npz(mlp() + "/data.npz");
  auto feeds = [&](int64_t k) {
    return std::map<std::string, Tensor>{{"x", step_slice(data.at("x"), k)}, {"labels", step_slice(data.at("labels"), k)}};
  };
  Session whole(load_model_file(mlp() + "/training_model.onnx"), with_lr(0.01));
  for (int k = 0; k < 8; ++k) whole.train_step(feeds(k));
  Session first(load_model_file(mlp() + "/training_model.onnx"), with_lr(0.01));
  for (int k = 0; k < 4; ++k) first.train_step(feeds(k));
  const std::string dir = tmp_dir("resume");
  first.set_user_metadata("cli.micro_batch", "4");
  first.save_checkpoint(dir + "/checkpoint");
  Session second(load_model_file(mlp() + "/training_model.onnx"), with_lr(0.01));
  second.load_checkpoint(dir + "/checkpoint");
  EXPECT_EQ(second.stats().step, 4);
  EXPECT_EQ(second.user_metadata().at("cli.micro_batch"), "4");  // in the property bag
  for (int k = 4; k < 8; ++k) second.train_step(feeds(k));
  for (const char* p : {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"})
    EXPECT_EQ(max_diff(second.get_parameter(p), whole.get_parameter(p)), 0.0) << p;
}

// fp16 and bf16 (forward and backward nodes under the policy; parameters, buffers, moments and
// running statistics FP32): every fixture within a few percent of ORT's FP32 trajectory.
TEST(OrtArtifacts, MixedPrecision) {
  for (const char* name : kFixtures) {
    auto data = read_npz(fixture(name) + "/data.npz");
    auto ref = read_npz(fixture(name) + "/ort_losses.npz");
    std::vector<double> losses = ref.at("loss").to_double_vector();
    for (const char* precision : {"bf16", "fp16"}) {
      TrainConfig c = with_lr(ref.at("lr").to_double_vector().at(0));
      c.precision = precision;
      Session s(load_model_file(fixture(name) + "/training_model.onnx"), c);
      double worst = 0;
      for (size_t k = 0; k < losses.size(); ++k) {
        double loss = s.train_step(step_feeds(data, static_cast<int64_t>(k)));
        worst = std::max(worst, rel_err(loss, losses[k]));
        EXPECT_LT(rel_err(loss, losses[k]), 3e-2) << name << " " << precision << " step " << k;
      }
      std::printf("[ort] %-12s %s max relative loss error vs ORT's FP32: %.3g\n", name, precision, worst);
      EXPECT_EQ(s.get_parameter(s.parameters()[0].name).dtype(), DType::Float32);
    }
  }
}

TEST(OrtArtifacts, UnsupportedOpsAndMissingFilesAreNamed) {
  const std::string dir = tmp_dir("bad");
  for (const char* f : {"eval_model.onnx", "optimizer_model.onnx", "checkpoint"})
    fs::copy_file(mlp() + "/" + f, dir + "/" + f);
  onnx::ModelProto m;
  std::string bytes = read_file(mlp() + "/training_model.onnx", "test");
  ASSERT_TRUE(m.ParseFromString(bytes));
  for (auto& n : *m.mutable_graph()->mutable_node())
    if (n.op_type() == "ReluGrad") n.set_op_type("QuickGeluGrad");
  ASSERT_TRUE(m.SerializeToString(&bytes));
  write_file_atomic(dir + "/training_model.onnx", bytes.data(), bytes.size(), "test");
  try {
    Session s(load_model_file(dir + "/training_model.onnx"), TrainConfig());
    FAIL() << "an unsupported op was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("com.microsoft QuickGeluGrad"), std::string::npos) << e.what();
  }
  // An optimizer Otter does not run.
  write_file_atomic(dir + "/training_model.onnx", read_file(mlp() + "/training_model.onnx", "test").data(),
                    fs::file_size(mlp() + "/training_model.onnx"), "test");
  onnx::ModelProto opt;
  ASSERT_TRUE(opt.ParseFromString(read_file(mlp() + "/optimizer_model.onnx", "test")));
  opt.mutable_graph()->mutable_node(0)->set_op_type("LambOptimizer");
  ASSERT_TRUE(opt.SerializeToString(&bytes));
  write_file_atomic(dir + "/optimizer_model.onnx", bytes.data(), bytes.size(), "test");
  try {
    Session s(load_model_file(dir + "/training_model.onnx"), TrainConfig());
    FAIL() << "an unsupported optimizer was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("LambOptimizer"), std::string::npos) << e.what();
  }
  fs::remove(dir + "/checkpoint");
  try {
    Session s(load_model_file(dir + "/training_model.onnx"), TrainConfig());
    FAIL() << "a missing checkpoint was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("checkpoint"), std::string::npos) << e.what();
  }
}

// Damaged checkpoints (random byte flips and truncations of ORT's own file) are read or refused
// with an otter::Error, never a crash (the flatbuffers verifier runs first; checked under ASan).
TEST(OrtArtifacts, DamagedCheckpointsAreRefusedCleanly) {
  const std::string good = read_file(mlp() + "/ort_trained_checkpoint", "test");
  const std::string dir = tmp_dir("damaged");
  uint64_t state = 12345;
  auto next = [&] { state = state * 6364136223846793005ull + 1442695040888963407ull; return state >> 33; };
  int refused = 0;
  for (int i = 0; i < 300; ++i) {
    std::string bytes = good;
    if (i % 3 == 0) bytes.resize(next() % bytes.size());
    for (int k = 0; k < 1 + static_cast<int>(next() % 4); ++k)
      if (!bytes.empty()) bytes[next() % bytes.size()] = static_cast<char>(next());
    const std::string path = dir + "/c" + std::to_string(i);
    write_file_atomic(path, bytes.data(), bytes.size(), "test");
    try {
      read_ort_checkpoint(path);
    } catch (const Error&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
}
