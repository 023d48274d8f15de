// CUDA GEMM kernels through cuBLAS (cublasGemmEx / cublasGemmStridedBatchedEx) for FP32 (exact
// FP32 compute, no TF32), FP64, and FP16/BF16 (16-bit storage, FP32 accumulation). Row-major
// tensors are handed to column-major cuBLAS by computing Y^T = op(B)^T op(A)^T, i.e. with the
// operands swapped. MatMul follows numpy (1-D operands, broadcast batch dims): the batch is folded
// into M when B is a plain matrix, a strided-batched GEMM covers uniform batch strides, and a loop
// of GEMMs covers the remaining broadcasts. Gemm with a bias row (C of shape [N] or [1, N], beta 1,
// FP32/FP16/BF16: what exporters emit for nn.Linear) runs as one cuBLASLt matmul with the bias
// epilogue (added in FP32 before the single rounding of Y); other Gemms broadcast C into Y with a
// small kernel, then run one GEMM with beta. Empty dims write zeros (or beta * C), as the CPU does.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <algorithm>
#include <climits>
#include <mutex>
#include <type_traits>

#include "kernels/cuda/cuda_common.cuh"

namespace otter::cuda {
namespace {


[[noreturn]] void cublas_fail(const Node& node, const char* what, cublasStatus_t s) {
  throw Error(cat(node.describe(), ": ", what, " failed: ", cublasGetStatusName(s), " (", cublasGetStatusString(s), ")"),
              s == CUBLAS_STATUS_ALLOC_FAILED ? ErrorKind::OutOfMemory : ErrorKind::Internal);
}

#define OTTER_CUBLAS_CHECK(node, call)                                              \
  do {                                                                              \
    cublasStatus_t otter_st_ = (call);                                              \
    if (otter_st_ != CUBLAS_STATUS_SUCCESS) cublas_fail((node), #call, otter_st_); \
  } while (0)

// One handle per process, created on first use (function-local static: thread-safe init; a
// failed creation throws and is retried by the next call). Never destroyed: destroying it at
// exit could run after the CUDA context is gone. The mutex serialises set-stream + GEMM so two
// threads never rebind the shared handle under each other.
struct Blas {
  cublasHandle_t handle = nullptr;
  std::mutex mu;
};

Blas& blas_for(const Node& node) {
  static Blas* blas = [&] {
    cublasHandle_t h = nullptr;
    OTTER_CUBLAS_CHECK(node, cublasCreate(&h));
    Blas* b = new Blas;
    b->handle = h;
    return b;
  }();
  return *blas;
}

// cuBLAS storage/compute types and the host scale type for each storage type.
template <class T> struct BlasType;
template <> struct BlasType<float> {
  static constexpr cudaDataType_t data = CUDA_R_32F;
  static constexpr cublasComputeType_t compute = CUBLAS_COMPUTE_32F;  // exact FP32: no TF32
  using scale = float;
};
template <> struct BlasType<double> {
  static constexpr cudaDataType_t data = CUDA_R_64F;
  static constexpr cublasComputeType_t compute = CUBLAS_COMPUTE_64F;
  using scale = double;
};
template <> struct BlasType<__half> {
  static constexpr cudaDataType_t data = CUDA_R_16F;
  static constexpr cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  using scale = float;
};
template <> struct BlasType<__nv_bfloat16> {
  static constexpr cudaDataType_t data = CUDA_R_16BF;
  static constexpr cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  using scale = float;
};

int as_int(const Node& node, int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX)
    throw Error(cat(node.describe(), ": ", what, " ", v, " exceeds cuBLAS's 32-bit limit"), ErrorKind::Unsupported);
  return static_cast<int>(v);
}

// One row-major GEMM description: Y[m, n] (leading dim ldy) = alpha op(A)[m, k] op(B)[k, n] + beta Y,
// repeated `count` times with element strides sa, sb, sy between consecutive problems.
struct Problem {
  bool ta = false, tb = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldy = 0;
  int64_t sa = 0, sb = 0, sy = 0;
  int64_t count = 1;
  double alpha = 1.0, beta = 0.0;
};

// Runs p on the context's stream. Requires m, n, k > 0. Row-major Y = op(A) op(B) is column-major
// Y^T = op(B)^T op(A)^T: cuBLAS gets (B, A) with n and m swapped and the same transpose flags.
template <class T>
void run_gemm(const KernelContext& ctx, const T* a, const T* b, T* y, const Problem& p) {
  const Node& node = ctx.node;
  using BT = BlasType<T>;
  using S = typename BT::scale;
  S alpha = static_cast<S>(p.alpha), beta = static_cast<S>(p.beta);
  int m = as_int(node, p.m, "M"), n = as_int(node, p.n, "N"), k = as_int(node, p.k, "K");
  int lda = as_int(node, p.lda, "lda"), ldb = as_int(node, p.ldb, "ldb"), ldy = as_int(node, p.ldy, "ldy");
  cublasOperation_t opb = p.tb ? CUBLAS_OP_T : CUBLAS_OP_N, opa = p.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  Blas& blas = blas_for(node);
  std::lock_guard<std::mutex> lock(blas.mu);
  cublasHandle_t h = blas.handle;
  OTTER_CUBLAS_CHECK(node, cublasSetStream(h, stream_of(ctx)));
  OTTER_CUBLAS_CHECK(node, cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
  OTTER_CUBLAS_CHECK(node, cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));  // never TF32 for FP32
  if (p.count == 1) {
    OTTER_CUBLAS_CHECK(node, cublasGemmEx(h, opb, opa, n, m, k, &alpha, b, BT::data, ldb, a, BT::data, lda, &beta, y,
                                          BT::data, ldy, BT::compute, CUBLAS_GEMM_DEFAULT));
    return;
  }
  // Large batches go in chunks so no single call exceeds the grid limits some kernels have.
  constexpr int64_t kChunk = 65535;
  for (int64_t first = 0; first < p.count; first += kChunk) {
    int count = static_cast<int>(std::min(kChunk, p.count - first));
    OTTER_CUBLAS_CHECK(node, cublasGemmStridedBatchedEx(h, opb, opa, n, m, k, &alpha, b + first * p.sb, BT::data, ldb,
                                                        p.sb, a + first * p.sa, BT::data, lda, p.sa, &beta,
                                                        y + first * p.sy, BT::data, ldy, p.sy, count, BT::compute,
                                                        CUBLAS_GEMM_DEFAULT));
  }
}

void zero_fill(const KernelContext& ctx, Tensor& t) {
  if (t.nbytes() == 0) return;
  // All-zero bytes are +0.0 in every float format.
  OTTER_CUDA_CHECK(cudaMemsetAsync(t.raw(), 0, t.nbytes(), stream_of(ctx)));
}

// ---- MatMul ----

template <class T>
void matmul_typed(KernelContext& ctx) {
  const Tensor &A = ctx.in(0), &B = ctx.in(1);
  Tensor& Y = ctx.out(0);
  if (Y.numel() == 0) return;
  Shape a = A.shape(), b = B.shape();
  if (a.size() == 1) a.insert(a.begin(), 1);
  if (b.size() == 1) b.push_back(1);
  int64_t m = a[a.size() - 2], k = a[a.size() - 1], n = b[b.size() - 1];
  if (k == 0) {  // empty sum: zeros, as the CPU writes
    zero_fill(ctx, Y);
    return;
  }
  const T* pa = static_cast<const T*>(A.raw());
  const T* pb = static_cast<const T*>(B.raw());
  T* py = static_cast<T*>(Y.raw());
  Problem p;
  if (b.size() == 2) {  // fold A's batch into M: A is contiguous, so [..., M, K] is [rows, K]
    p.m = shape_numel(a) / k;
    p.n = n;
    p.k = k;
    p.lda = k;
    p.ldb = n;
    p.ldy = n;
    run_gemm<T>(ctx, pa, pb, py, p);
    return;
  }
  // Broadcast batch dims: the offset (in matrices) of A's and B's operand for each output batch.
  Shape batch_a(a.begin(), a.end() - 2), batch_b(b.begin(), b.end() - 2);
  size_t rank = std::max(batch_a.size(), batch_b.size());
  Shape batch(rank, 1), da(rank, 1), db(rank, 1);
  for (size_t i = 0; i < rank; ++i) {
    if (i + batch_a.size() >= rank) da[i] = batch_a[i + batch_a.size() - rank];
    if (i + batch_b.size() >= rank) db[i] = batch_b[i + batch_b.size() - rank];
    batch[i] = std::max(da[i], db[i]);
  }
  std::vector<int64_t> sta(rank, 0), stb(rank, 0);  // per-dim strides in matrices (0 = broadcast)
  for (int64_t i = static_cast<int64_t>(rank) - 1, ra = 1, rb = 1; i >= 0; --i) {
    sta[i] = da[i] == 1 ? 0 : ra;
    stb[i] = db[i] == 1 ? 0 : rb;
    ra *= da[i];
    rb *= db[i];
  }
  int64_t nb = shape_numel(batch);
  std::vector<int64_t> off_a(static_cast<size_t>(nb)), off_b(static_cast<size_t>(nb));
  for (int64_t i = 0; i < nb; ++i) {
    int64_t rest = i, oa = 0, ob = 0;
    for (int64_t d = static_cast<int64_t>(rank) - 1; d >= 0; --d) {
      int64_t idx = rest % batch[d];
      rest /= batch[d];
      oa += idx * sta[d];
      ob += idx * stb[d];
    }
    off_a[i] = oa;
    off_b[i] = ob;
  }
  auto uniform = [&](const std::vector<int64_t>& off) {
    int64_t step = nb > 1 ? off[1] - off[0] : 0;
    for (int64_t i = 0; i < nb; ++i)
      if (off[i] != i * step) return false;
    return true;
  };
  p.m = m;
  p.n = n;
  p.k = k;
  p.lda = k;
  p.ldb = n;
  p.ldy = n;
  if (uniform(off_a) && uniform(off_b)) {
    p.count = nb;
    p.sa = (nb > 1 ? off_a[1] : 0) * m * k;
    p.sb = (nb > 1 ? off_b[1] : 0) * k * n;
    p.sy = m * n;
    run_gemm<T>(ctx, pa, pb, py, p);
    return;
  }
  for (int64_t i = 0; i < nb; ++i) run_gemm<T>(ctx, pa + off_a[i] * m * k, pb + off_b[i] * k * n, py + i * m * n, p);
}

void matmul_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), matmul_typed<scalar_t>(ctx));
}

