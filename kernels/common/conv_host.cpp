// Host-side geometry of the conv op family (see conv_host.h).
#include "kernels/common/conv_host.h"

#include "kernels/common/attributes.h"

namespace otter::conv {

Shape spatial(const Shape& s) { return Shape(s.begin() + 2, s.end()); }

ConvGeometry conv_geometry(const Node& node, const Shape& x, const Shape& w) {
  ConvGeometry g;
  std::vector<int64_t> pads_end;
  g.image = spatial(x);
  g.kernel = spatial(w);
  window_geometry(node, g.image, g.kernel, false, g.strides, g.dilations, g.pads, pads_end, g.grid);
  g.group = node.attr_int("group", 1);
  g.batch = x[0];
  g.image_channels = x[1] / g.group;
  g.grid_channels = w[0] / g.group;
  return g;
}

ConvGeometry conv_transpose_geometry_of(const Node& node, const Shape& x, const Shape& w) {
  ConvGeometry g;
  g.grid = spatial(x);
  g.kernel = spatial(w);
  conv_transpose_geometry(node, g.grid, g.kernel, g.strides, g.dilations, g.pads, g.image);
  g.group = node.attr_int("group", 1);
  g.batch = x[0];
  g.image_channels = w[1];
  g.grid_channels = x[1] / g.group;
  return g;
}

void check_shape(const KernelContext& ctx, const Shape& got, const Shape& want, const char* what) {
  OTTER_CHECK(got == want, ctx.node.describe(), ": ", what, " has shape ", shape_str(got), ", expected ",
              shape_str(want));
}

Call resolve(const KernelContext& ctx) {
  const std::string& op = ctx.node.op_type;
  bool transpose = op.rfind("ConvTranspose", 0) == 0;
  Call c;
  c.out = &ctx.out(0);
  if (op == "Conv" || op == "ConvTranspose") {
    // (X, W, B?) -> Y.
    const Tensor &x = ctx.in(0), &w = ctx.in(1);
    c.geometry = transpose ? conv_transpose_geometry_of(ctx.node, x.shape(), w.shape())
                           : conv_geometry(ctx.node, x.shape(), w.shape());
    check_shape(ctx, spatial(c.out->shape()), transpose ? c.geometry.image : c.geometry.grid, "Y's spatial part");
    c.move = transpose ? Move::Scatter : Move::Correlate;
    c.source = &x;
    c.weight = &w;
    c.bias = ctx.has_input(2) ? &ctx.in(2) : nullptr;
    return c;
  }
  bool input_grad = op == "ConvGradInput" || op == "ConvTransposeGradInput";
  OTTER_CHECK(input_grad || op == "ConvGradWeight" || op == "ConvTransposeGradWeight", ctx.node.describe(),
              ": not an op of the conv family");
  // Input gradients: (dy, W, x) -> dx; weight gradients: (dy, x, W) -> dW.
  const Tensor& dy = ctx.in(0);
  const Tensor& x = ctx.in(input_grad ? 2 : 1);
  const Tensor& w = ctx.in(input_grad ? 1 : 2);
  c.geometry = transpose ? conv_transpose_geometry_of(ctx.node, x.shape(), w.shape())
                         : conv_geometry(ctx.node, x.shape(), w.shape());
  // dy has the forward output's shape: the grid for Conv, the image for ConvTranspose.
  check_shape(ctx, spatial(dy.shape()), transpose ? c.geometry.image : c.geometry.grid, "dy's spatial part");
  if (input_grad) {
    c.move = transpose ? Move::Correlate : Move::Scatter;
    c.source = &dy;
    c.weight = &w;
  } else {
    c.move = Move::WeightGrad;
    c.grid = transpose ? &x : &dy;
    c.image = transpose ? &dy : &x;
  }
  return c;
}

}  // namespace otter::conv
