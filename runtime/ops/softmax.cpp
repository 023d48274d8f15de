// Softmax and LogSoftmax over one axis (opset-13 semantics; default axis -1). Their gradients
// are otter.SoftmaxGrad (dx = y * (dy - sum(dy * y))) and otter.LogSoftmaxGrad
// (dx = dy - exp(y) * sum(dy)), both over the same axis.
//
// Mixed precision: Softmax is computed and stored in FP32 (autocast's fp32 class). When the
// policy also keeps a low-precision copy of y (a Cast to FP16/BF16 for the next MatMul, whose
// gradient keeps it; possibly after a Dropout with ratio 0), SoftmaxGrad reads that copy, still
// computing in FP32 (the CPU plan widens it), so that the FP32 y is freed after the Cast instead
// of being held through the backward pass next to its copy: one saved activation instead of two.
// y in [0, 1] rounds with a relative error below 2^-11 (FP16) or 2^-8 (BF16), the error the
// MatMul's gradient already sees.
#include "runtime/ops/op.h"

namespace otter {
namespace {

// Whether value v is a constant scalar 0 (an initializer or a Constant node's output).
bool constant_zero(const Graph& g, int v) {
  if (v < 0) return false;
  const Tensor* t = g.values[v].data.defined() ? &g.values[v].data : nullptr;
  int p = g.values[v].producer;
  if (!t && p >= 0 && g.nodes[p].domain.empty() && g.nodes[p].op_type == "Constant") t = g.nodes[p].attr_tensor("value");
  return t && t->defined() && t->numel() == 1 && t->to_double_vector()[0] == 0.0;
}

// The low-precision copy of `y` made by a forward Cast, or `y` itself when there is none. The
// Cast may read y through ops that are the identity (Identity, Dropout with ratio 0).
int low_precision_copy(const Graph& g, int y) {
  if (g.values[y].dtype != DType::Float32) return y;
  std::vector<int> same = {y};
  for (size_t k = 0; k < same.size(); ++k)
    for (const Node& n : g.nodes) {
      if (!n.domain.empty() || n.inputs.empty() || n.input(0) != same[k] || n.outputs.empty() || n.outputs[0] < 0) continue;
      int out = n.outputs[0];
      DType t = g.values[out].dtype;
      if (n.op_type == "Cast" && (t == DType::Float16 || t == DType::BFloat16)) return out;
      bool identity = n.op_type == "Identity" || (n.op_type == "Dropout" && constant_zero(g, n.input(1)));
      if (identity && t == DType::Float32) same.push_back(out);
    }
  return y;
}

}  // namespace

void register_softmax_ops(OpRegistry& r) {
  for (const char* op : {"Softmax", "LogSoftmax"}) {
    OpDef d;
    d.op_type = op;
    d.infer = [](InferContext& c) {
      c.expect_dtype(0, {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16});
      if (c.rank(0) == 0) c.fail("input must have rank >= 1");
      c.axis(c.node.attr_int("axis", -1), c.rank(0));
      infer_same_as_input0(c);
    };
    std::string grad_op = std::string(op) + "Grad";
    d.gradient = [grad_op](GradContext& g) {
      Attributes a;
      a["axis"] = Attribute::of_int(g.node().attr_int("axis", -1));
      bool softmax = grad_op == "SoftmaxGrad";
      g.set_dx(0, g.emit(grad_op, {g.dy(), softmax ? low_precision_copy(g.graph, g.y(0)) : g.y(0)}, a, "otter"));
    };
    r.add(d);
    OpDef gd;
    gd.domain = "otter";
    gd.op_type = grad_op;
    gd.infer = infer_same_as_input0;
    r.add(gd);
  }

  // Traits (runtime/ops/op.h).
  for (const char* op : {"Softmax", "LogSoftmax"}) r.at("", op).precision = PrecisionClass::Fp32;
}

}  // namespace otter
