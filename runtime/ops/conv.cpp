// The conv op family: Conv and ConvTranspose. (Placeholder: filled by the op-coverage work.)
#include "runtime/ops/op.h"

namespace otter {

void register_conv_ops(OpRegistry&) {}

}  // namespace otter
