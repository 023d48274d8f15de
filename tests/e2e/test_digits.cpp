// End-to-end training of the digits MLP (examples/digits: Gemm, Relu, Gemm + cross-entropy):
// accuracy, agreement with a NumPy reference trajectory, gradient accumulation, checkpoint resume,
// export, and the errors a user meets with bad inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "runtime/train/session.h"
#include "tests/common/digits.h"

using namespace otter;
using namespace otter::testing;  // the digits fixture (tests/common/digits.h)
namespace fs = std::filesystem;

namespace {

std::vector<double> reference_losses(const std::string& key) {
  std::ifstream in(digits_dir() + "/reference.json");
  std::stringstream s;
  s << in.rdbuf();
  std::string j = s.str();
  size_t k = j.find("\"" + key + "\"");
  EXPECT_NE(k, std::string::npos);
  size_t b = j.find('[', k), e = j.find(']', b);
  std::vector<double> r;
  std::stringstream list(j.substr(b + 1, e - b - 1));
  std::string item;
  while (std::getline(list, item, ',')) r.push_back(std::stod(item));
  return r;
}

}  // namespace

TEST(Digits, MatchesNumPyReferenceSGDAndAdamW) {
  DigitsData d;
  // Tolerance 1e-5 relative: float32 forward/backward against a float64 reference over 20 steps.
  for (auto [opt, lr] : {std::pair<std::string, double>{"sgd", 0.1}, {"adamw", 1e-3}}) {
    TrainConfig c = digits_config(opt, lr);
    if (opt == "adamw") c.optimizer.weight_decay = 0.01;
    Session s(load_model_file(digits_dir() + "/mlp.onnx"), c);
    std::vector<double> want = reference_losses(opt);
    ASSERT_EQ(want.size(), 20u);
    for (int i = 0; i < 20; ++i) {
      double loss = s.train_step(d.batch(i));
      EXPECT_NEAR(loss, want[i], 1e-5 * std::fabs(want[i])) << opt << " step " << i;
    }
  }
}

TEST(Digits, ReachesNinetyFivePercent) {
  DigitsData d;
  Session s(load_model_file(digits_dir() + "/mlp.onnx"), digits_config("adamw", 3e-3));
  int64_t steps_per_epoch = (d.train.at("x").shape()[0] + 31) / 32;
  for (int64_t i = 0; i < 15 * steps_per_epoch; ++i) s.train_step(d.batch(i));
  double acc = digits_accuracy(s, d);
  std::printf("digits test accuracy after 15 epochs: %.4f; planned arena %zu bytes vs %zu of intermediates\n", acc,
              s.train_memory().arena_bytes, s.train_memory().intermediate_bytes);
  EXPECT_GE(acc, 0.95);
  EXPECT_LT(s.train_memory().arena_bytes, s.train_memory().intermediate_bytes);
}

TEST(Digits, GradientAccumulationEqualsOneLargeBatch) {
  DigitsData d;
  TrainConfig c1 = digits_config("sgd", 0.1), c2 = digits_config("sgd", 0.1);
  c2.grad_accum = 2;
  Session big(load_model_file(digits_dir() + "/mlp.onnx"), c1), acc(load_model_file(digits_dir() + "/mlp.onnx"), c2);
  for (int i = 0; i < 5; ++i) {
    big.train_step(d.batch(i, 32));
    acc.train_step(d.batch(2 * i, 16));
    acc.train_step(d.batch(2 * i + 1, 16));
  }
  EXPECT_EQ(acc.stats().step, 5);
  auto a = all_params(big), b = all_params(acc);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5) << i;
}

TEST(Digits, CheckpointResumeIsBitIdentical) {
  DigitsData d;
  for (const std::string opt : {"sgd", "adamw"}) {
    TrainConfig c = digits_config(opt, opt == "sgd" ? 0.05 : 1e-3);
    c.schedule.kind = "cosine";
    c.schedule.warmup_steps = 3;
    c.schedule.total_steps = 12;
    c.clip_norm = 1.0;
    Session full(load_model_file(digits_dir() + "/mlp.onnx"), c);
    for (int i = 0; i < 12; ++i) full.train_step(d.batch(i));
    Session first(load_model_file(digits_dir() + "/mlp.onnx"), c);
    for (int i = 0; i < 5; ++i) first.train_step(d.batch(i));
    std::string path = (fs::temp_directory_path() / ("otter_ckpt_" + opt + ".safetensors")).string();
    first.save_checkpoint(path);
    EXPECT_FALSE(fs::exists(path + ".tmp"));
    Session resumed(load_model_file(digits_dir() + "/mlp.onnx"), c);
    resumed.load_checkpoint(path);
    EXPECT_EQ(resumed.stats().step, 5);
    for (int i = 5; i < 12; ++i) resumed.train_step(d.batch(i));
    EXPECT_EQ(all_params(full), all_params(resumed)) << opt;  // bit for bit
  }
}

