// Host-side parameter resolution of the shape family (see shape_host.h).
#include "kernels/common/shape_host.h"

#include <algorithm>
#include <cstring>

namespace otter::shape {

std::vector<int64_t> transpose_strides(const KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  std::vector<int64_t> perm = ctx.node.attr_ints("perm");
  if (!ctx.node.has_attr("perm"))
    for (int64_t k = x.rank() - 1; k >= 0; --k) perm.push_back(k);
  OTTER_CHECK(static_cast<int64_t>(perm.size()) == x.rank(), ctx.node.describe(), ": perm does not match rank ", x.rank());
  std::vector<int64_t> in_strides = shape_strides(x.shape()), strides;
  for (int64_t p : perm) {
    OTTER_CHECK(p >= 0 && p < x.rank(), ctx.node.describe(), ": perm entry ", p, " is out of range");
    strides.push_back(in_strides[p]);
  }
  return strides;
}

std::vector<int64_t> shape_dims(const KernelContext& ctx) {
  const Shape& s = ctx.in(0).shape();
  int64_t rank = static_cast<int64_t>(s.size());
  auto clamp = [rank](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + rank : v, 0, rank); };
  int64_t b = clamp(ctx.node.attr_int("start", 0)), e = std::max(b, clamp(ctx.node.attr_int("end", rank)));
  const Tensor& y = ctx.out(0);
  OTTER_CHECK(y.numel() == e - b, ctx.node.describe(), ": output has ", y.numel(), " elements for ", e - b, " dims");
  return std::vector<int64_t>(s.begin() + b, s.begin() + e);
}

Tensor constant_value(const KernelContext& ctx) {
  const Node& n = ctx.node;
  const Tensor& y = ctx.out(0);
  Tensor value;
  if (const Tensor* t = n.attr_tensor("value")) value = *t;
  else if (n.has_attr("value_float")) value = Tensor::scalar<float>(static_cast<float>(n.attr_float("value_float", 0)));
  else if (n.has_attr("value_int")) value = Tensor::scalar<int64_t>(n.attr_int("value_int", 0));
  else if (n.has_attr("value_ints")) value = Tensor::from_vector(n.attr_ints("value_ints"), y.shape());
  else if (n.has_attr("value_floats")) {
    const std::vector<double>& f = n.attrs.at("value_floats").floats;
    value = Tensor::from_vector(std::vector<float>(f.begin(), f.end()), y.shape());
  } else {
    OTTER_FAIL(n.describe(), ": no value attribute");
  }
  OTTER_CHECK(value.dtype() == y.dtype() && value.nbytes() == y.nbytes(), n.describe(), ": the value ",
              dtype_name(value.dtype()), shape_str(value.shape()), " does not match the output ",
              dtype_name(y.dtype()), shape_str(y.shape()));
  return value;
}

std::array<uint8_t, 8> constant_of_shape_pattern(const KernelContext& ctx) {
  const Tensor& y = ctx.out(0);
  std::array<uint8_t, 8> pattern{};  // float 0 by default
  if (const Tensor* v = ctx.node.attr_tensor("value")) {
    OTTER_CHECK(v->dtype() == y.dtype() && v->numel() == 1, ctx.node.describe(), ": bad value attribute");
    std::memcpy(pattern.data(), v->raw(), dtype_size(y.dtype()));
  }
  return pattern;
}

}  // namespace otter::shape
