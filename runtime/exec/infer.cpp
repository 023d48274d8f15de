// Graph-level inference and constant folding (see infer.h).
#include "runtime/exec/infer.h"

#include "kernels/registry.h"

namespace otter {
namespace {

constexpr int64_t kMaxFoldElements = int64_t(1) << 22;

bool all_known(const Shape& s) {
  for (int64_t d : s)
    if (d < 0) return false;
  return true;
}

// Runs the CPU kernel of a node whose inputs are known, to fold it into constants.
void fold_node(const Node& node, const OpDef& def, const std::vector<const ValueInfo*>& in,
               std::vector<ValueInfo>& out) {
  std::vector<Tensor> inputs(in.size());
  KernelContext ctx(node);
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i]) { ctx.inputs.push_back(nullptr); continue; }
    // Shape and Size read only the input's shape: give them a data-less view.
    inputs[i] = in[i]->data.defined() ? in[i]->data : Tensor::view(in[i]->dtype, in[i]->shape, nullptr, nullptr);
    ctx.inputs.push_back(&inputs[i]);
  }
  std::vector<Tensor> outputs(out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].dtype == DType::Undefined) { ctx.outputs.push_back(nullptr); continue; }
    outputs[i] = Tensor(out[i].dtype, out[i].shape);
    ctx.outputs.push_back(&outputs[i]);
  }
  DType key = def.kernel_type_input >= 0 && in.size() > static_cast<size_t>(def.kernel_type_input) &&
                      in[def.kernel_type_input]
                  ? in[def.kernel_type_input]->dtype
                  : out.at(0).dtype;
  KernelFn fn = KernelRegistry::instance().find(node.domain, node.op_type, Device::CPU, key);
  if (!fn) return;  // no CPU kernel for this dtype: leave the value to run time
  ctx.training = false;
  fn(ctx);
  for (size_t i = 0; i < out.size(); ++i)
    if (ctx.outputs[i]) out[i].data = outputs[i];
}

}  // namespace

std::vector<int> needed_nodes(const Graph& g, const std::vector<int>& targets, const std::set<int>& sources) {
  std::vector<bool> need_value(g.values.size(), false), need_node(g.nodes.size(), false);
  std::vector<int> stack;
  for (int v : targets)
    if (v >= 0 && !need_value[v]) { need_value[v] = true; stack.push_back(v); }
  while (!stack.empty()) {
    int v = stack.back();
    stack.pop_back();
    int p = g.values[v].producer;
    if (p < 0 || need_node[p] || sources.count(v)) continue;
    need_node[p] = true;
    for (int in : g.nodes[p].inputs)
      if (in >= 0 && !need_value[in]) { need_value[in] = true; stack.push_back(in); }
  }
  std::vector<int> order;
  for (int n : g.topo_order())
    if (need_node[n]) order.push_back(n);
  return order;
}

std::vector<ValueInfo> infer_graph(Graph& g, const std::map<int, ValueInfo>& inputs, const InferOptions& options) {
  std::vector<ValueInfo> info(g.values.size());
  std::vector<bool> known(g.values.size(), false);
  for (int v : g.initializers) {
    info[v].dtype = g.values[v].dtype;
    info[v].shape = g.values[v].shape;
    if (!options.variables.count(v)) info[v].data = g.values[v].data;
    known[v] = true;
  }
  for (auto& kv : inputs) {
    info[kv.first] = kv.second;
    known[kv.first] = true;
  }
  for (int v : options.sources) known[v] = known[v] || info[v].dtype != DType::Undefined;
  // Values with data but no producer (constants added by adapters or passes).
  for (size_t v = 0; v < g.values.size(); ++v)
    if (!known[v] && g.values[v].producer < 0 && g.values[v].data.defined()) {
      info[v].dtype = g.values[v].data.dtype();
      info[v].shape = g.values[v].data.shape();
      info[v].data = g.values[v].data;
      known[v] = true;
    }
  std::vector<int> order = options.only_nodes_for.empty()
                               ? g.topo_order()
                               : needed_nodes(g, std::vector<int>(options.only_nodes_for.begin(), options.only_nodes_for.end()),
                                              options.sources);
  const OpRegistry& registry = OpRegistry::instance();
  for (int n : order) {
    const Node& node = g.nodes[n];
    const OpDef* def = registry.find(node.domain, node.op_type);
    if (!def) {
      std::string dom = node.domain.empty() ? "ai.onnx" : node.domain;
      OTTER_FAIL_KIND(Unsupported, node.describe(), ": op '", node.op_type, "' of domain ", dom, " (opset ", g.opset(node.domain),
                 ") is not supported by Otter");
    }
    std::vector<const ValueInfo*> in;
    for (int v : node.inputs) {
      if (v < 0) { in.push_back(nullptr); continue; }
      OTTER_CHECK(known[v], node.describe(), ": input '", g.values[v].name, "' has no known type");
      in.push_back(&info[v]);
    }
    InferContext ctx(options.symbolic ? &g : nullptr, node, in);
    def->infer(ctx);
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      int v = node.outputs[i];
      if (v < 0) continue;
      if (ctx.outputs[i].dtype == DType::Undefined)
        OTTER_FAIL(node.describe(), ": output ", i, " ('", g.values[v].name, "') was not inferred");
      if (!options.symbolic && !all_known(ctx.outputs[i].shape))
        OTTER_FAIL(node.describe(), ": output '", g.values[v].name, "' has an unknown size");
    }
    // Constant folding.
    bool foldable = def->deterministic;
    bool shape_only = node.domain.empty() && (node.op_type == "Shape" || node.op_type == "Size");
    for (size_t i = 0; foldable && i < in.size(); ++i) {
      if (!in[i]) continue;
      if (shape_only) foldable = all_known(in[i]->shape);
      else foldable = in[i]->data.defined();
    }
    for (auto& o : ctx.outputs)
      if (o.dtype != DType::Undefined && (!all_known(o.shape) || shape_numel(o.shape) > kMaxFoldElements)) foldable = false;
    if (foldable) fold_node(node, *def, in, ctx.outputs);
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      int v = node.outputs[i];
      if (v < 0) continue;
      info[v] = std::move(ctx.outputs[i]);
      known[v] = true;
    }
  }
  return info;
}

void annotate_graph(Graph& g, const std::set<int>& variables) {
  std::map<int, ValueInfo> inputs;
  for (int v : g.inputs) {
    ValueInfo vi;
    vi.dtype = g.values[v].dtype;
    vi.shape = g.values[v].shape;
    inputs[v] = vi;
  }
  InferOptions options;
  options.variables = variables;
  options.symbolic = true;
  std::vector<ValueInfo> info = infer_graph(g, inputs, options);
  for (size_t v = 0; v < g.values.size(); ++v) {
    if (info[v].dtype == DType::Undefined) continue;
    g.values[v].dtype = info[v].dtype;
    g.values[v].shape = info[v].shape;
    g.values[v].shape_known = true;
  }
}

}  // namespace otter
