// CPU GEMM kernels, all on the OpenMP pool: FP32 through oneDNN's sgemm (OpenBLAS's cblas_sgemm
// without oneDNN), FP64 through OpenBLAS (cblas_dgemm), BF16 through oneDNN (BF16 operands, FP32
// accumulation, BF16 result; registered only where the CPU has BF16 dot products,
// kernels/cpu/onednn.h; elsewhere BF16 data is widened to FP32 by the plan). MatMul folds the
// batch into M when B is a plain matrix (the common linear-layer case), runs the items of a batch
// both sides share in parallel (attention), and otherwise one GEMM per broadcast batch item; Gemm
// maps onto one GEMM after broadcasting C into the output, or one row block per thread when it is
// small. FP16 (and BF16 without BF16 dot products) has widening kernels for those parallel cases
// (registry.h): each thread converts its part in cache and makes the FP32 kernel's GEMM calls, or,
// for an FP16 Gemm, runs gemm_half.h's register tiles, which give the same bits without the FP32
// copies.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/gemm_half.h"
#include "kernels/cpu/onednn.h"
#include "runtime/core/convert.h"
#include "runtime/core/half.h"

namespace otter::cpu {
namespace {

void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, double beta, float* c, int64_t ldc) {
  static const bool use_onednn = onednn::available();
  if (use_onednn) return onednn::sgemm(ta, tb, m, n, k, (float)alpha, a, lda, b, ldb, (float)beta, c, ldc);
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

// The GEMMs of one MatMul (numpy semantics): gemm(rows, n, k, a_offset, b_offset, y_offset) per
// GEMM, offsets in elements; A's batch folds into the rows when B is a matrix.
template <class Fn>
void matmul_gemms(Shape a, Shape b, Fn gemm) {
  if (a.size() == 1) a.insert(a.begin(), 1);
  if (b.size() == 1) b.push_back(1);
  int64_t m = a[a.size() - 2], k = a[a.size() - 1], n = b[b.size() - 1];
  if (b.size() == 2) {  // fold the batch of A into M
    gemm(shape_numel(Shape(a.begin(), a.end() - 1)), n, k, 0, 0, 0);
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
  for (int64_t i = 0; i < nb; ++i, it.next()) gemm(m, n, k, it.offset(0) * m * k, it.offset(1) * k * n, i * m * n);
}

// The parallel_for grain for the batch items of a same-batch MatMul (items GEMMs of m x n x k):
// in parallel, one single-threaded GEMM each, when there are enough of them or they are too small
// for a threaded GEMM to pay (attention's products); else one after another (grain = items), each
// GEMM on all threads.
int64_t min_items_per_thread(int64_t items, int64_t m, int64_t n, int64_t k) {
  const int64_t work = std::max<int64_t>(1, m * n * std::max<int64_t>(k, 1));
#if defined(_OPENMP)
  const int64_t threads = omp_get_max_threads();
#else
  const int64_t threads = 1;
#endif
  if (items < 2 * threads && work >= (int64_t(1) << 22)) return items;  // serial items
  return std::max<int64_t>(1, (int64_t(1) << 17) / work);
}

// A MatMul whose operands share their batch dims (attention's [batch, heads, t, d] products):
// `items` GEMMs of [m, k] x [k, n], stored one after another.
struct SameBatch {
  int64_t items = 0, m = 0, k = 0, n = 0;
};
std::optional<SameBatch> same_batch(const Shape& a, const Shape& b) {
  if (!(a.size() >= 3 && a.size() == b.size() && std::equal(a.begin(), a.end() - 2, b.begin()))) return std::nullopt;
  return SameBatch{shape_numel(Shape(a.begin(), a.end() - 2)), a[a.size() - 2], a.back(), b.back()};
}

template <class T>
void matmul_typed(const Tensor& A, const Tensor& B, Tensor& Y) {
  const T* pa = A.data<T>();
  const T* pb = B.data<T>();
  T* py = Y.data<T>();
  if (const auto sb = same_batch(A.shape(), B.shape())) {
    const int64_t m = sb->m, k = sb->k, n = sb->n;
    parallel_for(sb->items, [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i)
        gemm_any<T>(false, false, m, n, k, 1.0, pa + i * m * k, k, pb + i * k * n, n, 0.0, py + i * m * n, n);
    }, min_items_per_thread(sb->items, m, n, k));
    return;
  }
  matmul_gemms(A.shape(), B.shape(), [&](int64_t m, int64_t n, int64_t k, int64_t oa, int64_t ob, int64_t oy) {
    gemm_any<T>(false, false, m, n, k, 1.0, pa + oa, k, pb + ob, n, 0.0, py + oy, n);
  });
}

// BF16 storage through oneDNN. k = 0 gives zeros (+0.0 is the all-zero bit pattern).
void bf16_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const uint16_t* a, int64_t lda,
               const uint16_t* b, int64_t ldb, float beta, uint16_t* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    OTTER_CHECK(beta == 0.0f, "bf16 gemm: k = 0 with beta != 0 is not supported");
    for (int64_t i = 0; i < m; ++i) std::memset(c + i * ldc, 0, static_cast<size_t>(n) * sizeof(uint16_t));
    return;
  }
  onednn::Gemm g;
  g.ab = g.c = DType::BFloat16;
  g.trans_a = ta;
  g.trans_b = tb;
  g.m = m;
  g.n = n;
  g.k = k;
  g.lda = lda;
  g.ldb = ldb;
  g.ldc = ldc;
  g.alpha = alpha;
  g.beta = beta;
  onednn::gemm(g, a, b, c);
}

