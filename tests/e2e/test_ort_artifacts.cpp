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

TEST(OrtArtifacts, MlpCnnAndSgdTrainLikeOnnxRuntime) {
  for (const char* name : {"mlp", "cnn", "mlp_sgd"}) {
    auto data = read_npz(fixture(name) + "/data.npz");
    auto ref = read_npz(fixture(name) + "/ort_losses.npz");
    const double lr = ref.at("lr").to_double_vector().at(0);
    Session s(load_model_file(fixture(name) + "/training_model.onnx"), with_lr(lr));
    ASSERT_TRUE(s.runs_ort_artifacts());
    ASSERT_EQ(s.train_inputs().size(), 2u);  // x, labels
    ASSERT_EQ(s.parameters().size(), 4u);
    std::vector<double> losses = ref.at("loss").to_double_vector();
    for (size_t k = 0; k < losses.size(); ++k) {
      double loss = s.train_step({{"x", step_slice(data.at("x"), k)}, {"labels", step_slice(data.at("labels"), k)}});
      EXPECT_NEAR(loss, losses[k], 1e-6 * std::fabs(losses[k]) + 1e-6) << name << " step " << k;
    }
    for (const ParameterInfo& p : s.parameters())
      EXPECT_LT(max_diff(s.get_parameter(p.name), ref.at("param/" + p.name)), 1e-6) << name << " " << p.name;
    EXPECT_EQ(s.stats().step, static_cast<int64_t>(losses.size()));
    EXPECT_DOUBLE_EQ(s.learning_rate(), lr);
  }
  auto data = read_npz(mlp() + "/data.npz");
  auto ref = read_npz(mlp() + "/ort_losses.npz");
  Session s(load_model_file(mlp() + "/training_model.onnx"), with_lr(0.01));
  // eval_model.onnx with the trained parameters.
  double eval_loss = 0;
  bool has_loss = false;
  auto out = s.eval_step({{"x", step_slice(data.at("x"), 0)}, {"labels", step_slice(data.at("labels"), 0)}}, &eval_loss,
                         &has_loss);
  EXPECT_TRUE(has_loss);
  EXPECT_TRUE(std::isfinite(eval_loss));
  // Export: eval_model.onnx with the parameters as initializers, which loads as a plain model.
  const std::string dir = tmp_dir("export");
  s.export_model(dir + "/trained.onnx");
  LoadedModel exported = load_model_file(dir + "/trained.onnx");
  EXPECT_EQ(exported.graph.initializers.size(), 4u);
}

TEST(OrtArtifacts, ReadsOnnxRuntimeCheckpointAfterTraining) {
  auto ref = read_npz(mlp() + "/ort_losses.npz");
  OrtCheckpoint c = read_ort_checkpoint(mlp() + "/ort_trained_checkpoint");
  ASSERT_EQ(c.trainable.size(), 4u);
  ASSERT_EQ(c.groups.size(), 1u);
  EXPECT_EQ(c.groups[0].step, 8);
  for (auto& kv : c.trainable) EXPECT_EQ(max_diff(kv.second, ref.at("param/" + kv.first)), 0.0) << kv.first;
  // A session started from it continues at step 8 with ORT's moments.
  TrainConfig cfg = with_lr(0.01);
  cfg.ort_checkpoint = mlp() + "/ort_trained_checkpoint";
  Session s(load_model_file(mlp() + "/training_model.onnx"), cfg);
  EXPECT_EQ(s.stats().step, 8);
  // Written by Otter and read back: the same tensors, the same step.
  const std::string dir = tmp_dir("roundtrip");
  s.save_checkpoint(dir + "/checkpoint");
  OrtCheckpoint back = read_ort_checkpoint(dir + "/checkpoint");
  ASSERT_EQ(back.groups.size(), 1u);
  EXPECT_EQ(back.groups[0].step, 8);
  ASSERT_EQ(back.groups[0].states.size(), 4u);
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

TEST(OrtArtifacts, MixedPrecision) {
  auto data = read_npz(mlp() + "/data.npz");
  auto ref = read_npz(mlp() + "/ort_losses.npz");
  std::vector<double> losses = ref.at("loss").to_double_vector();
  for (const char* precision : {"bf16", "fp16"}) {
    TrainConfig c = with_lr(0.01);
    c.precision = precision;
    Session s(load_model_file(mlp() + "/training_model.onnx"), c);
    for (size_t k = 0; k < losses.size(); ++k) {
      double loss = s.train_step({{"x", step_slice(data.at("x"), k)}, {"labels", step_slice(data.at("labels"), k)}});
      EXPECT_NEAR(loss, losses[k], 3e-2 * std::fabs(losses[k])) << precision << " step " << k;
    }
    EXPECT_EQ(s.get_parameter("fc1.weight").dtype(), DType::Float32);
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
    if (n.op_type() == "ReluGrad") n.set_op_type("GeluGrad");
  ASSERT_TRUE(m.SerializeToString(&bytes));
  write_file_atomic(dir + "/training_model.onnx", bytes.data(), bytes.size(), "test");
  try {
    Session s(load_model_file(dir + "/training_model.onnx"), TrainConfig());
    FAIL() << "an unsupported op was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("com.microsoft GeluGrad"), std::string::npos) << e.what();
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
