// The norm op family: BatchNormalization, InstanceNormalization, GroupNormalization, LayerNormalization. (Placeholder: filled by the op-coverage work.)
#include "runtime/ops/op.h"

namespace otter {

void register_norm_ops(OpRegistry&) {}

}  // namespace otter
