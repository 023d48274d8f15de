// The common part of the import-time expanders (expand_functions.cpp: Attention; expand_rnn.cpp:
// LSTM/GRU/RNN): the node being replaced (a copy, since emitting nodes reallocates the graph's
// node list), the IR-level types of its inputs, errors that name it, and helpers that emit the
// primitive nodes taking its place (named "<node>/<Op>_<n>", optionally writing one of the node's
// own output values so that consumers stay untouched).
#pragma once
#include <string>
#include <vector>

#include "runtime/ops/op.h"

namespace otter {

class NodeExpander {
 protected:
  NodeExpander(Graph& g, int node_id, const std::vector<ValueInfo>& info)
      : g_(g), id_(node_id), n_(g.nodes[node_id]), info_(info) {}

  Graph& g_;
  int id_;
  const Node n_;
  const std::vector<ValueInfo>& info_;

  [[noreturn]] void unsupported(const std::string& what) const {
    OTTER_FAIL_KIND(Unsupported, n_.describe(), " (opset ", g_.opset(""), "): ", what);
  }
  [[noreturn]] void invalid(const std::string& what) const { OTTER_FAIL(n_.describe(), " (opset ", g_.opset(""), "): ", what); }
  const ValueInfo& vi(int v) const { return info_.at(static_cast<size_t>(v)); }
  std::string dims(const Shape& s) const { return g_.shape_str(s); }

  // Emits a one-output node; its output is `out` when given (an output of the expanded node).
  int emit(const std::string& op, const std::vector<int>& inputs, Attributes attrs = {}, int out = -1) {
    std::string name = g_.unique_name(n_.name + "/" + op);
    int id = g_.add_node(op, inputs, out >= 0 ? 0 : 1, std::move(attrs), "", name);
    if (out < 0) return g_.nodes[id].outputs[0];
    g_.nodes[id].outputs = {out};
    g_.values[out].producer = id;
    return out;
  }
  std::vector<int> emit_n(const std::string& op, const std::vector<int>& inputs, int n, Attributes attrs = {}) {
    std::string name = g_.unique_name(n_.name + "/" + op);
    int id = g_.add_node(op, inputs, n, std::move(attrs), "", name);
    return g_.nodes[id].outputs;
  }
  int constant(Tensor t) {
    Attributes a;
    a["value"] = Attribute::of_tensor(std::move(t));
    return emit("Constant", {}, std::move(a));
  }
  int ints(const std::vector<int64_t>& v) { return constant(Tensor::from_vector(v, {static_cast<int64_t>(v.size())})); }
};

}  // namespace otter
