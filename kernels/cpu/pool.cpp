// CPU kernels for the pool op family: MaxPool (with its Indices output), AveragePool,
// GlobalAveragePool, GlobalMaxPool and their internal gradient ops (otter.MaxPoolArgmax writes the
// argmax MaxPoolGrad reads when the model has no Indices output). A window table (for each output
// position, the flat offsets of its taps inside the input plane, and the AveragePool divisor) is
// built once per call from the window of kernels/common/pool_host.h and reused for every (batch,
// channel) plane; planes are processed in parallel. MaxPool takes the first maximum of a window
// (strict >), which is also where its gradient goes.
#include <limits>
#include <type_traits>

#include "kernels/common/pool_host.h"
#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/vec_math.h"
#include "runtime/core/convert.h"

namespace otter::cpu {
namespace {

struct WindowTable {
  int64_t planes = 0, plane_in = 1, plane_out = 1;
  std::vector<int64_t> start;    // taps of output o: taps[start[o] .. start[o + 1])
  std::vector<int64_t> taps;     // row-major flat offsets in the input plane
  std::vector<int64_t> padded;   // per output: taps inside the explicitly padded input (count_include_pad)
};

// Builds the window table of a MaxPool/AveragePool node (or its gradient op) for input shape x.
WindowTable window_table(const Node& node, const Shape& x, const Shape& y_expected) {
  size_t D = x.size() - 2;
  pool::PoolWindow w = pool::pool_window(node, x, y_expected);
  const Shape &in = w.in, &out = w.out;
  const std::vector<int64_t> &kernel = w.kernel, &strides = w.strides, &dilations = w.dilations;
  const std::vector<int64_t> &pb = w.pads_begin, &pe = w.pads_end;
  WindowTable t;
  t.planes = x[0] * x[1];
  t.plane_in = shape_numel(in);
  t.plane_out = shape_numel(out);
  // Per dim and output coordinate: the valid input coordinates and the count inside the padding.
  std::vector<std::vector<std::vector<int64_t>>> coords(D);
  std::vector<std::vector<int64_t>> padded(D);
  for (size_t d = 0; d < D; ++d) {
    coords[d].resize(static_cast<size_t>(out[d]));
    padded[d].resize(static_cast<size_t>(out[d]));
    for (int64_t o = 0; o < out[d]; ++o) {
      int64_t count = 0;
      for (int64_t j = 0; j < kernel[d]; ++j) {
        int64_t i = o * strides[d] - pb[d] + j * dilations[d];
        if (i >= 0 && i < in[d]) coords[d][o].push_back(i);
        if (i >= -pb[d] && i < in[d] + pe[d]) ++count;
      }
      padded[d][o] = count;
    }
  }
  t.start.reserve(static_cast<size_t>(t.plane_out) + 1);
  t.padded.reserve(static_cast<size_t>(t.plane_out));
  std::vector<int64_t> o(D, 0), j(D, 0);
  for (int64_t flat = 0; flat < t.plane_out; ++flat) {
    t.start.push_back(static_cast<int64_t>(t.taps.size()));
    int64_t count = 1;
    bool empty = false;
    for (size_t d = 0; d < D; ++d) {
      count *= padded[d][o[d]];
      if (coords[d][o[d]].empty()) empty = true;
    }
    t.padded.push_back(count);
    if (!empty) {  // the cartesian product of the per-dim coordinates
      std::fill(j.begin(), j.end(), 0);
      while (true) {
        int64_t off = 0;
        for (size_t d = 0; d < D; ++d) off = off * in[d] + coords[d][o[d]][j[d]];
        t.taps.push_back(off);
        size_t d = D;
        while (d-- > 0) {
          if (++j[d] < static_cast<int64_t>(coords[d][o[d]].size())) break;
          j[d] = 0;
        }
        if (d == static_cast<size_t>(-1)) break;
      }
    }
    for (size_t d = D; d-- > 0;) {
      if (++o[d] < out[d]) break;
      o[d] = 0;
    }
  }
  t.start.push_back(static_cast<int64_t>(t.taps.size()));
  return t;
}

int64_t plane_grain(const WindowTable& t) {
  int64_t work = std::max<int64_t>(1, static_cast<int64_t>(t.taps.size()));
  return std::max<int64_t>(1, 32768 / work);
}

// Row-major offset in a plane of dims `in` -> column-major (storage_order = 1) offset, and back.
int64_t to_column_major(int64_t off, const Shape& in) {
  int64_t r = 0, stride = 1;
  std::vector<int64_t> c(in.size());
  for (size_t d = in.size(); d-- > 0;) { c[d] = off % in[d]; off /= in[d]; }
  for (size_t d = 0; d < in.size(); ++d) { r += c[d] * stride; stride *= in[d]; }
  return r;
}
int64_t from_column_major(int64_t off, const Shape& in) {
  int64_t r = 0;
  std::vector<int64_t> c(in.size());
  for (size_t d = 0; d < in.size(); ++d) { c[d] = off % in[d]; off /= in[d]; }
  for (size_t d = 0; d < in.size(); ++d) r = r * in[d] + c[d];
  return r;
}

// FP32 2-D max pools plane by plane in AVX-512 (vec_max_pool_2d: the same first maximum as the
// window table's loop); false where it does not apply (rank, dtype, no AVX-512).
template <class T>
bool max_pool_2d_fast(const KernelContext& ctx, const Tensor& x, const Shape& y_shape, T* y, int32_t* argmax) {
  if constexpr (!std::is_same_v<T, float>) {
    return false;
  } else {
    if (x.shape().size() != 4 || !host_avx512()) return false;
    pool::PoolWindow w = pool::pool_window(ctx.node, x.shape(), y_shape);
    const MaxPool2d g = {w.in[0], w.in[1], w.out[0], w.out[1], w.kernel[0], w.kernel[1], w.strides[0], w.strides[1],
                         w.pads_begin[0], w.pads_begin[1], w.dilations[0], w.dilations[1]};
    const int64_t planes = x.shape()[0] * x.shape()[1], plane_in = g.h * g.w, plane_out = g.oh * g.ow;
    if (plane_in > std::numeric_limits<int32_t>::max()) return false;
    const float* px = x.data<float>();
    parallel_for(planes, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p)
        vec_max_pool_2d(px + p * plane_in, g, y ? y + p * plane_out : nullptr, argmax ? argmax + p * plane_out : nullptr);
    }, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, plane_out * g.kh * g.kw)));
    return true;
  }
}

