// Host-side layouts and parameter resolution of the norm ops, shared by the CPU kernels
// (kernels/cpu/norm.cpp) and the CUDA ones (kernels/cuda/norm.cu): BatchNormalization's
// training form, X viewed as [N, C, S] (BatchNormalization, Instance/GroupNormalization) with its
// groups, and as [rows, cols] split at LayerNormalization's axis. The views are plain structs,
// passed by value to CUDA kernels.
#pragma once
#include <cstdint>

#include "kernels/registry.h"

namespace otter::norm {

// Whether a BatchNormalization node uses batch statistics (as runtime/ops/norm.cpp decides):
// training_mode = 1, or the opset-9..13 form with saved_mean/saved_var outputs.
bool batch_norm_training_form(const Node& n);

// X as [N, C, S] (S = the product of the spatial dims).
struct NCS {
  int64_t n = 1, c = 1, s = 1;
};
NCS ncs_view(const KernelContext& ctx, const Shape& x);

// X as [N, groups, block]: a group (n, g) is the contiguous block of per_group channels
// (InstanceNormalization: one group per channel; GroupNormalization: num_groups).
struct GroupView {
  NCS d;
  int64_t groups = 1, per_group = 1, block = 1;  // channels per group, elements per (n, g)
};
GroupView group_view(const KernelContext& ctx, const Shape& x, bool instance);

// True for a [C] parameter (opset 21), false for a [num_groups] one (opset 18); an error naming
// the node for any other size.
bool per_channel_param(const GroupView& v, int64_t param_size, const KernelContext& ctx);

// X as [rows, cols] split at LayerNormalization's axis.
struct RowView {
  size_t axis = 0;
  int64_t rows = 1, cols = 1;
};
RowView row_view(const KernelContext& ctx, const Shape& x);

}  // namespace otter::norm
