// CPU kernel for Einsum (runtime/ops/einsum.cpp; the equation is resolved by kernels/common/
// einsum_host.h). Two float operands whose subscripts are distinct within each operand and whose
// sizes agree (no size-1 broadcast) run as a batched GEMM through OpenBLAS: labels are grouped
// into batch (both operands and the output), M (first operand and output), N (second operand and
// output) and K (both operands, summed); an operand whose dims are not already laid out as
// [batch, M, K] / [batch, K, M] (resp. [batch, K, N] / [batch, N, K]) is permuted into a scratch
// buffer first, and labels that only one operand carries and the output lacks are summed out of
// it first. Three or more operands contract left to right, keeping the labels still needed.
// Everything else (one operand: transposes, sums, diagonals; broadcasting; integer types) runs
// through a general loop: for each output element, the sum over the summed labels of the product
// of the operands, with per-label strides (a repeated subscript adds its strides: a diagonal).
// Registered from register_indexing_kernels (kernels/cpu/indexing.cpp).
#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/common/einsum_host.h"
#include "kernels/cpu/cpu_common.h"

namespace otter::cpu {
namespace {

// An operand: data, shape and one label per dim.
template <class T>
struct Operand {
  const T* data;
  Shape shape;
  std::vector<int> labels;
};

// out[out_labels] = sum over the other labels of prod_k op_k[labels_k]. `size` gives every label's
// size; a dim of size 1 where the label is larger broadcasts.
template <class T>
void general_einsum(const std::vector<Operand<T>>& ops, const std::vector<int>& out_labels,
                    const std::vector<int64_t>& size, T* out) {
  using Acc = std::conditional_t<std::is_floating_point_v<T>, double, T>;
  std::vector<std::vector<int>> labels;
  std::vector<std::vector<int64_t>> strides;  // strides[k][label]
  for (const Operand<T>& op : ops) {
    labels.push_back(op.labels);
    strides.push_back(einsum::label_strides(op.shape, op.labels, size));
  }
  std::vector<int> sum_labels = einsum::summed_labels(labels, out_labels, size.size());
  int64_t n_out = 1, n_sum = 1;
  for (int id : out_labels) n_out *= size[static_cast<size_t>(id)];
  for (int id : sum_labels) n_sum *= size[static_cast<size_t>(id)];
  size_t nk = ops.size(), no = out_labels.size(), ns = sum_labels.size();
  parallel_for(n_out, [&](int64_t b, int64_t e) {
    std::vector<int64_t> base(nk), off(nk), idx(ns);
    for (int64_t o = b; o < e; ++o) {
      std::fill(base.begin(), base.end(), 0);
      for (int64_t d = static_cast<int64_t>(no) - 1, rest = o; d >= 0; --d) {
        size_t id = static_cast<size_t>(out_labels[static_cast<size_t>(d)]);
        int64_t i = rest % size[id];
        rest /= size[id];
        for (size_t k = 0; k < nk; ++k) base[k] += i * strides[k][id];
      }
      Acc acc = 0;
      if (n_sum > 0) {
        std::fill(idx.begin(), idx.end(), 0);
        off = base;
        for (int64_t s = 0; s < n_sum; ++s) {
          Acc p = static_cast<Acc>(ops[0].data[off[0]]);
          for (size_t k = 1; k < nk; ++k) p *= static_cast<Acc>(ops[k].data[off[k]]);
          acc += p;
          for (int64_t d = static_cast<int64_t>(ns) - 1; d >= 0; --d) {  // next summed index
            size_t id = static_cast<size_t>(sum_labels[static_cast<size_t>(d)]);
            for (size_t k = 0; k < nk; ++k) off[k] += strides[k][id];
            if (++idx[static_cast<size_t>(d)] < size[id]) break;
            for (size_t k = 0; k < nk; ++k) off[k] -= strides[k][id] * size[id];
            idx[static_cast<size_t>(d)] = 0;
          }
        }
      }
      out[o] = static_cast<T>(acc);
    }
  }, std::max<int64_t>(1, 32768 / std::max<int64_t>(n_sum * static_cast<int64_t>(nk), 1)));
}

void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
              1.0f, a, (int)lda, b, (int)ldb, 0.0f, c, (int)ldc);
}
void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* a, int64_t lda, const double* b,
               int64_t ldb, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
              1.0, a, (int)lda, b, (int)ldb, 0.0, c, (int)ldc);
}

