// The autocast pass (see autocast.h).
#include "runtime/passes/autocast.h"

#include <cmath>

namespace otter {
namespace {

// Inputs with their own type constraint in ONNX: never cast by the policy.
bool keeps_own_type(const std::string& op, size_t input) {
  if (op == "Dropout") return input >= 1;              // ratio (T1)
  if (op == "Pow") return input == 1;                  // exponent (T1)
  if (op == "BatchNormalization") return input >= 1;   // scale, bias, mean, var stay FP32 (T1/T2)
  if (op == "Clip") return false;
  return false;
}

bool constant_out_of_fp16_range(const Tensor& t) {
  if (!t.defined() || !is_floating(t.dtype()) || t.dtype() == DType::Float16) return false;
  for (double v : t.to_double_vector())
    if (std::isfinite(v) && std::fabs(v) > 65504.0) return true;
  return false;
}

}  // namespace

PrecisionClass default_precision_class(const std::string& op) {
  const OpDef* def = OpRegistry::instance().find("", op);
  return def ? def->precision : PrecisionClass::Follow;
}

const char* precision_class_name(PrecisionClass c) {
  switch (c) {
    case PrecisionClass::Lower: return "lower";
    case PrecisionClass::Fp32: return "fp32";
    case PrecisionClass::Follow: return "follow";
  }
  return "?";
}

PrecisionClass parse_precision_class(const std::string& text) {
  if (text == "lower") return PrecisionClass::Lower;
  if (text == "fp32") return PrecisionClass::Fp32;
  if (text == "follow") return PrecisionClass::Follow;
  OTTER_FAIL("unknown precision class '", text, "' (expected lower, fp32 or follow)");
}

AutocastResult autocast(Graph& g, const PrecisionPolicy& policy, const std::set<int>& parameters,
                        const std::set<int>& keep_dtype) {
  AutocastResult result;
  OTTER_CHECK(policy.low == DType::Float32 || policy.low == DType::Float16 || policy.low == DType::BFloat16,
              "the low precision type must be float16 or bfloat16");
  for (auto& kv : policy.by_node) {
    bool found = false;
    for (const Node& n : g.nodes) found = found || n.name == kv.first;
    OTTER_CHECK(found, "precision override for node '", kv.first, "': the model has no node of that name");
  }
  if (policy.low == DType::Float32) return result;

  std::map<int, int> current;                 // value -> the version consumers now read
  std::map<std::pair<int, int>, int> casts;   // (value, dtype) -> cast output
  std::map<int, int> cast_source;             // policy cast output -> its source
  auto cur = [&](int v) {
    auto it = current.find(v);
    return it == current.end() ? v : it->second;
  };
  auto flexible = [&](int v) {  // parameters and constants take the node's type
    const Value& val = g.values[v];
    return parameters.count(v) || val.data.defined() || (val.producer >= 0 && g.nodes[val.producer].op_type == "Constant");
  };
  auto as_type = [&](int v, DType t) -> int {
    v = cur(v);
    if (g.values[v].dtype == t) return v;
    auto src = cast_source.find(v);
    if (src != cast_source.end() && g.values[src->second].dtype == t) return src->second;  // cancel a pair
    auto key = std::make_pair(v, static_cast<int>(t));
    auto it = casts.find(key);
    if (it != casts.end()) return it->second;
    Attributes a;
    a["to"] = Attribute::of_int(static_cast<int64_t>(t));
    std::string name = g.unique_name("autocast/" + g.values[v].name + "/" + dtype_name(t));
    int n = g.add_node("Cast", {v}, 1, a, "", name);
    int out = g.nodes[n].outputs[0];
    g.values[out].dtype = t;
    g.values[out].shape = g.values[v].shape;
    g.values[out].shape_known = g.values[v].shape_known;
    casts[key] = out;
    cast_source[out] = v;
    if (parameters.count(v)) result.parameter_casts[v] = out;
    result.casts_added++;
    return out;
  };

  std::vector<int> order = g.topo_order();
  for (int id : order) {
    Node& node = g.nodes[id];
    // Which inputs carry floating data the policy may cast.
    std::vector<size_t> castable;
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      int v = node.inputs[i];
      if (v < 0) continue;
      node.inputs[i] = cur(v);
      if (is_floating(g.values[v].dtype) && !keeps_own_type(node.op_type, i) && node.op_type != "Cast") castable.push_back(i);
    }
    if (castable.empty()) continue;
    bool any_fp32 = false;
    for (size_t i : castable) any_fp32 = any_fp32 || g.values[node.inputs[i]].dtype == DType::Float32;
    bool any_fp64 = false;
    for (size_t i : castable) any_fp64 = any_fp64 || g.values[node.inputs[i]].dtype == DType::Float64;
    if (any_fp64) continue;  // double-precision nodes are left alone

    PrecisionClass cls = default_precision_class(node.op_type);
    std::string reason = std::string("rule: ") + precision_class_name(cls);
    if (auto it = policy.by_op.find(node.op_type); it != policy.by_op.end()) {
      cls = it->second;
      reason = std::string("override (op type): ") + precision_class_name(cls);
    }
    if (auto it = policy.by_node.find(node.name); it != policy.by_node.end()) {
      cls = it->second;
      reason = std::string("override (node name): ") + precision_class_name(cls);
    }
    if (policy.fp32_nodes.count(id)) {
      cls = PrecisionClass::Fp32;
      reason = "training algorithm: fp32";
    }
    DType target = DType::Float32;
    if (cls == PrecisionClass::Lower) {
      target = policy.low;
    } else if (cls == PrecisionClass::Follow) {
      // The widest type among activation inputs; parameters and constants follow the node.
      bool any_activation = false, activation_fp32 = false;
      for (size_t i : castable) {
        int v = node.inputs[i];
        if (flexible(v)) continue;
        any_activation = true;
        activation_fp32 = activation_fp32 || g.values[v].dtype == DType::Float32;
      }
      target = any_activation && !activation_fp32 ? policy.low : DType::Float32;
      reason += any_activation ? std::string(" (widest input ") + dtype_name(target) + ")" : " (no low-precision input)";
    }
    if (target == DType::Float16) {
      for (size_t i : castable) {
        int v = node.inputs[i];
        const Value& val = g.values[v];
        const Tensor* data = val.data.defined() ? &val.data : nullptr;
        if (!data && val.producer >= 0 && g.nodes[val.producer].op_type == "Constant")
          data = g.nodes[val.producer].attr_tensor("value");
        if (data && !parameters.count(v) && constant_out_of_fp16_range(*data)) {
          target = DType::Float32;
          reason = "constant '" + val.name + "' out of float16 range: stays float32";
          break;
        }
      }
    }
    for (size_t i : castable) g.nodes[id].inputs[i] = as_type(g.nodes[id].inputs[i], target);
    // Outputs: floating outputs now carry the target type under new values.
    Node& n = g.nodes[id];
    for (size_t o = 0; o < n.outputs.size(); ++o) {
      int v = n.outputs[o];
      if (n.op_type == "BatchNormalization" && o > 0) continue;  // running statistics stay FP32 (T2)
      if (v < 0 || !is_floating(g.values[v].dtype) || g.values[v].dtype == target) continue;
      if (g.values[v].dtype != DType::Float32) continue;
      int nv = g.add_value(g.unique_name(g.values[v].name + "/" + dtype_name(target)), target);
      g.values[nv].producer = id;
      g.values[nv].shape = g.values[v].shape;
      g.values[nv].shape_known = g.values[v].shape_known;
      g.nodes[id].outputs[o] = nv;
      g.values[v].producer = -1;
      current[v] = nv;
    }
    result.decisions[id] = {target, reason};
  }
  // Graph outputs and the loss keep their dtype: cast back into the original value.
  for (int v : keep_dtype) {
    int c = cur(v);
    if (c == v) continue;
    auto existing = casts.find(std::make_pair(c, static_cast<int>(g.values[v].dtype)));
    if (existing != casts.end()) {
      // A consumer already casts it back: let that Cast produce the original value.
      int e = existing->second;
      int producer = g.values[e].producer;
      g.nodes[producer].outputs[0] = v;
      g.values[v].producer = producer;
      g.values[e].producer = -1;
      for (Node& n : g.nodes)
        for (int& in : n.inputs)
          if (in == e) in = v;
      existing->second = v;
      current.erase(v);
      continue;
    }
    Attributes a;
    a["to"] = Attribute::of_int(static_cast<int64_t>(g.values[v].dtype));
    int n = g.add_node("Cast", {c}, 1, a, "", g.unique_name("autocast/output/" + g.values[v].name));
    // Make the Cast produce the original value itself.
    int tmp = g.nodes[n].outputs[0];
    g.nodes[n].outputs[0] = v;
    g.values[v].producer = n;
    g.values[tmp].producer = -1;
    current.erase(v);
    result.casts_added++;
  }
  // Nodes added after the order was taken read values rewritten later? No: every consumer was
  // visited in topological order after its producer, so all reads are already current.
  return result;
}

}  // namespace otter
