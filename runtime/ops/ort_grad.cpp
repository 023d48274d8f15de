// ONNX Runtime's gradient ops that ORT training artifacts use and that Otter runs through its own
// gradient builders (docs/training-graphs.md, "ONNX Runtime artifacts"): com.microsoft ConvGrad
// (dY, X, W) -> (dX, dW, dB) and MaxPoolGrad (dY, Indices) -> dX (ORT writes the latter without a
// domain; the importer, onnx_import/ort_artifacts.cpp, files it under com.microsoft). Both are
// graph-level (no kernel): runtime/passes/ort_grad_ops.h replaces each with the backward nodes of
// its forward node (the Conv reading X and W, the MaxPool whose Indices it reads), built by that
// op's Otter gradient builder. Their inference only gives the outputs' types and ranks.
#include "runtime/ops/op.h"

namespace otter {

void register_ort_grad_ops(OpRegistry& r) {
  OpDef conv;
  conv.domain = "com.microsoft";
  conv.op_type = "ConvGrad";
  conv.graph_level = true;
  conv.infer = [](InferContext& c) {
    if (c.num_inputs() != 3) c.fail("expects (dY, X, W)");
    c.set_output(0, c.dtype(1), c.shape(1));
    c.set_output(1, c.dtype(2), c.shape(2));
    if (c.rank(2) < 1) c.fail("W must have rank >= 1");
    c.set_output(2, c.dtype(2), Shape{c.shape(2)[0]});
  };
  r.add(conv);

  OpDef pool;
  pool.domain = "com.microsoft";
  pool.op_type = "MaxPoolGrad";
  pool.graph_level = true;
  pool.infer = [](InferContext& c) {
    if (c.num_inputs() != 2) c.fail("expects (dY, Indices)");
    Shape s(static_cast<size_t>(c.rank(0)));
    for (size_t k = 0; k < s.size(); ++k) s[k] = k < 2 ? c.shape(0)[k] : c.unknown_dim();  // X's spatial dims
    c.set_output(0, c.dtype(0), s);
  };
  r.add(pool);
}

}  // namespace otter
