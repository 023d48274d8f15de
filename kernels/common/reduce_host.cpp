// Host-side parameter resolution of the reductions (see reduce_host.h).
#include "kernels/common/reduce_host.h"

#include "kernels/common/attributes.h"

#include <map>
#include <optional>

namespace otter::reduce {

Kind kind_of(const KernelContext& ctx, const std::string& op) {
  static const std::map<std::string, Kind> kinds = {
      {"ReduceSum", Kind::Sum},   {"ReduceMean", Kind::Mean},         {"ReduceMax", Kind::Max},
      {"ReduceMin", Kind::Min},   {"ReduceProd", Kind::Prod},         {"ReduceL1", Kind::L1},
      {"ReduceL2", Kind::L2},     {"ReduceSumSquare", Kind::SumSquare}, {"ReduceLogSum", Kind::LogSum},
      {"ReduceLogSumExp", Kind::LogSumExp}};
  auto it = kinds.find(op);
  if (it == kinds.end()) OTTER_FAIL(ctx.node.describe(), ": unknown reduction '", op, "'");
  return it->second;
}

std::vector<int64_t> node_axes(const KernelContext& ctx, size_t axes_input, int64_t rank) {
  std::optional<std::vector<int64_t>> given;
  if (ctx.has_input(axes_input)) given = ctx.int64_values(axes_input);  // device: the plan-time copy when known
  bool noop = false;
  return reduction_axes(ctx.node, given, rank, &noop);  // noop: no axes, each element reduced alone
}

}  // namespace otter::reduce
