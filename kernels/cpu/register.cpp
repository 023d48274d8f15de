// The CPU backend's one registration function: every CPU kernel family of runtime/ops/families.h.
#include "kernels/registry.h"

namespace otter {
namespace cpu {
#define OTTER_FAMILY(NAME) void register_##NAME##_kernels(KernelRegistry& r);
#include "runtime/ops/families.h"
}  // namespace cpu

void register_cpu_kernels(KernelRegistry& r) {
#define OTTER_FAMILY(NAME) cpu::register_##NAME##_kernels(r);
#include "runtime/ops/families.h"
}

}  // namespace otter
