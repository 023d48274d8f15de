// The autodiff pass: appends the backward pass of `loss` with respect to `params` to the graph,
// as ordinary nodes emitted by each op's gradient builder (runtime/ops). The backward is seeded
// by a new scalar graph input (so the caller chooses the seed: 1, 1/accumulation steps, or a loss
// scale). Only gradients on a path from a parameter to the loss are built; a value with several
// consumers gets the sum of their gradients. Each parameter's gradient is a value of its own
// (never shared with another value), so the executor can write it straight into the flat
// gradient buffer.
#pragma once
#include <map>
#include <vector>

#include "runtime/ir/graph.h"

namespace otter {

struct Gradients {
  int seed = -1;                 // scalar input: d(loss) seed
  std::map<int, int> of_param;   // parameter value id -> its gradient value id
  std::vector<int> unreachable;  // parameters with no differentiable path to the loss
};

// The graph's values must be annotated (runtime/exec/infer.h annotate_graph) before the call;
// the new nodes are annotated by the caller afterwards.
Gradients build_gradients(Graph& g, int loss, const std::vector<int>& params);

// Values that depend on any of `params` through differentiable inputs.
std::vector<bool> depends_on(const Graph& g, const std::vector<int>& params);

}  // namespace otter
