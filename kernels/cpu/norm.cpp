// CPU kernels for the norm op family (BatchNormalization, InstanceNormalization, GroupNormalization, LayerNormalization). (Placeholder: filled by the op-coverage work.)
#include "kernels/cpu/cpu_common.h"

namespace otter::cpu {

void register_norm_kernels(KernelRegistry&) {}

}  // namespace otter::cpu
