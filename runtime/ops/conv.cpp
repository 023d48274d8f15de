// The conv op family: Conv and ConvTranspose (1-D, 2-D, 3-D and beyond; group, including
// depthwise; strides, dilations, pads, auto_pad NOTSET/SAME_UPPER/SAME_LOWER/VALID; optional
// bias; kernel_shape taken from W; ConvTranspose's output_padding and output_shape), and the
// internal ops their gradients use:
//   otter.ConvGradInput(dy, W, x)            -> dx of Conv (x read for its shape only)
//   otter.ConvGradWeight(dy, x, W)           -> dW of Conv (W read for its shape only)
//   otter.ConvTransposeGradInput(dy, W, x)   -> dx of ConvTranspose when its pads depend on
//                                               run-time shapes (otherwise dx is a plain Conv)
//   otter.ConvTransposeGradWeight(dy, x, W)  -> dW of ConvTranspose
// Each internal op carries the forward node's attributes and resolves the same geometry from its
// inputs' run-time shapes. The bias gradient is ReduceSum over the batch and spatial axes.
//
// The sliding-window geometry (output dims and begin pads from strides, dilations, pads and
// auto_pad, with the pools' ceil_mode) is kernels/common/attributes.h's window_geometry and
// conv_transpose_geometry, shared with the pool family and the kernels.
#include <algorithm>

#include "kernels/common/attributes.h"
#include "runtime/ops/op.h"

