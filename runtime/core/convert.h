// Bulk FP16/BF16 <-> FP32 conversions on the host: the CPU's widen/round copies of mixed
// precision, Cast, Tensor::cast and the refresh of the 16-bit weight copies all go through these.
// Every function gives exactly the bits of the scalar conversions in half.h (round to nearest
// even, subnormals kept, NaN kept a NaN), so results do not depend on which path ran; they pick an
// AVX-512 path at run time where the CPU has it (one binary), and split large arrays over the
// OpenMP threads.
#pragma once
#include <cstdint>

#include "runtime/core/dtype.h"

namespace otter {

void float_to_half_n(const float* src, uint16_t* dst, int64_t n);
void half_to_float_n(const uint16_t* src, float* dst, int64_t n);
void float_to_bfloat16_n(const float* src, uint16_t* dst, int64_t n);
void bfloat16_to_float_n(const uint16_t* src, float* dst, int64_t n);

// By dtype: FP16 or BF16 storage to FP32 and back (FP32 storage is copied), for kernels that take
// either 16-bit type (or FP32 for a mixed-type node).
void widen_n(DType from, const void* src, float* dst, int64_t n);
void narrow_n(DType to, const float* src, void* dst, int64_t n);
// dst[i] = src[i] rounded to FP16 (to_half) or BF16 and widened back: the FP32 value a 16-bit
// store and load would give, without a 16-bit tensor (src == dst is allowed).
void round_through_n(const float* src, float* dst, int64_t n, bool to_half);

// Which path the conversions take on this CPU: "avx512f" or "scalar" (for `otter inspect` and
// the metrics). OTTER_CPU_ISA=scalar forces the scalar path (tests compare the two).
const char* conversion_path();

// Whether host code may take its AVX-512 (avx512f) paths: the CPU has it and OTTER_CPU_ISA is not
// "scalar". The conversions above and the vectorised CPU math (kernels/cpu/vec_math.h) ask this.
bool host_avx512();

}  // namespace otter