TEST(Digits, ExportKeepsFrozenInitializersAndEverythingElse) {
  DigitsData d;
  TrainConfig c = digits_config("sgd", 0.1);
  c.frozen = {"fc1.bias"};
  Session s(load_model_file(digits_dir() + "/mlp.onnx"), c);
  EXPECT_EQ(s.parameters().size(), 3u);
  for (int i = 0; i < 3; ++i) s.train_step(d.batch(i));
  std::string path = (fs::temp_directory_path() / "otter_export.onnx").string();
  s.export_model(path);
  LoadedModel orig = load_model_file(digits_dir() + "/mlp.onnx"), out = load_model_file(path);
  auto init = [](const Graph& g, const std::string& n) { return g.values[g.value_id(n)].data; };
  Tensor a = init(orig.graph, "fc1.bias"), b = init(out.graph, "fc1.bias");
  EXPECT_EQ(0, std::memcmp(a.raw(), b.raw(), a.nbytes()));
  Tensor w = init(out.graph, "fc2.weight"), m = s.get_parameter("fc2.weight");
  EXPECT_EQ(0, std::memcmp(w.raw(), m.raw(), w.nbytes()));  // the masters, bit for bit
  EXPECT_EQ(orig.graph.nodes.size(), out.graph.nodes.size());
}

TEST(Digits, BadInputsGiveClearErrorsAndKeepTheSessionUsable) {
  DigitsData d;
  std::string model = digits_dir() + "/mlp.onnx";
  auto expect_error = [](auto fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "expected an error containing '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  // Files.
  std::string bytes;
  {
    std::ifstream in(model, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    bytes = s.str();
  }
  expect_error([&] { load_model_buffer(bytes.data(), bytes.size() / 3); }, "not a valid ONNX model");
  std::string noise(4096, '\0');
  std::mt19937 r(3);
  for (char& ch : noise) ch = static_cast<char>(r());
  expect_error([&] { load_model_buffer(noise.data(), noise.size()); }, "ONNX");
  expect_error([&] { load_model_file("/nonexistent/model.onnx"); }, "cannot open");

  Session s(load_model_file(model), digits_config("sgd", 0.1));
  s.train_step(d.batch(0));
  auto good = d.batch(1);
  auto bad_shape = good;
  bad_shape["x"] = Tensor(DType::Float32, {32, 63});
  expect_error([&] { s.train_step(bad_shape); }, "dim 1 must be 64");
  auto bad_dtype = good;
  bad_dtype["x"] = Tensor(DType::Float64, {32, 64});
  expect_error([&] { s.train_step(bad_dtype); }, "dtype float64");
  auto no_label = good;
  no_label.erase("label");
  expect_error([&] { s.train_step(no_label); }, "missing input 'label'");
  auto bad_label = good;
  bad_label["label"] = good["label"].clone();  // tensors share storage when copied
  bad_label["label"].data<int64_t>()[3] = 10;
  std::vector<float> before = all_params(s);
  expect_error([&] { s.train_step(bad_label); }, "label 10 at position 3 is out of range [0, 10)");
  auto mismatched = good;
  mismatched["label"] = Tensor(DType::Int64, {31});
  expect_error([&] { s.train_step(mismatched); }, "another input has");
  auto extra = good;
  extra["typo"] = Tensor(DType::Float32, {1});
  expect_error([&] { s.train_step(extra); }, "unknown input 'typo'");
  auto empty = good;  // a batch of no samples: its loss is 0/0
  empty["x"] = Tensor(DType::Float32, {0, 64});
  empty["label"] = Tensor(DType::Int64, {0});
  expect_error([&] { s.train_step(empty); }, "input 'label' is empty");
  EXPECT_EQ(before, all_params(s));  // nothing changed
  EXPECT_EQ(s.stats().step, 1);
  s.train_step(good);                // and it still trains
  EXPECT_EQ(s.stats().step, 2);
  expect_error([&] { s.load_checkpoint("/nonexistent.ckpt"); }, "cannot open '/nonexistent.ckpt' (checkpoint)");
}
