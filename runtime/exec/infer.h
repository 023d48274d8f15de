// Shape and type inference over a whole graph, with constant folding: a node whose inputs all
// have known data (Constants, frozen initializers, Shape of a fully known shape) is run once on
// the CPU kernels and its outputs become known data. Used at two levels:
//  - IR level (`annotate`): symbolic shapes; validates every node (unknown op, dtype, shape)
//    and writes dtype/shape into the graph's values;
//  - plan level: concrete input shapes; every size must then be known.
#pragma once
#include <map>
#include <set>
#include <vector>

#include "runtime/ops/op.h"

namespace otter {

struct InferOptions {
  std::set<int> variables;       // values whose data is not constant (trainable parameters)
  std::set<int> only_nodes_for;  // if non-empty: infer only nodes these values need
  std::set<int> sources;         // with only_nodes_for: values given from outside
  bool symbolic = false;         // IR level: unknown sizes become fresh symbols
};

// Infers every value. `inputs` gives the graph inputs' dtype and shape.
std::vector<ValueInfo> infer_graph(Graph& g, const std::map<int, ValueInfo>& inputs, const InferOptions& options);

// IR-level inference that validates the graph and annotates Value::dtype/shape.
void annotate_graph(Graph& g, const std::set<int>& variables);

// The node ids needed to compute `targets`, in topological order.
// Values in `sources` are treated as given: their producers are not needed for them.
std::vector<int> needed_nodes(const Graph& g, const std::vector<int>& targets, const std::set<int>& sources = {});

}  // namespace otter
