// CPU GEMM kernels through OpenBLAS (cblas_sgemm / cblas_dgemm, multi-threaded by OpenBLAS).
// MatMul folds the batch into M when B is a plain matrix (the common linear-layer case) and
// otherwise loops over the broadcast batch; Gemm maps directly onto one BLAS call after
// broadcasting C into the output.
#include <cblas.h>

#include "kernels/cpu/cpu_common.h"

namespace otter::cpu {
namespace {

void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, double beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
              (int)k, (float)alpha, a, (int)lda, b, (int)ldb, (float)beta, c, (int)ldc);
}
void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
               const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
              (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}
template <class T>
void naive_gemm(bool, bool, int64_t m, int64_t n, int64_t k, double, const T* a, int64_t, const T* b, int64_t,
                double, T* c, int64_t) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      T acc = 0;
      for (int64_t p = 0; p < k; ++p) acc += a[i * k + p] * b[p * n + j];
      c[i * n + j] = acc;
    }
}

template <class T>
void gemm_any(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const T* a, int64_t lda,
              const T* b, int64_t ldb, double beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0 ? T(0) : static_cast<T>(beta * c[i * ldc + j]);
    return;
  }
  if constexpr (std::is_floating_point_v<T>) blas_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else naive_gemm<T>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <class T>
void matmul_typed(const Tensor& A, const Tensor& B, Tensor& Y) {
  Shape a = A.shape(), b = B.shape();
  if (a.size() == 1) a.insert(a.begin(), 1);
  if (b.size() == 1) b.push_back(1);
  int64_t m = a[a.size() - 2], k = a[a.size() - 1], n = b[b.size() - 1];
  const T* pa = A.data<T>();
  const T* pb = B.data<T>();
  T* py = Y.data<T>();
  if (b.size() == 2) {  // fold the batch of A into M
    int64_t rows = shape_numel(a) / (k ? k : 1);
    if (k == 0) rows = shape_numel(Shape(a.begin(), a.end() - 1));
    gemm_any<T>(false, false, rows, n, k, 1.0, pa, k, pb, n, 0.0, py, n);
    return;
  }
  Shape batch_a(a.begin(), a.end() - 2), batch_b(b.begin(), b.end() - 2);
  size_t rank = std::max(batch_a.size(), batch_b.size());
  Shape batch(rank, 1);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i + batch_a.size() >= rank ? batch_a[i + batch_a.size() - rank] : 1;
    int64_t db = i + batch_b.size() >= rank ? batch_b[i + batch_b.size() - rank] : 1;
    batch[i] = std::max(da, db);
  }
  BroadcastIndexer it(batch, {&batch_a, &batch_b});
  it.seek(0);
  int64_t nb = shape_numel(batch);
  for (int64_t i = 0; i < nb; ++i, it.next())
    gemm_any<T>(false, false, m, n, k, 1.0, pa + it.offset(0) * m * k, k, pb + it.offset(1) * k * n, n, 0.0,
                py + i * m * n, n);
}

void matmul_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_NUMERIC(ctx.in(0).dtype(), ctx.node.describe(),
                         matmul_typed<scalar_t>(ctx.in(0), ctx.in(1), ctx.out(0)));
}

template <class T>
void gemm_typed(KernelContext& ctx) {
  const Tensor &A = ctx.in(0), &B = ctx.in(1);
  Tensor& Y = ctx.out(0);
  bool ta = ctx.node.attr_int("transA", 0) != 0, tb = ctx.node.attr_int("transB", 0) != 0;
  double alpha = ctx.node.attr_float("alpha", 1.0), beta = ctx.node.attr_float("beta", 1.0);
  int64_t m = Y.shape()[0], n = Y.shape()[1], k = A.shape()[ta ? 0 : 1];
  T* py = Y.data<T>();
  if (ctx.has_input(2) && beta != 0.0) {
    const Tensor& C = ctx.in(2);
    const T* pc = C.data<T>();
    if (C.numel() == n && (C.rank() == 1 || (C.rank() == 2 && C.shape()[0] == 1))) {  // a bias row
      for (int64_t i = 0; i < m; ++i) std::memcpy(py + i * n, pc, static_cast<size_t>(n) * sizeof(T));
    } else {
      BroadcastIndexer it(Y.shape(), {&C.shape()});
      it.seek(0);
      for (int64_t i = 0; i < m * n; ++i, it.next()) py[i] = pc[it.offset(0)];
    }
  } else {
    beta = 0.0;
  }
  gemm_any<T>(ta, tb, m, n, k, alpha, A.data<T>(), A.shape()[1], B.data<T>(), B.shape()[1], beta, py, n);
}

void gemm_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), gemm_typed<scalar_t>(ctx));
}

}  // namespace

void register_matmul_kernels(KernelRegistry& r) {
  r.add("", "MatMul", Device::CPU, {DType::Float32, DType::Float64, DType::Int64, DType::Int32}, matmul_kernel);
  r.add("", "Gemm", Device::CPU, {DType::Float32, DType::Float64}, gemm_kernel);
}

}  // namespace otter::cpu
