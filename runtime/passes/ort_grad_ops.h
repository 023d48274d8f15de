// Replaces ONNX Runtime's graph-level gradient ops (runtime/ops/ort_grad.cpp: com.microsoft
// ConvGrad, MaxPoolGrad) in an ORT training model with Otter's own backward nodes: each is matched
// to its forward node (the Conv that reads its X and W; the MaxPool whose Indices output it reads)
// and that op's gradient builder (runtime/ops) emits the backward nodes for its dY; the ORT op's
// outputs become Identities of them and the ORT node is removed. A missing forward node is an
// error naming the ORT node.
#pragma once
#include "runtime/ir/graph.h"

namespace otter {

// The graph must be annotated before the call (annotate again after it).
void expand_ort_grad_ops(Graph& g);

}  // namespace otter