// ---- Gemm ----

// cuBLASLt: one handle and one 32 MiB workspace per process, created on first use (the first,
// uncaptured step of a plan, never inside a CUDA graph capture) and kept.
struct Lt {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 32u << 20;
};

Lt& lt_for(const Node& node) {
  static Lt* lt = [&] {
    Lt* l = new Lt;
    OTTER_CUBLAS_CHECK(node, cublasLtCreate(&l->handle));
    OTTER_CUDA_CHECK(cudaMalloc(&l->workspace, l->workspace_bytes));
    return l;
  }();
  return *lt;
}

// RAII for the cuBLASLt descriptors of one call.
struct LtDescs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~LtDescs() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// Y = alpha op(A) op(B) + bias (broadcast over rows) through the bias epilogue. Returns false, having
// launched nothing, when cuBLASLt offers no algorithm for the problem (the caller then uses cuBLAS).
template <class T>
bool lt_bias_gemm(const KernelContext& ctx, const T* a, const T* b, const T* bias, T* y, bool ta, bool tb, int64_t m64,
                  int64_t n64, int64_t k64, double alpha_d) {
  const Node& node = ctx.node;
  using BT = BlasType<T>;
  using S = typename BT::scale;
  S alpha = static_cast<S>(alpha_d), beta = S(0);
  int m = as_int(node, m64, "M"), n = as_int(node, n64, "N"), k = as_int(node, k64, "K");
  // Column-major view with the operands swapped (see run_gemm): D (n x m) = op(B') (n x k) op(A') (k x m).
  cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  Lt& lt = lt_for(node);
  LtDescs d;
  const cudaDataType_t scale_type = std::is_same<S, double>::value ? CUDA_R_64F : CUDA_R_32F;
  OTTER_CUBLAS_CHECK(node, cublasLtMatmulDescCreate(&d.op, BT::compute, scale_type));
  OTTER_CUBLAS_CHECK(node, cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &opb, sizeof(opb)));
  OTTER_CUBLAS_CHECK(node, cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &opa, sizeof(opa)));
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
  OTTER_CUBLAS_CHECK(node, cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
  OTTER_CUBLAS_CHECK(node, cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  // B' is B read column-major: [K, N] row-major -> n x k (ld n); transposed: [N, K] -> k x n (ld k).
  OTTER_CUBLAS_CHECK(node, cublasLtMatrixLayoutCreate(&d.b, BT::data, tb ? k : n, tb ? n : k, tb ? k : n));
  // A' likewise: [M, K] -> k x m (ld k); transposed: [K, M] -> m x k (ld m).
  OTTER_CUBLAS_CHECK(node, cublasLtMatrixLayoutCreate(&d.a, BT::data, ta ? m : k, ta ? k : m, ta ? m : k));
  OTTER_CUBLAS_CHECK(node, cublasLtMatrixLayoutCreate(&d.d, BT::data, n, m, n));
  OTTER_CUBLAS_CHECK(node, cublasLtMatmulPreferenceCreate(&d.pref));
  OTTER_CUBLAS_CHECK(node, cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                                &lt.workspace_bytes, sizeof(lt.workspace_bytes)));
  // Parameters are views into the flat buffers at any element offset: tell the heuristic the real
  // alignment of each pointer (it assumes 256 bytes otherwise).
  auto alignment = [](const void* p) {
    uint32_t a = 256;
    while (a > 1 && reinterpret_cast<uintptr_t>(p) % a != 0) a >>= 1;
    return a;
  };
  const uint32_t align_a = alignment(b), align_b = alignment(a), align_d = alignment(y);
  OTTER_CUBLAS_CHECK(node, cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                                &align_a, sizeof(align_a)));
  OTTER_CUBLAS_CHECK(node, cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                                &align_b, sizeof(align_b)));
  OTTER_CUBLAS_CHECK(node, cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                                &align_d, sizeof(align_d)));
  OTTER_CUBLAS_CHECK(node, cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                                &align_d, sizeof(align_d)));
  // The bias epilogue reads the bias vector with vector loads on some kernels: keep it simple and
  // use the epilogue only for a 16-byte aligned bias (else the cuBLAS path adds it).
  if (reinterpret_cast<uintptr_t>(bias) % 16 != 0) return false;
  cublasLtMatmulHeuristicResult_t heuristic;
  int found = 0;
  cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(lt.handle, d.op, d.b, d.a, d.d, d.d, d.pref, 1, &heuristic, &found);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) return false;
  OTTER_CUBLAS_CHECK(node, cublasLtMatmul(lt.handle, d.op, &alpha, b, d.b, a, d.a, &beta, y, d.d, y, d.d,
                                          &heuristic.algo, lt.workspace, lt.workspace_bytes, stream_of(ctx)));
  return true;
}

