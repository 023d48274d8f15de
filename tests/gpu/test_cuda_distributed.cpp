// GPU tests (ctest label `gpu`) of the NCCL engine of the communicator seam (runtime/dist): a CUDA
// session with distributed=mpi in a world of one process (MPI singleton, NCCL on the one GPU)
// trains exactly as a session alone (the averaged gradient over one rank is the gradient; the
// found-inf flag goes through ncclAllReduce(max) on the device), skips an overflowing FP16 step,
// and resumes from a checkpoint read through the MPI broadcast. Skipped (GTEST_SKIP) without a
// GPU or in a build without MPI/NCCL. Several ranks need several GPUs: see docs/distributed.md.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "onnx_import/onnx_import.h"
#include "runtime/dist/communicator.h"
#include "runtime/train/session.h"
#include "tests/common/digits.h"

using namespace otter;
using namespace otter::testing;

namespace {

#define REQUIRE_NCCL()                                                                                   \
  if (!device_backend(Device::CUDA)) GTEST_SKIP() << "no usable GPU: " << cuda_unavailable_reason();    \
  if (!mpi_available() || !nccl_available()) GTEST_SKIP() << "this build has no MPI or no NCCL (OTTER_MPI)"

TrainConfig config(const std::string& precision, const std::string& dist) {
  TrainConfig c = digits_config("adamw", 1e-3);
  c.precision = precision;
  c.device = Device::CUDA;
  c.dist.mode = dist;
  return c;
}

Session make(const TrainConfig& c) { return Session(load_model_file(digits_dir() + "/mlp.onnx"), c); }

}  // namespace

TEST(CudaDistributed, NcclWorldOfOneTrainsExactlyAsAlone) {
  REQUIRE_NCCL();
  DigitsData d;
  for (const std::string precision : {"fp32", "fp16"}) {
    Session alone = make(config(precision, "off"));
    Session dist = make(config(precision, "mpi"));
    EXPECT_EQ(dist.world_size(), 1);
    EXPECT_EQ(dist.rank(), 0);
    EXPECT_NE(dist.graph_capture_note().find("NCCL"), std::string::npos) << dist.graph_capture_note();
    for (int64_t i = 0; i < 12; ++i) {
      auto b = d.full_batch(i);
      if (precision == "fp16" && i == 4) b["x"].data<float>()[0] = 1e30f;  // inf in FP16: the step is skipped
      alone.train_step(b, nullptr);
      dist.train_step(b, nullptr);
    }
    EXPECT_EQ(all_params(alone), all_params(dist)) << precision;
    EXPECT_EQ(alone.stats().step, dist.stats().step) << precision;
    EXPECT_EQ(alone.stats().skipped_steps, dist.stats().skipped_steps) << precision;
    if (precision == "fp16") {
      EXPECT_EQ(dist.stats().skipped_steps, 1);
    }
    EXPECT_EQ(alone.loss_scale(), dist.loss_scale()) << precision;
  }
}

TEST(CudaDistributed, NcclResumeEqualsUninterrupted) {
  REQUIRE_NCCL();
  DigitsData d;
  const std::string path = (std::filesystem::temp_directory_path() / "otter_nccl_resume.ckpt").string();
  Session whole = make(config("fp16", "mpi"));
  for (int64_t i = 0; i < 8; ++i) whole.train_step(d.full_batch(i), nullptr);
  Session first = make(config("fp16", "mpi"));
  for (int64_t i = 0; i < 4; ++i) first.train_step(d.full_batch(i), nullptr);
  first.save_checkpoint(path);
  Session second = make(config("fp16", "mpi"));
  second.load_checkpoint(path);
  for (int64_t i = 4; i < 8; ++i) second.train_step(d.full_batch(i), nullptr);
  EXPECT_EQ(all_params(whole), all_params(second));
  std::remove(path.c_str());
}