std::vector<int> concat(std::initializer_list<const std::vector<int>*> parts) {
  std::vector<int> r;
  for (const std::vector<int>* p : parts) r.insert(r.end(), p->begin(), p->end());
  return r;
}

template <class T>
Shape shape_of_labels(const std::vector<int>& labels, const std::vector<int64_t>& size) {
  Shape s;
  for (int id : labels) s.push_back(size[static_cast<size_t>(id)]);
  return s;
}

// Whether two operands can contract as a batched GEMM: floats, distinct labels in each operand,
// and every dim at its label's full size.
template <class T>
bool gemm_able(const Operand<T>& a, const Operand<T>& b, const std::vector<int64_t>& size) {
  if constexpr (!std::is_floating_point_v<T>) {
    return false;
  } else {
    for (const Operand<T>* op : {&a, &b}) {
      for (size_t d = 0; d < op->labels.size(); ++d) {
        if (op->shape[d] != size[static_cast<size_t>(op->labels[d])]) return false;
        for (size_t e = d + 1; e < op->labels.size(); ++e)
          if (op->labels[d] == op->labels[e]) return false;
      }
    }
    return true;
  }
}

// out[out_labels] = einsum(a, b) as a batched GEMM (see gemm_able). `out_labels` holds only labels
// of a or b.
template <class T>
void gemm_einsum(Operand<T> a, Operand<T> b, const std::vector<int>& out_labels, const std::vector<int64_t>& size,
                 T* out) {
  auto has = [](const std::vector<int>& l, int id) { return std::find(l.begin(), l.end(), id) != l.end(); };
  // Sum out the labels only one operand carries and the output lacks.
  std::vector<T> a_red, b_red;
  auto reduce_private = [&](Operand<T>& op, const Operand<T>& other, std::vector<T>& buf) {
    std::vector<int> keep;
    for (int id : op.labels)
      if (has(out_labels, id) || has(other.labels, id)) keep.push_back(id);
    if (keep.size() == op.labels.size()) return;
    Shape s = shape_of_labels<T>(keep, size);
    buf.assign(static_cast<size_t>(shape_numel(s)), T(0));
    general_einsum<T>({op}, keep, size, buf.data());
    op = Operand<T>{buf.data(), s, keep};
  };
  reduce_private(a, b, a_red);
  reduce_private(b, a, b_red);
  std::vector<int> batch, m, n, k;
  for (int id : out_labels) {
    bool in_a = has(a.labels, id), in_b = has(b.labels, id);
    if (in_a && in_b) batch.push_back(id);
    else if (in_a) m.push_back(id);
    else n.push_back(id);
  }
  for (int id : a.labels)
    if (has(b.labels, id) && !has(out_labels, id)) k.push_back(id);
  auto count = [&](const std::vector<int>& l) {
    int64_t c = 1;
    for (int id : l) c *= size[static_cast<size_t>(id)];
    return c;
  };
  int64_t nb = count(batch), M = count(m), N = count(n), K = count(k);
  // Lay the operands out as [batch, M, K] (or transposed) and [batch, K, N] (or transposed).
  std::vector<T> a_buf, b_buf, c_buf;
  bool ta = false, tb = false;
  const T* pa = a.data;
  const T* pb = b.data;
  if (a.labels == concat({&batch, &m, &k})) ta = false;
  else if (a.labels == concat({&batch, &k, &m})) ta = true;
  else {
    std::vector<int> want = concat({&batch, &m, &k});
    a_buf.resize(static_cast<size_t>(nb * M * K));
    general_einsum<T>({a}, want, size, a_buf.data());
    pa = a_buf.data();
  }
  if (b.labels == concat({&batch, &k, &n})) tb = false;
  else if (b.labels == concat({&batch, &n, &k})) tb = true;
  else {
    std::vector<int> want = concat({&batch, &k, &n});
    b_buf.resize(static_cast<size_t>(nb * K * N));
    general_einsum<T>({b}, want, size, b_buf.data());
    pb = b_buf.data();
  }
  std::vector<int> c_labels = concat({&batch, &m, &n});
  T* pc = out;
  if (c_labels != out_labels) {
    c_buf.resize(static_cast<size_t>(nb * M * N));
    pc = c_buf.data();
  }
  if (M > 0 && N > 0) {
    for (int64_t i = 0; i < nb; ++i) {
      T* ci = pc + i * M * N;
      if (K == 0) std::fill(ci, ci + M * N, T(0));
      else blas_gemm(ta, tb, M, N, K, pa + i * M * K, ta ? M : K, pb + i * K * N, tb ? K : N, ci, N);
    }
  }
  if (pc != out) {
    Operand<T> c{pc, shape_of_labels<T>(c_labels, size), c_labels};
    general_einsum<T>({c}, out_labels, size, out);
  }
}

