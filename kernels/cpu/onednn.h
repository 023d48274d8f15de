// The CPU backend's oneDNN seam: GEMMs (FP32 and BF16 operands, FP32 accumulation) and
// convolutions (forward, backward data, backward weights) through oneDNN primitives, which pick
// the best code for the CPU at run time (AVX-512, AVX512_BF16 dot products, AMX). Primitives are
// created once per shape and cached. Without oneDNN in the build (OTTER_HAVE_ONEDNN undefined),
// available() is false and the callers keep their OpenBLAS / im2col paths; BF16 kernels are
// registered only where native_bf16() holds, elsewhere BF16 data is widened to FP32 as before.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/dtype.h"

namespace otter::cpu::onednn {

// oneDNN is in the build and OTTER_CPU_ONEDNN is not 0 (0: the OpenBLAS/im2col paths and FP32
// compute for BF16, e.g. to compare results).
bool available();
// The CPU has BF16 dot products (AVX512_BF16; CPUs with AMX have it too) and OTTER_CPU_BF16 is
// not 0; false without oneDNN.
bool native_bf16();
// The CPU's vector ISA as the CPU path sees it: "avx512_bf16", "avx512f", "avx2" or "baseline"
// ("none" without oneDNN).
std::string isa();

// C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b] for b < batch, row-major, with leading dims and
// batch strides in elements (a batch stride of 0 broadcasts). A and B have dtype `ab` (Float32 or
// BFloat16), C has dtype `c` (Float32 or BFloat16); accumulation is FP32.
struct Gemm {
  DType ab = DType::Float32, c = DType::Float32;
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
  int64_t batch = 1, stride_a = 0, stride_b = 0, stride_c = 0;
  float alpha = 1.0f, beta = 0.0f;
};
void gemm(const Gemm& g, const void* a, const void* b, void* c);

// C = alpha * op(A) op(B) + beta * C in FP32, row-major, one matrix (oneDNN's JIT sgemm, the
// BLAS-like dnnl_sgemm: no primitive to create). Measured against OpenBLAS 0.3.21 on AVX-512
// (bench/cpu/gemm_bench.cpp): ~10% faster on square-ish layer shapes, 1.5-3x on thin ones.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// An N-d convolution (1 to 3 spatial dims) in NC[D]HW layout, groups, strides, dilations (ONNX
// meaning: 1 = dense) and begin/end pads (non-negative). `data` is the dtype of x, w, y (Float32
// or BFloat16); bias (forward) and dW (backward weights) keep `data` too.
struct Conv {
  DType data = DType::Float32;
  int64_t batch = 0, group = 1, in_channels = 0, out_channels = 0;  // totals over the groups
  std::vector<int64_t> in, out, kernel, strides, dilations, pads_begin, pads_end;
};
void conv_forward(const Conv& c, const void* x, const void* w, const void* bias, void* y);
void conv_backward_data(const Conv& c, const void* dy, const void* w, void* dx);
void conv_backward_weights(const Conv& c, const void* x, const void* dy, void* dw);

}  // namespace otter::cpu::onednn
