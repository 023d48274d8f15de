// ORT gradient ops -> Otter backward nodes (see ort_grad_ops.h).
#include "runtime/passes/ort_grad_ops.h"

#include "runtime/ops/op.h"
#include "runtime/passes/gradient_op.h"

namespace otter {
namespace {

// Makes value `out` the output of node `n` (instead of the node's own new value).
void produce(Graph& g, int n, int out) {
  int tmp = g.nodes[static_cast<size_t>(n)].outputs[0];
  g.nodes[static_cast<size_t>(n)].outputs[0] = out;
  g.values[out].producer = n;
  g.values[tmp].producer = -1;
}

// FusedMatMul(A, B) -> [Transpose A] [Transpose B] MatMul [Mul alpha] (runtime/ops/ort_grad.cpp).
void expand_fused_matmul(Graph& g, const Node& node) {
  const int out = node.outputs.at(0);
  if (out < 0) return;
  std::vector<int> operands = {node.input(0), node.input(1)};
  const char* names[] = {"A", "B"};
  for (size_t k = 0; k < 2; ++k) {
    const int v = operands[k];
    const std::string sfx = names[k];
    OTTER_CHECK(v >= 0 && g.values[v].shape_known, node.describe(), ": the rank of ", sfx, " is not known");
    const size_t rank = g.values[v].shape.size();
    const bool tb = node.attr_int("transBatch" + sfx, 0) != 0, t = node.attr_int("trans" + sfx, 0) != 0;
    std::vector<int64_t> perm = fused_matmul_perm(rank, tb, t);
    bool identity = true;
    for (size_t j = 0; j < perm.size(); ++j) identity = identity && perm[j] == static_cast<int64_t>(j);
    if (identity) continue;
    Attributes a;
    a["perm"] = Attribute::of_ints(perm);
    int n = g.add_node("Transpose", {v}, 1, a, "", g.unique_name(node.name + "/Transpose" + sfx));
    operands[k] = g.nodes[static_cast<size_t>(n)].outputs[0];
  }
  const double alpha = node.attr_float("alpha", 1.0);
  int mm = g.add_node("MatMul", operands, 1, {}, "", g.unique_name(node.name + "/MatMul"));
  if (alpha == 1.0) {
    produce(g, mm, out);
    return;
  }
  const DType dtype = g.values[node.input(0)].dtype;
  int c = g.add_value(g.unique_name(node.name + "/alpha"), dtype);
  Value& cv = g.values[c];
  cv.data = Tensor::from_vector(std::vector<double>{alpha}, {}).cast(dtype);
  cv.shape_known = true;
  cv.is_initializer = true;
  g.initializers.push_back(c);
  int mul = g.add_node("Mul", {g.nodes[static_cast<size_t>(mm)].outputs[0], c}, 1, {}, "", g.unique_name(node.name + "/Mul"));
  produce(g, mul, out);
}

}  // namespace

void expand_ort_grad_ops(Graph& g) {
  std::set<int> dead;
  const size_t count = g.nodes.size();
  for (size_t i = 0; i < count; ++i) {
    const Node node = g.nodes[i];  // a copy: the graph grows below
    if (node.domain == "com.microsoft" && node.op_type == "FusedMatMul") {
      expand_fused_matmul(g, node);
      dead.insert(static_cast<int>(i));
      continue;
    }
    if (node.domain != "com.microsoft" || (node.op_type != "ConvGrad" && node.op_type != "MaxPoolGrad")) continue;
    int fwd = -1;
    for (size_t j = 0; j < count && fwd < 0; ++j) {
      const Node& f = g.nodes[j];
      if (!f.domain.empty()) continue;
      if (node.op_type == "ConvGrad" && f.op_type == "Conv" && f.input(0) == node.input(1) && f.input(1) == node.input(2))
        fwd = static_cast<int>(j);
      if (node.op_type == "MaxPoolGrad" && f.op_type == "MaxPool" && f.outputs.size() > 1 && f.outputs[1] >= 0 &&
          f.outputs[1] == node.input(1))
        fwd = static_cast<int>(j);
    }
    OTTER_CHECK_KIND(Unsupported, fwd >= 0, node.describe(), ": its forward ",
                     node.op_type == "ConvGrad" ? "Conv (reading its X and W)" : "MaxPool (producing its Indices)",
                     " is not in the graph, so Otter cannot build its gradient");
    const Node& f = g.nodes[static_cast<size_t>(fwd)];
    const OpDef* def = OpRegistry::instance().find(f.domain, f.op_type);
    OTTER_CHECK(def && def->gradient, node.describe(), ": ", f.describe(), " has no gradient builder");
    std::vector<int> out_grads(f.outputs.size(), -1);
    out_grads[0] = node.input(0);
    std::vector<bool> wanted(f.inputs.size(), false);
    for (size_t k = 0; k < node.outputs.size(); ++k)
      if (node.outputs[k] >= 0) {
        OTTER_CHECK(k < f.inputs.size() && f.inputs[k] >= 0, node.describe(), ": output ", k, " has no input of ",
                    f.describe(), " to be the gradient of");
        wanted[k] = true;
      }
    GradContext ctx(g, fwd, out_grads, wanted);
    def->gradient(ctx);
    for (size_t k = 0; k < node.outputs.size(); ++k) {
      const int out = node.outputs[k];
      if (out < 0) continue;
      const int dx = ctx.input_grads[k];
      OTTER_CHECK(dx >= 0, node.describe(), ": Otter's gradient builder gave no gradient for output ", k);
      int n = g.add_node("Identity", {dx}, 1, {}, "", g.unique_name(node.name + "/" + g.values[out].name));
      int tmp = g.nodes[n].outputs[0];
      g.nodes[n].outputs[0] = out;
      g.values[out].producer = n;
      g.values[tmp].producer = -1;
    }
    dead.insert(static_cast<int>(i));
  }
  remove_nodes(g, dead);
}

}  // namespace otter
