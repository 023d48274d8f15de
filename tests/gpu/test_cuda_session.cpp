// GPU tests (ctest label `gpu`) of training sessions on CUDA: the digits MLP trains on CUDA in
// fp32, fp16 and bf16 to the CPU's accuracy; the first losses match the CPU's; a step captured as
// a CUDA graph gives the same bits as one launched kernel by kernel (with gradient accumulation,
// clipping, dynamic loss scaling, a schedule); a checkpoint taken on CUDA resumes bit for bit; a
// non-finite gradient skips the step on the device exactly as on the CPU; an out-of-memory step and
// an out-of-range label are clean errors that change nothing. Without a usable GPU every test is
// skipped (GTEST_SKIP), never passed.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "onnx_import/onnx_import.h"
#include "runtime/train/session.h"
#include "tests/common/digits.h"

using namespace otter;
using namespace otter::testing;  // the digits fixture (tests/common/digits.h)
namespace fs = std::filesystem;

namespace {

#define REQUIRE_GPU()                                                                        \
  if (!device_backend(Device::CUDA)) GTEST_SKIP() << "no usable GPU: " << cuda_unavailable_reason()

// The digits configuration on `device` in `precision`.
TrainConfig config(Device device, const std::string& opt, double lr, const std::string& precision = "fp32") {
  TrainConfig c = digits_config(opt, lr);
  c.precision = precision;
  c.device = device;
  return c;
}

Session make(const TrainConfig& c) { return Session(load_model_file(digits_dir() + "/mlp.onnx"), c); }

}  // namespace

TEST(CudaSession, DigitsTrainsToTheCpuAccuracyInEachPrecision) {
  REQUIRE_GPU();
  DigitsData d;
  int64_t steps = 10 * ((d.train.at("x").shape()[0] + 31) / 32);
  for (const std::string precision : {"fp32", "fp16", "bf16"}) {
    Session cpu = make(config(Device::CPU, "adamw", 3e-3, precision));
    Session gpu = make(config(Device::CUDA, "adamw", 3e-3, precision));
    for (int64_t i = 0; i < steps; ++i) {
      cpu.train_step(d.full_batch(i), nullptr);
      gpu.train_step(d.full_batch(i), nullptr);  // no loss requested: no host synchronisation
    }
    double a_cpu = digits_accuracy(cpu, d), a_gpu = digits_accuracy(gpu, d);
    std::printf("digits %s: CPU %.4f, CUDA %.4f (%lld of %lld CUDA steps replayed as a graph)\n", precision.c_str(), a_cpu,
                a_gpu, static_cast<long long>(gpu.stats().captured_steps), static_cast<long long>(steps));
    EXPECT_GE(a_gpu, 0.95) << precision;
    // Different summation orders (cuBLAS vs OpenBLAS) change individual predictions, not accuracy
    // by more than a point.
    EXPECT_NEAR(a_gpu, a_cpu, 0.01) << precision;
    EXPECT_GT(gpu.stats().captured_steps, 0) << precision << ": " << gpu.graph_capture_note();
  }
}

TEST(CudaSession, FirstLossesMatchTheCpu) {
  REQUIRE_GPU();
  DigitsData d;
  Session cpu = make(config(Device::CPU, "sgd", 0.05)), gpu = make(config(Device::CUDA, "sgd", 0.05));
  for (int i = 0; i < 20; ++i) {
    double a = cpu.train_step(d.full_batch(i)), b = gpu.train_step(d.full_batch(i));
    // FP32 GEMMs with another summation order: ~1e-6 relative per step, compounding over 20 steps.
    EXPECT_NEAR(b, a, 1e-4 * std::fabs(a)) << "step " << i;
  }
}

TEST(CudaSession, CapturedStepsEqualUncapturedOnes) {
  REQUIRE_GPU();
  DigitsData d;
  struct Case { std::string name; TrainConfig c; };
  std::vector<Case> cases;
  TrainConfig a = config(Device::CUDA, "sgd", 0.05, "fp16");  // dynamic loss scaling
  a.grad_accum = 2;
  a.clip_norm = 0.5;
  a.loss_scale_config.growth_interval = 3;  // the scale changes during the run
  cases.push_back({"fp16 sgd accum2 clip", a});
  TrainConfig b = config(Device::CUDA, "adamw", 2e-3, "bf16");
  b.schedule.kind = "cosine";
  b.schedule.warmup_steps = 3;
  b.schedule.total_steps = 12;
  cases.push_back({"bf16 adamw cosine", b});
  for (Case& k : cases) {
    TrainConfig off = k.c;
    off.cuda_graphs = false;
    Session captured = make(k.c), launched = make(off);
    for (int i = 0; i < 24; ++i) {
      captured.train_step(d.full_batch(i), nullptr);
      launched.train_step(d.full_batch(i), nullptr);
    }
    EXPECT_GT(captured.stats().captured_steps, 0) << k.name << ": " << captured.graph_capture_note();
    EXPECT_EQ(launched.stats().captured_steps, 0) << k.name;
    EXPECT_EQ(captured.stats().step, launched.stats().step) << k.name;
    EXPECT_EQ(captured.stats().skipped_steps, launched.stats().skipped_steps) << k.name;
    EXPECT_EQ(captured.loss_scale(), launched.loss_scale()) << k.name;
    EXPECT_EQ(all_params(captured), all_params(launched)) << k.name;  // bit for bit
  }
}

