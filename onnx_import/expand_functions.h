// Import-time expansion of ONNX ops that Otter runs as compositions of primitive ops rather than
// as kernels of their own. Today: Attention (opset 23+, default domain; what PyTorch's dynamo
// exporter emits for scaled_dot_product_attention), expanded into Reshape/Transpose/Mul/MatMul/
// Add/Where/Softmax/Concat/Expand... nodes, so that autodiff, the precision policy (MatMul
// lowered, Softmax in FP32) and the existing kernels apply unchanged. The expansion keeps the
// node's output value ids (consumers are untouched) and reads the dtypes and ranks of the node's
// inputs from an IR-level inference of the nodes that feed it. Features it cannot express fail
// here, naming the node and the attribute or input.
// Also LSTM, GRU and RNN (onnx_import/expand_rnn.cpp): unrolled over a static sequence length
// into MatMul/Add/Mul/activation/Split/Concat/Where nodes, one group per time step and direction.
#pragma once
#include <vector>

#include "runtime/ir/graph.h"

namespace otter {

struct ValueInfo;

// Replaces every expandable node of `g` by equivalent primitive nodes.
void expand_functions(Graph& g);

// LSTM, GRU and RNN (default domain): whether `n` is one, and its expansion in place of node
// `node_id`, given the IR-level dtypes and shapes `info` of the values feeding it.
bool is_rnn_node(const Node& n);
void expand_rnn_node(Graph& g, int node_id, const std::vector<ValueInfo>& info);

}  // namespace otter
