// Host-side geometry of the conv op family (Conv, ConvTranspose and their otter.*Grad ops), shared
// by the CPU kernels (kernels/cpu/conv.cpp) and the CUDA ones (kernels/cuda/conv.cu). Every op
// pairs an "image" (the tensor a window slides over) with a "grid" (one position per window
// placement): image position = grid position * stride - pad + tap * dilation, with W per group
// [grid channels, image channels x kernel]. The spatial geometry (grid dims, begin pads) comes
// from kernels/common/attributes.h.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/registry.h"

namespace otter::conv {

struct ConvGeometry {
  int64_t batch = 0, group = 1, image_channels = 0, grid_channels = 0;  // channels per group
  Shape image, grid, kernel;                                            // spatial dims
  std::vector<int64_t> strides, dilations, pads;  // pads: begin pads of the image (may be negative)
};

// Conv and its gradients (x [N, C, ...], W [M, C/group, k...]): image = x, grid = the output.
ConvGeometry conv_geometry(const Node& node, const Shape& x, const Shape& w);
// ConvTranspose and its gradients (x [N, C, ...], W [C, M/group, k...]): image = the output,
// grid = x.
ConvGeometry conv_transpose_geometry_of(const Node& node, const Shape& x, const Shape& w);

// The spatial dims of an [N, C, spatial...] shape.
Shape spatial(const Shape& s);

// Fails naming the node when `what` has shape `got` instead of `want`.
void check_shape(const KernelContext& ctx, const Shape& got, const Shape& want, const char* what);

// The three moves every op of the family reduces to: correlate (Conv, ConvTransposeGradInput),
// scatter (ConvTranspose, ConvGradInput: the adjoint of correlate) and the weight gradient
// (ConvGradWeight, ConvTransposeGradWeight: sum over the batch of grid x im2col(image)^T).
enum class Move { Correlate, Scatter, WeightGrad };

// A node of the family, fully resolved: its geometry (output shape checked), its move, and which
// tensor plays which part. Correlate reads `source` as the image and writes the grid; Scatter
// reads it as the grid and writes the image; both use `weight` and the optional `bias`.
// WeightGrad reads `grid` and `image` and writes `out` (dW).
struct Call {
  ConvGeometry geometry;
  Move move = Move::Correlate;
  const Tensor* source = nullptr;  // Correlate / Scatter
  const Tensor* weight = nullptr;  // Correlate / Scatter
  const Tensor* bias = nullptr;    // optional
  const Tensor* grid = nullptr;    // WeightGrad
  const Tensor* image = nullptr;   // WeightGrad
  Tensor* out = nullptr;
};

// Resolves any op of the family (Conv, ConvTranspose, otter.Conv{,Transpose}Grad{Input,Weight}).
Call resolve(const KernelContext& ctx);

}  // namespace otter::conv