template <class T>
void max_pool_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  if (!ctx.has_output(1) && max_pool_2d_fast<T>(ctx, x, y.shape(), y.data<T>(), nullptr)) return;
  WindowTable t = window_table(ctx.node, x.shape(), y.shape());
  Shape in(x.shape().begin() + 2, x.shape().end());
  bool column_major = ctx.node.attr_int("storage_order", 0) != 0;
  std::vector<int64_t> taps_cm;
  if (column_major && ctx.has_output(1)) {
    taps_cm.resize(t.taps.size());
    for (size_t i = 0; i < t.taps.size(); ++i) taps_cm[i] = to_column_major(t.taps[i], in);
  }
  const T* px = x.data<T>();
  T* py = y.data<T>();
  int64_t* pi = ctx.has_output(1) ? ctx.out(1).data<int64_t>() : nullptr;
  parallel_for(t.planes, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const T* src = px + p * t.plane_in;
      for (int64_t o = 0; o < t.plane_out; ++o) {
        int64_t s = t.start[o], end = t.start[o + 1], best = -1;
        T v = T(0);
        for (int64_t k = s; k < end; ++k) {
          T u = src[t.taps[k]];
          if (best < 0 || u > v) { v = u; best = k; }
        }
        py[p * t.plane_out + o] = v;
        if (pi) {
          int64_t local = best < 0 ? -1 : (column_major ? taps_cm[best] : t.taps[best]);
          pi[p * t.plane_out + o] = local < 0 ? -1 : p * t.plane_in + local;
        }
      }
    }
  }, plane_grain(t));
}

// otter.MaxPoolArgmax: x -> int32 argmax of each window as a row-major offset inside its
// (batch, channel) plane, -1 for a window with no input tap; the same first maximum as MaxPool.
template <class T>
void max_pool_argmax_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& idx = ctx.out(0);
  if (max_pool_2d_fast<T>(ctx, x, idx.shape(), nullptr, idx.data<int32_t>())) return;
  WindowTable t = window_table(ctx.node, x.shape(), idx.shape());
  OTTER_CHECK(t.plane_in <= std::numeric_limits<int32_t>::max(), ctx.node.describe(), ": a plane of ", t.plane_in,
              " elements is too large for int32 offsets");
  const T* px = x.data<T>();
  int32_t* pi = idx.data<int32_t>();
  parallel_for(t.planes, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const T* src = px + p * t.plane_in;
      for (int64_t o = 0; o < t.plane_out; ++o) {
        int64_t best = -1;
        T v = T(0);
        for (int64_t k = t.start[o]; k < t.start[o + 1]; ++k) {
          T u = src[t.taps[k]];
          if (best < 0 || u > v) { v = u; best = k; }
        }
        pi[p * t.plane_out + o] = best < 0 ? -1 : static_cast<int32_t>(t.taps[best]);
      }
    }
  }, plane_grain(t));
}