void matmul_bf16_kernel(KernelContext& ctx) {
  const uint16_t* pa = static_cast<const uint16_t*>(ctx.in(0).raw());
  const uint16_t* pb = static_cast<const uint16_t*>(ctx.in(1).raw());
  uint16_t* py = static_cast<uint16_t*>(ctx.out(0).raw());
  const Shape& a = ctx.in(0).shape();
  const Shape& b = ctx.in(1).shape();
  if (const auto sb = same_batch(a, b)) {
    // One batched oneDNN primitive instead of one call per batch item.
    onednn::Gemm g;
    g.ab = g.c = DType::BFloat16;
    g.m = sb->m;
    g.k = sb->k;
    g.n = sb->n;
    g.lda = g.k;
    g.ldb = g.n;
    g.ldc = g.n;
    g.batch = sb->items;
    g.stride_a = g.m * g.k;
    g.stride_b = g.k * g.n;
    g.stride_c = g.m * g.n;
    if (g.batch > 0 && g.m > 0 && g.n > 0 && g.k > 0) {
      onednn::gemm(g, pa, pb, py);
      return;
    }
  }
  matmul_gemms(a, b, [&](int64_t m, int64_t n, int64_t k, int64_t oa, int64_t ob, int64_t oy) {
    bf16_gemm(false, false, m, n, k, 1.0f, pa + oa, k, pb + ob, n, 0.0f, py + oy, n);
  });
}

void matmul_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_NUMERIC(ctx.in(0).dtype(), ctx.node.describe(),
                         matmul_typed<scalar_t>(ctx.in(0), ctx.in(1), ctx.out(0)));
}

// Per-thread FP32 buffers of the widening kernels, `which` of 3: kept between calls up to 1M
// floats each (a fresh block every call costs page faults), uninitialised.
class ThreadBuffer {
 public:
  ThreadBuffer(int which, int64_t n) {
    constexpr size_t kKept = size_t(1) << 20;
    thread_local std::unique_ptr<float[]> kept[3];
    thread_local size_t size[3] = {0, 0, 0};
    const size_t want = static_cast<size_t>(std::max<int64_t>(n, 1));
    if (want > kKept) {
      own_.reset(new float[want]);
      data_ = own_.get();
      return;
    }
    if (size[which] < want) {
      kept[which].reset(new float[want]);
      size[which] = want;
    }
    data_ = kept[which].get();
  }
  float* get() const { return data_; }

 private:
  std::unique_ptr<float[]> own_;
  float* data_ = nullptr;
};

