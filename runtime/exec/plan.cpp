// Plan construction as a pipeline over a PlanDraft (infer -> select kernels -> bind constants ->
// optimise memory (plan_passes.cpp) -> place the arena (plan_arena.cpp)), and the executor loop.
#include "runtime/exec/plan.h"

#include "runtime/core/convert.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <cstdlib>
#include <cstring>

#include "runtime/exec/plan_arena.h"
#include "runtime/exec/plan_passes.h"

namespace otter {
namespace {

// Shapes and dtypes of every value for these input shapes, with folded constants.
void infer_values(PlanDraft& d, const std::map<int, Shape>& input_shapes) {
  std::map<int, ValueInfo> inputs;
  for (auto& kv : input_shapes) {
    ValueInfo vi;
    vi.dtype = d.graph.values[kv.first].dtype;
    vi.shape = kv.second;
    inputs[kv.first] = vi;
  }
  for (auto& kv : d.options.bound) {
    ValueInfo vi;
    vi.dtype = kv.second.dtype();
    vi.shape = kv.second.shape();
    if (!d.options.variables.count(kv.first) && d.graph.values[kv.first].producer < 0) vi.data = kv.second;
    if (d.graph.values[kv.first].producer < 0 || d.options.precomputed.count(kv.first)) inputs[kv.first] = vi;
  }
  InferOptions io;
  io.variables = d.options.variables;
  io.only_nodes_for = std::set<int>(d.options.targets.begin(), d.options.targets.end());
  io.sources = d.options.precomputed;
  for (int v : d.options.targets) OTTER_CHECK(v >= 0, "plan: a requested value does not exist");
  d.info = infer_graph(d.graph, inputs, io);
  d.tensors.assign(d.graph.values.size(), Tensor());
  d.root.resize(d.info.size());
  d.origin.resize(d.info.size());
  for (size_t v = 0; v < d.info.size(); ++v) d.root[v] = d.origin[v] = static_cast<int>(v);
  d.wide.assign(d.info.size(), false);

}

// The dtype that picks `node`'s kernel: its OpDef::kernel_type_input's, else output 0's.
template <class DTypeOf>
DType kernel_key(const Node& node, const OpDef& def, DTypeOf dtype_of) {
  const int key_input = def.kernel_type_input;
  if (key_input >= 0 && node.input(key_input) >= 0) return dtype_of(node.input(key_input));
  return dtype_of(node.outputs.at(0));
}

// One step per needed node whose outputs are not all folded constants, with its kernel.
void select_kernels(PlanDraft& d) {
  // Steps: every needed node whose outputs are not all folded constants.
  std::vector<int> order = needed_nodes(d.graph, d.options.targets, d.options.precomputed);
  const KernelRegistry& kernels = KernelRegistry::instance();
  const OpRegistry& ops = OpRegistry::instance();
  for (int n : order) {
    const Node& node = d.graph.nodes[n];
    bool all_folded = true;
    for (int v : node.outputs)
      if (v >= 0 && !d.info[v].data.defined()) all_folded = false;
    if (all_folded) {
      for (int v : node.outputs)
        if (v >= 0) d.tensors[v] = d.info[v].data;
      continue;
    }
    const OpDef* def = ops.find(node.domain, node.op_type);
    const DType key = kernel_key(node, *def, [&](int v) { return d.info[v].dtype; });
    std::vector<bool> shape_only(node.inputs.size());
    for (size_t i = 0; i < node.inputs.size(); ++i) shape_only[i] = def->reads_only_shape(node, i);
    KernelFn fn = kernels.find(node.domain, node.op_type, d.options.device, key);
    bool promote = false;
    auto is_half = [](DType t) { return t == DType::Float16 || t == DType::BFloat16; };
    if (!fn && d.options.device == Device::CPU && is_half(key)) {
      // The CPU stores FP16/BF16 and computes in FP32 (design decision 7).
      fn = kernels.find(node.domain, node.op_type, d.options.device, DType::Float32);
      promote = fn != nullptr;
    }
    if (fn && d.options.device == Device::CPU && key == DType::Float32) {
      // An FP32 kernel with some FP16/BF16 data inputs (SoftmaxGrad reading the low-precision copy
      // of y): widen them too.
      for (size_t i = 0; i < node.inputs.size(); ++i)
        promote = promote || (node.inputs[i] >= 0 && !shape_only[i] && is_half(d.info[node.inputs[i]].dtype));
    }
    if (!fn) {
      std::string have;
      for (DType t : kernels.dtypes(node.domain, node.op_type, d.options.device))
        have += std::string(have.empty() ? "" : ", ") + dtype_name(t);
      OTTER_FAIL_KIND(Unsupported, node.describe(), ": no ", device_name(d.options.device), " kernel for dtype ", dtype_name(key),
                 have.empty() ? std::string(" (the op has no kernel on this device)") : " (kernels exist for " + have + ")");
    }
    d.steps.push_back({n, fn, node.inputs, node.outputs, promote, shape_only,
                      std::vector<DType>(node.outputs.size(), DType::Undefined),
                      std::vector<DType>(node.inputs.size(), DType::Undefined),
                      promote ? kernels.find_widening(node.domain, node.op_type) : nullptr});
  }

}

// Constants (initializers not bound, folded values) and bound storage. A device plan uploads its
// constants once and keeps their host copies for kernels that read small inputs.
void bind_constants(PlanDraft& d) {
  for (size_t v = 0; v < d.info.size(); ++v)
    if (!d.tensors[v].defined() && d.info[v].data.defined()) d.tensors[v] = d.info[v].data;
  if (d.options.device != Device::CPU) {
    OTTER_CHECK_KIND(Unsupported, device_backend(d.options.device), "no ", device_name(d.options.device),
                     " device: ", cuda_unavailable_reason());
    d.host_constants.assign(d.graph.values.size(), Tensor());
    for (size_t v = 0; v < d.tensors.size(); ++v)
      if (d.tensors[v].defined()) {
        d.host_constants[v] = d.tensors[v];
        d.tensors[v] = d.tensors[v].to(d.options.device);
      }
  }
  for (auto& kv : d.options.bound) {
    const ValueInfo& vi = d.info[kv.first];
    OTTER_CHECK(vi.dtype == kv.second.dtype() && vi.shape == kv.second.shape(), "plan: value '",
                d.graph.values[kv.first].name, "' is ", dtype_name(vi.dtype), " ", shape_str(vi.shape),
                " but its bound storage is ", dtype_name(kv.second.dtype()), " ", shape_str(kv.second.shape()));
    OTTER_CHECK(kv.second.device() == d.options.device, "plan: value '", d.graph.values[kv.first].name, "' is bound to ",
                device_name(kv.second.device()), " memory but the plan runs on ", device_name(d.options.device));
    d.tensors[kv.first] = kv.second;
  }
  for (auto& kv : d.options.bound_wide) {
    const ValueInfo& vi = d.info[kv.first];
    const std::string& name = d.graph.values[kv.first].name;
    OTTER_CHECK(d.options.device == Device::CPU && d.options.bound.count(kv.first) &&
                    (vi.dtype == DType::Float16 || vi.dtype == DType::BFloat16) && kv.second.dtype() == DType::Float32 &&
                    kv.second.shape() == vi.shape,
                "plan: value '", name, "' (", dtype_name(vi.dtype), " ", shape_str(vi.shape),
                ") cannot be bound as FP32 storage ", shape_str(kv.second.shape()));
    for (const PlanStep& s : d.steps)
      for (size_t i = 0; i < s.inputs.size(); ++i)
        OTTER_CHECK(s.inputs[i] != kv.first || s.promote || s.shape_only[i], "plan: value '", name,
                    "' is bound as FP32 storage but ", d.graph.nodes[s.node].describe(), " reads it as ",
                    dtype_name(vi.dtype));
    d.tensors[kv.first] = kv.second;
  }
}

}  // namespace

bool cpu_reads_only_widened(const Graph& graph, int value) {
  const KernelRegistry& kernels = KernelRegistry::instance();
  const OpRegistry& ops = OpRegistry::instance();
  bool read = false;
  for (const Node& node : graph.nodes)
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      if (node.inputs[i] != value) continue;
      const OpDef* def = ops.find(node.domain, node.op_type);
      if (!def) return false;
      if (def->reads_only_shape(node, i)) continue;
      // The key as select_kernels takes it, from the graph's static dtypes.
      const DType key = kernel_key(node, *def, [&](int v) { return v >= 0 ? graph.values[v].dtype : DType::Undefined; });
      const bool half_key = key == DType::Float16 || key == DType::BFloat16;
      // An FP32 kernel runs it (promoted): the key is 16-bit without a kernel of its own, or FP32.
      if ((half_key && kernels.find(node.domain, node.op_type, Device::CPU, key)) ||
          (!half_key && key != DType::Float32) || !kernels.find(node.domain, node.op_type, Device::CPU, DType::Float32))
        return false;
      read = true;
    }
  return read;
}

