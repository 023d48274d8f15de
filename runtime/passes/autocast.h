// The autocast pass: rewrites a forward graph (loss included) to a mixed FP16/FP32 or BF16/FP32
// precision policy, before autodiff, so that the backward pass inherits the forward's precision
// through the gradients of the inserted Casts (docs/architecture.md, "Mixed precision").
//
// The policy is data: each op type has a class — lower (MatMul, Gemm, Conv, ...: low precision
// in, FP32 accumulation inside the kernel), fp32 (exp/log/pow, softmax, reductions, norms,
// losses), follow (type-transparent ops: the widest type among their activation inputs) — and
// users override it by op type or by node name. Parameters and constants are "flexible": they
// take the type the node runs in (a parameter is cast once, and all its consumers share that
// cast). A node with a constant outside FP16's range (a -1e9 mask) stays FP32. Values that are
// graph outputs or the loss keep their dtype (a Cast back is added). Only FP32 values are ever
// lowered; FP64 and integer values are left alone.
#pragma once
#include <map>
#include <set>
#include <string>

#include "runtime/ir/graph.h"
#include "runtime/ops/op.h"  // PrecisionClass (a trait of each OpDef)

namespace otter {

struct PrecisionPolicy {
  DType low = DType::Float32;  // Float16 or BFloat16 enables autocast; Float32 leaves the graph alone
  std::map<std::string, PrecisionClass> by_op;    // overrides by op type
  std::map<std::string, PrecisionClass> by_node;  // overrides by node name (win over by_op)
  // Node ids that always compute in FP32, whatever the overrides: an ONNX training graph's
  // algorithm nodes (loss, Gradient, optimizer), whose state stays FP32 (runtime/train/training_graph.h).
  std::set<int> fp32_nodes;
};

struct PrecisionDecision {
  DType dtype = DType::Float32;  // the type the node computes in
  std::string reason;            // e.g. "rule: lower", "override (node)", "constant out of float16 range"
};

struct AutocastResult {
  std::map<int, PrecisionDecision> decisions;  // forward node id -> decision
  std::map<int, int> parameter_casts;          // parameter value -> its low-precision copy value
  int casts_added = 0;
};

// The registry's class for an ai.onnx op type (OpDef::precision); Follow for unknown ops.
PrecisionClass default_precision_class(const std::string& op_type);
const char* precision_class_name(PrecisionClass c);
// Parses "lower" | "fp32" | "follow"; throws naming the text otherwise.
PrecisionClass parse_precision_class(const std::string& text);

// `keep_dtype`: values whose dtype must not change (graph outputs, the loss).
AutocastResult autocast(Graph& g, const PrecisionPolicy& policy, const std::set<int>& parameters,
                        const std::set<int>& keep_dtype);

}  // namespace otter
