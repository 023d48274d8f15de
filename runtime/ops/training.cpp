// The ONNX training ops (domain ai.onnx.preview.training, opset 1; docs/training-graphs.md):
//  - Adam, Adagrad, Momentum: optimizer updates of one or several tensors at once, inputs
//    (R, T, X_1..X_n, G_1..G_n, state_1..) -> (X_new_1..X_new_n, state_new_1..); R is the scalar
//    learning rate, T the int64 scalar step count. Not differentiable; FP32/FP64 kernels only (a
//    training graph's algorithm nodes always compute in FP32: PrecisionPolicy::fp32_nodes).
//  - Gradient: dy/dx for the named xs (attributes xs, y, zs). It has no kernel: the pass of
//    runtime/passes/gradient_op.h replaces it with Otter's own backward nodes (autodiff) before a
//    graph is planned. Its inference gives output i the dtype and shape of xs[i].
#include "runtime/ops/op.h"

namespace otter {
namespace {

constexpr const char* kTraining = "ai.onnx.preview.training";

// Checks the variadic layout of an optimizer node: `per_tensor` groups of n inputs after R and T,
// `outputs_per_tensor` groups of n outputs; every group's tensor i has X_i's dtype and shape.
void infer_optimizer(InferContext& c, size_t per_tensor, size_t outputs_per_tensor) {
  const size_t inputs = c.num_inputs();
  if (inputs < 2 + per_tensor || (inputs - 2) % per_tensor != 0)
    c.fail(cat("expects R, T and ", per_tensor, " inputs per optimized tensor (X..., G...", per_tensor > 2 ? ", state..." : "",
               "), got ", inputs, " inputs"));
  const size_t n = (inputs - 2) / per_tensor;
  if (c.node.outputs.size() != n * outputs_per_tensor)
    c.fail(cat("optimizes ", n, " tensor(s), so it has ", n * outputs_per_tensor, " outputs; it has ", c.node.outputs.size()));
  c.expect_dtype(0, {DType::Float32, DType::Float64});
  if (c.rank(0) != 0) c.fail(cat("R (the learning rate) must be a scalar, got shape ", c.dims(c.shape(0))));
  c.expect_dtype(1, {DType::Int64});
  if (c.rank(1) != 0) c.fail(cat("T (the step count) must be a scalar, got shape ", c.dims(c.shape(1))));
  for (size_t i = 0; i < n; ++i) {
    const size_t x = 2 + i;
    c.expect_dtype(x, {DType::Float32, DType::Float64});
    for (size_t k = 1; k < per_tensor; ++k) {
      const size_t j = 2 + k * n + i;
      c.expect_same_dtype(x, j);
      const Shape& a = c.shape(x);
      const Shape& b = c.shape(j);
      bool same = a.size() == b.size();
      for (size_t d = 0; same && d < a.size(); ++d) same = a[d] < 0 || b[d] < 0 || a[d] == b[d];
      if (!same) c.fail(cat("input ", j, " has shape ", c.dims(b), " but the tensor it belongs to (input ", x, ") has ", c.dims(a)));
    }
    for (size_t k = 0; k < outputs_per_tensor; ++k) c.set_output(k * n + i, c.dtype(x), c.shape(x));
  }
}

void check_float_attr(const InferContext& c, const char* name, bool required) {
  auto it = c.node.attrs.find(name);
  if (it == c.node.attrs.end()) {
    if (required) c.fail(cat("attribute '", name, "' is required"));
    return;
  }
  if (it->second.kind != Attribute::Kind::Float && it->second.kind != Attribute::Kind::Int)
    c.fail(cat("attribute '", name, "' must be a float"));
}

}  // namespace

void register_training_ops(OpRegistry& r) {
  OpDef adam;
  adam.domain = kTraining;
  adam.op_type = "Adam";
  adam.infer = [](InferContext& c) {
    for (const char* a : {"alpha", "beta", "epsilon", "norm_coefficient", "norm_coefficient_post"}) check_float_attr(c, a, false);
    infer_optimizer(c, 4, 3);  // X, G, V, H -> X_new, V_new, H_new
  };
  adam.kernel_type_input = 2;  // X_1 (R may be another float type)
  r.add(adam);

  OpDef adagrad;
  adagrad.domain = kTraining;
  adagrad.op_type = "Adagrad";
  adagrad.infer = [](InferContext& c) {
    for (const char* a : {"decay_factor", "epsilon", "norm_coefficient"}) check_float_attr(c, a, false);
    infer_optimizer(c, 3, 2);  // X, G, H -> X_new, H_new
  };
  adagrad.kernel_type_input = 2;
  r.add(adagrad);

  OpDef momentum;
  momentum.domain = kTraining;
  momentum.op_type = "Momentum";
  momentum.infer = [](InferContext& c) {
    for (const char* a : {"alpha", "beta", "norm_coefficient"}) check_float_attr(c, a, true);
    std::string mode = c.node.attr_string("mode", "");
    if (mode != "standard" && mode != "nesterov")
      c.fail(cat("attribute 'mode' must be \"standard\" or \"nesterov\", got \"", mode, "\""));
    infer_optimizer(c, 3, 2);  // X, G, V -> X_new, V_new
  };
  momentum.kernel_type_input = 2;
  r.add(momentum);

  OpDef gradient;
  gradient.domain = kTraining;
  gradient.op_type = "Gradient";
  gradient.graph_level = true;
  gradient.infer = [](InferContext& c) {
    auto xs = c.node.attrs.find("xs");
    if (xs == c.node.attrs.end() || xs->second.kind != Attribute::Kind::Strings || xs->second.strings.empty())
      c.fail("attribute 'xs' (the names of the tensors to differentiate by) is required");
    auto y = c.node.attrs.find("y");
    if (y == c.node.attrs.end() || y->second.kind != Attribute::Kind::String || y->second.s.empty())
      c.fail("attribute 'y' (the name of the tensor to differentiate) is required");
    const size_t n = xs->second.strings.size();
    if (c.node.outputs.size() != n) c.fail(cat("has ", c.node.outputs.size(), " outputs for ", n, " xs"));
    if (c.num_inputs() < n) c.fail(cat("has ", c.num_inputs(), " inputs; the first ", n, " must be the xs"));
    for (size_t i = 0; i < n; ++i) {
      c.expect_dtype(i, {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16});
      c.set_output(i, c.dtype(i), c.shape(i));
    }
  };
  r.add(gradient);
}

}  // namespace otter