// out[out_labels] = einsum of two operands, by GEMM when possible.
template <class T>
void einsum2(const Operand<T>& a, const Operand<T>& b, const std::vector<int>& out_labels,
             const std::vector<int64_t>& size, T* out) {
  if constexpr (std::is_floating_point_v<T>) {
    if (gemm_able(a, b, size)) {
      gemm_einsum<T>(a, b, out_labels, size, out);
      return;
    }
  }
  general_einsum<T>({a, b}, out_labels, size, out);
}

template <class T>
void einsum_typed(KernelContext& ctx) {
  einsum::Problem p = einsum::resolve(ctx);
  const einsum::Equation& eq = p.eq;
  const std::vector<int64_t>& size = p.size;
  Tensor& y = ctx.out(0);
  T* py = y.data<T>();
  std::vector<Operand<T>> ops;
  for (size_t i = 0; i < ctx.inputs.size(); ++i) ops.push_back({ctx.in(i).data<T>(), p.shapes[i], eq.inputs[i]});
  if (y.numel() == 0) return;
  if (ops.size() == 1) {
    general_einsum<T>(ops, eq.output, size, py);
    return;
  }
  // Contract left to right, keeping the labels that the output or a later operand needs.
  Operand<T> acc = ops[0];
  std::vector<T> buf[2];
  for (size_t i = 1; i < ops.size(); ++i) {
    if (i + 1 == ops.size()) {
      einsum2<T>(acc, ops[i], eq.output, size, py);
      return;
    }
    std::vector<int> keep;
    auto needed = [&](int id) {
      if (std::find(keep.begin(), keep.end(), id) != keep.end()) return false;
      if (std::find(eq.output.begin(), eq.output.end(), id) != eq.output.end()) return true;
      for (size_t j = i + 1; j < ops.size(); ++j)
        if (std::find(ops[j].labels.begin(), ops[j].labels.end(), id) != ops[j].labels.end()) return true;
      return false;
    };
    for (const Operand<T>* op : {&acc, &ops[i]})
      for (int id : op->labels)
        if (needed(id)) keep.push_back(id);
    Shape s = shape_of_labels<T>(keep, size);
    std::vector<T>& dst = buf[i % 2];
    dst.assign(static_cast<size_t>(shape_numel(s)), T(0));
    einsum2<T>(acc, ops[i], keep, size, dst.data());
    acc = Operand<T>{dst.data(), s, keep};
  }
}

void einsum_kernel(KernelContext& ctx) {
  OTTER_DISPATCH_NUMERIC(ctx.in(0).dtype(), ctx.node.describe(), einsum_typed<scalar_t>(ctx));
}

}  // namespace

void register_einsum_kernels(KernelRegistry& r) {
  r.add("", "Einsum", Device::CPU, {DType::Float32, DType::Float64, DType::Int64, DType::Int32}, einsum_kernel);
}

}  // namespace otter::cpu
