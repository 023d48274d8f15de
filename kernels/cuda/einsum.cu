// CUDA kernel for Einsum (runtime/ops/einsum.cpp), with the semantics of kernels/cpu/einsum.cpp;
// the equation is resolved on the host by kernels/common/einsum_host.h. One general kernel serves
// every equation: one thread per output element sums, over every combination of the summed
// labels (those of the operands that the output lacks), the product of all the operands at that
// place, reading each operand through per-label strides (a repeated subscript adds its strides: a
// diagonal; a dim of size 1 where the label is larger has stride 0: broadcasting). This is the
// CPU's general loop applied to all operands at once; the CPU contracts two float operands as a
// batched GEMM instead and three or more left to right, which changes only the rounding.
// Accumulation is in FP32 (FP64 for FP64, the type itself for integers).
#include "kernels/common/einsum_host.h"
#include "kernels/cuda/cuda_common.cuh"

namespace otter::cuda {
namespace {

constexpr int kMaxOperands = 8;

// The output labels' and summed labels' sizes, and each operand's stride along each of them.
template <class T>
struct EinsumWalk {
  const T* op[kMaxOperands];
  int n_ops = 0, out_rank = 0, sum_rank = 0;
  int64_t out_size[kMaxDims], sum_size[kMaxDims];
  int64_t out_stride[kMaxOperands][kMaxDims], sum_stride[kMaxOperands][kMaxDims];
};

template <class T>
__global__ void einsum_k(T* __restrict__ y, int64_t n_out, int64_t n_sum, EinsumWalk<T> w) {
  using A = typename Compute<T>::type;
  GRID_STRIDE(o, n_out) {
    int64_t off[kMaxOperands];
    for (int k = 0; k < w.n_ops; ++k) off[k] = 0;
    int64_t rest = o;
    for (int d = w.out_rank - 1; d >= 0; --d) {
      int64_t i = rest % w.out_size[d];
      rest /= w.out_size[d];
      for (int k = 0; k < w.n_ops; ++k) off[k] += i * w.out_stride[k][d];
    }
    int64_t idx[kMaxDims];
    for (int d = 0; d < w.sum_rank; ++d) idx[d] = 0;
    A acc = 0;
    for (int64_t s = 0; s < n_sum; ++s) {
      A p = static_cast<A>(load(w.op[0], off[0]));
      for (int k = 1; k < w.n_ops; ++k) p *= static_cast<A>(load(w.op[k], off[k]));
      acc += p;
      for (int d = w.sum_rank - 1; d >= 0; --d) {  // the next summed index
        for (int k = 0; k < w.n_ops; ++k) off[k] += w.sum_stride[k][d];
        if (++idx[d] < w.sum_size[d]) break;
        for (int k = 0; k < w.n_ops; ++k) off[k] -= w.sum_stride[k][d] * w.sum_size[d];
        idx[d] = 0;
      }
    }
    store(y, o, acc);
  }
}

template <class T>
void einsum_typed(KernelContext& ctx) {
  size_t n_ops = ctx.inputs.size();
  einsum::Problem p = einsum::resolve(ctx);
  const einsum::Equation& eq = p.eq;
  const std::vector<int64_t>& size = p.size;
  Tensor& y = ctx.out(0);
  if (y.numel() == 0) return;

  // The summed labels, in order of first occurrence (as the CPU's general loop).
  std::vector<int> sum_labels = einsum::summed_labels(eq.inputs, eq.output, size.size());
  OTTER_CHECK(n_ops <= static_cast<size_t>(kMaxOperands), ctx.node.describe(), ": the CUDA Einsum supports up to ",
              kMaxOperands, " operands, got ", n_ops);
  OTTER_CHECK(eq.output.size() <= static_cast<size_t>(kMaxDims) && sum_labels.size() <= static_cast<size_t>(kMaxDims),
              ctx.node.describe(), ": the CUDA Einsum supports up to ", kMaxDims, " output and ", kMaxDims,
              " summed subscripts, got ", eq.output.size(), " and ", sum_labels.size());

  EinsumWalk<T> w;
  w.n_ops = static_cast<int>(n_ops);
  w.out_rank = static_cast<int>(eq.output.size());
  w.sum_rank = static_cast<int>(sum_labels.size());
  int64_t n_sum = 1;
  for (int d = 0; d < w.out_rank; ++d) w.out_size[d] = size[static_cast<size_t>(eq.output[d])];
  for (int d = 0; d < w.sum_rank; ++d) {
    w.sum_size[d] = size[static_cast<size_t>(sum_labels[d])];
    n_sum *= w.sum_size[d];
  }
  for (size_t k = 0; k < n_ops; ++k) {
    w.op[k] = static_cast<const T*>(ctx.in(k).raw());
    std::vector<int64_t> strides = einsum::label_strides(p.shapes[k], eq.inputs[k], size);
    for (int d = 0; d < w.out_rank; ++d) w.out_stride[k][d] = strides[static_cast<size_t>(eq.output[d])];
    for (int d = 0; d < w.sum_rank; ++d) w.sum_stride[k][d] = strides[static_cast<size_t>(sum_labels[d])];
  }
  int64_t n_out = y.numel();
  einsum_k<T><<<blocks_for(n_out), kThreads, 0, stream_of(ctx)>>>(static_cast<T*>(y.raw()), n_out, n_sum, w);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

void einsum_kernel(KernelContext& ctx) {
  OTTER_CUDA_DISPATCH_NUM(ctx.in(0).dtype(), ctx.node.describe(), einsum_typed<scalar_t>(ctx));
}

}  // namespace

void register_einsum_kernels(KernelRegistry& r) {
  r.add("", "Einsum", Device::CUDA,
        {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int64, DType::Int32}, einsum_kernel);
}

}  // namespace otter::cuda
