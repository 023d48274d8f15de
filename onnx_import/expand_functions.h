// Import-time expansion of ONNX ops that Otter runs as compositions of primitive ops rather than
// as kernels of their own. Today: Attention (opset 23+, default domain; what PyTorch's dynamo
// exporter emits for scaled_dot_product_attention), expanded into Reshape/Transpose/Mul/MatMul/
// Add/Where/Softmax/Concat/Expand... nodes, so that autodiff, the precision policy (MatMul
// lowered, Softmax in FP32) and the existing kernels apply unchanged. The expansion keeps the
// node's output value ids (consumers are untouched) and reads the dtypes and ranks of the node's
// inputs from an IR-level inference of the nodes that feed it. Features it cannot express fail
// here, naming the node and the attribute or input.
#pragma once
#include "runtime/ir/graph.h"

namespace otter {

// Replaces every expandable node of `g` by equivalent primitive nodes.
void expand_functions(Graph& g);

}  // namespace otter
