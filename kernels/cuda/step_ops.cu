// CUDA flat-buffer operations of a training step (kernels/step_ops.h), with the arithmetic of
// kernels/common/train_math.h. Nothing here synchronises with the host: the found-inf flag, the
// step counters, the gradient norm and the per-step optimizer scalars stay in device memory and
// the kernels branch on them, so a step can be captured into a CUDA graph. The global norm is a
// fixed-order two-pass reduction (float partials over fixed 4096-element blocks, summed in double
// by one block): deterministic, and blocked like the CPU's (whose in-block SIMD order differs, so
// the two norms agree to rounding, not bit for bit). The scratch is allocated once, when the ops are
// installed: an allocation made while a step is being captured would belong to that graph.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/step_ops.h"

namespace otter::cuda {
namespace {

constexpr int kNormBlock = 4096;     // elements per partial sum (as the CPU)
constexpr int kMaxPartials = 65536;  // partial-sum slots in scratch; slot s also sums blocks s + k * kMaxPartials

__device__ __forceinline__ bool skip(const float* scaler) { return scaler && scaler[math::kScalerFoundInf] != 0.0f; }

__global__ void begin_micro_step_k(int64_t* c, const float* scaler, void* seed, int code, int64_t accum) {
  c[kRngStep] = c[kStepsTaken] * accum + c[kMicroStep];
  double v = static_cast<double>(scaler[math::kScalerScale]) / static_cast<double>(accum);
  switch (code) {
    case 0: *static_cast<float*>(seed) = static_cast<float>(v); break;
    case 1: *static_cast<double*>(seed) = v; break;
    case 2: *static_cast<__half*>(seed) = __float2half_rn(static_cast<float>(v)); break;
    default: *static_cast<__nv_bfloat16*>(seed) = __float2bfloat16_rn(static_cast<float>(v)); break;
  }
}

__global__ void accumulate_k(float* acc, const float* g, int64_t n, const int64_t* c) {
  const bool first = c[kMicroStep] == 0;
  GRID_STRIDE(i, n) acc[i] = first ? g[i] : acc[i] + g[i];
}

__global__ void end_micro_step_k(int64_t* c) { c[kMicroStep] += 1; }

__global__ void unscale_and_check_k(float* g, int64_t n, float* scaler, bool unscale) {
  const float inv = static_cast<float>(1.0 / static_cast<double>(scaler[math::kScalerScale]));
  bool found = false;
  GRID_STRIDE(i, n) {
    float v = unscale ? g[i] * inv : g[i];
    if (unscale) g[i] = v;
    found |= !isfinite(v);
  }
  if (found) scaler[math::kScalerFoundInf] = 1.0f;  // every writer writes the same value
}

__global__ void update_loss_scale_k(math::LossScaleParams p, float* scaler) { math::update_loss_scale(p, scaler); }

// Pass 1: the sum of squares of each block b (fixed 4096-element blocks, tree-summed in float);
// partials[s] = the sums of blocks s, s + kMaxPartials, ... added in double in that order (with at
// most kMaxPartials blocks: exactly block s's float sum).
__global__ void norm_partials_k(const float* g, int64_t n, int64_t blocks, double* partials, const float* scaler) {
  if (skip(scaler)) return;
  __shared__ float sh[kThreads];
  const int64_t slots = blocks < kMaxPartials ? blocks : kMaxPartials;
  for (int64_t slot = blockIdx.x; slot < slots; slot += gridDim.x) {
    double acc = 0;
    for (int64_t b = slot; b < blocks; b += kMaxPartials) {
      int64_t begin = b * kNormBlock, end = begin + kNormBlock < n ? begin + kNormBlock : n;
      float part = 0;
      for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) part += g[i] * g[i];
      sh[threadIdx.x] = part;
      __syncthreads();
      for (int s = kThreads / 2; s > 0; s >>= 1) {
        if (static_cast<int>(threadIdx.x) < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
      }
      if (threadIdx.x == 0) acc += sh[0];
      __syncthreads();
    }
    if (threadIdx.x == 0) partials[slot] = acc;
  }
}

// Pass 2 (one block): the partials summed in double in a fixed order; the norm and the clip factor.
__global__ void norm_finish_k(const double* partials, int64_t slots, double max_norm, double* norm_out, float* factor,
                              const float* scaler) {
  if (skip(scaler)) return;
  __shared__ double sh[kThreads];
  double s = 0;
  for (int64_t b = threadIdx.x; b < slots; b += blockDim.x) s += partials[b];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int k = kThreads / 2; k > 0; k >>= 1) {
    if (static_cast<int>(threadIdx.x) < k) sh[threadIdx.x] += sh[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    double norm = ::sqrt(sh[0]);
    *norm_out = norm;
    // As the CPU: no clip only when norm <= max_norm (a NaN norm scales by NaN there too).
    *factor = norm <= max_norm ? 1.0f : static_cast<float>(max_norm / (norm + 1e-6));
  }
}

__global__ void scale_k(float* g, int64_t n, const float* factor, const float* scaler) {
  if (skip(scaler) || *factor == 1.0f) return;
  const float f = *factor;
  GRID_STRIDE(i, n) g[i] *= f;
}

// The per-step scalars, once per step (one thread), from the step count on the device.
__global__ void update_scalars_k(math::OptimizerParams opt, math::ScheduleParams schedule, double base_lr,
                                 const int64_t* c, math::UpdateScalars* out) {
  const int64_t step = c[kStepsTaken];
  *out = math::update_scalars(opt, math::scheduled_lr(base_lr, schedule, step), step);
}

__global__ void sgd_k(float* p, const float* g, float* buf, int64_t n, bool nesterov, const math::UpdateScalars* u,
                      const float* scaler) {
  if (skip(scaler)) return;
  const math::UpdateScalars s = *u;
  GRID_STRIDE(i, n) math::sgd_element(p[i], g[i], buf ? buf + i : nullptr, nesterov, s);
}

__global__ void adam_scalar_k(float* p, const float* g, float* m, float* v, int64_t n, bool decoupled,
                              const math::UpdateScalars* u, const float* scaler) {
  if (skip(scaler)) return;
  const math::UpdateScalars s = *u;
  GRID_STRIDE(i, n) math::adam_element(p[i], g[i], m[i], v[i], decoupled, s);
}

// Adam/AdamW over 16-byte packs of four floats (the flat buffers are 256-byte aligned allocations),
// then the tail: the memory-bound pass of the step, so one 128-bit access per buffer and pack.
__global__ void adam_k(float* p, const float* g, float* m, float* v, int64_t n, bool decoupled,
                       const math::UpdateScalars* u, const float* scaler) {
  if (skip(scaler)) return;
  const math::UpdateScalars s = *u;
  const int64_t packs = n / 4;
  GRID_STRIDE(i, packs) {
    float4 pp = reinterpret_cast<float4*>(p)[i], mm = reinterpret_cast<float4*>(m)[i],
           vv = reinterpret_cast<float4*>(v)[i];
    const float4 gg = reinterpret_cast<const float4*>(g)[i];
    math::adam_element(pp.x, gg.x, mm.x, vv.x, decoupled, s);
    math::adam_element(pp.y, gg.y, mm.y, vv.y, decoupled, s);
    math::adam_element(pp.z, gg.z, mm.z, vv.z, decoupled, s);
    math::adam_element(pp.w, gg.w, mm.w, vv.w, decoupled, s);
    reinterpret_cast<float4*>(p)[i] = pp;
    reinterpret_cast<float4*>(m)[i] = mm;
    reinterpret_cast<float4*>(v)[i] = vv;
  }
  GRID_STRIDE(i, n - packs * 4) {
    int64_t j = packs * 4 + i;
    math::adam_element(p[j], g[j], m[j], v[j], decoupled, s);
  }
}

__global__ void finish_step_k(int64_t* c, const float* scaler) {
  c[kMicroStep] = 0;
  if (skip(scaler)) c[kStepsSkipped] += 1;
  else c[kStepsTaken] += 1;
}

template <class T>
__global__ void to_low_k(const float* src, T* dst, int64_t n) {
  GRID_STRIDE(i, n) store(dst, i, src[i]);
}

template <class T>
__global__ void commit_k(float* dst, const T* src, int64_t n, const float* scaler) {
  if (skip(scaler)) return;
  GRID_STRIDE(i, n) dst[i] = static_cast<float>(load(src, i));
}

int seed_code(DType t) {
  switch (t) {
    case DType::Float32: return 0;
    case DType::Float64: return 1;
    case DType::Float16: return 2;
    case DType::BFloat16: return 3;
    default: OTTER_FAIL("the loss has dtype ", dtype_name(t), "; training needs a floating loss");
  }
}

class CudaStepOps : public StepOps {
 public:
  CudaStepOps() { allocate_scratch(); }
  void begin_micro_step(int64_t* c, const float* scaler, void* seed, DType seed_dtype, int64_t accum) override {
    begin_micro_step_k<<<1, 1, 0, stream()>>>(c, scaler, seed, seed_code(seed_dtype), accum);
    OTTER_CUDA_LAUNCH_CHECK("begin_micro_step");
  }
  void accumulate(float* acc, const float* g, int64_t n, const int64_t* c) override {
    accumulate_k<<<blocks_for(n), kThreads, 0, stream()>>>(acc, g, n, c);
    OTTER_CUDA_LAUNCH_CHECK("accumulate");
  }
  void end_micro_step(int64_t* c) override {
    end_micro_step_k<<<1, 1, 0, stream()>>>(c);
    OTTER_CUDA_LAUNCH_CHECK("end_micro_step");
  }
  void unscale_and_check(float* g, int64_t n, float* scaler, bool unscale) override {
    OTTER_CUDA_CHECK(cudaMemsetAsync(scaler + math::kScalerFoundInf, 0, sizeof(float), stream()));
    unscale_and_check_k<<<blocks_for(n), kThreads, 0, stream()>>>(g, n, scaler, unscale);
    OTTER_CUDA_LAUNCH_CHECK("unscale_and_check");
  }
  void update_loss_scale(const math::LossScaleParams& p, float* scaler) override {
    if (!p.dynamic) return;
    update_loss_scale_k<<<1, 1, 0, stream()>>>(p, scaler);
    OTTER_CUDA_LAUNCH_CHECK("update_loss_scale");
  }
  void clip_grad_norm(float* g, int64_t n, double max_norm, const float* scaler, double* norm) override {
    const int64_t blocks = (n + kNormBlock - 1) / kNormBlock;
    const int64_t slots = blocks < kMaxPartials ? blocks : kMaxPartials;
    unsigned grid = static_cast<unsigned>(slots < 1024 ? (slots < 1 ? 1 : slots) : 1024);
    norm_partials_k<<<grid, kThreads, 0, stream()>>>(g, n, blocks, partials_, scaler);
    OTTER_CUDA_LAUNCH_CHECK("clip_grad_norm");
    norm_finish_k<<<1, kThreads, 0, stream()>>>(partials_, slots, max_norm, norm, factor_, scaler);
    OTTER_CUDA_LAUNCH_CHECK("clip_grad_norm");
    scale_k<<<blocks_for(n), kThreads, 0, stream()>>>(g, n, factor_, scaler);
    OTTER_CUDA_LAUNCH_CHECK("clip_grad_norm");
  }
  void optimizer_step(const math::OptimizerParams& opt, const math::ScheduleParams& schedule, double base_lr, float* p,
                      const float* g, float* m, float* v, int64_t n, const float* scaler, int64_t* c) override {
    update_scalars_k<<<1, 1, 0, stream()>>>(opt, schedule, base_lr, c, scalars_);
    OTTER_CUDA_LAUNCH_CHECK("optimizer_step");
    if (opt.kind == math::OptimizerKind::SGD)
      sgd_k<<<blocks_for(n), kThreads, 0, stream()>>>(p, g, m, n, opt.nesterov, scalars_, scaler);
    else if (aligned16(p, g, m, v))
      adam_k<<<blocks_for(n / 4 + 1), kThreads, 0, stream()>>>(p, g, m, v, n, opt.kind == math::OptimizerKind::AdamW,
                                                                scalars_, scaler);
    else
      adam_scalar_k<<<blocks_for(n), kThreads, 0, stream()>>>(p, g, m, v, n, opt.kind == math::OptimizerKind::AdamW,
                                                              scalars_, scaler);
    OTTER_CUDA_LAUNCH_CHECK("optimizer_step");
    finish_step_k<<<1, 1, 0, stream()>>>(c, scaler);
    OTTER_CUDA_LAUNCH_CHECK("optimizer_step");
  }
  void to_low(const float* masters, void* low, DType low_dtype, int64_t n) override {
    if (low_dtype == DType::Float16)
      to_low_k<<<blocks_for(n), kThreads, 0, stream()>>>(masters, static_cast<__half*>(low), n);
    else if (low_dtype == DType::BFloat16)
      to_low_k<<<blocks_for(n), kThreads, 0, stream()>>>(masters, static_cast<__nv_bfloat16*>(low), n);
    else
      OTTER_FAIL("the low-precision weight copy must be float16 or bfloat16");
    OTTER_CUDA_LAUNCH_CHECK("to_low");
  }
  void commit(float* dst, const void* src, DType src_dtype, int64_t n, const float* scaler) override {
    OTTER_CUDA_DISPATCH_FLOAT(src_dtype, "commit", {
      commit_k<<<blocks_for(n), kThreads, 0, stream()>>>(dst, static_cast<const scalar_t*>(src), n, scaler);
    });
    OTTER_CUDA_LAUNCH_CHECK("commit");
  }

 private:
  static cudaStream_t stream() { return static_cast<cudaStream_t>(device_backend(Device::CUDA)->stream()); }
  // Scratch for the norm's partial sums, the clip factor and the per-step optimizer scalars:
  // allocated once, when the ops are installed (never during a capture: with gradient accumulation
  // the first step that clips and updates is the captured one, and a captured allocation would be
  // the graph's, not ours), and kept.
  void allocate_scratch() {
    size_t bytes = kMaxPartials * sizeof(double) + 256 + sizeof(math::UpdateScalars);
    char* p = static_cast<char*>(device_backend(Device::CUDA)->allocate(bytes));
    partials_ = reinterpret_cast<double*>(p);
    factor_ = reinterpret_cast<float*>(p + kMaxPartials * sizeof(double));
    scalars_ = reinterpret_cast<math::UpdateScalars*>(p + kMaxPartials * sizeof(double) + 256);
  }
  double* partials_ = nullptr;
  float* factor_ = nullptr;
  math::UpdateScalars* scalars_ = nullptr;
};

}  // namespace

void install_step_ops() {
  static CudaStepOps ops;
  set_step_ops(Device::CUDA, &ops);
}

}  // namespace otter::cuda
