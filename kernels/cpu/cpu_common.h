// Helpers shared by the CPU kernels: dtype dispatch, a parallel loop (OpenMP, used only when
// the work is large enough to pay for the threads), and broadcast indexing.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/registry.h"

#if defined(_OPENMP)
#include <omp.h>
#endif
#include <algorithm>

namespace otter::cpu {

// Runs fn(begin, end) over [0, n) in chunks, in parallel when n * cost_per_item is large; never
// with an empty range (several callers handle their first item before checking the range: an
// empty batch wrote one softmax row past its tensor).
template <class Fn>
void parallel_for(int64_t n, Fn fn, int64_t min_items_per_thread = 32768) {
  if (n <= 0) return;
  if (n <= min_items_per_thread) {
    fn(int64_t(0), n);
    return;
  }
#if defined(_OPENMP)
#pragma omp parallel
  {
    int threads = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t chunk = (n + threads - 1) / threads;
    int64_t b = t * chunk, e = std::min(n, b + chunk);
    if (b < e) fn(b, e);
  }
#else
  fn(int64_t(0), n);
#endif
}

// Strides of `in_shape` broadcast to `out_shape` (0 along broadcast dims), aligned right.
inline std::vector<int64_t> broadcast_strides(const Shape& in_shape, const Shape& out_shape) {
  std::vector<int64_t> in_strides = shape_strides(in_shape);
  std::vector<int64_t> r(out_shape.size(), 0);
  size_t offset = out_shape.size() - in_shape.size();
  for (size_t k = 0; k < in_shape.size(); ++k)
    r[k + offset] = in_shape[k] == 1 ? 0 : in_strides[k];
  return r;
}

// Maps a flat output index to the flat index of each broadcast input, walking in order.
class BroadcastIndexer {
 public:
  BroadcastIndexer(const Shape& out_shape, const std::vector<const Shape*>& in_shapes)
      : out_shape_(out_shape), index_(out_shape.size(), 0), offsets_(in_shapes.size(), 0) {
    for (const Shape* s : in_shapes) strides_.push_back(broadcast_strides(*s, out_shape));
  }
  void seek(int64_t flat) {
    std::fill(offsets_.begin(), offsets_.end(), 0);
    for (int64_t k = static_cast<int64_t>(out_shape_.size()) - 1; k >= 0; --k) {
      index_[k] = out_shape_[k] ? flat % out_shape_[k] : 0;
      flat = out_shape_[k] ? flat / out_shape_[k] : 0;
      for (size_t i = 0; i < offsets_.size(); ++i) offsets_[i] += index_[k] * strides_[i][k];
    }
  }
  int64_t offset(size_t input) const { return offsets_[input]; }
  void next() {
    for (int64_t k = static_cast<int64_t>(out_shape_.size()) - 1; k >= 0; --k) {
      for (size_t i = 0; i < offsets_.size(); ++i) offsets_[i] += strides_[i][k];
      if (++index_[k] < out_shape_[k]) return;
      for (size_t i = 0; i < offsets_.size(); ++i) offsets_[i] -= strides_[i][k] * out_shape_[k];
      index_[k] = 0;
    }
  }