TEST(CudaSession, CheckpointResumeIsBitIdentical) {
  REQUIRE_GPU();
  DigitsData d;
  TrainConfig c = config(Device::CUDA, "adamw", 1e-3, "fp16");
  c.clip_norm = 1.0;
  Session full = make(c);
  for (int i = 0; i < 12; ++i) full.train_step(d.full_batch(i), nullptr);
  Session first = make(c);
  for (int i = 0; i < 5; ++i) first.train_step(d.full_batch(i), nullptr);
  std::string path = (fs::temp_directory_path() / "otter_cuda_ckpt.safetensors").string();
  first.save_checkpoint(path);
  Session resumed = make(c);
  resumed.load_checkpoint(path);
  EXPECT_EQ(resumed.stats().step, 5);
  for (int i = 5; i < 12; ++i) resumed.train_step(d.full_batch(i), nullptr);
  EXPECT_EQ(all_params(full), all_params(resumed));
  EXPECT_EQ(full.loss_scale(), resumed.loss_scale());
}

TEST(CudaSession, NonFiniteGradientSkipsTheStepOnTheDevice) {
  REQUIRE_GPU();
  DigitsData d;
  for (Device dev : {Device::CPU, Device::CUDA}) {
    TrainConfig c = config(dev, "sgd", 0.05, "fp16");
    c.loss_scale = "static";
    c.loss_scale_config.init_scale = 1e30;  // the FP16 backward pass overflows
    c.nonfinite = "skip";
    Session s = make(c);
    std::vector<float> before = all_params(s);
    for (int i = 0; i < 3; ++i) s.train_step(d.full_batch(i), nullptr);
    EXPECT_EQ(s.stats().skipped_steps, 3) << device_name(dev);
    EXPECT_EQ(s.stats().step, 0) << device_name(dev);
    EXPECT_TRUE(s.stats().last_step_skipped) << device_name(dev);
    EXPECT_EQ(all_params(s), before) << device_name(dev);
    // nonfinite=error: the CPU reports at once; CUDA at the first read-back (no sync per step).
    c.nonfinite = "error";
    Session e = make(c);
    if (dev == Device::CPU) {
      EXPECT_THROW(e.train_step(d.full_batch(0), nullptr), Error);
    } else {
      e.train_step(d.full_batch(0), nullptr);
      EXPECT_THROW(e.check_non_finite(), Error);
      e.check_non_finite();  // reported once
      double loss = 0;
      EXPECT_THROW(e.train_step(d.full_batch(1), &loss), Error);
    }
    EXPECT_EQ(all_params(e), before) << device_name(dev);
  }
}

TEST(CudaSession, ExportedWeightsMatchTheMasters) {
  REQUIRE_GPU();
  DigitsData d;
  Session s = make(config(Device::CUDA, "adamw", 1e-3, "bf16"));
  for (int i = 0; i < 5; ++i) s.train_step(d.full_batch(i), nullptr);
  std::string path = (fs::temp_directory_path() / "otter_cuda_export.onnx").string();
  s.export_model(path);
  LoadedModel m = load_model_file(path);
  for (auto& p : s.parameters()) {
    Tensor master = s.get_parameter(p.name);
    const Tensor& exported = m.graph.values[m.graph.find_value(p.name)].data;
    ASSERT_EQ(exported.nbytes(), master.nbytes()) << p.name;
    EXPECT_EQ(0, std::memcmp(exported.raw(), master.raw(), master.nbytes())) << p.name;
  }
}

TEST(CudaSession, OutOfMemoryIsACleanErrorAndTheSessionKeepsWorking) {
  REQUIRE_GPU();
  DigitsData d;
  Session s = make(config(Device::CUDA, "sgd", 0.05));
  s.train_step(d.full_batch(0), nullptr);
  const std::vector<float> before = all_params(s);
  // Hold (nearly) all free device memory, in shrinking chunks, then ask for a new plan (another
  // batch size needs its own arena and feed buffers).
  std::vector<Tensor> hog;
  for (int64_t chunk = int64_t(1) << 32; chunk >= (int64_t(1) << 16); chunk /= 2) {
    try {
      while (true) hog.emplace_back(DType::Uint8, Shape{chunk}, Device::CUDA);
    } catch (const Error& e) {
      ASSERT_EQ(e.kind(), ErrorKind::OutOfMemory) << e.what();
    }
  }
  try {
    s.train_step(d.full_batch(1, 1024), nullptr);
    ADD_FAILURE() << "a step with no device memory left succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::OutOfMemory) << e.what();
    EXPECT_NE(std::string(e.what()).find("out of memory"), std::string::npos) << e.what();
  }
  hog.clear();
  EXPECT_EQ(s.stats().step, 1);
  EXPECT_EQ(all_params(s), before);  // the failed step changed nothing
  s.train_step(d.full_batch(1, 1024), nullptr);
  s.train_step(d.full_batch(2), nullptr);
  EXPECT_EQ(s.stats().step, 3);
}

TEST(CudaSession, BadLabelIsACleanErrorBeforeAnythingChanges) {
  REQUIRE_GPU();
  DigitsData d;
  Session s = make(config(Device::CUDA, "sgd", 0.05));
  for (int i = 0; i < 3; ++i) s.train_step(d.full_batch(i), nullptr);  // past warm-up: replayed graphs
  const std::vector<float> before = all_params(s);
  auto bad = d.full_batch(3);
  bad.at("label").data<int64_t>()[5] = 10;  // 10 classes: [0, 10)
  try {
    s.train_step(bad, nullptr);
    ADD_FAILURE() << "an out-of-range label was accepted";
  } catch (const Error& e) {
    // Checked on the host before the upload (the device kernel's check would need a sync).
    EXPECT_NE(std::string(e.what()).find("label 10 at position 5 is out of range [0, 10)"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(s.stats().step, 3);
  EXPECT_EQ(all_params(s), before);
  s.train_step(d.full_batch(3), nullptr);
  EXPECT_EQ(s.stats().step, 4);
}
