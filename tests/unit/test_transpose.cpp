// The CPU Transpose kernel (kernels/cpu/shape.cpp) against an index-by-index reference, bit for
// bit, for 1-, 2-, 4- and 8-byte elements: the last-two-dims swap (tiled, with SSE2 blocks of 8x8
// 16-bit and 4x4 32-bit elements and element-wise edges) on sizes that are and are not multiples
// of the block and tile, and other permutations (the general strided copy). The data are random
// bit patterns, so NaN payloads and signed zeros must come through unchanged.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "kernels/registry.h"

namespace otter {
namespace {

Tensor random_bits(DType dtype, const Shape& shape, uint32_t seed) {
  Tensor t(dtype, shape);
  std::mt19937 rng(seed);
  auto* p = static_cast<uint8_t*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(rng());
  if (dtype == DType::Bool)
    for (size_t i = 0; i < t.nbytes(); ++i) p[i] &= 1;
  return t;
}

// y[i] = x[j] where i is the output index and j its permuted input index, element bytes copied.
Tensor reference_transpose(const Tensor& x, const std::vector<int64_t>& perm) {
  const Shape& xs = x.shape();
  Shape ys(perm.size());
  for (size_t k = 0; k < perm.size(); ++k) ys[k] = xs[static_cast<size_t>(perm[k])];
  Tensor y(x.dtype(), ys);
  const size_t esize = dtype_size(x.dtype());
  std::vector<int64_t> xstride(xs.size(), 1);
  for (int64_t k = static_cast<int64_t>(xs.size()) - 2; k >= 0; --k)
    xstride[static_cast<size_t>(k)] = xstride[static_cast<size_t>(k) + 1] * xs[static_cast<size_t>(k) + 1];
  std::vector<int64_t> index(ys.size(), 0);
  for (int64_t i = 0; i < y.numel(); ++i) {
    int64_t j = 0;
    for (size_t k = 0; k < ys.size(); ++k) j += index[k] * xstride[static_cast<size_t>(perm[k])];
    std::memcpy(static_cast<uint8_t*>(y.raw()) + static_cast<size_t>(i) * esize,
                static_cast<const uint8_t*>(x.raw()) + static_cast<size_t>(j) * esize, esize);
    for (int64_t k = static_cast<int64_t>(ys.size()) - 1; k >= 0; --k) {
      if (++index[static_cast<size_t>(k)] < ys[static_cast<size_t>(k)]) break;
      index[static_cast<size_t>(k)] = 0;
    }
  }
  return y;
}

TEST(TransposeKernel, EqualsTheReferenceBitForBit) {
  struct Case {
    Shape shape;
    std::vector<int64_t> perm;
  };
  const std::vector<Case> cases = {
      {{32, 2, 32, 32}, {0, 1, 3, 2}},  // attention's K^T: whole blocks and tiles
      {{3, 37, 45}, {0, 2, 1}},         // edges in both dims
      {{2, 8, 8}, {0, 2, 1}},           // exactly one 16-bit block
      {{1, 4, 12}, {0, 2, 1}},          // 32-bit blocks, 16-bit edges only
      {{5, 1, 7}, {0, 2, 1}},           // a dim of 1: a plain copy
      {{70, 33}, {1, 0}},               // a matrix, more than one tile
      {{4, 9, 2, 16}, {0, 2, 3, 1}},    // a general permutation
      {{6, 5, 4}, {2, 0, 1}},
  };
  for (DType dtype : {DType::Uint8, DType::Float16, DType::BFloat16, DType::Float32, DType::Int32, DType::Float64}) {
    KernelFn fn = KernelRegistry::instance().find("", "Transpose", Device::CPU, dtype);
    ASSERT_NE(fn, nullptr) << dtype_name(dtype);
    uint32_t seed = 1;
    for (const Case& c : cases) {
      Tensor x = random_bits(dtype, c.shape, seed++);
      Tensor want = reference_transpose(x, c.perm);
      Tensor got(dtype, want.shape());
      Node node;
      node.op_type = "Transpose";
      node.attrs["perm"] = Attribute::of_ints(c.perm);
      KernelContext ctx(node);
      ctx.inputs = {&x};
      ctx.outputs = {&got};
      fn(ctx);
      EXPECT_EQ(0, std::memcmp(got.raw(), want.raw(), want.nbytes()))
          << dtype_name(dtype) << " " << shape_str(c.shape) << " perm " << shape_str(c.perm);
    }
  }
}

}  // namespace
}  // namespace otter
