// Softmax and LogSoftmax over one axis (opset-13 semantics; default axis -1). Their gradients
// are otter.SoftmaxGrad (dx = y * (dy - sum(dy * y))) and otter.LogSoftmaxGrad
// (dx = dy - exp(y) * sum(dy)), both over the same axis.
#include "runtime/ops/op.h"

namespace otter {

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
      g.set_dx(0, g.emit(grad_op, {g.dy(), g.y(0)}, a, "otter"));
    };
    r.add(d);
    OpDef gd;
    gd.domain = "otter";
    gd.op_type = grad_op;
    gd.infer = infer_same_as_input0;
    r.add(gd);
  }
}

}  // namespace otter
