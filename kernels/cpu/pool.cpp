// CPU kernels for the pool op family (MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool). (Placeholder: filled by the op-coverage work.)
#include "kernels/cpu/cpu_common.h"

namespace otter::cpu {

void register_pool_kernels(KernelRegistry&) {}

}  // namespace otter::cpu
