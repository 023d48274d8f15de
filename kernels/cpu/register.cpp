// The CPU backend's one registration function: every CPU kernel family, listed explicitly.
#include "kernels/registry.h"

namespace otter {
namespace cpu {
void register_elementwise_kernels(KernelRegistry& r);
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
void register_training_kernels(KernelRegistry& r);
}  // namespace cpu

void register_cpu_kernels(KernelRegistry& r) {
  cpu::register_elementwise_kernels(r);
  cpu::register_matmul_kernels(r);
  cpu::register_shape_kernels(r);
  cpu::register_reduce_kernels(r);
  cpu::register_softmax_kernels(r);
  cpu::register_loss_kernels(r);
  cpu::register_conv_kernels(r);
  cpu::register_pool_kernels(r);
  cpu::register_norm_kernels(r);
  cpu::register_indexing_kernels(r);
  cpu::register_spatial_kernels(r);
  cpu::register_einsum_kernels(r);
  cpu::register_training_kernels(r);
}

}  // namespace otter
