// The pool op family: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool. (Placeholder: filled by the op-coverage work.)
#include "runtime/ops/op.h"

namespace otter {

void register_pool_ops(OpRegistry&) {}

}  // namespace otter