namespace {
// OTTER_DEBUG_PLAN=steps: every step of a new plan on stderr, in order: its op, "widened" for a
// promoted step, and each input and output as name:dtype[shape] (an FP32 value that a promoted
// step rounds as it reads or writes it is marked "~fp16"/"~bf16"; "@" names the block's root).
void print_steps(const PlanDraft& d) {
  auto describe = [&](int v, DType rounded) {
    if (v < 0) return std::string("-");
    std::string s = d.graph.values[d.origin[v]].name + ":" + dtype_name(d.info[v].dtype) + shape_str(d.info[v].shape);
    if (rounded != DType::Undefined) s += std::string("~") + dtype_name(rounded);
    if (d.root[v] != v) s += "@" + d.graph.values[d.origin[d.root[v]]].name + (d.wide[v] ? "(fp32)" : "");
    return s;
  };
  std::fprintf(stderr, "[plan] %zu steps\n", d.steps.size());
  for (size_t k = 0; k < d.steps.size(); ++k) {
    const PlanStep& s = d.steps[k];
    std::string line = d.graph.nodes[s.node].op_type + (s.promote ? " widened" : "") + (s.widening ? "+kernel" : "") + " (";
    for (size_t i = 0; i < s.inputs.size(); ++i)
      line += (i ? ", " : "") + describe(s.inputs[i], i < s.round_in.size() ? s.round_in[i] : DType::Undefined);
    line += ") -> ";
    for (size_t o = 0; o < s.outputs.size(); ++o)
      line += (o ? ", " : "") + describe(s.outputs[o], o < s.round_to.size() ? s.round_to[o] : DType::Undefined);
    std::fprintf(stderr, "[plan] %4zu %s\n", k, line.c_str());
  }
}
}  // namespace

