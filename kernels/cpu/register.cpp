// The CPU backend's one registration function: every CPU kernel family of runtime/ops/families.h.
#include "kernels/registry.h"

#include "kernels/cpu/gemm_half.h"
#include "kernels/cpu/onednn.h"
#include "runtime/core/convert.h"

namespace otter {
namespace cpu {
#define OTTER_FAMILY(NAME) void register_##NAME##_kernels(KernelRegistry& r);
#include "runtime/ops/families.h"
}  // namespace cpu

void register_cpu_kernels(KernelRegistry& r) {
#define OTTER_FAMILY(NAME) cpu::register_##NAME##_kernels(r);
#include "runtime/ops/families.h"
}

std::string describe_cpu_compute() {
  std::string s = "cpu (" + cpu::onednn::isa() + "): ";
  if (cpu::onednn::available()) s += "fp32 gemm and conv oneDNN; fp64 gemm OpenBLAS";
  else s += "fp32/fp64 gemm OpenBLAS; conv im2col + OpenBLAS";
  if (cpu::onednn::native_bf16()) s += "; bf16 gemm and conv oneDNN (native bf16 dot products, fp32 accumulation)";
  else s += "; bf16: fp32 compute on widened copies";
  s += "; fp16: storage only (fp32 compute, gemm/conv weights kept as fp16-rounded fp32), conversions ";
  s += conversion_path();
  if (cpu::half_gemm_matches_sgemm()) s += "; fp16 small gemm: avx512 register tiles, converted in registers";
  return s;
}

}  // namespace otter
