// The Gradient pass: replaces every ai.onnx.preview.training Gradient node (attributes xs, y, zs;
// outputs dy/dx for each x of xs) with Otter's own backward nodes, built by the autodiff pass
// (runtime/passes/autodiff.h) for that y and those xs, seeded with ones of y's shape (so a
// non-scalar y is differentiated as the sum of its elements). An x that y does not depend on gets
// zeros. The Gradient nodes are removed, so the graph plans like any other. Errors name the node:
// an xs or y name the graph lacks, inputs that are not the xs in order, a y that reads a Gradient
// output (second-order gradients are not supported), an op on the path without a gradient.
#pragma once
#include <set>

#include "runtime/ir/graph.h"

namespace otter {

// Whether the graph has a Gradient node.
bool has_gradient_ops(const Graph& g);

// The graph's values must be annotated (runtime/exec/infer.h annotate_graph) before the call;
// the caller annotates again afterwards. Node ids change (the Gradient nodes are removed).
void expand_gradient_ops(Graph& g);

// Removes nodes by id, renumbering the producers of the remaining nodes' values (no value may still
// be read from a removed node).
void remove_nodes(Graph& g, const std::set<int>& dead);

}  // namespace otter
