// The norm op family: BatchNormalization, InstanceNormalization, GroupNormalization and
// LayerNormalization (shape/type inference and gradient builders). Each gradient is one internal
// op that recomputes the statistics from the forward input (nothing is saved between passes):
// otter.BatchNormalizationGrad, otter.LayerNormalizationGrad, otter.InstanceNormalizationGrad and
// otter.GroupNormalizationGrad, each giving dX and the scale/bias gradients.
//
// BatchNormalization in Otter: batch statistics are used only when the node is in training form
// (training_mode = 1, or the opset-9..13 form with saved_mean/saved_var outputs) AND the step
// runs in training (KernelContext::training); evaluation steps use input_mean/input_var, like
// PyTorch's model.eval(), and then the running_mean/running_var outputs are copies of the inputs.
// The scale, bias and statistics may have another floating dtype than X (T vs T1/T2).
#include "runtime/ops/op.h"

namespace otter {
namespace {

const std::initializer_list<DType> kFloats = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};

// Checks that input i is a 1-D tensor of `channels` elements (either may be symbolic).
void expect_channel_vector(InferContext& c, size_t i, const char* what, int64_t channels) {
  c.expect_dtype(i, kFloats);
  if (c.rank(i) != 1) c.fail(cat(what, " must be 1-D [C], got ", c.dims(c.shape(i))));
  int64_t n = c.shape(i)[0];
  if (n >= 0 && channels >= 0 && n != channels)
    c.fail(cat(what, " has ", n, " elements but X has ", channels, " channels"));
}

void expect_nchw(InferContext& c, const char* layout = "[N, C, ...]") {
  c.expect_dtype(0, kFloats);
  if (c.rank(0) < 2) c.fail(cat("X must be ", layout, " (rank >= 2), got ", c.dims(c.shape(0))));
}

// Fails when the gradient of a statistics output (not differentiated by Otter) is needed.
void reject_stat_grads(GradContext& g, const char* what) {
  for (size_t i = 1; i < g.node().outputs.size(); ++i)
    if (g.dy(i) >= 0)
      OTTER_FAIL(g.node().describe(), ": the loss depends on its output ", i, " (", what,
                 "); Otter does not differentiate through normalization statistics");
}

// dy must have X's shape; a dim known on one side only (a gradient's shape is not always fully
// inferred, e.g. after ORT's MaxPoolGrad) is taken as equal.
void expect_dy_like_x(InferContext& c) {
  const Shape& dy = c.shape(0);
  const Shape& x = c.shape(1);
  bool same = dy.size() == x.size();
  for (size_t k = 0; same && k < x.size(); ++k) same = dy[k] == x[k] || dy[k] < 0 || x[k] < 0;
  if (!same) c.fail(cat("dy ", c.dims(dy), " and X ", c.dims(x), " have different shapes"));
}

// ---- BatchNormalization ----

void infer_batch_norm(InferContext& c) {
  expect_nchw(c);
  int64_t channels = c.shape(0)[1];
  const char* names[] = {"X", "scale", "B", "input_mean", "input_var"};
  for (size_t i = 1; i < 5; ++i) expect_channel_vector(c, i, names[i], channels);
  size_t outs = c.node.outputs.size();
  if (c.node.has_attr("training_mode")) {
    int64_t tm = c.node.attr_int("training_mode", 0);
    if (tm != 0 && tm != 1) c.fail(cat("training_mode must be 0 or 1, got ", tm));
    if (outs > 3) c.fail(cat("has ", outs, " outputs; the opset-14+ form has Y, running_mean, running_var"));
  }
  if (outs > 5) c.fail(cat("has ", outs, " outputs; at most 5 (Y, mean, var, saved_mean, saved_var)"));
  double momentum = c.node.attr_float("momentum", 0.9);
  if (!(momentum >= 0.0 && momentum <= 1.0)) c.fail(cat("momentum must be in [0, 1], got ", momentum));
  if (!(c.node.attr_float("epsilon", 1e-5) >= 0.0)) c.fail("epsilon must be >= 0");
  c.set_output(0, c.dtype(0), c.shape(0));
  c.set_output(1, c.dtype(3), c.shape(3));
  c.set_output(2, c.dtype(4), c.shape(4));
  c.set_output(3, c.dtype(3), c.shape(3));
  c.set_output(4, c.dtype(4), c.shape(4));
}

// Training form: training_mode = 1, or (no training_mode attribute: opset <= 13) the five-output
// form whose saved_mean/saved_var outputs mark training mode.
bool batch_norm_training_form(const Node& n) {
  if (n.has_attr("training_mode")) return n.attr_int("training_mode", 0) != 0;
  for (size_t i = 3; i < n.outputs.size(); ++i)
    if (n.outputs[i] >= 0) return true;
  return false;
}

void batch_norm_grad(GradContext& g) {
  reject_stat_grads(g, "running or saved statistics");
  if (g.dy(0) < 0) return;
  Attributes a;
  a["epsilon"] = Attribute::of_float(g.node().attr_float("epsilon", 1e-5));
  a["training_mode"] = Attribute::of_int(batch_norm_training_form(g.node()) ? 1 : 0);
  // (dy, X, scale, input_mean, input_var, B) -> dX, dscale, dB; B only for dB's dtype.
  std::vector<int> out = g.emit_n("BatchNormalizationGrad", {g.dy(0), g.x(0), g.x(1), g.x(3), g.x(4), g.x(2)}, 3, a,
                                  "otter");
  for (int i = 0; i < 3; ++i) g.set_dx(i, out[i]);
}

void infer_batch_norm_grad(InferContext& c) {
  c.expect_dtype(1, kFloats);
  c.expect_same_dtype(0, 1);
  expect_dy_like_x(c);
  c.set_output(0, c.dtype(1), c.shape(1));
  c.set_output(1, c.dtype(2), c.shape(2));
  c.set_output(2, c.has_input(5) ? c.dtype(5) : c.dtype(2), c.shape(2));
}

// ---- LayerNormalization ----

DType stash_dtype(InferContext& c) {
  int64_t s = c.node.attr_int("stash_type", 1);
  switch (s) {
    case 1: return DType::Float32;
    case 10: return DType::Float16;
    case 11: return DType::Float64;
    case 16: return DType::BFloat16;
    default: c.fail(cat("stash_type ", s, " is not a floating type (expected 1 = float)"));
  }
}

// Scale/B must broadcast unidirectionally to X.
void expect_unidirectional(InferContext& c, size_t i, const char* what) {
  c.expect_dtype(i, kFloats);
  const Shape& x = c.shape(0);
  const Shape& s = c.shape(i);
  if (s.size() > x.size())
    c.fail(cat(what, " ", c.dims(s), " has a higher rank than X ", c.dims(x)));
  for (size_t k = 0; k < s.size(); ++k) {
    int64_t d = s[k], xd = x[k + x.size() - s.size()];
    if (d >= 0 && xd >= 0 && d != 1 && d != xd)
      c.fail(cat(what, " ", c.dims(s), " does not broadcast to X ", c.dims(x)));
  }
}

void infer_layer_norm(InferContext& c) {
  c.expect_dtype(0, kFloats);
  if (c.rank(0) == 0) c.fail("X must have rank >= 1");
  int64_t axis = c.axis(c.node.attr_int("axis", -1), c.rank(0));
  expect_unidirectional(c, 1, "Scale");
  if (c.has_input(2)) expect_unidirectional(c, 2, "B");
  if (!(c.node.attr_float("epsilon", 1e-5) >= 0.0)) c.fail("epsilon must be >= 0");
  DType stash = stash_dtype(c);
  Shape stats(c.shape(0).begin(), c.shape(0).begin() + axis);
  stats.resize(c.shape(0).size(), 1);
  c.set_output(0, c.dtype(0), c.shape(0));
  c.set_output(1, stash, stats);
  c.set_output(2, stash, stats);
}

void layer_norm_grad(GradContext& g) {
  reject_stat_grads(g, "Mean or InvStdDev");
  if (g.dy(0) < 0) return;
  Attributes a;
  a["axis"] = Attribute::of_int(g.node().attr_int("axis", -1));
  a["epsilon"] = Attribute::of_float(g.node().attr_float("epsilon", 1e-5));
  bool has_b = g.x(2) >= 0;
  std::vector<int> in = {g.dy(0), g.x(0), g.x(1)};
  if (has_b) in.push_back(g.x(2));
  // (dy, X, Scale, B?) -> dX, dScale, dB (when B is given; B is read only for its shape).
  std::vector<int> out = g.emit_n("LayerNormalizationGrad", in, has_b ? 3 : 2, a, "otter");
  for (size_t i = 0; i < out.size(); ++i) g.set_dx(i, out[i]);
}

void infer_layer_norm_grad(InferContext& c) {
  c.expect_dtype(1, kFloats);
  c.expect_same_dtype(0, 1);
  expect_dy_like_x(c);
  c.axis(c.node.attr_int("axis", -1), c.rank(1));
  c.set_output(0, c.dtype(1), c.shape(1));
  c.set_output(1, c.dtype(2), c.shape(2));
  if (c.has_input(3)) c.set_output(2, c.dtype(3), c.shape(3));
}

// ---- InstanceNormalization, GroupNormalization ----

void infer_instance_norm(InferContext& c) {
  expect_nchw(c);
  int64_t channels = c.shape(0)[1];
  expect_channel_vector(c, 1, "scale", channels);
  expect_channel_vector(c, 2, "B", channels);
  if (!(c.node.attr_float("epsilon", 1e-5) >= 0.0)) c.fail("epsilon must be >= 0");
  c.set_output(0, c.dtype(0), c.shape(0));
}

void infer_group_norm(InferContext& c) {
  expect_nchw(c);
  if (!c.node.has_attr("num_groups")) c.fail("attribute num_groups is required");
  int64_t groups = c.node.attr_int("num_groups", 0);
  if (groups <= 0) c.fail(cat("num_groups must be positive, got ", groups));
  int64_t channels = c.shape(0)[1];
  if (channels >= 0 && channels % groups != 0)
    c.fail(cat("num_groups ", groups, " does not divide the ", channels, " channels"));
  // Opset 21: scale and bias are [C]; opset 18: [num_groups].
  for (size_t i : {size_t(1), size_t(2)}) {
    const char* what = i == 1 ? "scale" : "bias";
    c.expect_dtype(i, kFloats);
    if (c.rank(i) != 1) c.fail(cat(what, " must be 1-D ([C], or [num_groups] in opset 18), got ", c.dims(c.shape(i))));
    int64_t n = c.shape(i)[0];
    if (n >= 0 && channels >= 0 && n != channels && n != groups)
      c.fail(cat(what, " has ", n, " elements; expected C = ", channels, " (or num_groups = ", groups, " in opset 18)"));
  }
  if (c.shape(1)[0] >= 0 && c.shape(2)[0] >= 0 && c.shape(1)[0] != c.shape(2)[0])
    c.fail("scale and bias have different lengths");
  if (!(c.node.attr_float("epsilon", 1e-5) >= 0.0)) c.fail("epsilon must be >= 0");
  int64_t stash = c.node.attr_int("stash_type", 1);
  if (stash != 1 && stash != 10 && stash != 11 && stash != 16)
    c.fail(cat("stash_type ", stash, " is not a floating type (expected 1 = float)"));
  c.set_output(0, c.dtype(0), c.shape(0));
}

// (dy, X, scale, bias) -> dX, dscale, dbias; bias is read only for dbias's dtype and shape.
GradFn channel_norm_grad(const std::string& grad_op) {
  return [grad_op](GradContext& g) {
    if (g.dy(0) < 0) return;
    Attributes a;
    a["epsilon"] = Attribute::of_float(g.node().attr_float("epsilon", 1e-5));
    if (g.node().has_attr("num_groups")) a["num_groups"] = Attribute::of_int(g.node().attr_int("num_groups", 1));
    std::vector<int> out = g.emit_n(grad_op, {g.dy(0), g.x(0), g.x(1), g.x(2)}, 3, a, "otter");
    for (int i = 0; i < 3; ++i) g.set_dx(i, out[i]);
  };
}

void infer_channel_norm_grad(InferContext& c) {
  c.expect_dtype(1, kFloats);
  c.expect_same_dtype(0, 1);
  if (c.shape(0) != c.shape(1)) c.fail("dy and X have different shapes");
  if (c.rank(1) < 2) c.fail("X must have rank >= 2");
  c.set_output(0, c.dtype(1), c.shape(1));
  c.set_output(1, c.dtype(2), c.shape(2));
  c.set_output(2, c.dtype(3), c.shape(3));
}

OpDef grad_def(const std::string& op, InferFn infer) {
  OpDef d;
  d.domain = "otter";
  d.op_type = op;
  d.infer = std::move(infer);
  d.kernel_type_input = 1;  // X
  return d;
}

}  // namespace

