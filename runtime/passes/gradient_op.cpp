// The Gradient pass (see gradient_op.h).
#include "runtime/passes/gradient_op.h"

#include <algorithm>
#include <set>

#include "runtime/passes/autodiff.h"

namespace otter {
namespace {

constexpr const char* kTraining = "ai.onnx.preview.training";

bool is_gradient(const Node& n) { return n.domain == kTraining && n.op_type == "Gradient"; }

// A value of `like`'s shape filled with `fill`, in dtype `dtype`: ConstantOfShape(Shape(like)).
int filled_like(Graph& g, int like, double fill, DType dtype, const std::string& name) {
  int shape = g.nodes[g.add_node("Shape", {like}, 1, {}, "", g.unique_name(name + "/Shape"))].outputs[0];
  Attributes a;
  a["value"] = Attribute::of_tensor(Tensor::from_vector<double>({fill}, {1}).cast(dtype));
  return g.nodes[g.add_node("ConstantOfShape", {shape}, 1, a, "", g.unique_name(name + "/ConstantOfShape"))].outputs[0];
}

}  // namespace

void remove_nodes(Graph& g, const std::set<int>& dead) {
  std::vector<int> new_id(g.nodes.size(), -1);
  std::vector<Node> kept;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (dead.count(static_cast<int>(i))) continue;
    new_id[i] = static_cast<int>(kept.size());
    kept.push_back(std::move(g.nodes[i]));
  }
  g.nodes = std::move(kept);
  for (Value& v : g.values)
    if (v.producer >= 0) v.producer = new_id[static_cast<size_t>(v.producer)];
}

bool has_gradient_ops(const Graph& g) {
  for (const Node& n : g.nodes)
    if (is_gradient(n)) return true;
  return false;
}

void expand_gradient_ops(Graph& g) {
  std::vector<int> gradient_nodes;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (is_gradient(g.nodes[i])) gradient_nodes.push_back(static_cast<int>(i));
  if (gradient_nodes.empty()) return;
  // Values computed from a Gradient output: a y among them would need a second-order gradient.
  std::vector<int> gradient_outputs;
  for (int n : gradient_nodes)
    for (int o : g.nodes[n].outputs)
      if (o >= 0) gradient_outputs.push_back(o);
  std::vector<bool> reads_gradient(g.values.size(), false);
  for (int o : gradient_outputs) reads_gradient[o] = true;
  for (int n : g.topo_order()) {
    bool any = false;
    for (int in : g.nodes[n].inputs) any = any || (in >= 0 && reads_gradient[in]);
    if (any)
      for (int o : g.nodes[n].outputs)
        if (o >= 0) reads_gradient[o] = true;
  }

  for (int id : gradient_nodes) {
    const Node node = g.nodes[id];  // a copy: the graph grows below
    const std::string where = node.describe();
    const Attribute* xs_attr = node.has_attr("xs") ? &node.attrs.at("xs") : nullptr;
    OTTER_CHECK(xs_attr && xs_attr->kind == Attribute::Kind::Strings && !xs_attr->strings.empty(), where,
                ": attribute 'xs' (the names of the tensors to differentiate by) is required");
    const std::string y_name = node.attr_string("y", "");
    OTTER_CHECK(!y_name.empty(), where, ": attribute 'y' (the name of the tensor to differentiate) is required");
    const int y = g.find_value(y_name);
    OTTER_CHECK(y >= 0, where, ": y '", y_name, "' is not a value of the graph");
    OTTER_CHECK(is_floating(g.values[y].dtype), where, ": y '", y_name, "' is ", dtype_name(g.values[y].dtype),
                "; it must be a floating tensor");
    OTTER_CHECK_KIND(Unsupported, !reads_gradient[y], where, ": y '", y_name,
                     "' is computed from the output of a Gradient node; second-order gradients are not supported");
    std::vector<int> xs;
    for (size_t i = 0; i < xs_attr->strings.size(); ++i) {
      const std::string& name = xs_attr->strings[i];
      int x = g.find_value(name);
      OTTER_CHECK(x >= 0, where, ": xs[", i, "] '", name, "' is not a value of the graph");
      OTTER_CHECK(node.input(i) == x, where, ": input ", i, " must be xs[", i, "] '", name,
                  "' (a Gradient node's inputs are its xs, then its zs)");
      OTTER_CHECK(is_floating(g.values[x].dtype), where, ": xs[", i, "] '", name, "' is ",
                  dtype_name(g.values[x].dtype), "; only floating tensors have gradients");
      xs.push_back(x);
    }
    if (node.has_attr("zs"))
      for (const std::string& z : node.attrs.at("zs").strings)
        OTTER_CHECK(g.find_value(z) >= 0, where, ": zs name '", z, "' is not a value of the graph");
    OTTER_CHECK(node.outputs.size() == xs.size(), where, ": has ", node.outputs.size(), " outputs for ", xs.size(), " xs");

    Gradients grads = build_gradients(g, y, xs);
    // The seed: ones of y's shape instead of a graph input.
    const int seed = grads.seed;
    g.inputs.erase(std::remove(g.inputs.begin(), g.inputs.end(), seed), g.inputs.end());
    int ones = filled_like(g, y, 1.0, g.values[y].dtype, node.name + "/seed");
    int seed_producer = g.values[ones].producer;
    g.nodes[seed_producer].outputs[0] = seed;
    g.values[seed].producer = seed_producer;
    g.values[ones].producer = -1;
    for (size_t i = 0; i < xs.size(); ++i) {
      const int out = node.outputs[i];
      if (out < 0) continue;
      auto it = grads.of_param.find(xs[i]);
      int dx = it != grads.of_param.end() ? it->second
                                          : filled_like(g, xs[i], 0.0, g.values[xs[i]].dtype, node.name + "/zeros");
      // The Gradient output is produced by an Identity of the backward value.
      int n = g.add_node("Identity", {dx}, 1, {}, "", g.unique_name(node.name + "/" + g.values[out].name));
      int tmp = g.nodes[n].outputs[0];
      g.nodes[n].outputs[0] = out;
      g.values[out].producer = n;
      g.values[tmp].producer = -1;
    }
  }
  remove_nodes(g, std::set<int>(gradient_nodes.begin(), gradient_nodes.end()));
}

}  // namespace otter
