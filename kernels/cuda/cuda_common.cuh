// Helpers shared by the CUDA kernels: error checking that throws otter::Error, launch geometry,
// FP16/BF16 loads and stores (arithmetic is always FP32 or FP64: a value is widened on load and
// rounded to nearest even on store), dtype dispatch, and broadcast strides for up to 8 dims.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/registry.h"

namespace otter::cuda {

#define OTTER_CUDA_CHECK(call)                                                                              \
  do {                                                                                                      \
    cudaError_t otter_err_ = (call);                                                                        \
    if (otter_err_ != cudaSuccess) {                                                                        \
      cudaGetLastError();                                                                                   \
      throw ::otter::Error(::otter::cat(#call, " failed: ", cudaGetErrorString(otter_err_)),                \
                           otter_err_ == cudaErrorMemoryAllocation ? ::otter::ErrorKind::OutOfMemory       \
                                                                   : ::otter::ErrorKind::Internal);         \
    }                                                                                                       \
  } while (0)

// Checks the last launch (configuration errors surface here; faults surface at the next sync).
// `what` names the launch in the error (the node, e.g. ctx.node.describe(), or a step operation).
#define OTTER_CUDA_LAUNCH_CHECK(what)                                                                       \
  do {                                                                                                      \
    cudaError_t otter_err_ = cudaGetLastError();                                                            \
    if (otter_err_ != cudaSuccess)                                                                          \
      throw ::otter::Error(::otter::cat((what), ": kernel launch failed: ", cudaGetErrorString(otter_err_)), \
                           otter_err_ == cudaErrorMemoryAllocation ? ::otter::ErrorKind::OutOfMemory       \
                                                                   : ::otter::ErrorKind::Internal);         \
  } while (0)

// A grid-stride loop over [0, n).
#define GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(blockDim.x) * gridDim.x)

inline cudaStream_t stream_of(const KernelContext& ctx) { return static_cast<cudaStream_t>(ctx.stream); }

constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 32 ? 65535 * 32 : b));
}

// Loads widen to the compute type, stores narrow with round-to-nearest-even.
template <class T> struct Compute { using type = T; };
template <> struct Compute<__half> { using type = float; };
template <> struct Compute<__nv_bfloat16> { using type = float; };

__device__ __forceinline__ float load(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ float load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
template <class T> __device__ __forceinline__ T load(const T* p, int64_t i) { return p[i]; }
__device__ __forceinline__ void store(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
template <class T, class V> __device__ __forceinline__ void store(T* p, int64_t i, V v) { p[i] = static_cast<T>(v); }

// 16-byte vectorised access for contiguous elementwise kernels: Pack<T> holds 16 / sizeof(T)
// elements and is loaded and stored with one 128-bit instruction. A kernel takes the packed path
// only when every pointer it touches is 16-byte aligned (aligned16); the elements past the last
// full pack are done one by one. Per element the arithmetic is the scalar kernel's: same bits.
template <class T>
struct alignas(16) Pack {
  static constexpr int kSize = static_cast<int>(16 / sizeof(T));
  T v[kSize];
};
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
template <class... P>
inline bool aligned16(const void* p, P... rest) {
  return aligned16(p) && aligned16(rest...);
}

constexpr int kMaxDims = 8;
struct Strides {
  int rank = 0;
  int64_t out[kMaxDims];  // output dims
  int64_t in[4][kMaxDims];  // per input: element stride along each output dim (0 = broadcast)
};

// Broadcast strides of up to 4 inputs against the output shape.
Strides broadcast_strides(const Shape& out, const std::vector<const Shape*>& ins);

// Summing a tensor of shape `g` down to the broadcastable shape `like`: `keep` maps an output
// index to the offset of the first element of its preimage in g, `reduced` walks the `count`
// elements of that preimage (offsets relative to it).
struct ReduceToShape {
  Strides keep, reduced;
  int64_t count = 1;
};
ReduceToShape reduce_to_shape(const Shape& g, const Shape& like);

__device__ __forceinline__ void offsets_of(const Strides& s, int64_t flat, int n_inputs, int64_t* off) {
  for (int k = 0; k < n_inputs; ++k) off[k] = 0;
  for (int d = s.rank - 1; d >= 0; --d) {
    int64_t dim = s.out[d];
    int64_t idx = dim ? flat % dim : 0;
    flat = dim ? flat / dim : 0;
    for (int k = 0; k < n_inputs; ++k) off[k] += idx * s.in[k][d];
  }
}

}  // namespace otter::cuda

// Registration and dispatch in one statement: FN<T> for the storage types of the four float dtypes,
// e.g. r.add("", "AveragePool", Device::CUDA, OTTER_CUDA_FLOAT_KERNELS(average_pool_typed)).
#define OTTER_CUDA_FLOAT_KERNELS(FN)                                                   \
  {{::otter::DType::Float32, [](::otter::KernelContext& c) { FN<float>(c); }},         \
   {::otter::DType::Float64, [](::otter::KernelContext& c) { FN<double>(c); }},        \
   {::otter::DType::Float16, [](::otter::KernelContext& c) { FN<__half>(c); }},        \
   {::otter::DType::BFloat16, [](::otter::KernelContext& c) { FN<__nv_bfloat16>(c); }}}

// Binds scalar_t to the storage type (float, double, __half, __nv_bfloat16) of DTYPE.
#define OTTER_CUDA_DISPATCH_FLOAT(DTYPE, WHAT, ...)                                              \
  switch (DTYPE) {                                                                               \
    case ::otter::DType::Float32: { using scalar_t = float; __VA_ARGS__; break; }                \
    case ::otter::DType::Float64: { using scalar_t = double; __VA_ARGS__; break; }               \
    case ::otter::DType::Float16: { using scalar_t = __half; __VA_ARGS__; break; }               \
    case ::otter::DType::BFloat16: { using scalar_t = __nv_bfloat16; __VA_ARGS__; break; }       \
    default: OTTER_FAIL(WHAT, ": no CUDA kernel for dtype ", ::otter::dtype_name(DTYPE));       \
  }

// Float types plus Int64 / Int32 (for the ops the CPU also runs on integers).
#define OTTER_CUDA_DISPATCH_NUM(DTYPE, WHAT, ...)                                                \
  switch (DTYPE) {                                                                               \
    case ::otter::DType::Float32: { using scalar_t = float; __VA_ARGS__; break; }                \
    case ::otter::DType::Float64: { using scalar_t = double; __VA_ARGS__; break; }               \
    case ::otter::DType::Float16: { using scalar_t = __half; __VA_ARGS__; break; }               \
    case ::otter::DType::BFloat16: { using scalar_t = __nv_bfloat16; __VA_ARGS__; break; }       \
    case ::otter::DType::Int64: { using scalar_t = int64_t; __VA_ARGS__; break; }                \
    case ::otter::DType::Int32: { using scalar_t = int32_t; __VA_ARGS__; break; }                \
    default: OTTER_FAIL(WHAT, ": no CUDA kernel for dtype ", ::otter::dtype_name(DTYPE));       \
  }