// The widening kernel of MatMul (registry.h) for FP16/BF16 storage with FP32 compute (design
// decision 7), for the same batch on both sides (attention's [batch, heads, t, d] products): the
// batch items run in parallel, each widened into the thread's FP32 buffers, multiplied by the FP32
// GEMM and rounded into the output while it is in cache, instead of whole-tensor widening and
// rounding passes around matmul_kernel. Each item is the FP32 GEMM call the widened path makes,
// on the same FP32 values; FP16 items go through half_gemm (gemm_half.h), which converts in its
// register tiles and gives the same bits. Other shapes (a weight matrix, broadcast batches)
// return false.
bool matmul_widening_kernel(KernelContext& ctx) {
  const Tensor& A = ctx.in(0);
  const Tensor& B = ctx.in(1);
  Tensor& Y = ctx.out(0);
  const DType t = A.dtype();
  const auto sb = same_batch(A.shape(), B.shape());
  if (!ctx.rounds_nothing() || (t != DType::Float16 && t != DType::BFloat16) || B.dtype() != t || Y.dtype() != t || !sb)
    return false;
  const auto* pa = static_cast<const uint16_t*>(A.raw());
  const auto* pb = static_cast<const uint16_t*>(B.raw());
  auto* py = static_cast<uint16_t*>(Y.raw());
  const int64_t m = sb->m, k = sb->k, n = sb->n;
  // gemm_half.h per item, where its panels have no padded columns (small items with a partial
  // panel, such as 24 columns, are faster through the FP32 GEMM).
  if (t == DType::Float16 && n % half_gemm_panel_width() == 0 && half_gemm_supported(m, n, k, false) &&
      half_gemm_matches_sgemm()) {
    parallel_for(sb->items, [&](int64_t first, int64_t last) {
      HalfGemm h;
      h.m = m, h.n = n, h.k = k, h.lda = k, h.b_type = DType::Float16, h.ldb = n, h.ldy = n;
      const int64_t packed_size = half_gemm_packed_size(h);
      // A panel of B is B itself when n is the panel width (attention's head size 32): the items'
      // B widened in one pass is then their packed form.
      // A blocked item (k past 384) widens its B block by block itself: nothing to pack.
      const bool blocked = half_gemm_blocked(h), b_is_packed = !blocked && n == half_gemm_panel_width();
      ThreadBuffer rows(0, half_gemm_scratch_size(h, m)),
          packed(1, blocked ? 0 : b_is_packed ? (last - first) * k * n : packed_size);
      if (b_is_packed) widen_n(DType::Float16, pb + first * k * n, packed.get(), (last - first) * k * n);
      for (int64_t i = first; i < last; ++i) {
        h.a = pa + i * m * k, h.b = pb + i * k * n, h.y = py + i * m * n;
        const float* pack = b_is_packed ? packed.get() + (i - first) * k * n : packed.get();
        if (!b_is_packed && !blocked)
          half_gemm_pack(h, packed.get(), 0, (n + half_gemm_panel_width() - 1) / half_gemm_panel_width());
        half_gemm_rows(h, pack, 0, m, rows.get());
      }
    }, min_items_per_thread(sb->items, m, n, k));
    return true;
  }
  parallel_for(sb->items, [&](int64_t first, int64_t last) {
    ThreadBuffer fa(0, m * k), fb(1, k * n), fy(2, m * n);
    for (int64_t i = first; i < last; ++i) {
      widen_n(t, pa + i * m * k, fa.get(), m * k);
      widen_n(t, pb + i * k * n, fb.get(), k * n);
      gemm_any<float>(false, false, m, n, k, 1.0, fa.get(), k, fb.get(), n, 0.0, fy.get(), n);
      narrow_n(t, fy.get(), py + i * m * n, m * n);
    }
  }, min_items_per_thread(sb->items, m, n, k));
  return true;
}

// Broadcasts Gemm's C into Y ([m, n]) as raw elements of `bytes` each; false when there is no C
// to add (absent, or beta = 0).
bool broadcast_c(KernelContext& ctx, double beta, size_t bytes) {
  if (!ctx.has_input(2) || beta == 0.0) return false;
  const Tensor& C = ctx.in(2);
  Tensor& Y = ctx.out(0);
  int64_t m = Y.shape()[0], n = Y.shape()[1];
  const char* pc = static_cast<const char*>(C.raw());
  char* py = static_cast<char*>(Y.raw());
  if (C.numel() == n && (C.rank() == 1 || (C.rank() == 2 && C.shape()[0] == 1))) {  // a bias row
    for (int64_t i = 0; i < m; ++i) std::memcpy(py + i * n * bytes, pc, static_cast<size_t>(n) * bytes);
  } else {
    BroadcastIndexer it(Y.shape(), {&C.shape()});
    it.seek(0);
    for (int64_t i = 0; i < m * n; ++i, it.next()) std::memcpy(py + i * bytes, pc + it.offset(0) * bytes, bytes);
  }
  return true;
}

