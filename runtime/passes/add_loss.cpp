// The add_loss pass (see add_loss.h). Losses other than cross-entropy are built from ordinary
// ONNX ops, so they need no kernels or gradients of their own.
#include "runtime/passes/add_loss.h"

namespace otter {
namespace {

int node_out(Graph& g, const std::string& op, const std::vector<int>& in, Attributes a = {}) {
  int n = g.add_node(op, in, 1, std::move(a), "", g.unique_name("loss/" + op));
  return g.nodes[n].outputs[0];
}

int reduce_all(Graph& g, int v, const std::string& reduction) {
  Attributes a;
  a["keepdims"] = Attribute::of_int(0);
  return node_out(g, reduction == "sum" ? "ReduceSum" : "ReduceMean", {v}, a);
}

int constant(Graph& g, double value, DType dtype) {
  int v = g.add_value(g.unique_name("loss/const"), dtype);
  g.values[v].data = Tensor::scalar<double>(value).cast(dtype);
  g.values[v].shape = {};
  g.values[v].shape_known = true;
  return v;
}

}  // namespace

LossInfo add_loss(Graph& g, const LossSpec& spec) {
  LossInfo info;
  int out = -1;
  if (spec.output.empty()) {
    OTTER_CHECK(!g.outputs.empty(), "the model has no outputs to attach a loss to");
    out = g.outputs[0];
  } else {
    out = g.find_value(spec.output);
    OTTER_CHECK(out >= 0, "the loss output '", spec.output, "' is not a value of the model");
  }
  OTTER_CHECK(spec.reduction == "mean" || spec.reduction == "sum", "loss reduction must be mean or sum, got '",
              spec.reduction, "'");
  const Value y = g.values[out];  // a copy: adding values below reallocates g.values
  if (spec.kind == "none") {
    OTTER_CHECK(y.shape_known && shape_numel(y.shape) == 1 && is_floating(y.dtype), "the loss output '", y.name,
                "' must be a floating scalar; it is ", dtype_name(y.dtype), " ", g.shape_str(y.shape),
                " (choose a loss such as cross_entropy or mse instead)");
    info.loss = out;
    return info;
  }
  OTTER_CHECK(g.find_value(spec.label) < 0, "the label input name '", spec.label,
              "' is already used by the model; choose another with the label option");
  OTTER_CHECK(is_floating(y.dtype), "the loss output '", y.name, "' is ", dtype_name(y.dtype), "; it must be floating");
  int label = g.add_value(spec.label);
  g.inputs.push_back(label);
  Value& lv = g.values[label];
  lv.shape_known = true;
  info.label = label;
  if (spec.kind == "cross_entropy") {
    OTTER_CHECK(y.shape.size() >= 2, "cross_entropy needs [N, C, ...] scores; output '", y.name, "' is ",
                g.shape_str(y.shape));
    lv.dtype = DType::Int64;
    Shape ls = {y.shape[0]};
    for (size_t i = 2; i < y.shape.size(); ++i) ls.push_back(y.shape[i]);
    lv.shape = ls;
    Attributes a;
    a["reduction"] = Attribute::of_string(spec.reduction);
    if (spec.ignore_index) a["ignore_index"] = Attribute::of_int(*spec.ignore_index);
    int n = g.add_node("SoftmaxCrossEntropyLoss", {out, label}, 1, a, "", g.unique_name("loss/cross_entropy"));
    info.loss = g.nodes[n].outputs[0];
    return info;
  }
  lv.dtype = y.dtype;
  lv.shape = y.shape;
  if (spec.kind == "mse") {
    int d = node_out(g, "Sub", {out, label});
    info.loss = reduce_all(g, node_out(g, "Mul", {d, d}), spec.reduction);
  } else if (spec.kind == "l1") {
    info.loss = reduce_all(g, node_out(g, "Abs", {node_out(g, "Sub", {out, label})}), spec.reduction);
  } else if (spec.kind == "bce_with_logits") {
    // max(x, 0) - x * t + log(1 + exp(-|x|)): stable for large |x|.
    int relu = node_out(g, "Relu", {out});
    int xt = node_out(g, "Mul", {out, label});
    int e = node_out(g, "Exp", {node_out(g, "Neg", {node_out(g, "Abs", {out})})});
    int sp = node_out(g, "Log", {node_out(g, "Add", {e, constant(g, 1.0, y.dtype)})});
    info.loss = reduce_all(g, node_out(g, "Add", {node_out(g, "Sub", {relu, xt}), sp}), spec.reduction);
  } else {
    OTTER_FAIL("unknown loss '", spec.kind, "' (expected none, cross_entropy, mse, l1 or bce_with_logits)");
  }
  return info;
}

}  // namespace otter
