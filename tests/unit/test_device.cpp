// Device selection without a GPU (CPU-only machines and CI): the CUDA device is absent, the reason
// is kept for error messages, and asking for device memory is a clear error.
#include <gtest/gtest.h>

#include "kernels/registry.h"
#include "runtime/core/tensor.h"
#include "runtime/train/session.h"

using namespace otter;

TEST(Device, AbsentCudaIsAClearError) {
  KernelRegistry::instance();  // installs the CUDA device when one is usable
  if (device_backend(Device::CUDA)) GTEST_SKIP() << "a GPU is present: " << device_backend(Device::CUDA)->describe();
  EXPECT_FALSE(cuda_unavailable_reason().empty());
  try {
    Tensor t(DType::Float32, {4}, Device::CUDA);
    FAIL() << "allocated CUDA memory without a GPU";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("no cuda device"), std::string::npos) << e.what();
  }
}

TEST(Device, SessionDeviceNames) {
  KernelRegistry::instance();
  EXPECT_EQ(resolve_device("cpu"), Device::CPU);
  EXPECT_EQ(resolve_device("auto"), device_backend(Device::CUDA) ? Device::CUDA : Device::CPU);
  try {
    resolve_device("tpu");
    FAIL() << "accepted device 'tpu'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("'tpu' is not auto, cpu, cuda or cuda:N"), std::string::npos) << e.what();
  }
  // One GPU per process: another index is refused (with the reason when there is no GPU at all).
  for (const char* name : {"cuda:1", "cuda"}) {
    if (device_backend(Device::CUDA) && std::string(name) == "cuda") continue;
    try {
      resolve_device(name);
      FAIL() << "accepted device '" << name << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
}
