// Reverse-mode autodiff over the IR (see autodiff.h).
#include "runtime/passes/autodiff.h"

#include <algorithm>

#include "runtime/ops/op.h"

namespace otter {
namespace {

bool input_differentiable(const OpDef* def, const Graph& g, const Node& n, size_t i) {
  int v = n.input(i);
  if (v < 0 || !is_floating(g.values[v].dtype)) return false;
  if (!def || def->differentiable_inputs.empty()) return true;
  return std::find(def->differentiable_inputs.begin(), def->differentiable_inputs.end(), static_cast<int>(i)) !=
         def->differentiable_inputs.end();
}

}  // namespace

std::vector<bool> depends_on(const Graph& g, const std::vector<int>& params) {
  std::vector<bool> dep(g.values.size(), false);
  for (int p : params) dep[p] = true;
  const OpRegistry& ops = OpRegistry::instance();
  for (int n : g.topo_order()) {
    const Node& node = g.nodes[n];
    const OpDef* def = ops.find(node.domain, node.op_type);
    bool any = false;
    for (size_t i = 0; i < node.inputs.size(); ++i)
      if (node.inputs[i] >= 0 && dep[node.inputs[i]] && input_differentiable(def, g, node, i)) any = true;
    if (!any) continue;
    for (int o : node.outputs)
      if (o >= 0 && is_floating(g.values[o].dtype)) dep[o] = true;
  }
  return dep;
}

Gradients build_gradients(Graph& g, int loss, const std::vector<int>& params) {
  Gradients result;
  const Value lv = g.values[loss];  // a copy: add_value below may reallocate g.values
  OTTER_CHECK(is_floating(lv.dtype), "the loss '", lv.name, "' is ", dtype_name(lv.dtype), "; it must be floating");
  result.seed = g.add_value(g.unique_name("otter:loss_grad"), lv.dtype);
  g.values[result.seed].shape = lv.shape;
  g.values[result.seed].shape_known = true;
  g.inputs.push_back(result.seed);

  std::vector<bool> dep = depends_on(g, params);
  const OpRegistry& ops = OpRegistry::instance();
  std::map<int, std::vector<int>> contributions;
  contributions[loss].push_back(result.seed);
  // Sums a value's gradient contributions (Add nodes; all have the value's shape).
  auto total = [&](int v) -> int {
    auto it = contributions.find(v);
    if (it == contributions.end() || it->second.empty()) return -1;
    std::vector<int>& c = it->second;
    int sum = c[0];
    for (size_t i = 1; i < c.size(); ++i) {
      int n = g.add_node("Add", {sum, c[i]}, 1, {}, "", g.unique_name("grad/sum/" + g.values[v].name));
      sum = g.nodes[n].outputs[0];
    }
    c.assign(1, sum);
    return sum;
  };

  std::vector<int> order = g.topo_order();
  size_t forward_nodes = g.nodes.size();
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    int n = *it;
    if (static_cast<size_t>(n) >= forward_nodes) continue;
    std::vector<int> out_grads;
    bool any = false;
    for (int o : g.nodes[n].outputs) {
      int dg = (o >= 0 && dep[o]) ? total(o) : -1;
      out_grads.push_back(dg);
      any = any || dg >= 0;
    }
    if (!any) continue;
    const OpDef* def = ops.find(g.nodes[n].domain, g.nodes[n].op_type);
    std::vector<bool> wanted;
    bool want_any = false;
    for (size_t i = 0; i < g.nodes[n].inputs.size(); ++i) {
      int v = g.nodes[n].inputs[i];
      bool w = v >= 0 && dep[v] && input_differentiable(def, g, g.nodes[n], i);
      wanted.push_back(w);
      want_any = want_any || w;
    }
    if (!want_any) continue;
    OTTER_CHECK(def && def->gradient, g.nodes[n].describe(), ": op '", g.nodes[n].op_type,
                "' has no gradient in Otter, but a trainable parameter reaches the loss through it "
                "(freeze the parameters before it, or file an issue)");
    GradContext ctx(g, n, out_grads, wanted);
    def->gradient(ctx);
    for (size_t i = 0; i < ctx.input_grads.size(); ++i) {
      int dx = ctx.input_grads[i];
      if (dx >= 0 && wanted[i]) contributions[g.nodes[n].inputs[i]].push_back(dx);
    }
  }

  // Each parameter's gradient must be a value of its own: copy it when it is shared with another
  // parameter, is a forward value or graph input, or is read by another node.
  auto consumers = g.consumers();
  std::map<int, int> owner;
  for (int p : params) {
    int dg = total(p);
    if (dg < 0) { result.unreachable.push_back(p); continue; }
    bool shared = owner.count(dg) || g.values[dg].producer < 0 ||
                  static_cast<size_t>(g.values[dg].producer) < forward_nodes ||
                  (static_cast<size_t>(dg) < consumers.size() && !consumers[dg].empty());
    if (shared) {
      int n = g.add_node("Identity", {dg}, 1, {}, "", g.unique_name("grad/" + g.values[p].name));
      dg = g.nodes[n].outputs[0];
    }
    owner[dg] = p;
    result.of_param[p] = dg;
  }
  return result;
}

}  // namespace otter
