// An execution plan: for one graph and one set of concrete input shapes, the ordered kernel calls
// that compute the requested values, with every intermediate placed in one arena by liveness
// (values whose lifetimes do not overlap share memory). Folded constants are computed once when
// the plan is built. Values can be bound to external storage (the flat parameter and gradient
// buffers): the producing kernel then writes there directly and the arena does not hold them.
// To keep the arena small the plan also reorders steps, makes reshapes views, fuses casts into
// promoted FP16/BF16 steps and recomputes cheap input-derived values (plan_passes.h), then
// places the arena by liveness (plan_arena.h); OTTER_DEBUG_PLAN=1 prints the blocks live at the
// arena's peak to stderr.
#pragma once
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "kernels/registry.h"
#include "runtime/exec/infer.h"

namespace otter {

// (node index, input index) pairs whose values the caller checked on the host.
using CheckedInputs = std::set<std::pair<int, int>>;

// The memory passes (runtime/exec/plan_passes.h), for PlanOptions::memory_passes.
enum MemoryPass : unsigned {
  kFuseOutputCasts = 1u << 0,  // a promoted step rounds into the FP32 output of the Cast reading it
  kViews = 1u << 1,            // Identity/Reshape-like steps (OpDef::views) become views
  kSinkSchedule = 1u << 2,     // steps move next to their first consumer
  kFuseInputCasts = 1u << 3,   // promoted readers round the FP32 source of a policy Cast themselves
  kRecompute = 1u << 4,        // cheap activations are computed again next to late readers
  kPromoteThroughCasts = 1u << 5,  // CPU: an FP32 step between policy Casts reads and writes the half values
  kAllMemoryPasses = (1u << 6) - 1,
};

struct PlanOptions {
  Device device = Device::CPU;
  std::vector<int> targets;               // values the caller wants after a run
  std::map<int, Tensor> bound;            // value id -> external storage (its dtype/shape must match)
  std::set<int> variables;                // bound values whose data changes between runs (parameters)
  std::set<int> precomputed;              // bound values the caller fills: their producers never run
  // FP16/BF16 values (also in `bound`, which gives their type) whose storage is FP32 holding the
  // same numbers (the weight copy kept wide on the CPU; cpu_reads_only_widened): every step that
  // reads their data widens them, and reads this storage as it is instead.
  std::map<int, Tensor> bound_wide;
  // false: the plain schedule (topological order, no views, no fused casts, no recomputation),
  // for tests and debugging; the results are the same bits either way.
  bool optimize_memory = true;
  unsigned memory_passes = kAllMemoryPasses;  // with optimize_memory: which passes run (tests)
};

struct RunOptions {
  bool training = true;
  uint64_t seed = 0;
  uint64_t step = 0;  // random ops draw from stream (step, node): a new mask every step
  const int64_t* step_on_device = nullptr;  // device plans: read the step there instead (see KernelContext)
  const CheckedInputs* checked_inputs = nullptr;  // (node, input) uses checked on the host (KernelContext)
};

struct PlanStep {
  int node;
  KernelFn fn;
  std::vector<int> inputs;
  std::vector<int> outputs;
  bool promote = false;  // FP16/BF16 values through an FP32 kernel: convert in, compute, round out
  std::vector<bool> shape_only;  // per input: the kernel reads only its shape (OpDef::shape_only)
  // Per output of a promoted step: Undefined, or the FP16/BF16 type the FP32 output is rounded to
  // in place (the step writes straight into the FP32 output of a Cast that then does not run).
  std::vector<DType> round_to;
  // Per input of a promoted step: Undefined, or the FP16/BF16 type the FP32 input is rounded to
  // when it is widened (the step reads the FP32 source of a Cast that then does not run).
  std::vector<DType> round_in;
  // Promoted: the op's widening kernel (registry.h), tried on the 16-bit data before widening.
  WideningKernelFn widening = nullptr;
};
struct ArenaBlock;  // runtime/exec/plan_arena.h

struct MemoryStats {
  size_t arena_bytes = 0;          // planned peak of intermediates
  size_t intermediate_bytes = 0;   // the sum of all intermediates (no reuse)
};

// True when every data read of `value` in `graph` is by a node the CPU computes through an FP32
// kernel on its FP16/BF16 inputs (design decision 7: a promoted step, which widens the value at
// each run): such a value can be bound as FP32 storage with PlanOptions::bound_wide.
bool cpu_reads_only_widened(const Graph& graph, int value);

class Plan;
// A new Plan(graph, input_shapes, options); adds the wall time its construction took to *seconds
// (StepStats::plan_seconds, the "plan_seconds" statistic).
std::unique_ptr<Plan> build_plan(Graph& graph, const std::map<int, Shape>& input_shapes, PlanOptions options,
                                 double* seconds);

class Plan {
 public:
  // Graph inputs are given by shape (their dtype is the graph's); other inputs are bound.
  Plan(Graph& graph, const std::map<int, Shape>& input_shapes, PlanOptions options);

  // Runs the plan. `feeds` must hold every graph input with the plan's shapes and dtypes.
  void run(const std::map<int, Tensor>& feeds, const RunOptions& run_options);
  // A value after run (a target, a bound value or a constant).
  const Tensor& value(int id) const;
  const ValueInfo& info(int id) const { return info_.at(id); }
  const MemoryStats& memory() const { return memory_; }
  // Fills the arena with 0xFF bytes (NaN for every float type): a test that runs after this
  // catches any output element a kernel did not write.
  void poison();
  size_t num_steps() const { return steps_.size(); }

 private:
  using Step = PlanStep;
  void run_promoted(const Step& s, KernelContext& ctx);
  // OTTER_PROFILE=1 (or =shapes): per-op host times, printed at exit (plan.cpp).
  static bool profiling();
  static void record_step_time(const Node& node, bool widened, std::chrono::steady_clock::duration d,
                               const std::string& detail);
  static std::string profile_detail(const Node& node, const std::vector<const Tensor*>& inputs);
  // An FP32 tensor of `shape` in scratch buffer `slot`: the widened copies of a promoted step,
  // reused by every step and every run (grown to the largest use; never freed between runs).
  Tensor promoted_scratch(size_t slot, const Shape& shape);
  // Allocates the arena and makes every block (and every view of one) a tensor in it.
  void allocate_arena(const std::vector<ArenaBlock>& blocks, const std::vector<int>& root, const std::vector<bool>& wide);
  Graph& graph_;
  PlanOptions options_;
  std::vector<ValueInfo> info_;
  std::vector<Tensor> tensors_;  // by value id: arena views, bound storage, constants, feeds
  std::vector<Tensor> host_constants_;  // device plans: host copies of values known at build time
  std::vector<Step> steps_;
  std::shared_ptr<void> arena_;
  struct Scratch {
    std::shared_ptr<void> owner;
    size_t bytes = 0;
  };
  std::vector<Scratch> scratch_;  // promoted_scratch's buffers
  MemoryStats memory_;
};

}  // namespace otter