struct GemmArgs {
  bool ta, tb;
  double alpha, beta;
  int64_t m, n, k;
};

// The node's attributes and the GEMM's sizes, C not looked at.
GemmArgs gemm_shape(const KernelContext& ctx) {
  GemmArgs g;
  g.ta = ctx.node.attr_int("transA", 0) != 0;
  g.tb = ctx.node.attr_int("transB", 0) != 0;
  g.alpha = ctx.node.attr_float("alpha", 1.0);
  g.beta = ctx.node.attr_float("beta", 1.0);
  g.m = ctx.out(0).shape()[0];
  g.n = ctx.out(0).shape()[1];
  g.k = ctx.in(0).shape()[g.ta ? 0 : 1];
  return g;
}

// gemm_shape, with C broadcast into the output (beta 0 when there is no C to add).
GemmArgs gemm_args(KernelContext& ctx, size_t bytes) {
  GemmArgs g = gemm_shape(ctx);
  if (!broadcast_c(ctx, g.beta, bytes)) g.beta = 0.0;
  return g;
}

// A small GEMM (a d64 transformer's linear layers and their gradients; with transA, a weight
// gradient summing at most 768 rows) runs as one block of rows per thread, each a
// single-threaded GEMM: the threads then share the widening and rounding of the FP16/BF16 path
// (gemm_widening_kernel), which sums as the FP32 kernel does on the same FP32 values, and so
// gives the same bits, whatever the number of threads. Larger GEMMs are one GEMM on all threads.
bool row_blocked(const GemmArgs& g) {
  return (!g.ta || g.k <= 768) && g.m > 0 && g.n > 0 && g.k > 0 && g.m * g.n * g.k <= (int64_t(1) << 24);
}

// fn(r0, r1) over blocks of rows, in parallel when each thread gets at least 2^17 multiply-adds
// (and 16 rows); a tiny GEMM is one block, without a parallel region.
template <class Fn>
void for_row_blocks(int64_t m, int64_t n, int64_t k, Fn fn) {
  parallel_for(m, [&](int64_t r0, int64_t r1) { fn(r0, r1); },
               std::max<int64_t>(16, (int64_t(1) << 17) / std::max<int64_t>(1, n * k)));
}

template <class T>
void gemm_typed(KernelContext& ctx) {
  GemmArgs g = gemm_args(ctx, sizeof(T));
  const Tensor &A = ctx.in(0), &B = ctx.in(1);
  const int64_t lda = A.shape()[1], ldb = B.shape()[1];
  if (std::is_same_v<T, float> && row_blocked(g)) {
    for_row_blocks(g.m, g.n, g.k, [&](int64_t r0, int64_t r1) {  // with transA, rows of Y are columns of A
      gemm_any<T>(g.ta, g.tb, r1 - r0, g.n, g.k, g.alpha, A.data<T>() + (g.ta ? r0 : r0 * lda), lda, B.data<T>(), ldb,
                  g.beta, ctx.out(0).data<T>() + r0 * g.n, g.n);
    });
    return;
  }
  gemm_any<T>(g.ta, g.tb, g.m, g.n, g.k, g.alpha, A.data<T>(), lda, B.data<T>(), ldb, g.beta, ctx.out(0).data<T>(), g.n);
}

// half_gemm (gemm_half.h) over the threads by the FP32 kernel's row blocks, B packed once (its
// panels on all threads: a weight gradient's B is the larger operand).
void run_half_gemm(const HalfGemm& h) {
  const bool blocked = half_gemm_blocked(h);
  ThreadBuffer packed(1, blocked ? 0 : half_gemm_packed_size(h));
  const int64_t panels = (h.n + half_gemm_panel_width() - 1) / half_gemm_panel_width();
  if (!blocked)
    parallel_for(panels, [&](int64_t q0, int64_t q1) { half_gemm_pack(h, packed.get(), q0, q1); },
                 std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, h.k * half_gemm_panel_width())));
  for_row_blocks(h.m, h.n, h.k, [&](int64_t r0, int64_t r1) {
    ThreadBuffer rows(0, half_gemm_scratch_size(h, r1 - r0));
    half_gemm_rows(h, packed.get(), r0, r1, rows.get());
  });
}