Plan::Plan(Graph& graph, const std::map<int, Shape>& input_shapes, PlanOptions options)
    : graph_(graph), options_(std::move(options)) {
  PlanDraft d(graph_, options_);
  infer_values(d, input_shapes);
  select_kernels(d);
  bind_constants(d);
  optimise_memory(d, options_.optimize_memory ? options_.memory_passes : 0u);
  if (const char* debug = std::getenv("OTTER_DEBUG_PLAN"); debug && std::string(debug) == "steps") print_steps(d);
  ArenaLayout layout = plan_arena(d);
  memory_.arena_bytes = layout.arena_bytes;
  memory_.intermediate_bytes = layout.intermediate_bytes;
  info_ = std::move(d.info);
  tensors_ = std::move(d.tensors);
  host_constants_ = std::move(d.host_constants);
  steps_ = std::move(d.steps);
  allocate_arena(layout.blocks, d.root, d.wide);
}

void Plan::allocate_arena(const std::vector<ArenaBlock>& blocks, const std::vector<int>& root, const std::vector<bool>& wide) {
  size_t arena_size = std::max<size_t>(kArenaAlign, arena_aligned(memory_.arena_bytes));
  void* p = nullptr;
  if (options_.device == Device::CPU) {
    p = std::aligned_alloc(kArenaAlign, arena_size);
    OTTER_CHECK_KIND(OutOfMemory, p, "out of host memory: the plan needs an arena of ", memory_.arena_bytes, " bytes");
    arena_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  } else {
    Tensor arena(DType::Uint8, {static_cast<int64_t>(arena_size)}, options_.device);
    p = arena.raw();
    arena_ = std::shared_ptr<void>(std::make_shared<Tensor>(arena), p);
  }
  std::vector<char*> base(info_.size(), nullptr);
  for (const ArenaBlock& b : blocks) {
    base[b.value] = static_cast<char*>(p) + b.offset;
    tensors_[b.value] = Tensor::view(info_[b.value].dtype, info_[b.value].shape, arena_, base[b.value], options_.device);
  }
  for (size_t v = 0; v < root.size(); ++v)
    if (root[v] != static_cast<int>(v))
      tensors_[v] = Tensor::view(wide[v] ? DType::Float32 : info_[v].dtype, info_[v].shape, arena_, base[root[v]],
                                 options_.device);
}


