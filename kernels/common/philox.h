// Philox4x32-10, the counter-based generator of Salmon et al. (SC'11) that cuRAND and PyTorch use:
// the random numbers for element i depend only on (seed, counter, i), so the CPU and CUDA
// kernels draw identical dropout masks for the same seed, in any order and on any thread.
#pragma once
#include <cstdint>

#include "kernels/common/elementwise_math.h"

namespace otter::math {

struct Philox4x32 {
  uint32_t v[4];
};

OTTER_HD Philox4x32 philox4x32(uint64_t counter_lo, uint64_t counter_hi, uint64_t seed) {
  uint32_t c0 = static_cast<uint32_t>(counter_lo), c1 = static_cast<uint32_t>(counter_lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(counter_hi), c3 = static_cast<uint32_t>(counter_hi >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    uint32_t n1 = static_cast<uint32_t>(p1);
    uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    uint32_t n3 = static_cast<uint32_t>(p0);
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4x32{{c0, c1, c2, c3}};
}

// A uniform float in [0, 1) for element `index` of the stream (seed, stream).
OTTER_HD float philox_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  Philox4x32 r = philox4x32(index / 4, stream, seed);
  return static_cast<float>(r.v[index % 4] >> 8) * (1.0f / 16777216.0f);
}

}  // namespace otter::math
