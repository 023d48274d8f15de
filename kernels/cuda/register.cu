// The CUDA backend's one registration function (as kernels/cpu/register.cpp for the CPU): installs
// the device when one is usable (kernels/cuda/backend.cu) and registers every CUDA kernel family of
// runtime/ops/families.h either way (a plan only picks them for a CUDA device).
#include "kernels/registry.h"

namespace otter {
namespace cuda {
#define OTTER_FAMILY(NAME) void register_##NAME##_kernels(KernelRegistry& r);
#include "runtime/ops/families.h"
}  // namespace cuda

void install_cuda_device();  // backend.cu

void register_cuda_kernels(KernelRegistry& r) {
  install_cuda_device();
#define OTTER_FAMILY(NAME) cuda::register_##NAME##_kernels(r);
#include "runtime/ops/families.h"
}

}  // namespace otter