template <class T>
void average_pool_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  WindowTable t = window_table(ctx.node, x.shape(), y.shape());
  bool include_pad = ctx.node.attr_int("count_include_pad", 0) != 0;
  const T* px = x.data<T>();
  T* py = y.data<T>();
  parallel_for(t.planes, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const T* src = px + p * t.plane_in;
      for (int64_t o = 0; o < t.plane_out; ++o) {
        int64_t s = t.start[o], end = t.start[o + 1];
        int64_t div = include_pad ? t.padded[o] : end - s;
        T acc = T(0);
        for (int64_t k = s; k < end; ++k) acc += src[t.taps[k]];
        py[p * t.plane_out + o] = div > 0 ? acc / static_cast<T>(div) : T(0);
      }
    }
  }, plane_grain(t));
}

// otter.MaxPoolGrad: (dy, indices, x) -> dx; int64 indices are MaxPool's (flat offsets into x,
// storage_order as the forward node), int32 ones otter.MaxPoolArgmax's (row-major offsets in
// the plane).
template <class T>
void max_pool_grad_typed(KernelContext& ctx) {
  const Tensor &dy = ctx.in(0), &idx = ctx.in(1), &x = ctx.in(2);
  Tensor& dx = ctx.out(0);
  Shape in(x.shape().begin() + 2, x.shape().end());
  int64_t planes = x.shape()[0] * x.shape()[1], plane_in = shape_numel(in);
  int64_t plane_out = planes ? dy.numel() / planes : 0;
  OTTER_CHECK(idx.numel() == dy.numel(), ctx.node.describe(), ": indices ", shape_str(idx.shape()),
              " do not match dy ", shape_str(dy.shape()));
  bool local_argmax = idx.dtype() == DType::Int32;
  bool column_major = !local_argmax && ctx.node.attr_int("storage_order", 0) != 0;
  const T* pdy = dy.data<T>();
  const int64_t* pi = local_argmax ? nullptr : idx.data<int64_t>();
  const int32_t* pl = local_argmax ? idx.data<int32_t>() : nullptr;
  T* pdx = dx.data<T>();
  parallel_for(planes, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      T* dst = pdx + p * plane_in;
      std::fill(dst, dst + plane_in, T(0));
      for (int64_t o = 0; o < plane_out; ++o) {
        int64_t i = local_argmax ? pl[p * plane_out + o] : pi[p * plane_out + o];
        if (i < 0) continue;  // a window with no input tap
        int64_t local = local_argmax ? i : i - p * plane_in;
        OTTER_CHECK(local >= 0 && local < plane_in, ctx.node.describe(), ": index ", i, " is outside its plane");
        if (column_major) local = from_column_major(local, in);
        dst[local] += pdy[p * plane_out + o];
      }
    }
  }, std::max<int64_t>(1, 32768 / std::max<int64_t>(plane_in + plane_out, 1)));
}

// otter.AveragePoolGrad: (dy, x) -> dx, with the forward node's attributes.
template <class T>
void average_pool_grad_typed(KernelContext& ctx) {
  const Tensor &dy = ctx.in(0), &x = ctx.in(1);
  Tensor& dx = ctx.out(0);
  WindowTable t = window_table(ctx.node, x.shape(), dy.shape());
  bool include_pad = ctx.node.attr_int("count_include_pad", 0) != 0;
  const T* pdy = dy.data<T>();
  T* pdx = dx.data<T>();
  parallel_for(t.planes, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      T* dst = pdx + p * t.plane_in;
      std::fill(dst, dst + t.plane_in, T(0));
      for (int64_t o = 0; o < t.plane_out; ++o) {
        int64_t s = t.start[o], end = t.start[o + 1];
        int64_t div = include_pad ? t.padded[o] : end - s;
        if (div <= 0) continue;
        T g = pdy[p * t.plane_out + o] / static_cast<T>(div);
        for (int64_t k = s; k < end; ++k) dst[t.taps[k]] += g;
      }
    }
  }, plane_grain(t));
}

