// An FP16 GEMM for CPUs without FP16 arithmetic (the widening kernel of Gemm, kernels/cpu/
// matmul.cpp): Y = A op(B) (+ a bias row), A FP16, B and the bias FP32 (the wide weight copies)
// or FP16, Y FP16 (or FP32 holding FP16 values, the plan's fused output Casts). A's rows are widened a register tile at a time and Y is rounded as each tile
// leaves the registers, so the FP32 copies of A and Y that the widened path writes and reads
// again never exist. AVX-512 tiles of 12 rows x 32 columns; every output is one FMA chain over k
// ascending from zero, the bias added last: the order in which oneDNN's sgemm sums for k <= 256,
// so the bits are the widened path's. half_gemm_matches_sgemm() checks that order once against
// the FP32 GEMM the plan would run (a different BLAS or oneDNN release may sum otherwise; the
// caller then widens as before).
#pragma once
#include <cstdint>

#include "runtime/core/dtype.h"

namespace otter::cpu {

struct HalfGemm {
  int64_t m = 0, n = 0, k = 0;
  const uint16_t* a = nullptr;  // FP16 [m, k], row stride lda
  int64_t lda = 0;
  const void* b = nullptr;  // [k, n], or [n, k] with trans_b; FP32 or FP16
  DType b_type = DType::Float32;
  int64_t ldb = 0;
  bool trans_b = false;
  const void* bias = nullptr;  // [n] or null; FP32 or FP16
  DType bias_type = DType::Float32;
  uint16_t* y = nullptr;  // FP16 [m, n], row stride ldy
  float* y_wide = nullptr;  // instead of y: FP32 holding the FP16 values (a fused output Cast)
  int64_t ldy = 0;
};

// Whether this GEMM gives the bits of the FP32 GEMM the CPU kernels run (oneDNN's sgemm) on
// widened operands here: checked once, on two small GEMMs (kernels/cpu/matmul.cpp).
bool half_gemm_matches_sgemm();
// The sizes this GEMM takes (k <= 256, m >= 2) on a host with AVX-512.
bool half_gemm_supported(int64_t m, int64_t n, int64_t k);
// The columns of a panel of the packed B (B with that many columns, no bias, FP32 and not
// transposed is its own packed form).
int half_gemm_panel_width();
// Floats of the packed B (and bias) that half_gemm_pack writes.
int64_t half_gemm_packed_size(const HalfGemm& g);
// B (and the bias) in 64-column panels, widened: once per GEMM, shared by the row blocks.
void half_gemm_pack(const HalfGemm& g, float* packed);
// Rows [r0, r1) of Y; `a_rows` holds (r1 - r0) * k floats of scratch (those rows of A, widened).
void half_gemm_rows(const HalfGemm& g, const float* packed, int64_t r0, int64_t r1, float* a_rows);

}  // namespace otter::cpu
