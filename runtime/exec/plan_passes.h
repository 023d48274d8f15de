// A plan under construction (PlanDraft) and the memory passes over it. Plan::Plan
// (runtime/exec/plan.cpp) is the pipeline: infer values -> select kernels -> bind constants ->
// optimise_memory (these passes, in this order) -> place the arena (plan_arena.h). Every pass
// keeps every result bit: it only changes which values share bytes, when steps run, or where a
// rounding happens (tests/e2e/test_memory.cpp runs each pass alone and all together against the
// plain plan, PlanOptions::memory_passes).
#pragma once
#include <set>
#include <vector>

#include "runtime/exec/plan.h"

namespace otter {

struct PlanDraft {
  PlanDraft(Graph& g, const PlanOptions& o) : graph(g), options(o) {}
  Graph& graph;  // infer_graph annotates it
  const PlanOptions& options;
  std::vector<ValueInfo> info;        // by value id (plan values past the graph's: recomputed copies)
  std::vector<Tensor> tensors;        // bound storage, constants (defined: not in the arena)
  std::vector<Tensor> host_constants;  // device plans: host copies of the constants
  std::vector<PlanStep> steps;
  std::vector<int> root;     // the value whose block v uses (v itself unless v is a view)
  std::vector<bool> wide;    // v is an FP32 view of its root (a fused input Cast)
  std::vector<int> origin;   // the graph value whose name a plan value carries
  std::set<int> target_roots;  // the roots of the targets: they live to the end
};

// CPU: an FP32 step reads a half value instead of the FP32 Cast only it reads, and writes a half
// value instead of the FP32 value only a Cast to it reads (the step becomes promoted).
void promote_through_casts(PlanDraft& d);
// A promoted step whose FP16/BF16 output is read only by a Cast to FP32 bound outside the arena
// writes the FP32 value rounded to the half type straight into the Cast's output.
void fuse_output_casts(PlanDraft& d);
// Steps whose output is their input's bytes (OpDef::views, with its predicate) do not run.
void make_views(PlanDraft& d);
// A schedule with shorter lifetimes (each step just before its first consumer when that does not
// raise the live bytes).
void sink_schedule(PlanDraft& d);
// A Cast to FP16/BF16 read only by promoted steps does not run when its FP32 source lives anyway.
void fuse_input_casts(PlanDraft& d);
// Cheap activations read again late are computed again next to their late readers.
void recompute_late_values(PlanDraft& d);

// The passes named in `passes` (MemoryPass bits), in the order above; sets target_roots.
void optimise_memory(PlanDraft& d, unsigned passes);

}  // namespace otter
