// Warp and block reductions shared by the CUDA softmax and loss kernels (softmax.cu, loss.cu):
// one warp per line (WARP_STRIDE), butterfly max/sum (every lane ends with the same value, in a
// fixed order: deterministic) and a deterministic block sum.
#pragma once
#include "kernels/cuda/cuda_common.cuh"

namespace otter::cuda {

// One warp per line: `line` runs over [0, n) for the whole warp (uniform), `lane` is its lane.
#define WARP_STRIDE(line, n)                                                                    \
  const int lane = static_cast<int>(threadIdx.x & 31);                                          \
  for (int64_t line = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; line < (n);       \
       line += int64_t(blockDim.x) * gridDim.x / 32)

inline unsigned blocks_for_lines(int64_t lines) { return blocks_for(lines * 32); }

// Butterfly reductions: every lane ends with the same value (each step adds the same pair).
template <class C>
__device__ __forceinline__ C warp_max(C v) {
  for (int m = 16; m > 0; m >>= 1) {
    C o = __shfl_xor_sync(0xffffffffu, v, m);
    v = o > v ? o : v;
  }
  return v;
}
template <class C>
__device__ __forceinline__ C warp_sum(C v) {
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}

// Deterministic block sum (blockDim.x == kThreads, a power of two); every thread gets the result.
template <class C>
__device__ __forceinline__ C block_sum(C v, C* buf) {
  __syncthreads();
  buf[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  return buf[0];
}

__device__ __forceinline__ float dexp(float v) { return expf(v); }
__device__ __forceinline__ double dexp(double v) { return exp(v); }
__device__ __forceinline__ float dlog(float v) { return logf(v); }
__device__ __forceinline__ double dlog(double v) { return log(v); }

}  // namespace otter::cuda