// The widening kernel of Gemm (registry.h) for a row-blocked GEMM (row_blocked) with FP16/BF16 A
// and output. FP16 with alpha 1 and at most a bias row takes half_gemm (gemm_half.h), which
// converts inside its register tiles, where it gives the widened path's bits
// (half_gemm_matches_sgemm); its output may also be an FP32 tensor standing for the FP16 one (a
// fused output Cast, KernelContext::rounded_outputs). Otherwise each thread widens its rows of A,
// runs its GEMM and rounds its rows of the output while they are in cache. B and a bias row C may
// be 16-bit (widened once) or FP32 (the wide weight copies). Other cases return false.
bool gemm_widening_kernel(KernelContext& ctx) {
  const Tensor &A = ctx.in(0), &B = ctx.in(1);
  Tensor& Y = ctx.out(0);
  const DType t = A.dtype();
  auto usable = [&](const Tensor& x) { return x.dtype() == t || x.dtype() == DType::Float32; };
  for (size_t i = 0; i < ctx.inputs.size(); ++i)
    if (ctx.rounded_input(i) != DType::Undefined) return false;
  // An FP32 output that stands for an FP16 one (a fused output Cast): the FP16 GEMM only.
  const bool wide_y = ctx.rounded_output(0) == DType::Float16 && Y.dtype() == DType::Float32 && t == DType::Float16;
  if ((t != DType::Float16 && t != DType::BFloat16) || (Y.dtype() != t && !wide_y) || !usable(B) || A.rank() != 2 ||
      B.rank() != 2)
    return false;
  const GemmArgs g = gemm_shape(ctx);
  if (!row_blocked(g)) return false;
  const Tensor* C = ctx.has_input(2) && g.beta != 0.0 ? &ctx.in(2) : nullptr;
  if (C && (!usable(*C) || C->numel() != g.n || (C->rank() != 1 && !(C->rank() == 2 && C->shape()[0] == 1))))
    return false;  // only a bias row (the linear layers')
  // With transA (a weight gradient) only over at most 384 rows: past that, B's panels no longer
  // stay in L1 across the row tiles and widening for the FP32 GEMM is faster.
  if (t == DType::Float16 && g.alpha == 1.0 && (!C || g.beta == 1.0) && (!g.ta || g.k <= 768) &&
      half_gemm_supported(g.m, g.n, g.k, C) && half_gemm_matches_sgemm()) {
    HalfGemm h;
    h.m = g.m, h.n = g.n, h.k = g.k;
    h.a = static_cast<const uint16_t*>(A.raw()), h.lda = A.shape()[1], h.trans_a = g.ta;
    h.b = B.raw(), h.b_type = B.dtype(), h.ldb = B.shape()[1], h.trans_b = g.tb;
    if (C) h.bias = C->raw(), h.bias_type = C->dtype();
    if (wide_y) h.y_wide = Y.data<float>();
    else h.y = static_cast<uint16_t*>(Y.raw());
    h.ldy = g.n;
    run_half_gemm(h);
    return true;
  }
  if (wide_y || g.ta) return false;  // the rows of A below are rows: no transA
  auto as_float = [&](const Tensor& x, std::vector<float>& buf) -> const float* {
    if (x.dtype() == DType::Float32) return x.data<float>();
    buf.resize(static_cast<size_t>(x.numel()));
    widen_n(t, x.raw(), buf.data(), x.numel());
    return buf.data();
  };
  std::vector<float> b_buf, c_buf;
  const float* pb = as_float(B, b_buf);
  const float* pc = C ? as_float(*C, c_buf) : nullptr;
  const auto* pa = static_cast<const uint16_t*>(A.raw());
  auto* py = static_cast<uint16_t*>(Y.raw());
  const int64_t lda = A.shape()[1], ldb = B.shape()[1];
  for_row_blocks(g.m, g.n, g.k, [&](int64_t r0, int64_t r1) {
    const int64_t rows = r1 - r0;
    ThreadBuffer fa(0, rows * g.k), fy(2, rows * g.n);
    widen_n(t, pa + r0 * lda, fa.get(), rows * g.k);
    if (pc)
      for (int64_t i = 0; i < rows; ++i) std::memcpy(fy.get() + i * g.n, pc, static_cast<size_t>(g.n) * sizeof(float));
    gemm_any<float>(false, g.tb, rows, g.n, g.k, g.alpha, fa.get(), g.k, pb, ldb, pc ? g.beta : 0.0, fy.get(), g.n);
    narrow_n(t, fy.get(), py + r0 * g.n, rows * g.n);
  });
  return true;
}

