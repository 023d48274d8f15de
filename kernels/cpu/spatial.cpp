// CPU kernels for the spatial op family (Pad and Resize). (Placeholder: filled by the op-coverage work.)
#include "kernels/cpu/cpu_common.h"

namespace otter::cpu {

void register_spatial_kernels(KernelRegistry&) {}

}  // namespace otter::cpu
