// The linear_gemm pass (see linear_gemm.h).
#include "runtime/passes/linear_gemm.h"

#include <map>

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
  const size_t count = g.nodes.size();
  for (size_t i = 0; i < count; ++i) {
    if (!g.nodes[i].domain.empty() || g.nodes[i].op_type != "MatMul" || g.nodes[i].inputs.size() != 2) continue;
    const int x = g.nodes[i].inputs[0], t = g.nodes[i].inputs[1];
    const int w = transposed_matrix(g, t);
    if (x < 0 || w < 0 || !g.values[x].shape_known || g.values[x].shape.size() < 2 || !is_float(g.values[w].dtype))
      continue;
    const int64_t n_out = g.values[w].shape[0], k = g.values[w].shape[1];
    const std::string name = g.nodes[i].name.empty() ? "linear" : g.nodes[i].name;
    Attributes trans_b;
    trans_b["transB"] = Attribute::of_int(1);
    if (g.values[x].shape.size() == 2) {  // already a matrix: the node itself becomes the Gemm
      Node& m = g.nodes[i];
      m.op_type = "Gemm";
      m.inputs = {x, w};
      m.attrs = trans_b;
    } else {  // X [..., K]: Gemm over its rows, then back to [..., N]
      auto known = rows_of.find(x);
      const int rows = known != rows_of.end()
                           ? known->second
                           : g.nodes[g.add_node("Reshape", {x, constant_int64s(g, name + "/rows_shape", {-1, k})}, 1,
                                                {}, "", g.unique_name(name + "/rows"))].outputs[0];
      rows_of[x] = rows;
      const int y2 = g.nodes[g.add_node("Gemm", {rows, w}, 1, trans_b, "", g.unique_name(name + "/gemm"))].outputs[0];
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
  return rewritten;
}

}  // namespace otter
