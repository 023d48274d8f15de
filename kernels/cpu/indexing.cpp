// CPU kernels for the indexing op family (GatherElements, ScatterElements, ScatterND, Trilu, Tile, CumSum). (Placeholder: filled by the op-coverage work.)
#include "kernels/cpu/cpu_common.h"

namespace otter::cpu {

void register_indexing_kernels(KernelRegistry&) {}

}  // namespace otter::cpu
