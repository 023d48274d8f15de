// CUDA kernels for ReduceSum and ReduceMean and their gradient otter.ReduceGrad, with the CPU's
// semantics (kernels/cpu/reduce.cpp): axes from the axes input or the node (otter::reduction_axes),
// keepdims, noop_with_empty_axes (each element reduced alone), an empty reduction giving 0 (sum)
// or NaN (mean). The input is viewed as alternating runs of kept and reduced dims (size-1 dims
// dropped, neighbours of the same kind merged). Each output element is reduced in a fixed order,
// so results are deterministic: by one thread looping over its reduced elements when there are
// many outputs, or by one block (strided partial sums, then a shared-memory tree) when there are
// few outputs over many elements. FP16/BF16/FP32 accumulate in FP32, FP64 in FP64.
#include <optional>

#include "kernels/cuda/cuda_common.cuh"

namespace otter {
std::vector<int64_t> reduction_axes(const Node& node, const std::optional<std::vector<int64_t>>& axes_input,
                                    int64_t rank, bool* noop);
}

namespace otter::cuda {
namespace {


// The reduction geometry of an input shape and its (sorted, normalised) axes.
struct ReduceGeometry {
  Strides kept;             // output index -> input offset of its first element (rank = kept dims)
  Strides red;              // reduced dims but the innermost: index -> input offset
  int64_t last_size = 1;    // innermost reduced dim (1 when nothing is reduced)
  int64_t last_stride = 0;
  int64_t red_outer = 1;    // product of the `red` dims
  int64_t count = 1;        // elements per output
  int64_t outputs = 1;
  Strides to_out;           // input index -> output offset (rank = all merged dims), for the gradient
};

ReduceGeometry make_geometry(const Node& node, const Shape& in, const std::vector<int64_t>& axes) {
  std::vector<bool> reduced(in.size(), false);
  for (int64_t a : axes) reduced[static_cast<size_t>(a)] = true;
  // Merge: drop size-1 dims, fuse neighbours of the same kind (the input is contiguous).
  std::vector<int64_t> size;
  std::vector<bool> red;
  for (size_t d = 0; d < in.size(); ++d) {
    if (in[d] == 1) continue;
    if (!size.empty() && red.back() == reduced[d]) size.back() *= in[d];
    else { size.push_back(in[d]); red.push_back(reduced[d]); }
  }
  int rank = static_cast<int>(size.size());
  OTTER_CHECK(rank <= kMaxDims, node.describe(), ": CUDA reductions support up to ", kMaxDims,
              " alternating kept/reduced dim groups, got ", rank);
  std::vector<int64_t> stride(size.size(), 1);
  for (int d = rank - 2; d >= 0; --d) stride[d] = stride[d + 1] * size[d + 1];
  ReduceGeometry g;
  g.kept.rank = 0;
  g.red.rank = 0;
  int last = -1;
  for (int d = 0; d < rank; ++d)
    if (red[d]) last = d;
  for (int d = 0; d < rank; ++d) {
    if (!red[d]) {
      g.kept.out[g.kept.rank] = size[d];
      g.kept.in[0][g.kept.rank] = stride[d];
      ++g.kept.rank;
      g.outputs *= size[d];
    } else if (d == last) {
      g.last_size = size[d];
      g.last_stride = stride[d];
      g.count *= size[d];
    } else {
      g.red.out[g.red.rank] = size[d];
      g.red.in[0][g.red.rank] = stride[d];
      ++g.red.rank;
      g.red_outer *= size[d];
      g.count *= size[d];
    }
  }
  // Gradient: every merged input dim, with the output's row-major stride on kept dims, 0 on reduced.
  g.to_out.rank = rank;
  int64_t out_stride = 1;
  for (int d = rank - 1; d >= 0; --d) {
    g.to_out.out[d] = size[d];
    g.to_out.in[0][d] = red[d] ? 0 : out_stride;
    if (!red[d]) out_stride *= size[d];
  }
  return g;
}

// The axes of a reduction node whose axes are input `axes_input` (optional).
std::vector<int64_t> node_axes(const KernelContext& ctx, size_t axes_input, int64_t rank) {
  std::optional<std::vector<int64_t>> given;
  if (ctx.has_input(axes_input)) {
    given = ctx.int64_values(axes_input);  // the plan-time copy; run-time axes synchronise
  }
  bool noop = false;
  return reduction_axes(ctx.node, given, rank, &noop);  // noop: no axes, each element reduced alone
}

template <class C>
__device__ __forceinline__ C block_sum(C v, C* buf) {
  __syncthreads();  // buf may still be read from a previous call
  buf[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  return buf[0];
}

// One thread per output element.
template <class T>
__global__ void reduce_thread_k(const T* x, T* y, ReduceGeometry g, bool mean) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(o, g.outputs) {
    int64_t base;
    offsets_of(g.kept, o, 1, &base);
    C acc = 0;
    for (int64_t r = 0; r < g.red_outer; ++r) {
      int64_t off;
      offsets_of(g.red, r, 1, &off);
      const int64_t b = base + off;
      for (int64_t t = 0; t < g.last_size; ++t) acc += static_cast<C>(load(x, b + t * g.last_stride));
    }
    if (mean) acc = acc / static_cast<C>(g.count);  // count 0: NaN, as on the CPU
    store(y, o, acc);
  }
}

// One block per output element (blockDim.x == kThreads, a power of two).
template <class T>
__global__ void reduce_block_k(const T* x, T* y, ReduceGeometry g, bool mean) {
  using C = typename Compute<T>::type;
  __shared__ C buf[kThreads];
  for (int64_t o = blockIdx.x; o < g.outputs; o += gridDim.x) {
    int64_t base;
    offsets_of(g.kept, o, 1, &base);
    C acc = 0;
    for (int64_t k = threadIdx.x; k < g.count; k += blockDim.x) {
      int64_t r = k / g.last_size, t = k - r * g.last_size;
      int64_t off;
      offsets_of(g.red, r, 1, &off);
      acc += static_cast<C>(load(x, base + off + t * g.last_stride));
    }
    acc = block_sum(acc, buf);
    if (threadIdx.x == 0) store(y, o, mean ? acc / static_cast<C>(g.count) : acc);
  }
}

template <bool Mean>
void reduce_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& y = ctx.out(0);
  std::vector<int64_t> axes = node_axes(ctx, 1, x.rank());
  ReduceGeometry g = make_geometry(ctx.node, x.shape(), axes);
  OTTER_CHECK(g.outputs == y.numel(), ctx.node.describe(), ": output has ", y.numel(), " elements, expected ",
              g.outputs);
  if (g.outputs == 0) return;
  // Few outputs over many elements: a block each; otherwise a thread each.
  bool by_block = g.count >= 64 && g.outputs <= 32768;
  unsigned grid = by_block ? static_cast<unsigned>(g.outputs < 65535 * 32 ? g.outputs : 65535 * 32) : blocks_for(g.outputs);
  OTTER_CUDA_DISPATCH_FLOAT(x.dtype(), ctx.node.describe(), {
    const scalar_t* px = static_cast<const scalar_t*>(x.raw());
    scalar_t* py = static_cast<scalar_t*>(y.raw());
    if (by_block) reduce_block_k<scalar_t><<<grid, kThreads, 0, stream_of(ctx)>>>(px, py, g, Mean);
    else reduce_thread_k<scalar_t><<<grid, kThreads, 0, stream_of(ctx)>>>(px, py, g, Mean);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// dx[i] = dy[reduced index of i] (times 1/count for the mean, computed as on the CPU).
template <class T>
__global__ void reduce_grad_k(const T* dy, T* dx, int64_t n, Strides to_out, int64_t count, bool mean) {
  using C = typename Compute<T>::type;
  C scale = mean && count ? C(1) / static_cast<C>(count) : C(1);
  GRID_STRIDE(i, n) {
    int64_t o;
    offsets_of(to_out, i, 1, &o);
    store(dx, i, static_cast<C>(load(dy, o)) * scale);
  }
}

// ReduceGrad(dy, x, axes?): x is read for its shape only (the plan may pass it without data).
void reduce_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  const Shape& xs = ctx.in(1).shape();
  Tensor& dx = ctx.out(0);
  std::vector<int64_t> axes = node_axes(ctx, 2, static_cast<int64_t>(xs.size()));
  ReduceGeometry g = make_geometry(ctx.node, xs, axes);
  OTTER_CHECK(g.outputs == dy.numel(), ctx.node.describe(), ": dy has ", dy.numel(), " elements, expected ",
              g.outputs);
  bool mean = ctx.node.attr_int("mean", 0) != 0;
  int64_t n = dx.numel();
  if (n == 0) return;
  OTTER_CUDA_DISPATCH_FLOAT(dy.dtype(), ctx.node.describe(), {
    reduce_grad_k<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(
        static_cast<const scalar_t*>(dy.raw()), static_cast<scalar_t*>(dx.raw()), n, g.to_out, g.count, mean);
  });
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

}  // namespace

void register_reduce_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};
  const Device cuda = Device::CUDA;
  r.add("", "ReduceSum", cuda, f, reduce_kernel<false>);
  r.add("", "ReduceMean", cuda, f, reduce_kernel<true>);
  r.add("otter", "ReduceGrad", cuda, f, reduce_grad_kernel);
}

}  // namespace otter::cuda
