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

}  // namespace otter::conv
