// The pool op family: MaxPool (kernel_shape, strides, pads, auto_pad, dilations, ceil_mode,
// storage_order, the optional Indices output), AveragePool (the same plus count_include_pad),
// GlobalAveragePool and GlobalMaxPool, and the internal ops their gradients use:
//   otter.MaxPoolGrad(dy, indices, x)       scatters dy to the argmax of each window: the
//                                           model's int64 Indices output when it has one, else
//   otter.MaxPoolArgmax(x)                  the int32 argmax of each window (row-major offset in
//                                           its plane, MaxPool's attributes): half the bytes of
//                                           int64 Indices, and the plan can compute it late, next
//                                           to the backward, when x is kept for another reason
//   otter.AveragePoolGrad(dy, x)            spreads dy over each window (same divisor)
//   otter.GlobalAveragePoolGrad(dy, x)      dy / (spatial size), broadcast
//   otter.GlobalMaxPoolGrad(dy, x)          dy at the first maximum of each channel
// x is read for its shape (and, for GlobalMaxPoolGrad, its values). The window geometry is the
// window_geometry of kernels/common/attributes.h.
#include "kernels/common/attributes.h"
#include "runtime/ops/op.h"

namespace otter {

namespace {

const std::initializer_list<DType> kFloat = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};

// MaxPool / AveragePool: X [N, C, d...] -> Y [N, C, o...] (and MaxPool's Indices, int64);
// `argmax`: otter.MaxPoolArgmax, whose only output is the int32 argmax shaped like Y.
void infer_pool(InferContext& c, bool max, bool argmax = false) {
  if (max)
    c.expect_dtype(0, {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int8, DType::Uint8});
  else c.expect_dtype(0, kFloat);
  const Shape& x = c.shape(0);
  if (x.size() < 3) c.fail(cat("X must be [N, C, spatial...] (rank >= 3), got ", c.dims(x)));
  std::vector<int64_t> kernel = c.node.attr_ints("kernel_shape");
  if (kernel.empty()) c.fail("the kernel_shape attribute is required");
  if (kernel.size() != x.size() - 2)
    c.fail(cat("kernel_shape has ", kernel.size(), " values but X ", c.dims(x), " has ", x.size() - 2,
               " spatial dims"));
  for (int64_t k : kernel)
    if (k < 1) c.fail(cat("kernel_shape values must be >= 1, got ", k));
  if (max) {
    int64_t order = c.node.attr_int("storage_order", 0);
    if (order != 0 && order != 1) c.fail(cat("storage_order must be 0 or 1, got ", order));
  } else {
    int64_t cip = c.node.attr_int("count_include_pad", 0);
    if (cip != 0 && cip != 1) c.fail(cat("count_include_pad must be 0 or 1, got ", cip));
  }
  std::vector<int64_t> strides, dilations, pb, pe, out;
  window_geometry(c.node, Shape(x.begin() + 2, x.end()), kernel, true, strides, dilations, pb, pe, out);
  for (size_t i = 0; i < out.size(); ++i) {
    int64_t window = (kernel[i] - 1) * dilations[i] + 1;
    if (pb[i] >= window || pe[i] >= window)
      c.fail(cat("pads ", pb[i], "+", pe[i], " along spatial dim ", i, " must be smaller than the window ", window,
                 " (a window would see only padding)"));
  }
  Shape y = {x[0], x[1]};
  for (int64_t o : out) y.push_back(o < 0 ? c.unknown_dim() : o);
  if (argmax) {
    c.set_output(0, DType::Int32, y);
    return;
  }
  c.set_output(0, c.dtype(0), y);
  if (max) c.set_output(1, DType::Int64, y);
}

void infer_global_pool(InferContext& c) {
  c.expect_dtype(0, kFloat);
  const Shape& x = c.shape(0);
  if (x.size() < 3) c.fail(cat("X must be [N, C, spatial...] (rank >= 3), got ", c.dims(x)));
  Shape y = {x[0], x[1]};
  y.resize(x.size(), 1);
  c.set_output(0, c.dtype(0), y);
}

void max_pool_grad(GradContext& g) {
  // The gradient needs the argmax: the model's Indices output, or otter.MaxPoolArgmax of x.
  // Copies, not references: emit() appends nodes and may reallocate the graph's node list.
  const Attributes fwd_attrs = g.node().attrs;
  const bool has_indices = g.node().outputs.size() >= 2 && g.node().outputs[1] >= 0;
  const int64_t storage_order = g.node().attr_int("storage_order", 0);
  int indices = has_indices ? g.y(1) : g.emit("MaxPoolArgmax", {g.x(0)}, fwd_attrs, "otter");
  // The forward node's window attributes travel with the gradient op: the CUDA kernel gathers by
  // window (deterministic, no atomics); the CPU reads only storage_order.
  Attributes a = fwd_attrs;
  a["storage_order"] = Attribute::of_int(storage_order);
  g.set_dx(0, g.emit("MaxPoolGrad", {g.dy(), indices, g.x(0)}, a, "otter"));
}

OpDef def(const std::string& op, InferFn infer, GradFn grad) {
  OpDef d;
  d.op_type = op;
  d.infer = std::move(infer);
  d.gradient = std::move(grad);
  d.differentiable_inputs = {0};
  return d;
}

// Internal gradient ops: dtype of dy, shape of x (input `shape_input`).
OpDef internal(const std::string& op, size_t shape_input) {
  OpDef d;
  d.domain = "otter";
  d.op_type = op;
  d.infer = [shape_input](InferContext& c) {
    c.expect_dtype(0, kFloat);
    c.expect_same_dtype(0, shape_input);
    if (c.rank(0) != c.rank(shape_input))
      c.fail(cat("dy ", c.dims(c.shape(0)), " and x ", c.dims(c.shape(shape_input)), " must have the same rank"));
    c.set_output(0, c.dtype(0), c.shape(shape_input));
  };
  return d;
}

}  // namespace

