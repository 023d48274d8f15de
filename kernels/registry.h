// How each op RUNS: the kernel registry, keyed by (domain, op, device, dtype). Each backend has
// one registration function that lists its kernels (register_cpu_kernels in kernels/cpu/). A
// kernel receives its inputs and preallocated outputs (shapes come from the plan's inference)
// and writes every element of every output. A missing kernel is an error at plan time naming
// the op, dtype and device.
#pragma once
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/core/device.h"
#include "runtime/ir/graph.h"

namespace otter {


struct KernelContext {
  explicit KernelContext(const Node& n) : node(n) {}
  const Node& node;
  std::vector<const Tensor*> inputs;  // nullptr for an omitted optional input
  std::vector<Tensor*> outputs;       // nullptr for an omitted optional output
  bool training = true;               // Dropout: active in training, identity in eval
  uint64_t seed = 0;                  // random ops: the session seed
  uint64_t counter = 0;               // random ops: (step << 20) ^ node_index
  uint64_t node_index = 0;            // the node's index in its graph
  // Device sessions: the step, in device memory, that random ops draw from; when set, a device
  // kernel computes its counter as (*step_on_device << 20) ^ node_index on the device, so that a
  // captured CUDA graph draws new masks at every replay.
  const int64_t* step_on_device = nullptr;
  // Per input: the caller checked its values on the host (device sessions check the index and
  // label feeds of Gather, GatherElements and the losses before uploading them): a device kernel
  // skips its own range check, which would have to synchronise with the host to report an error.
  std::vector<bool> checked_inputs;
  bool input_checked(size_t i) const { return i < checked_inputs.size() && checked_inputs[i]; }
  void* stream = nullptr;             // CUDA: the cudaStream_t to launch on
  // Widening kernels (below): per input / output, Undefined or the FP16/BF16 type that an FP32
  // tensor stands for (the plan's fused Casts, PlanStep::round_in / round_to, pointed at, not
  // copied, at each step; null: none): an input is read rounded to that type, an output written
  // rounded through it. A kernel that does not handle a rounding declines the step
  // (rounds_nothing()).
  const std::vector<DType>* rounded_inputs = nullptr;
  const std::vector<DType>* rounded_outputs = nullptr;
  DType rounded_input(size_t i) const { return rounded_at(rounded_inputs, i); }
  DType rounded_output(size_t i) const { return rounded_at(rounded_outputs, i); }
  bool rounds_nothing() const {
    for (const std::vector<DType>* v : {rounded_inputs, rounded_outputs})
      for (size_t i = 0; v && i < v->size(); ++i)
        if ((*v)[i] != DType::Undefined) return false;
    return true;
  }
  // Host copies of inputs known when the plan was built (constants: axes, shapes, starts...),
  // nullptr otherwise; device kernels read such small inputs here rather than from the device.
  std::vector<const Tensor*> host_inputs;
  const Tensor* host_input(size_t i) const { return i < host_inputs.size() ? host_inputs[i] : nullptr; }
  // The values of a small input (axes, starts, scalar bounds) on the host: the plan-time copy when
  // there is one, the input itself on the CPU, else a copy from the device (which synchronises).
  std::vector<int64_t> int64_values(size_t i) const;
  std::vector<double> double_values(size_t i) const;
  double scalar_value(size_t i, double fallback) const;  // `fallback` when the input is omitted
  // `axis` in [-rank, rank) made non-negative; an error naming the node otherwise.
  int64_t normalize_axis(int64_t axis, int64_t rank) const;

  bool has_input(size_t i) const { return i < inputs.size() && inputs[i] != nullptr; }
  const Tensor& in(size_t i) const;
  bool has_output(size_t i) const { return i < outputs.size() && outputs[i] != nullptr; }
  Tensor& out(size_t i) const;

 private:
  static DType rounded_at(const std::vector<DType>* v, size_t i) {
    return v && i < v->size() ? (*v)[i] : DType::Undefined;
  }
};

using KernelFn = void (*)(KernelContext&);

// One kernel of an op for one dtype; a typed kernel family registers one per dtype it runs
// (OTTER_CPU_FLOAT_KERNELS in kernels/cpu/cpu_common.h, OTTER_CUDA_FLOAT_KERNELS in
// kernels/cuda/cuda_common.cuh), so that registration is the dtype dispatch.
struct TypedKernel {
  DType dtype;
  KernelFn fn;
};

// A CPU step the plan widens (an FP32 kernel on FP16/BF16 data, design decision 7) may also have
// a widening kernel: it takes the step's 16-bit inputs and outputs as they are and converts while
// it computes, for the cases it handles. It returns false, having written nothing, for any other
// case, and the plan then widens the whole operands for the FP32 kernel as usual.
using WideningKernelFn = bool (*)(KernelContext&);

class KernelRegistry {
 public:
  static const KernelRegistry& instance();
  void add(const std::string& domain, const std::string& op_type, Device device,
           std::vector<DType> dtypes, KernelFn fn);
  void add(const std::string& domain, const std::string& op_type, Device device,
           std::initializer_list<TypedKernel> kernels);
  KernelFn find(const std::string& domain, const std::string& op_type, Device device, DType dtype) const;
  // The dtypes with a kernel for (domain, op, device); empty if none.
  std::vector<DType> dtypes(const std::string& domain, const std::string& op_type, Device device) const;
  // The CPU widening kernel of an op (WideningKernelFn), nullptr if none.
  void add_widening(const std::string& domain, const std::string& op_type, WideningKernelFn fn);
  WideningKernelFn find_widening(const std::string& domain, const std::string& op_type) const;

 private:
  std::map<std::tuple<std::string, std::string, int, int>, KernelFn> kernels_;
  std::map<std::pair<std::string, std::string>, WideningKernelFn> widening_;
};

void register_cpu_kernels(KernelRegistry& registry);
// What computes on `device` in this build and on this machine, in one line (for `otter inspect`,
// the CLI's metrics and otter_session_compute), e.g. "cpu (avx512_bf16): fp32 gemm and conv oneDNN; ...".
std::string describe_compute(Device device);
std::string describe_cpu_compute();  // kernels/cpu/register.cpp
// Installs the CUDA device when usable and registers the CUDA kernels (kernels/cuda/backend.cu).
void register_cuda_kernels(KernelRegistry& registry);

}  // namespace otter
