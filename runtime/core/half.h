// FP16 (IEEE binary16) and BF16 (bfloat16) storage conversions, shared by the CPU and CUDA
// kernels. float -> half rounds to nearest, ties to even, keeps subnormals, overflows to inf and
// keeps NaN a (quiet) NaN; half -> float is exact. These are the only places Otter rounds to a
// 16-bit type, so the policy and loss-scaling tests on the CPU see the GPU's arithmetic.
#pragma once
#include <cstdint>
#include <cstring>

#ifndef OTTER_HD
#if defined(__CUDACC__)
#define OTTER_HD __host__ __device__ inline
#else
#define OTTER_HD inline
#endif
#endif

namespace otter::math {

OTTER_HD uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

OTTER_HD float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

OTTER_HD uint16_t float_to_half_bits(float f) {
  uint32_t x = float_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return static_cast<uint16_t>(sign | (abs > 0x7f800000u ? 0x7e00u : 0x7c00u));  // NaN / inf
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);  // below 2^-25: rounds to 0
    uint32_t exp = abs >> 23;
    uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - exp;  // 14 + 23 - 10 - (exp - 127) ... bits to drop
    uint32_t half_mant = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half_mant & 1u))) ++half_mant;
    return static_cast<uint16_t>(sign | half_mant);
  }
  uint32_t r = abs - 0x38000000u;  // rebias exponent 127 -> 15
  uint32_t half = r >> 13, rem = r & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

OTTER_HD float half_bits_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0x1fu) return bits_float(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);
    float v = static_cast<float>(mant) * (1.0f / 16777216.0f);  // mant * 2^-24
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

OTTER_HD uint16_t float_to_bfloat16_bits(float f) {
  uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  uint32_t lsb = (x >> 16) & 1u;
  x += 0x7fffu + lsb;  // round to nearest even; overflows to inf naturally
  return static_cast<uint16_t>(x >> 16);
}

OTTER_HD float bfloat16_bits_to_float(uint16_t b) { return bits_float(static_cast<uint32_t>(b) << 16); }

// 16-bit storage types: wrappers so templates can tell them apart from integers.
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

OTTER_HD float to_float(Half h) { return half_bits_to_float(h.bits); }
OTTER_HD float to_float(BFloat16 b) { return bfloat16_bits_to_float(b.bits); }

}  // namespace otter::math