namespace otter {

namespace {

std::vector<int64_t> ints_or(const Node& node, const char* key, size_t n, int64_t fallback) {
  std::vector<int64_t> v = node.attr_ints(key);
  if (v.empty()) v.assign(n, fallback);
  return v;
}

const std::initializer_list<DType> kFloat = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};

// Checks the kernel_shape attribute (optional) against W's spatial dims.
void check_kernel_shape(const InferContext& c, const Shape& w_spatial) {
  std::vector<int64_t> ks = c.node.attr_ints("kernel_shape");
  if (ks.empty()) return;
  if (ks.size() != w_spatial.size())
    c.fail(cat("kernel_shape has ", ks.size(), " values but W has ", w_spatial.size(), " spatial dims"));
  for (size_t i = 0; i < ks.size(); ++i)
    if (w_spatial[i] >= 0 && ks[i] != w_spatial[i])
      c.fail(cat("kernel_shape ", shape_str(ks), " does not match W's spatial dims ", c.dims(w_spatial)));
}

int64_t read_group(const InferContext& c) {
  int64_t group = c.node.attr_int("group", 1);
  if (group < 1) c.fail(cat("group must be >= 1, got ", group));
  return group;
}

void check_conv_inputs(const InferContext& c) {
  c.expect_dtype(0, kFloat);
  c.expect_same_dtype(0, 1);
  if (c.rank(0) < 3) c.fail(cat("X must be [N, C, spatial...] (rank >= 3), got ", c.dims(c.shape(0))));
  if (c.rank(1) != c.rank(0))
    c.fail(cat("W ", c.dims(c.shape(1)), " must have the rank of X ", c.dims(c.shape(0))));
}

void check_bias(const InferContext& c, int64_t channels) {
  if (!c.has_input(2)) return;
  c.expect_same_dtype(0, 2);
  if (c.rank(2) != 1) c.fail(cat("B must be 1-D, got ", c.dims(c.shape(2))));
  int64_t b = c.shape(2)[0];
  if (b >= 0 && channels >= 0 && b != channels)
    c.fail(cat("B has ", b, " values for ", channels, " output channels"));
}

Shape spatial_of(const Shape& s) { return Shape(s.begin() + 2, s.end()); }

// Conv: X [N, C, d...], W [M, C/group, k...], B [M] -> Y [N, M, o...].
void infer_conv(InferContext& c) {
  check_conv_inputs(c);
  const Shape &x = c.shape(0), &w = c.shape(1);
  int64_t group = read_group(c);
  int64_t channels = x[1], m = w[0], cg = w[1];
  if (channels >= 0 && channels % group != 0)
    c.fail(cat("X has ", channels, " channels, not divisible by group ", group));
  if (m >= 0 && m % group != 0) c.fail(cat("W has ", m, " output channels, not divisible by group ", group));
  if (channels >= 0 && cg >= 0 && cg * group != channels)
    c.fail(cat("channels mismatch: X ", c.dims(x), " has ", channels, " channels but W ", c.dims(w), " expects ", cg,
               " x group ", group));
  check_bias(c, m);
  check_kernel_shape(c, spatial_of(w));
  std::vector<int64_t> strides, dilations, pb, pe, out;
  window_geometry(c.node, spatial_of(x), spatial_of(w), false, strides, dilations, pb, pe, out);
  Shape y = {x[0], m};
  for (int64_t o : out) y.push_back(o < 0 ? c.unknown_dim() : o);
  c.set_output(0, c.dtype(0), y);
}

// ConvTranspose: X [N, C, d...], W [C, M/group, k...], B [M] -> Y [N, M, o...].
void infer_conv_transpose(InferContext& c) {
  check_conv_inputs(c);
  const Shape &x = c.shape(0), &w = c.shape(1);
  int64_t group = read_group(c);
  int64_t channels = x[1];
  if (channels >= 0 && channels % group != 0)
    c.fail(cat("X has ", channels, " channels, not divisible by group ", group));
  if (channels >= 0 && w[0] >= 0 && w[0] != channels)
    c.fail(cat("channels mismatch: X ", c.dims(x), " has ", channels, " channels but W ", c.dims(w), " has ", w[0]));
  int64_t m = w[1] >= 0 ? w[1] * group : c.unknown_dim();
  check_bias(c, w[1] >= 0 ? m : -1);
  check_kernel_shape(c, spatial_of(w));
  std::vector<int64_t> strides, dilations, pb, out;
  conv_transpose_geometry(c.node, spatial_of(x), spatial_of(w), strides, dilations, pb, out);
  Shape y = {x[0], m};
  for (int64_t o : out) y.push_back(o < 0 ? c.unknown_dim() : o);
  c.set_output(0, c.dtype(0), y);
}

// dB = ReduceSum(dy) over the batch and spatial axes.
int bias_grad(GradContext& g, int64_t rank) {
  std::vector<int64_t> axes = {0};
  for (int64_t i = 2; i < rank; ++i) axes.push_back(i);
  Attributes a;
  a["keepdims"] = Attribute::of_int(0);
  return g.emit("ReduceSum", {g.dy(), g.constant_int64s(axes)}, a);
}

int64_t forward_rank(GradContext& g) {
  int64_t r = g.rank(g.x(1));
  return r > 0 ? r : g.rank(g.x(0));
}

void conv_grad(GradContext& g) {
  Attributes a = g.node().attrs;  // copied: emitting nodes may move the forward node
  int64_t rank = forward_rank(g);
  if (g.wants(0)) g.set_dx(0, g.emit("ConvGradInput", {g.dy(), g.x(1), g.x(0)}, a, "otter"));
  if (g.wants(1)) g.set_dx(1, g.emit("ConvGradWeight", {g.dy(), g.x(0), g.x(1)}, a, "otter"));
  if (g.x(2) >= 0 && g.wants(2)) g.set_dx(2, bias_grad(g, rank));
}

// ConvTranspose's dx is a Conv of dy with the same W, strides, dilations, pads and group when
// its pads are fixed (no auto_pad SAME, no output_shape, output_padding < strides); otherwise
// the internal op resolves them from the run-time shapes.
void conv_transpose_grad(GradContext& g) {
  Attributes a = g.node().attrs;
  const Node& n = g.node();
  int64_t rank = forward_rank(g);
  size_t d = rank >= 2 ? static_cast<size_t>(rank - 2) : 0;
  std::string auto_pad = n.attr_string("auto_pad", "NOTSET");
  bool fixed = (auto_pad == "NOTSET" || auto_pad == "VALID" || auto_pad.empty()) && n.attr_ints("output_shape").empty();
  std::vector<int64_t> strides = ints_or(n, "strides", d, 1), out_pad = ints_or(n, "output_padding", d, 0);
  for (size_t i = 0; fixed && i < d && i < strides.size() && i < out_pad.size(); ++i)
    if (out_pad[i] >= strides[i]) fixed = false;
  if (g.wants(0)) {
    if (fixed) {
      Attributes c;
      for (const char* key : {"strides", "dilations", "group"})
        if (a.count(key)) c[key] = a.at(key);
      if (auto_pad != "VALID" && a.count("pads")) c["pads"] = a.at("pads");
      g.set_dx(0, g.emit("Conv", {g.dy(), g.x(1)}, c));
    } else {
      g.set_dx(0, g.emit("ConvTransposeGradInput", {g.dy(), g.x(1), g.x(0)}, a, "otter"));
    }
  }
  if (g.wants(1)) g.set_dx(1, g.emit("ConvTransposeGradWeight", {g.dy(), g.x(0), g.x(1)}, a, "otter"));
  if (g.x(2) >= 0 && g.wants(2)) g.set_dx(2, bias_grad(g, rank));
}

// Internal gradient ops: the output takes the dtype of dy and the shape of the input read for
// its shape.
OpDef internal(const std::string& op, size_t shape_input) {
  OpDef d;
  d.domain = "otter";
  d.op_type = op;
  d.infer = [shape_input](InferContext& c) {
    c.expect_dtype(0, kFloat);
    for (size_t i = 1; i < 3; ++i) c.expect_same_dtype(0, i);
    if (c.rank(0) != c.rank(1) || c.rank(0) != c.rank(2) || c.rank(0) < 3)
      c.fail(cat("inputs must share one rank >= 3, got ", c.dims(c.shape(0)), ", ", c.dims(c.shape(1)), ", ",
                 c.dims(c.shape(2))));
    c.set_output(0, c.dtype(0), c.shape(shape_input));
  };
  return d;
}

}  // namespace

void register_conv_ops(OpRegistry& r) {
  OpDef conv;
  conv.op_type = "Conv";
  conv.infer = infer_conv;
  conv.gradient = conv_grad;
  conv.differentiable_inputs = {0, 1, 2};
  r.add(conv);
  OpDef convt;
  convt.op_type = "ConvTranspose";
  convt.infer = infer_conv_transpose;
  convt.gradient = conv_transpose_grad;
  convt.differentiable_inputs = {0, 1, 2};
  r.add(convt);
  r.add(internal("ConvGradInput", 2));            // (dy, W, x) -> dx
  r.add(internal("ConvGradWeight", 2));           // (dy, x, W) -> dW
  r.add(internal("ConvTransposeGradInput", 2));   // (dy, W, x) -> dx
  r.add(internal("ConvTransposeGradWeight", 2));  // (dy, x, W) -> dW

  // Traits (runtime/ops/op.h).
  for (const char* op : {"ConvGradInput", "ConvGradWeight", "ConvTransposeGradInput", "ConvTransposeGradWeight"})
    r.at("otter", op).shape_only = shape_only_inputs({2});
  for (const char* op : {"Conv", "ConvTranspose"}) r.at("", op).precision = PrecisionClass::Lower;
}

}  // namespace otter
