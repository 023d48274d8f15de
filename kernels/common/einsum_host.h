// Host-side resolution of an Einsum node, shared by the CPU kernel (kernels/cpu/einsum.cpp) and
// the CUDA one (kernels/cuda/einsum.cu): its equation parsed for the inputs' ranks
// (kernels/common/einsum_math.h), every label's size, and the output's shape checked against them.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/common/einsum_math.h"
#include "kernels/registry.h"

namespace otter::einsum {

struct Problem {
  Equation eq;
  std::vector<Shape> shapes;  // the inputs'
  std::vector<int64_t> size;  // per label id; 1 for labels that do not occur
};

// The problem of the node in ctx; an error naming the node when the equation does not fit the
// inputs or the output's shape is not the equation's.
Problem resolve(const KernelContext& ctx);

}  // namespace otter::einsum