void gemm_bf16_kernel(KernelContext& ctx) {
  GemmArgs g = gemm_args(ctx, sizeof(uint16_t));
  const Tensor &A = ctx.in(0), &B = ctx.in(1);
  bf16_gemm(g.ta, g.tb, g.m, g.n, g.k, static_cast<float>(g.alpha), static_cast<const uint16_t*>(A.raw()),
            A.shape()[1], static_cast<const uint16_t*>(B.raw()), B.shape()[1], static_cast<float>(g.beta),
            static_cast<uint16_t*>(ctx.out(0).raw()), g.n);
}

}  // namespace

// Whether half_gemm gives the bits of the widened path here (the FP32 GEMM of this build and
// CPU on widened operands, rounded): checked once on three GEMMs, with and without a bias row,
// and one with transA summing in two chains.
bool half_gemm_matches_sgemm() {
  static const bool same = [] {
    if (!half_gemm_supported(2, 1, 1, false)) return false;  // no AVX-512 (or OTTER_CPU_ISA=scalar)
    struct Probe {
      int64_t m, n, k;
      bool trans_a, trans_b, bias;
    };
    for (const Probe& p : {Probe{20, 70, 200, false, true, true}, Probe{9, 64, 33, false, false, false},
                           Probe{24, 40, 600, true, false, false}}) {
      std::vector<uint16_t> a(static_cast<size_t>(p.m * p.k)), want(static_cast<size_t>(p.m * p.n)),
          got(static_cast<size_t>(p.m * p.n));
      std::vector<float> wa(a.size()), b(static_cast<size_t>(p.k * p.n)), bias(static_cast<size_t>(p.n)), y(want.size());
      for (size_t i = 0; i < a.size(); ++i) a[i] = math::float_to_half_bits(std::sin(0.37f * static_cast<float>(i)));
      for (size_t i = 0; i < b.size(); ++i) b[i] = std::cos(0.61f * static_cast<float>(i));
      for (size_t i = 0; i < bias.size(); ++i) bias[i] = 0.1f * static_cast<float>(i % 7);
      widen_n(DType::Float16, a.data(), wa.data(), static_cast<int64_t>(a.size()));
      for (int64_t i = 0; i < p.m; ++i)
        for (int64_t j = 0; j < p.n; ++j) y[static_cast<size_t>(i * p.n + j)] = p.bias ? bias[static_cast<size_t>(j)] : 0.0f;
      gemm_any<float>(p.trans_a, p.trans_b, p.m, p.n, p.k, 1.0, wa.data(), p.trans_a ? p.m : p.k, b.data(),
                      p.trans_b ? p.k : p.n, p.bias ? 1.0 : 0.0, y.data(), p.n);
      narrow_n(DType::Float16, y.data(), want.data(), static_cast<int64_t>(y.size()));
      HalfGemm h;
      h.m = p.m, h.n = p.n, h.k = p.k;
      h.a = a.data(), h.lda = p.trans_a ? p.m : p.k, h.trans_a = p.trans_a;
      h.b = b.data(), h.ldb = p.trans_b ? p.k : p.n, h.trans_b = p.trans_b;
      if (p.bias) h.bias = bias.data();
      h.y = got.data(), h.ldy = p.n;
      run_half_gemm(h);
      if (want != got) return false;
    }
    return true;
  }();
  return same;
}

void register_matmul_kernels(KernelRegistry& r) {
  r.add("", "MatMul", Device::CPU, {DType::Float32, DType::Float64, DType::Int64, DType::Int32}, matmul_kernel);
  r.add_widening("", "MatMul", matmul_widening_kernel);
  r.add("", "Gemm", Device::CPU, OTTER_CPU_FLOAT_KERNELS(gemm_typed));
  r.add_widening("", "Gemm", gemm_widening_kernel);
  if (onednn::native_bf16()) {
    r.add("", "MatMul", Device::CPU, {DType::BFloat16}, matmul_bf16_kernel);
    r.add("", "Gemm", Device::CPU, {DType::BFloat16}, gemm_bf16_kernel);
  }
}

}  // namespace otter::cpu
