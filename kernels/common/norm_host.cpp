// Host-side layouts and parameter resolution of the norm ops (see norm_host.h).
#include "kernels/common/norm_host.h"

namespace otter::norm {

bool batch_norm_training_form(const Node& n) {
  if (n.has_attr("training_mode")) return n.attr_int("training_mode", 0) != 0;
  for (size_t i = 3; i < n.outputs.size(); ++i)
    if (n.outputs[i] >= 0) return true;
  return false;
}

NCS ncs_view(const KernelContext& ctx, const Shape& x) {
  OTTER_CHECK(x.size() >= 2, ctx.node.describe(), ": X must have rank >= 2");
  NCS v;
  v.n = x[0];
  v.c = x[1];
  for (size_t k = 2; k < x.size(); ++k) v.s *= x[k];
  return v;
}

GroupView group_view(const KernelContext& ctx, const Shape& x, bool instance) {
  GroupView v;
  v.d = ncs_view(ctx, x);
  v.groups = instance ? v.d.c : ctx.node.attr_int("num_groups", 1);
  OTTER_CHECK(v.groups > 0 && v.d.c % v.groups == 0, ctx.node.describe(), ": num_groups ", v.groups,
              " does not divide the ", v.d.c, " channels");
  v.per_group = v.d.c / v.groups;
  v.block = v.per_group * v.d.s;
  return v;
}

bool per_channel_param(const GroupView& v, int64_t param_size, const KernelContext& ctx) {
  bool per_channel = param_size == v.d.c;
  OTTER_CHECK(per_channel || param_size == v.groups, ctx.node.describe(), ": a parameter has ", param_size,
              " elements; expected ", v.d.c, " (channels) or ", v.groups, " (groups)");
  return per_channel;
}

RowView row_view(const KernelContext& ctx, const Shape& x) {
  RowView v;
  int64_t axis = ctx.node.attr_int("axis", -1);
  int64_t rank = static_cast<int64_t>(x.size());
  if (axis < 0) axis += rank;
  OTTER_CHECK(axis >= 0 && axis < rank, ctx.node.describe(), ": axis out of range for X of rank ", rank);
  v.axis = static_cast<size_t>(axis);
  for (size_t k = 0; k < x.size(); ++k) (k < v.axis ? v.rows : v.cols) *= x[k];
  return v;
}

}  // namespace otter::norm
