// Attribute semantics shared by the op definitions (runtime/ops: inference) and the kernels'
// host-side parameter resolution (kernels/common/<family>_host.cpp): what a node's attributes
// mean, resolved in one place so that inference and every backend agree. Depends only on the IR.
//   window_geometry          Conv, MaxPool, AveragePool and their gradient ops
//   conv_transpose_geometry  ConvTranspose and its gradient ops
//   reduction_axes           the Reduce* ops and their gradient ops
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "runtime/ir/graph.h"

namespace otter {

// Geometry of a sliding-window op along its d spatial dims, from the node's strides, dilations,
// pads, auto_pad and (when allowed) ceil_mode. in_spatial and kernel may hold symbolic (negative)
// dims at IR level: the output dim is then -1 (unknown). Fails naming the node on bad attributes
// or an input too small.
void window_geometry(const Node& node, const Shape& in_spatial, const Shape& kernel, bool allow_ceil_mode,
                     std::vector<int64_t>& strides, std::vector<int64_t>& dilations,
                     std::vector<int64_t>& pads_begin, std::vector<int64_t>& pads_end, std::vector<int64_t>& out);

// Geometry of a ConvTranspose node (and of its gradient ops): output dims and begin pads (which
// may be negative when output_shape asks for more than the natural size; the extra is zero).
void conv_transpose_geometry(const Node& node, const Shape& in_spatial, const Shape& kernel,
                             std::vector<int64_t>& strides, std::vector<int64_t>& dilations,
                             std::vector<int64_t>& pads_begin, std::vector<int64_t>& out);

// The sorted, normalised axes a reduction node reduces over, from its axes input (when given) or
// its `axes` attribute: all axes when none are given, unless noop_with_empty_axes (then *noop).
std::vector<int64_t> reduction_axes(const Node& node, const std::optional<std::vector<int64_t>>& axes_input,
                                    int64_t rank, bool* noop);

}  // namespace otter
