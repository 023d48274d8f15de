// Host-side parameter resolution of the reductions, shared by the CPU kernels
// (kernels/cpu/reduce.cpp) and the CUDA ones (kernels/cuda/reduce.cu): the reduction kind named
// by a gradient op's `op` attribute, and a node's axes (from its axes input, read through
// KernelContext's host values, or its attributes; kernels/common/attributes.h's reduction_axes).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/registry.h"

namespace otter::reduce {

enum class Kind { Sum, Mean, Max, Min, Prod, L1, L2, SumSquare, LogSum, LogSumExp };

// The kind of the reduction op named `op` ("ReduceSum", ...); an error naming the node otherwise.
Kind kind_of(const KernelContext& ctx, const std::string& op);

// The normalised, sorted axes of a reduction node whose axes are input `axes_input` (optional)
// for an input of rank `rank`; none for noop_with_empty_axes (each element reduced alone).
std::vector<int64_t> node_axes(const KernelContext& ctx, size_t axes_input, int64_t rank);

}  // namespace otter::reduce
