// The CUDA backend's one registration function (as kernels/cpu/register.cpp for the CPU): installs
// the device when one is usable (kernels/cuda/backend.cu) and registers every CUDA kernel family
// either way (a plan only picks them for a CUDA device).
#include "kernels/registry.h"

namespace otter {
namespace cuda {
void register_elementwise_kernels(KernelRegistry& r);  // elementwise.cu (unary_ops.h, arithmetic, Sign, PRelu, Max/Min/Sum/Mean, ...)
void register_matmul_kernels(KernelRegistry& r);
void register_shape_kernels(KernelRegistry& r);
void register_reduce_kernels(KernelRegistry& r);
void register_softmax_kernels(KernelRegistry& r);
void register_loss_kernels(KernelRegistry& r);
void register_conv_kernels(KernelRegistry& r);
void register_pool_kernels(KernelRegistry& r);
void register_norm_kernels(KernelRegistry& r);
void register_indexing_kernels(KernelRegistry& r);
void register_spatial_kernels(KernelRegistry& r);
void register_einsum_kernels(KernelRegistry& r);
void register_training_kernels(KernelRegistry& r);  // training.cu (ai.onnx.preview.training optimizers)
}  // namespace cuda

void install_cuda_device();  // backend.cu

void register_cuda_kernels(KernelRegistry& r) {
  install_cuda_device();
  cuda::register_elementwise_kernels(r);
  cuda::register_matmul_kernels(r);
  cuda::register_shape_kernels(r);
  cuda::register_reduce_kernels(r);
  cuda::register_softmax_kernels(r);
  cuda::register_loss_kernels(r);
  cuda::register_conv_kernels(r);
  cuda::register_pool_kernels(r);
  cuda::register_norm_kernels(r);
  cuda::register_indexing_kernels(r);
  cuda::register_spatial_kernels(r);
  cuda::register_einsum_kernels(r);
  cuda::register_training_kernels(r);
}

}  // namespace otter