// Y[i, j] = C[i * rs + j * cs] (rs/cs are 0 along broadcast dims): a plain copy, no rounding.
template <class T>
__global__ void broadcast_c_k(const T* c, T* y, int64_t m, int64_t n, int64_t rs, int64_t cs) {
  GRID_STRIDE(i, m * n) y[i] = c[(i / n) * rs + (i % n) * cs];
}

// y = beta * y, computed in FP32 (FP64 for double) and rounded once.
template <class T>
__global__ void scale_k(T* y, int64_t count, double beta) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, count) store(y, i, static_cast<C>(beta) * static_cast<C>(load(y, i)));
}

template <class T>
void gemm_typed(KernelContext& ctx) {
  const Tensor &A = ctx.in(0), &B = ctx.in(1);
  Tensor& Y = ctx.out(0);
  bool ta = ctx.node.attr_int("transA", 0) != 0, tb = ctx.node.attr_int("transB", 0) != 0;
  double alpha = ctx.node.attr_float("alpha", 1.0), beta = ctx.node.attr_float("beta", 1.0);
  int64_t m = Y.shape()[0], n = Y.shape()[1], k = A.shape()[ta ? 0 : 1];
  if (m == 0 || n == 0) return;
  T* py = static_cast<T*>(Y.raw());
  const bool bias_row = ctx.has_input(2) && beta == 1.0 && k > 0 && !std::is_same<T, double>::value &&
                        ctx.in(2).numel() == n && (ctx.in(2).rank() == 1 || (ctx.in(2).rank() == 2 && ctx.in(2).shape()[0] == 1));
  if (bias_row && lt_bias_gemm<T>(ctx, static_cast<const T*>(A.raw()), static_cast<const T*>(B.raw()),
                                  static_cast<const T*>(ctx.in(2).raw()), py, ta, tb, m, n, k, alpha))
    return;
  if (ctx.has_input(2) && beta != 0.0) {
    const Tensor& C = ctx.in(2);
    Shape cs = C.shape();
    OTTER_CHECK(cs.size() <= 2, ctx.node.describe(), ": C must have rank <= 2, got ", shape_str(cs));
    while (cs.size() < 2) cs.insert(cs.begin(), 1);
    int64_t row_stride = cs[0] == 1 ? 0 : cs[1], col_stride = cs[1] == 1 ? 0 : 1;
    broadcast_c_k<T><<<blocks_for(m * n), kThreads, 0, stream_of(ctx)>>>(static_cast<const T*>(C.raw()), py, m, n,
                                                                         row_stride, col_stride);
    OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
  } else {
    beta = 0.0;
  }
  if (k == 0) {  // empty sum: Y = beta * C
    if (beta == 0.0) {
      zero_fill(ctx, Y);
    } else if (beta != 1.0) {
      scale_k<T><<<blocks_for(m * n), kThreads, 0, stream_of(ctx)>>>(py, m * n, beta);
      OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
    }
    return;
  }
  Problem p;
  p.ta = ta;
  p.tb = tb;
  p.m = m;
  p.n = n;
  p.k = k;
  p.lda = A.shape()[1];
  p.ldb = B.shape()[1];
  p.ldy = n;
  p.alpha = alpha;
  p.beta = beta;
  run_gemm<T>(ctx, static_cast<const T*>(A.raw()), static_cast<const T*>(B.raw()), py, p);
}

void gemm_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), gemm_typed<scalar_t>(ctx));
}

}  // namespace

void register_matmul_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};
  r.add("", "MatMul", Device::CUDA, f, matmul_kernel);
  r.add("", "Gemm", Device::CUDA, f, gemm_kernel);
}

}  // namespace otter::cuda
