// Device selection without a GPU (CPU-only machines and CI): the CUDA device is absent, the reason
// is kept for error messages, and asking for device memory is a clear error.
#include <gtest/gtest.h>

#include "kernels/registry.h"
#include "runtime/core/tensor.h"

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