using pool::global_plane_size;
using pool::global_planes;
int64_t global_grain(int64_t size) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(size, 1)); }

template <class T>
void global_average_pool_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  int64_t planes = global_planes(x), size = global_plane_size(x);
  const T* px = x.data<T>();
  T* py = ctx.out(0).data<T>();
  parallel_for(planes, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      double acc = 0;
      for (int64_t i = 0; i < size; ++i) acc += px[p * size + i];
      py[p] = size ? static_cast<T>(acc / static_cast<double>(size)) : T(0);
    }
  }, global_grain(size));
}

template <class T>
void global_max_pool_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  int64_t planes = global_planes(x), size = global_plane_size(x);
  const T* px = x.data<T>();
  T* py = ctx.out(0).data<T>();
  parallel_for(planes, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      T v = size ? px[p * size] : T(0);
      for (int64_t i = 1; i < size; ++i) v = std::max(v, px[p * size + i]);
      py[p] = v;
    }
  }, global_grain(size));
}

// otter.GlobalAveragePoolGrad: (dy, x) -> dx = dy / size.
template <class T>
void global_average_pool_grad_typed(KernelContext& ctx) {
  const Tensor &dy = ctx.in(0), &x = ctx.in(1);
  int64_t planes = global_planes(x), size = global_plane_size(x);
  const T* pdy = dy.data<T>();
  T* pdx = ctx.out(0).data<T>();
  parallel_for(planes, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      T g = pdy[p] / static_cast<T>(size);
      std::fill(pdx + p * size, pdx + (p + 1) * size, g);
    }
  }, global_grain(size));
}

// otter.GlobalMaxPoolGrad: (dy, x) -> dx = dy at the first maximum of each plane.
template <class T>
void global_max_pool_grad_typed(KernelContext& ctx) {
  const Tensor &dy = ctx.in(0), &x = ctx.in(1);
  int64_t planes = global_planes(x), size = global_plane_size(x);
  const T* pdy = dy.data<T>();
  const T* px = x.data<T>();
  T* pdx = ctx.out(0).data<T>();
  parallel_for(planes, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const T* src = px + p * size;
      T* dst = pdx + p * size;
      std::fill(dst, dst + size, T(0));
      if (size == 0) continue;
      int64_t best = 0;
      for (int64_t i = 1; i < size; ++i)
        if (src[i] > src[best]) best = i;
      dst[best] = pdy[p];
    }
  }, global_grain(size));
}

void max_pool_kernel(KernelContext& ctx) {
  switch (ctx.in(0).dtype()) {
    case DType::Float32: max_pool_typed<float>(ctx); break;
    case DType::Float64: max_pool_typed<double>(ctx); break;
    case DType::Int8: max_pool_typed<int8_t>(ctx); break;
    case DType::Uint8: max_pool_typed<uint8_t>(ctx); break;
    default: OTTER_FAIL(ctx.node.describe(), ": no CPU kernel for dtype ", dtype_name(ctx.in(0).dtype()));
  }
}

}  // namespace

void register_pool_kernels(KernelRegistry& r) {
  r.add("", "MaxPool", Device::CPU, {DType::Float32, DType::Float64, DType::Int8, DType::Uint8}, max_pool_kernel);
  r.add("", "AveragePool", Device::CPU, OTTER_CPU_FLOAT_KERNELS(average_pool_typed));
  r.add("", "GlobalAveragePool", Device::CPU, OTTER_CPU_FLOAT_KERNELS(global_average_pool_typed));
  r.add("", "GlobalMaxPool", Device::CPU, OTTER_CPU_FLOAT_KERNELS(global_max_pool_typed));
  r.add("otter", "MaxPoolGrad", Device::CPU, OTTER_CPU_FLOAT_KERNELS(max_pool_grad_typed));
  r.add("otter", "MaxPoolArgmax", Device::CPU, OTTER_CPU_FLOAT_KERNELS(max_pool_argmax_typed));
  r.add("otter", "AveragePoolGrad", Device::CPU, OTTER_CPU_FLOAT_KERNELS(average_pool_grad_typed));
  r.add("otter", "GlobalAveragePoolGrad", Device::CPU, OTTER_CPU_FLOAT_KERNELS(global_average_pool_grad_typed));
  r.add("otter", "GlobalMaxPoolGrad", Device::CPU, OTTER_CPU_FLOAT_KERNELS(global_max_pool_grad_typed));
}

}  // namespace otter::cpu
