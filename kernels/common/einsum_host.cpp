// Host-side resolution of an Einsum node (see einsum_host.h).
#include "kernels/common/einsum_host.h"

#include <string>

namespace otter::einsum {

Problem resolve(const KernelContext& ctx) {
  Problem p;
  std::vector<int64_t> ranks;
  for (size_t i = 0; i < ctx.inputs.size(); ++i) {
    ranks.push_back(ctx.in(i).rank());
    p.shapes.push_back(ctx.in(i).shape());
  }
  p.eq = parse(ctx.node.attr_string("equation", ""), ranks);
  OTTER_CHECK(p.eq.error.empty(), ctx.node.describe(), ": ", p.eq.error);
  std::string err = label_sizes(p.eq, p.shapes, p.size);
  OTTER_CHECK(err.empty(), ctx.node.describe(), ": ", err);
  for (int64_t& s : p.size)
    if (s < 0) s = 1;  // labels that do not occur
  const Tensor& y = ctx.out(0);
  Shape want;
  for (int id : p.eq.output) want.push_back(p.size[static_cast<size_t>(id)]);
  OTTER_CHECK(y.shape() == want, ctx.node.describe(), ": output ", shape_str(y.shape()), " does not match the equation");
  return p;
}

}  // namespace otter::einsum
