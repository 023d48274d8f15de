// An FP16 GEMM for CPUs without FP16 arithmetic (the widening kernels of Gemm and MatMul,
// kernels/cpu/matmul.cpp): Y = op(A) op(B) (+ a bias row); A FP16; B and the bias FP32 (the wide
// weight copies) or FP16; Y FP16, or FP32 holding FP16 values (the plan's fused output Casts).
// B is widened once per GEMM into 32-column panels; each 12-row tile of A is widened into L1
// scratch and multiplied by every panel, and Y is rounded as each 12 x 32 register tile (AVX-512)
// leaves the registers: the FP32 copies of A and Y that the widened path writes and reads again
// never exist.
//
// The bits are the widened path's (oneDNN's sgemm on widened operands, rounded) because every
// output is summed in sgemm's order on one thread: one FMA chain over k ascending from zero, the
// bias added last, for k <= 384; for 384 < k <= 768, a chain over the first ceil(k / 2) terms, one
// over the rest, then their sum (measured on oneDNN 2.6; m = 1 and larger k sum otherwise).
// half_gemm_matches_sgemm() checks this once against the FP32 GEMM the plan would run; where it
// does not hold (another BLAS or release) the callers widen as before.
#pragma once
#include <cstdint>

#include "runtime/core/dtype.h"

namespace otter::cpu {

struct HalfGemm {
  int64_t m = 0, n = 0, k = 0;
  const uint16_t* a = nullptr;  // FP16 [m, k], or [k, m] with trans_a; row stride lda
  int64_t lda = 0;
  bool trans_a = false;
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
// widened operands here: checked once, on three small GEMMs (kernels/cpu/matmul.cpp).
bool half_gemm_matches_sgemm();
// The sizes this GEMM takes on a host with AVX-512: m >= 2 (oneDNN's m = 1 GEMV sums otherwise),
// k <= 384 (one chain), or k <= 768 without a bias (two).
bool half_gemm_supported(int64_t m, int64_t n, int64_t k, bool bias);
// The columns of a panel of the packed B (B with that many columns, no bias, FP32 and not
// transposed is its own packed form).
int half_gemm_panel_width();
// Floats of the packed B (and bias) that half_gemm_pack writes.
int64_t half_gemm_packed_size(const HalfGemm& g);
// Panels [q0, q1) of B (32 columns each; the bias with the first), widened: once per GEMM,
// shared by the row blocks.
void half_gemm_pack(const HalfGemm& g, float* packed, int64_t q0, int64_t q1);
// Whether half_gemm_rows walks k in blocks (many terms) and widens B's blocks itself, on each
// thread: no half_gemm_pack then.
bool half_gemm_blocked(const HalfGemm& g);
// Floats of scratch that half_gemm_rows needs for `rows` rows of Y.
int64_t half_gemm_scratch_size(const HalfGemm& g, int64_t rows);
// Rows [r0, r1) of Y; `scratch` holds half_gemm_scratch_size(g, r1 - r0) floats.
void half_gemm_rows(const HalfGemm& g, const float* packed, int64_t r0, int64_t r1, float* scratch);

}  // namespace otter::cpu