void register_norm_ops(OpRegistry& r) {
  OpDef bn;
  bn.op_type = "BatchNormalization";
  bn.since_version = 9;
  bn.infer = infer_batch_norm;
  bn.gradient = batch_norm_grad;
  bn.differentiable_inputs = {0, 1, 2};
  r.add(bn);
  r.add(grad_def("BatchNormalizationGrad", infer_batch_norm_grad));

  OpDef ln;
  ln.op_type = "LayerNormalization";
  ln.since_version = 17;
  ln.infer = infer_layer_norm;
  ln.gradient = layer_norm_grad;
  ln.differentiable_inputs = {0, 1, 2};
  r.add(ln);
  r.add(grad_def("LayerNormalizationGrad", infer_layer_norm_grad));

  OpDef in;
  in.op_type = "InstanceNormalization";
  in.since_version = 6;
  in.infer = infer_instance_norm;
  in.gradient = channel_norm_grad("InstanceNormalizationGrad");
  in.differentiable_inputs = {0, 1, 2};
  r.add(in);
  r.add(grad_def("InstanceNormalizationGrad", infer_channel_norm_grad));

  OpDef gn;
  gn.op_type = "GroupNormalization";
  gn.since_version = 18;
  gn.infer = infer_group_norm;
  gn.gradient = channel_norm_grad("GroupNormalizationGrad");
  gn.differentiable_inputs = {0, 1, 2};
  r.add(gn);
  r.add(grad_def("GroupNormalizationGrad", [](InferContext& c) {
    infer_channel_norm_grad(c);
    if (c.node.attr_int("num_groups", 0) <= 0) c.fail("num_groups must be positive");
  }));

  // Traits (runtime/ops/op.h).
  for (const char* op : {"LayerNormalization", "GroupNormalization", "InstanceNormalization"})
    r.at("", op).precision = PrecisionClass::Fp32;
}

}  // namespace otter