 private:
  Shape out_shape_;
  std::vector<int64_t> index_;
  std::vector<int64_t> offsets_;
  std::vector<std::vector<int64_t>> strides_;
};

// Broadcast geometry with adjacent output dims merged wherever every input walks them as one
// (contiguous across both, or broadcast along both) and size-1 dims dropped: a bias [n] added to
// [b, t, n] becomes rows of n with input strides (1, 1) and (1, 0), so kernels can run a tight
// inner loop per row instead of an index walk per element.
struct CollapsedBroadcast {
  Shape dims;                                 // merged output dims (at least one)
  std::vector<std::vector<int64_t>> strides;  // per input, per merged dim (0 where broadcast)
  int64_t inner() const { return dims.back(); }
  int64_t inner_stride(size_t input) const { return strides[input].back(); }
  int64_t rows() const { return dims.back() ? shape_numel(dims) / dims.back() : 0; }
  // The element offset of each input at the start of row `row`.
  void row_offsets(int64_t row, std::vector<int64_t>& offsets) const {
    offsets.assign(strides.size(), 0);
    for (int64_t k = static_cast<int64_t>(dims.size()) - 2; k >= 0; --k) {
      int64_t i = row % dims[k];
      row /= dims[k];
      for (size_t in = 0; in < strides.size(); ++in) offsets[in] += i * strides[in][k];
    }
  }
};

inline CollapsedBroadcast collapse_broadcast(const Shape& out, const std::vector<const Shape*>& ins) {
  std::vector<std::vector<int64_t>> full;
  for (const Shape* s : ins) full.push_back(broadcast_strides(*s, out));
  CollapsedBroadcast c;
  c.strides.resize(ins.size());
  for (size_t k = 0; k < out.size(); ++k) {
    if (out[k] == 1) continue;
    bool merge = !c.dims.empty();
    for (size_t in = 0; merge && in < ins.size(); ++in) {
      int64_t outer = c.strides[in].back(), inner = full[in][k];
      merge = outer == inner * out[k];  // contiguous across (or 0 == 0 * n: broadcast along both)
    }
    if (merge) {
      c.dims.back() *= out[k];
      for (size_t in = 0; in < ins.size(); ++in) c.strides[in].back() = full[in][k];
    } else {
      c.dims.push_back(out[k]);
      for (size_t in = 0; in < ins.size(); ++in) c.strides[in].push_back(full[in][k]);
    }
  }
  if (c.dims.empty()) {  // a scalar (or all-ones) output
    c.dims.push_back(1);
    for (auto& st : c.strides) st.push_back(0);
  }
  return c;
}

}  // namespace otter::cpu

// Registration and dispatch in one statement: FN<float> and FN<double> as the Float32 and Float64
// kernels of an op, e.g. r.add("", "AveragePool", Device::CPU, OTTER_CPU_FLOAT_KERNELS(average_pool_typed)).
#define OTTER_CPU_FLOAT_KERNELS(FN)                                                    \
  {{::otter::DType::Float32, [](::otter::KernelContext& c) { FN<float>(c); }},         \
   {::otter::DType::Float64, [](::otter::KernelContext& c) { FN<double>(c); }}}

// Calls BODY with `scalar_t` bound to the C++ type of DTYPE, for the float types.
#define OTTER_DISPATCH_FLOAT(DTYPE, WHAT, ...)                                          \
  switch (DTYPE) {                                                                      \
    case ::otter::DType::Float32: { using scalar_t = float; __VA_ARGS__; break; }       \
    case ::otter::DType::Float64: { using scalar_t = double; __VA_ARGS__; break; }      \
    default: OTTER_FAIL(WHAT, ": no CPU kernel for dtype ", ::otter::dtype_name(DTYPE)); \
  }

#define OTTER_DISPATCH_NUMERIC(DTYPE, WHAT, ...)                                        \
  switch (DTYPE) {                                                                      \
    case ::otter::DType::Float32: { using scalar_t = float; __VA_ARGS__; break; }       \
    case ::otter::DType::Float64: { using scalar_t = double; __VA_ARGS__; break; }      \
    case ::otter::DType::Int64: { using scalar_t = int64_t; __VA_ARGS__; break; }       \
    case ::otter::DType::Int32: { using scalar_t = int32_t; __VA_ARGS__; break; }       \
    case ::otter::DType::Int8: { using scalar_t = int8_t; __VA_ARGS__; break; }         \
    case ::otter::DType::Uint8: { using scalar_t = uint8_t; __VA_ARGS__; break; }       \
    default: OTTER_FAIL(WHAT, ": no CPU kernel for dtype ", ::otter::dtype_name(DTYPE)); \
  }

#define OTTER_DISPATCH_ALL(DTYPE, WHAT, ...)                                            \
  switch (DTYPE) {                                                                      \
    case ::otter::DType::Float32: { using scalar_t = float; __VA_ARGS__; break; }       \
    case ::otter::DType::Float64: { using scalar_t = double; __VA_ARGS__; break; }      \
    case ::otter::DType::Int64: { using scalar_t = int64_t; __VA_ARGS__; break; }       \
    case ::otter::DType::Int32: { using scalar_t = int32_t; __VA_ARGS__; break; }       \
    case ::otter::DType::Int8: { using scalar_t = int8_t; __VA_ARGS__; break; }         \
    case ::otter::DType::Uint8: { using scalar_t = uint8_t; __VA_ARGS__; break; }       \
    case ::otter::DType::Bool: { using scalar_t = bool; __VA_ARGS__; break; }           \
    default: OTTER_FAIL(WHAT, ": no CPU kernel for dtype ", ::otter::dtype_name(DTYPE)); \
  }