// OTTER_PROFILE=1: host time per (op, widened or not; with OTTER_PROFILE=shapes also per input shapes), summed over every step of every plan in the
// process and printed to stderr at exit, most expensive first. On a device it times the launches
// only. For finding where CPU time goes (docs/benchmarks.md); off by default, one branch per step.
namespace {
struct OpTime {
  double seconds = 0;
  int64_t calls = 0;
};
std::mutex profile_mutex;
std::map<std::string, OpTime>& profile_table() {
  static auto* table = new std::map<std::string, OpTime>();
  return *table;
}
void print_profile() {
  std::lock_guard<std::mutex> lock(profile_mutex);
  std::vector<std::pair<std::string, OpTime>> rows(profile_table().begin(), profile_table().end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  double total = 0;
  for (auto& r : rows) total += r.second.seconds;
  std::fprintf(stderr, "[otter profile] %.3f s in kernels\n", total);
  for (auto& r : rows)
    std::fprintf(stderr, "[otter profile] %8.3f s %5.1f%% %8lld calls  %s\n", r.second.seconds,
                 total > 0 ? 100 * r.second.seconds / total : 0.0, static_cast<long long>(r.second.calls), r.first.c_str());
}
}  // namespace

bool Plan::profiling() {
  static const bool on = [] {
    const char* env = std::getenv("OTTER_PROFILE");
    bool yes = env && (std::string(env) == "1" || std::string(env) == "shapes");
    if (yes) std::atexit(print_profile);
    return yes;
  }();
  return on;
}

std::string Plan::profile_detail(const Node& node, const std::vector<const Tensor*>& inputs) {
  static const bool by_shape = [] {
    const char* env = std::getenv("OTTER_PROFILE");
    return env && std::string(env) == "shapes";
  }();
  std::string detail;
  if (!by_shape) return detail;  // OTTER_PROFILE=shapes: one row per op and input shapes
  for (const Tensor* t : inputs) detail += " " + (t ? shape_str(t->shape()) : std::string("-"));
  if (node.attrs.count("perm")) detail += " perm" + shape_str(node.attrs.at("perm").ints);
  return detail;
}

void Plan::record_step_time(const Node& node, bool widened, std::chrono::steady_clock::duration d,
                            const std::string& detail) {
  std::string key =
      (node.domain.empty() ? "" : node.domain + ".") + node.op_type + (widened ? " (widened)" : "") + detail;
  std::lock_guard<std::mutex> lock(profile_mutex);
  OpTime& t = profile_table()[key];
  t.seconds += std::chrono::duration<double>(d).count();
  t.calls += 1;
}

void Plan::run(const std::map<int, Tensor>& feeds, const RunOptions& run_options) {
  for (auto& kv : feeds) {
    const ValueInfo& vi = info_.at(kv.first);
    OTTER_CHECK(kv.second.dtype() == vi.dtype && kv.second.shape() == vi.shape, "input '",
                graph_.values[kv.first].name, "' is ", dtype_name(kv.second.dtype()), " ", shape_str(kv.second.shape()),
                " but the plan expects ", dtype_name(vi.dtype), " ", shape_str(vi.shape));
    tensors_[kv.first] = kv.second.device() == options_.device ? kv.second : kv.second.to(options_.device);
  }
  void* stream = options_.device == Device::CPU ? nullptr : device_backend(options_.device)->stream();
  for (const Step& s : steps_) {
    const Node& node = graph_.nodes[s.node];
    KernelContext ctx(node);
    std::vector<Tensor> shapes(s.inputs.size());  // data-less views of the inputs read for their shape
    for (size_t i = 0; i < s.inputs.size(); ++i) {
      int v = s.inputs[i];
      if (v < 0) { ctx.inputs.push_back(nullptr); continue; }
      OTTER_CHECK(tensors_[v].defined(), node.describe(), ": input '", graph_.values[v].name, "' was not provided");
      if (s.shape_only[i]) {
        shapes[i] = Tensor::view(tensors_[v].dtype(), tensors_[v].shape(), nullptr, nullptr, options_.device);
        ctx.inputs.push_back(&shapes[i]);
      } else {
        ctx.inputs.push_back(&tensors_[v]);
      }
    }
    for (int v : s.outputs) ctx.outputs.push_back(v >= 0 ? &tensors_[v] : nullptr);
    if (!host_constants_.empty()) {
      ctx.stream = stream;
      for (int v : s.inputs) ctx.host_inputs.push_back(v >= 0 && host_constants_[v].defined() ? &host_constants_[v] : nullptr);
    }
    ctx.training = run_options.training;
    ctx.seed = run_options.seed;
    ctx.counter = (run_options.step << 20) ^ static_cast<uint64_t>(s.node);
    ctx.node_index = static_cast<uint64_t>(s.node);
    ctx.step_on_device = run_options.step_on_device;
    if (run_options.checked_inputs)
      for (size_t i = 0; i < s.inputs.size(); ++i)
        ctx.checked_inputs.push_back(run_options.checked_inputs->count({s.node, static_cast<int>(i)}) > 0);
    const std::string detail = profiling() ? profile_detail(node, ctx.inputs) : std::string();  // before a widening
    auto start = profiling() ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    if (s.promote) run_promoted(s, ctx);
    else s.fn(ctx);
    if (profiling()) record_step_time(node, s.promote, std::chrono::steady_clock::now() - start, detail);
  }
}

Tensor Plan::promoted_scratch(size_t slot, const Shape& shape) {
  if (slot >= scratch_.size()) scratch_.resize(slot + 1);
  Scratch& s = scratch_[slot];
  size_t bytes = arena_aligned(std::max<size_t>(1, static_cast<size_t>(shape_numel(shape)) * sizeof(float)));
  if (s.bytes < bytes) {
    void* p = std::aligned_alloc(kArenaAlign, bytes);
    OTTER_CHECK_KIND(OutOfMemory, p, "out of host memory: ", bytes, " bytes for a widened copy");
    s.owner = std::shared_ptr<void>(p, std::free);
    s.bytes = bytes;
  }
  return Tensor::view(DType::Float32, shape, s.owner, s.owner.get());
}

// A CPU step whose kernel computes in FP32 on FP16/BF16 data (design decision 7): its 16-bit
// inputs are widened into scratch buffers, its 16-bit outputs computed there and rounded back;
// round_in/round_to emulate an FP16/BF16 round trip (the policy's boundaries) on FP32 values.
void Plan::run_promoted(const Step& s, KernelContext& ctx) {
  auto is_half = [](DType t) { return t == DType::Float16 || t == DType::BFloat16; };
  if (s.widening) {  // the op converts while it computes, for the cases it handles
    ctx.rounded_inputs = &s.round_in;
    ctx.rounded_outputs = &s.round_to;
    const bool done = s.widening(ctx);
    ctx.rounded_inputs = ctx.rounded_outputs = nullptr;
    if (done) return;
  }
  std::vector<Tensor> wide_in(ctx.inputs.size()), wide_out(ctx.outputs.size());
  size_t slot = 0;
  for (size_t i = 0; i < ctx.inputs.size(); ++i)
    if (ctx.inputs[i] && s.round_in[i] != DType::Undefined) {  // an FP32 source read as its 16-bit value
      wide_in[i] = promoted_scratch(slot++, ctx.inputs[i]->shape());
      round_through_n(ctx.inputs[i]->data<float>(), wide_in[i].data<float>(), ctx.inputs[i]->numel(),
                      s.round_in[i] == DType::Float16);
      ctx.inputs[i] = &wide_in[i];
    } else if (ctx.inputs[i] && is_half(ctx.inputs[i]->dtype())) {
      if (s.shape_only[i]) {
        wide_in[i] = Tensor::view(DType::Float32, ctx.inputs[i]->shape(), nullptr, nullptr);
      } else {
        wide_in[i] = promoted_scratch(slot++, ctx.inputs[i]->shape());
        ctx.inputs[i]->cast_into(wide_in[i]);
      }
      ctx.inputs[i] = &wide_in[i];
    }
  std::vector<Tensor*> narrow(ctx.outputs.size(), nullptr);
  for (size_t i = 0; i < ctx.outputs.size(); ++i)
    if (ctx.outputs[i] && is_half(ctx.outputs[i]->dtype())) {
      narrow[i] = ctx.outputs[i];
      wide_out[i] = promoted_scratch(slot++, narrow[i]->shape());
      ctx.outputs[i] = &wide_out[i];
    }
  s.fn(ctx);
  for (size_t i = 0; i < s.round_to.size(); ++i)
    if (s.round_to[i] != DType::Undefined)  // an FP32 output that stands for a 16-bit value
      round_through_n(ctx.outputs[i]->data<float>(), ctx.outputs[i]->data<float>(), ctx.outputs[i]->numel(),
                      s.round_to[i] == DType::Float16);
  for (size_t i = 0; i < narrow.size(); ++i)
    if (narrow[i]) wide_out[i].cast_into(*narrow[i]);
}

void Plan::poison() {
  size_t bytes = std::max<size_t>(kArenaAlign, arena_aligned(memory_.arena_bytes));
  if (options_.device == Device::CPU) {
    std::memset(arena_.get(), 0xff, bytes);
    return;
  }
  Tensor ones(DType::Uint8, {static_cast<int64_t>(bytes)});
  std::memset(ones.raw(), 0xff, bytes);
  Tensor arena = Tensor::view(DType::Uint8, {static_cast<int64_t>(bytes)}, arena_, arena_.get(), options_.device);
  arena.copy_from(ones);
}

std::unique_ptr<Plan> build_plan(Graph& graph, const std::map<int, Shape>& input_shapes, PlanOptions options,
                                 double* seconds) {
  const auto started = std::chrono::steady_clock::now();
  auto plan = std::make_unique<Plan>(graph, input_shapes, std::move(options));
  *seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return plan;
}

const Tensor& Plan::value(int id) const {
  OTTER_CHECK(id >= 0 && static_cast<size_t>(id) < tensors_.size() && tensors_[id].defined(),
              "plan: value ", id, " is not available");
  return tensors_[id];
}

}  // namespace otter