void register_pool_ops(OpRegistry& r) {
  r.add(def("MaxPool", [](InferContext& c) { infer_pool(c, true); }, max_pool_grad));
  r.add(def("AveragePool", [](InferContext& c) { infer_pool(c, false); }, [](GradContext& g) {
    g.set_dx(0, g.emit("AveragePoolGrad", {g.dy(), g.x(0)}, g.node().attrs, "otter"));
  }));
  r.add(def("GlobalAveragePool", infer_global_pool, [](GradContext& g) {
    g.set_dx(0, g.emit("GlobalAveragePoolGrad", {g.dy(), g.x(0)}, {}, "otter"));
  }));
  r.add(def("GlobalMaxPool", infer_global_pool, [](GradContext& g) {
    g.set_dx(0, g.emit("GlobalMaxPoolGrad", {g.dy(), g.x(0)}, {}, "otter"));
  }));
  {
    OpDef d = internal("MaxPoolGrad", 2);  // (dy, indices, x) -> dx
    d.infer = [](InferContext& c) {
      c.expect_dtype(0, kFloat);
      c.expect_dtype(1, {DType::Int64, DType::Int32});
      if (c.shape(0).size() != c.shape(1).size()) c.fail("dy and indices must have the same shape");
      c.set_output(0, c.dtype(0), c.shape(2));
    };
    r.add(d);
  }
  {
    OpDef d;  // (x) -> int32 argmax, MaxPool's attributes; not differentiable
    d.domain = "otter";
    d.op_type = "MaxPoolArgmax";
    d.infer = [](InferContext& c) { infer_pool(c, true, true); };
    r.add(d);
  }
  r.add(internal("AveragePoolGrad", 1));        // (dy, x) -> dx
  r.add(internal("GlobalAveragePoolGrad", 1));  // (dy, x) -> dx
  r.add(internal("GlobalMaxPoolGrad", 1));      // (dy, x) -> dx

  // Traits (runtime/ops/op.h).
  r.at("otter", "MaxPoolGrad").shape_only = shape_only_inputs({2});
  for (const char* op : {"AveragePoolGrad", "GlobalAveragePoolGrad"}) r.at("otter", op).shape_only = shape_only_inputs({1});
}

}  // namespace otter
