// Kernel registry storage and lookup.
#include "kernels/registry.h"

#include "kernels/step_ops.h"

namespace otter {


std::string describe_compute(Device device) {
  if (device == Device::CPU) return describe_cpu_compute();
  return std::string(device_name(device)) + ": cuBLAS/cuBLASLt GEMMs, cuDNN convolutions, Otter's CUDA kernels";
}

const Tensor& KernelContext::in(size_t i) const {
  OTTER_CHECK(has_input(i), node.describe(), ": input ", i, " is required");
  return *inputs[i];
}

namespace {
Tensor host_copy(const KernelContext& ctx, size_t i) {
  if (const Tensor* h = ctx.host_input(i)) return *h;
  const Tensor& t = ctx.in(i);
  return t.device() == Device::CPU ? t : t.to(Device::CPU);
}
}  // namespace

std::vector<int64_t> KernelContext::int64_values(size_t i) const { return host_copy(*this, i).to_int64_vector(); }

std::vector<double> KernelContext::double_values(size_t i) const { return host_copy(*this, i).to_double_vector(); }

double KernelContext::scalar_value(size_t i, double fallback) const {
  if (!has_input(i)) return fallback;
  return double_values(i).at(0);
}

int64_t KernelContext::normalize_axis(int64_t axis, int64_t rank) const {
  OTTER_CHECK(axis >= -rank && axis < rank, node.describe(), ": axis ", axis, " is out of range for rank ", rank);
  return axis < 0 ? axis + rank : axis;
}

Tensor& KernelContext::out(size_t i) const {
  OTTER_CHECK(has_output(i), node.describe(), ": output ", i, " is required");
  return *outputs[i];
}

void KernelRegistry::add(const std::string& domain, const std::string& op_type, Device device,
                         std::vector<DType> dtypes, KernelFn fn) {
  for (DType t : dtypes)
    kernels_[{domain, op_type, static_cast<int>(device), static_cast<int>(t)}] = fn;
}

void KernelRegistry::add(const std::string& domain, const std::string& op_type, Device device,
                         std::initializer_list<TypedKernel> kernels) {
  for (const TypedKernel& k : kernels) add(domain, op_type, device, {k.dtype}, k.fn);
}

KernelFn KernelRegistry::find(const std::string& domain, const std::string& op_type, Device device,
                              DType dtype) const {
  std::string d = domain == "ai.onnx" ? "" : domain;
  auto it = kernels_.find({d, op_type, static_cast<int>(device), static_cast<int>(dtype)});
  return it == kernels_.end() ? nullptr : it->second;
}

void KernelRegistry::add_widening(const std::string& domain, const std::string& op_type, WideningKernelFn fn) {
  widening_[{domain == "ai.onnx" ? "" : domain, op_type}] = fn;
}

WideningKernelFn KernelRegistry::find_widening(const std::string& domain, const std::string& op_type) const {
  auto it = widening_.find({domain == "ai.onnx" ? "" : domain, op_type});
  return it == widening_.end() ? nullptr : it->second;
}

std::vector<DType> KernelRegistry::dtypes(const std::string& domain, const std::string& op_type,
                                          Device device) const {
  std::vector<DType> r;
  for (auto& kv : kernels_)
    if (std::get<0>(kv.first) == domain && std::get<1>(kv.first) == op_type &&
        std::get<2>(kv.first) == static_cast<int>(device))
      r.push_back(static_cast<DType>(std::get<3>(kv.first)));
  return r;
}

const KernelRegistry& KernelRegistry::instance() {
  static const KernelRegistry registry = [] {
    KernelRegistry r;
    register_cpu_kernels(r);
#if defined(OTTER_HAVE_CUDA)
    register_cuda_kernels(r);
#endif
    return r;
  }();
  return registry;
}

StepOps* cpu_step_ops();  // kernels/cpu/step_ops.cpp

namespace {
StepOps* step_ops_table[2] = {nullptr, nullptr};
}

StepOps* step_ops(Device d) {
  KernelRegistry::instance();  // installs the CUDA backend and its step operations when usable
  if (d == Device::CPU) return cpu_step_ops();
  return step_ops_table[static_cast<int>(d)];
}

void set_step_ops(Device d, StepOps* ops) { step_ops_table[static_cast<int>(d)] = ops; }

void StepOps::refresh_low(const float* masters, const LowCopies& copies) {
  for (size_t i = 0; i < copies.count; ++i) {
    const LowCopyRun& r = copies.runs[i];
    OTTER_CHECK(!r.wide, "a wide low-precision copy exists on the CPU only");
    to_low(masters + r.src, static_cast<uint16_t*>(copies.low) + r.dst, copies.dtype, r.n);
  }
}

void StepOps::optimizer_step_and_refresh(const math::OptimizerParams& opt, const math::ScheduleParams& schedule,
                                         double base_lr, float* params, const float* g, float* m, float* v, int64_t n,
                                         const float* scaler, int64_t* counters, const LowCopies& copies) {
  optimizer_step(opt, schedule, base_lr, params, g, m, v, n, scaler, counters);
  // Refreshing after a skipped step (on the device, where the flag is not read here) rewrites the
  // same values.
  refresh_low(params, copies);
}

}  // namespace otter
