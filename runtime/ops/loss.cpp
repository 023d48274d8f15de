// Losses: SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss (ONNX semantics: class axis 1,
// extra dims, optional class weights, ignore_index, reduction none|sum|mean), and their
// internal gradient ops. The gradient of SoftmaxCrossEntropyLoss reads the log-probabilities,
// so the builder gives the forward node its optional log_prob output when it lacks one.
#include "runtime/ops/op.h"

namespace otter {
namespace {

void infer_class_loss(InferContext& c, bool has_log_prob_output) {
  c.expect_dtype(0, {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16});
  c.expect_dtype(1, {DType::Int64, DType::Int32});
  const Shape& x = c.shape(0);
  const Shape& t = c.shape(1);
  if (x.size() < 2) c.fail(cat("scores must be [N, C, ...], got ", c.dims(x)));
  bool match = t.size() + 1 == x.size();
  for (size_t i = 0; match && i < t.size(); ++i) {
    int64_t xd = x[i == 0 ? 0 : i + 1];
    if (xd >= 0 && t[i] >= 0 && xd != t[i]) match = false;
  }
  if (!match) c.fail(cat("labels ", c.dims(t), " do not match scores ", c.dims(x), " (expected [N, d1, ...])"));
  if (c.has_input(2)) {
    c.expect_same_dtype(0, 2);
    if (c.rank(2) != 1) c.fail("weights must be 1-D [C]");
  }
  std::string reduction = c.node.attr_string("reduction", "mean");
  if (reduction != "mean" && reduction != "sum" && reduction != "none")
    c.fail(cat("unknown reduction '", reduction, "'"));
  c.set_output(0, c.dtype(0), reduction == "none" ? t : Shape{});
  if (has_log_prob_output) c.set_output(1, c.dtype(0), x);
}

void sce_grad(GradContext& g) {
  Node& fwd = g.graph.nodes[static_cast<size_t>(&g.node() - g.graph.nodes.data())];
  if (fwd.outputs.size() < 2 || fwd.outputs[1] < 0) {
    int lp = g.graph.add_value(g.graph.unique_name(fwd.name + ":log_prob"), g.value(fwd.inputs[0]).dtype);
    g.graph.values[lp].producer = static_cast<int>(&fwd - g.graph.nodes.data());
    g.graph.values[lp].shape = g.value(fwd.inputs[0]).shape;
    g.graph.values[lp].shape_known = true;
    fwd.outputs.resize(2, -1);
    fwd.outputs[1] = lp;
  }
  std::vector<int> in = {g.dy(), g.y(1), g.x(1)};
  if (g.x(2) >= 0) in.push_back(g.x(2));
  g.set_dx(0, g.emit("SoftmaxCrossEntropyLossGrad", in, g.node().attrs, "otter"));
}

void nll_grad(GradContext& g) {
  // (dy, target, x, weight?) -> dx; x is read for its shape.
  std::vector<int> in = {g.dy(), g.x(1), g.x(0)};
  if (g.x(2) >= 0) in.push_back(g.x(2));
  g.set_dx(0, g.emit("NegativeLogLikelihoodLossGrad", in, g.node().attrs, "otter"));
}

}  // namespace

void register_loss_ops(OpRegistry& r) {
  OpDef sce;
  sce.op_type = "SoftmaxCrossEntropyLoss";
  sce.infer = [](InferContext& c) { infer_class_loss(c, true); };
  sce.gradient = sce_grad;
  sce.differentiable_inputs = {0};
  r.add(sce);
  OpDef nll;
  nll.op_type = "NegativeLogLikelihoodLoss";
  nll.infer = [](InferContext& c) { infer_class_loss(c, false); };
  nll.gradient = nll_grad;
  nll.differentiable_inputs = {0};
  r.add(nll);
  OpDef sce_g;
  sce_g.domain = "otter";
  sce_g.op_type = "SoftmaxCrossEntropyLossGrad";  // (dy, log_prob, labels, weights?)
  sce_g.infer = [](InferContext& c) { c.set_output(0, c.dtype(1), c.shape(1)); };
  sce_g.kernel_type_input = 1;
  r.add(sce_g);
  OpDef nll_g;
  nll_g.domain = "otter";
  nll_g.op_type = "NegativeLogLikelihoodLossGrad";  // (dy, target, x, weight?)
  nll_g.infer = [](InferContext& c) { c.set_output(0, c.dtype(2), c.shape(2)); };
  nll_g.kernel_type_input = 2;
  r.add(nll_g);

  // Traits (runtime/ops/op.h): the labels index the class dim (1) of the scores.
  for (const char* op : {"SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"}) {
    r.at("", op).index_inputs = {IndexInput{1, 0, "", 1, true}};
    r.at("", op).precision = PrecisionClass::Fp32;
  }
  r.at("otter", "NegativeLogLikelihoodLossGrad").shape_only = shape_only_inputs({2});
}

}  // namespace otter
