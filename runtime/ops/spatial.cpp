// The spatial op family: Pad and Resize. (Placeholder: filled by the op-coverage work.)
#include "runtime/ops/op.h"

namespace otter {

void register_spatial_ops(OpRegistry&) {}

}  // namespace otter
