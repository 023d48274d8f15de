// CPU kernels for the conv op family (Conv and ConvTranspose). (Placeholder: filled by the op-coverage work.)
#include "kernels/cpu/cpu_common.h"

namespace otter::cpu {

void register_conv_kernels(KernelRegistry&) {}

}  // namespace otter::cpu
