// The linear_gemm pass (see linear_gemm.h).
#include "runtime/passes/linear_gemm.h"

#include <map>
#include <set>

#include "runtime/passes/gradient_op.h"

namespace otter {
namespace {

int constant_int64s(Graph& g, const std::string& name, const std::vector<int64_t>& values) {
  Attributes a;
  a["value"] = Attribute::of_tensor(Tensor::from_vector(values, {static_cast<int64_t>(values.size())}));
  return g.nodes[g.add_node("Constant", {}, 1, std::move(a), "", g.unique_name(name))].outputs[0];
}

// The 2-D value a Transpose node swaps (its input), or -1 when `t` is not such a node.
int transposed_matrix(const Graph& g, int t) {
  if (t < 0 || g.values[t].producer < 0) return -1;
  const Node& n = g.nodes[g.values[t].producer];
  if (!n.domain.empty() || n.op_type != "Transpose" || n.inputs.size() != 1 || n.inputs[0] < 0) return -1;
  const Value& w = g.values[n.inputs[0]];
  if (!w.shape_known || w.shape.size() != 2 || w.shape[0] < 0 || w.shape[1] < 0) return -1;
  const std::vector<int64_t> perm = n.attr_ints("perm", {1, 0});
  if (perm != std::vector<int64_t>{1, 0}) return -1;
  return n.inputs[0];
}

bool is_float(DType t) {
  return t == DType::Float32 || t == DType::Float64 || t == DType::Float16 || t == DType::BFloat16;
}

}  // namespace

int fold_linear_transposes(Graph& g) {
  int rewritten = 0;
  std::map<int, int> rows_of;  // X -> its [rows, K] view, shared by the layers reading X (q, k, v):
                               // the precision policy then casts X once for all of them
  const std::vector<std::vector<int>> consumers = g.consumers();
  const std::set<int> outputs(g.outputs.begin(), g.outputs.end());
  std::set<int> transposes;  // the Transpose nodes read by a rewritten MatMul
  const size_t count = g.nodes.size();
  for (size_t i = 0; i < count; ++i) {
    if (!g.nodes[i].domain.empty() || g.nodes[i].op_type != "MatMul" || g.nodes[i].inputs.size() != 2 ||
        g.nodes[i].outputs.size() != 1 || g.nodes[i].outputs[0] < 0)
      continue;
    const int x = g.nodes[i].inputs[0], t = g.nodes[i].inputs[1], y = g.nodes[i].outputs[0];
    const int w = transposed_matrix(g, t);
    if (x < 0 || w < 0 || !g.values[x].shape_known || g.values[x].shape.size() < 2 || !is_float(g.values[w].dtype))
      continue;
    const int64_t n_out = g.values[w].shape[0], k = g.values[w].shape[1];
    transposes.insert(g.values[t].producer);
    // The bias: when the product's only reader is an Add of an [N] vector (nn.Linear's bias), the
    // Gemm adds it as its C and the Add becomes an Identity (a view): no pass over Y for it.
    int bias = -1, add = -1;
    if (!outputs.count(y) && consumers[static_cast<size_t>(y)].size() == 1) {
      const int a = consumers[static_cast<size_t>(y)][0];
      const Node& n = g.nodes[static_cast<size_t>(a)];
      if (n.domain.empty() && n.op_type == "Add" && n.inputs.size() == 2 && n.outputs.size() == 1) {
        const int other = n.inputs[0] == y ? n.inputs[1] : n.inputs[0];
        if (other >= 0 && other != y && g.values[other].shape_known && g.values[other].shape == Shape{n_out} &&
            g.values[other].dtype == g.values[w].dtype && g.values[y].dtype == g.values[w].dtype) {
          bias = other;
          add = a;
        }
      }
    }
    const std::string name = g.nodes[i].name.empty() ? "linear" : g.nodes[i].name;
    Attributes trans_b;
    trans_b["transB"] = Attribute::of_int(1);
    if (add >= 0) {
      Node& a = g.nodes[static_cast<size_t>(add)];
      a.op_type = "Identity";
      a.inputs = {y};
      a.attrs.clear();
    }
    std::vector<int> gemm_inputs = {x, w};
    if (bias >= 0) gemm_inputs.push_back(bias);
    if (g.values[x].shape.size() == 2) {  // already a matrix: the node itself becomes the Gemm
      Node& m = g.nodes[i];
      m.op_type = "Gemm";
      m.inputs = gemm_inputs;
      m.attrs = trans_b;
    } else {  // X [..., K]: Gemm over its rows, then back to [..., N]
      auto known = rows_of.find(x);
      const int rows = known != rows_of.end()
                           ? known->second
                           : g.nodes[g.add_node("Reshape", {x, constant_int64s(g, name + "/rows_shape", {-1, k})}, 1,
                                                {}, "", g.unique_name(name + "/rows"))].outputs[0];
      rows_of[x] = rows;
      gemm_inputs[0] = rows;
      const int y2 = g.nodes[g.add_node("Gemm", gemm_inputs, 1, trans_b, "", g.unique_name(name + "/gemm"))].outputs[0];
      Attributes leading;
      leading["end"] = Attribute::of_int(-1);
      const int lead = g.nodes[g.add_node("Shape", {x}, 1, leading, "", g.unique_name(name + "/leading_dims"))].outputs[0];
      Attributes axis0;
      axis0["axis"] = Attribute::of_int(0);
      const int target = g.nodes[g.add_node("Concat", {lead, constant_int64s(g, name + "/out_features", {n_out})}, 1, axis0,
                                            "", g.unique_name(name + "/out_shape"))].outputs[0];
      Node& m = g.nodes[i];  // add_node may have moved the node list
      m.op_type = "Reshape";
      m.inputs = {y2, target};
      m.attrs.clear();
    }
    ++rewritten;
  }
  // The Transposes nothing reads any more (their weight's only readers are now GEMMs, which the
  // precision policy and the plan see).
  const std::vector<std::vector<int>> readers = g.consumers();
  std::set<int> dead;
  for (int n : transposes) {
    const int out = g.nodes[static_cast<size_t>(n)].outputs[0];
    if (readers[static_cast<size_t>(out)].empty() && !outputs.count(out)) dead.insert(n);
  }
  if (!dead.empty()) remove_nodes(g, dead);
  return rewritten;
}

}  // namespace otter
