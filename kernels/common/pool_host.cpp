// Host-side window geometry of the pool ops (see pool_host.h).
#include "kernels/common/pool_host.h"

#include "kernels/common/attributes.h"

namespace otter::pool {

PoolWindow pool_window(const Node& node, const Shape& x, const Shape& y_expected) {
  PoolWindow w;
  w.in = Shape(x.begin() + 2, x.end());
  w.kernel = node.attr_ints("kernel_shape");
  window_geometry(node, w.in, w.kernel, true, w.strides, w.dilations, w.pads_begin, w.pads_end, w.out);
  Shape want = {x[0], x[1]};
  want.insert(want.end(), w.out.begin(), w.out.end());
  OTTER_CHECK(want == y_expected, node.describe(), ": output shape ", shape_str(y_expected), ", expected ",
              shape_str(want));
  return w;
}

}  // namespace otter::pool
