// Plan construction (inference, folding, kernel selection, liveness memory planning) and the
// executor loop.
#include "runtime/exec/plan.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace otter {
namespace {

constexpr size_t kAlign = 64;
size_t aligned(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

struct Block {
  size_t size;
  int first, last;  // step indices of definition and last use
  size_t offset = 0;
  int value;
};

// Greedy by size: each block goes to the lowest offset that does not overlap a placed block
// whose lifetime overlaps its own.
size_t place_blocks(std::vector<Block>& blocks) {
  std::vector<size_t> order(blocks.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return blocks[a].size != blocks[b].size ? blocks[a].size > blocks[b].size : a < b;
  });
  std::vector<size_t> placed;
  size_t peak = 0;
  for (size_t idx : order) {
    Block& b = blocks[idx];
    std::vector<std::pair<size_t, size_t>> busy;
    for (size_t p : placed) {
      const Block& o = blocks[p];
      if (o.last < b.first || b.last < o.first) continue;
      busy.push_back({o.offset, o.offset + o.size});
    }
    std::sort(busy.begin(), busy.end());
    size_t offset = 0;
    for (auto& r : busy) {
      if (offset + b.size <= r.first) break;
      offset = std::max(offset, r.second);
    }
    b.offset = offset;
    peak = std::max(peak, offset + b.size);
    placed.push_back(idx);
  }
  return peak;
}

// Inputs a kernel reads only for their shape, never their data (the internal gradient ops that
// take a forward value to know the shape of the gradient they write). Such a read does not keep
// the value alive in the arena: the kernel is given a view of the shape with no data, so a kernel
// that did read the data would fail at once rather than read memory given to another value.
bool reads_only_shape(const Node& n, size_t i) {
  if (n.domain != "otter") return false;
  const std::string& op = n.op_type;
  if (op == "SumToShapeOf" || op == "AveragePoolGrad" || op == "GlobalAveragePoolGrad" || op == "ReduceGrad" ||
      op == "TileGrad" || op == "PadGrad" || op == "ResizeGrad" || op == "SliceGrad")
    return i == 1;
  if (op == "ConvGradInput" || op == "ConvGradWeight" || op == "ConvTransposeGradInput" ||
      op == "ConvTransposeGradWeight" || op == "MaxPoolGrad" || op == "GatherGrad" || op == "GatherElementsGrad" ||
      op == "NegativeLogLikelihoodLossGrad")
    return i == 2;
  if (op == "ConcatGrad") return i >= 1;                     // (dy, x0, x1, ...)
  if (op == "SplitGrad") return i >= n.inputs.size() / 2;    // (dy0.., y0..)
  return false;
}

// A schedule with shorter lifetimes. The topological order runs a node as soon as its inputs
// exist, so a gradient node that reads only forward values (the Transposes of a MatMul's
// gradient, a parameter's Transpose) runs during the forward pass and its output is held across
// it. Each step, from the last to the first, moves to just before the first step that needs one
// of its outputs when every arena value it reads is read again at or after that point: its
// outputs then live shorter and no input lives longer. `reads`: data inputs; `needs`: all inputs
// (shape-only reads too: the order must keep them after their producers); `arena[v]`: v is an
// arena value that does not live to the end.
std::vector<size_t> sink_order(const std::vector<std::vector<int>>& reads, const std::vector<std::vector<int>>& needs,
                               const std::vector<std::vector<int>>& writes, const std::vector<bool>& arena) {
  size_t n = reads.size();
  std::vector<std::vector<size_t>> readers(arena.size()), needers(arena.size());
  for (size_t s = 0; s < n; ++s) {
    for (int v : reads[s]) if (v >= 0) readers[v].push_back(s);
    for (int v : needs[s]) if (v >= 0) needers[v].push_back(s);
  }
  std::vector<size_t> order(n), pos(n);
  for (size_t s = 0; s < n; ++s) order[s] = pos[s] = s;
  for (size_t s = n; s-- > 0;) {
    size_t first = n;
    for (int v : writes[s])
      if (v >= 0)
        for (size_t u : needers[v]) first = std::min(first, pos[u]);
    if (first == n || first <= pos[s] + 1) continue;
    bool free_move = true;
    for (int v : reads[s]) {
      if (v < 0 || !arena[v]) continue;
      bool read_later = false;
      for (size_t u : readers[v]) read_later = read_later || (u != s && pos[u] >= first);
      free_move = free_move && read_later;
    }
    if (!free_move) continue;
    size_t from = pos[s];
    order.erase(order.begin() + static_cast<std::ptrdiff_t>(from));
    order.insert(order.begin() + static_cast<std::ptrdiff_t>(first - 1), s);
    for (size_t k = from; k < first; ++k) pos[order[k]] = k;
  }
  return order;
}

}  // namespace

Plan::Plan(Graph& graph, const std::map<int, Shape>& input_shapes, PlanOptions options)
    : graph_(graph), options_(std::move(options)) {
  std::map<int, ValueInfo> inputs;
  for (auto& kv : input_shapes) {
    ValueInfo vi;
    vi.dtype = graph_.values[kv.first].dtype;
    vi.shape = kv.second;
    inputs[kv.first] = vi;
  }
  for (auto& kv : options_.bound) {
    ValueInfo vi;
    vi.dtype = kv.second.dtype();
    vi.shape = kv.second.shape();
    if (!options_.variables.count(kv.first) && graph_.values[kv.first].producer < 0) vi.data = kv.second;
    if (graph_.values[kv.first].producer < 0 || options_.precomputed.count(kv.first)) inputs[kv.first] = vi;
  }
  InferOptions io;
  io.variables = options_.variables;
  io.only_nodes_for = std::set<int>(options_.targets.begin(), options_.targets.end());
  io.sources = options_.precomputed;
  for (int v : options_.targets) OTTER_CHECK(v >= 0, "plan: a requested value does not exist");
  info_ = infer_graph(graph_, inputs, io);
  tensors_.assign(graph_.values.size(), Tensor());

  // Steps: every needed node whose outputs are not all folded constants.
  std::vector<int> order = needed_nodes(graph_, options_.targets, options_.precomputed);
  const KernelRegistry& kernels = KernelRegistry::instance();
  const OpRegistry& ops = OpRegistry::instance();
  for (int n : order) {
    const Node& node = graph_.nodes[n];
    bool all_folded = true;
    for (int v : node.outputs)
      if (v >= 0 && !info_[v].data.defined()) all_folded = false;
    if (all_folded) {
      for (int v : node.outputs)
        if (v >= 0) tensors_[v] = info_[v].data;
      continue;
    }
    const OpDef* def = ops.find(node.domain, node.op_type);
    int key_input = def->kernel_type_input;
    DType key = key_input >= 0 && node.input(key_input) >= 0 ? info_[node.input(key_input)].dtype
                                                              : info_[node.outputs.at(0)].dtype;
    std::vector<bool> shape_only(node.inputs.size());
    for (size_t i = 0; i < node.inputs.size(); ++i) shape_only[i] = reads_only_shape(node, i);
    KernelFn fn = kernels.find(node.domain, node.op_type, options_.device, key);
    bool promote = false;
    auto is_half = [](DType t) { return t == DType::Float16 || t == DType::BFloat16; };
    if (!fn && options_.device == Device::CPU && is_half(key)) {
      // The CPU stores FP16/BF16 and computes in FP32 (design decision 7).
      fn = kernels.find(node.domain, node.op_type, options_.device, DType::Float32);
      promote = fn != nullptr;
    }
    if (fn && options_.device == Device::CPU && key == DType::Float32) {
      // An FP32 kernel with some FP16/BF16 data inputs (SoftmaxGrad reading the low-precision copy
      // of y): widen them too.
      for (size_t i = 0; i < node.inputs.size(); ++i)
        promote = promote || (node.inputs[i] >= 0 && !shape_only[i] && is_half(info_[node.inputs[i]].dtype));
    }
    if (!fn) {
      std::string have;
      for (DType t : kernels.dtypes(node.domain, node.op_type, options_.device))
        have += std::string(have.empty() ? "" : ", ") + dtype_name(t);
      OTTER_FAIL_KIND(Unsupported, node.describe(), ": no ", device_name(options_.device), " kernel for dtype ", dtype_name(key),
                 have.empty() ? std::string(" (the op has no kernel on this device)") : " (kernels exist for " + have + ")");
    }
    steps_.push_back({n, fn, node.inputs, node.outputs, promote, shape_only});
  }

  // Constants (initializers not bound, folded values) and bound storage. A device plan uploads
  // its constants once and keeps their host copies for kernels that read small inputs.
  for (size_t v = 0; v < info_.size(); ++v)
    if (!tensors_[v].defined() && info_[v].data.defined()) tensors_[v] = info_[v].data;
  if (options_.device != Device::CPU) {
    OTTER_CHECK_KIND(Unsupported, device_backend(options_.device), "no ", device_name(options_.device),
                     " device: ", cuda_unavailable_reason());
    host_constants_.assign(graph_.values.size(), Tensor());
    for (size_t v = 0; v < tensors_.size(); ++v)
      if (tensors_[v].defined()) {
        host_constants_[v] = tensors_[v];
        tensors_[v] = tensors_[v].to(options_.device);
      }
  }
  for (auto& kv : options_.bound) {
    const ValueInfo& vi = info_[kv.first];
    OTTER_CHECK(vi.dtype == kv.second.dtype() && vi.shape == kv.second.shape(), "plan: value '",
                graph_.values[kv.first].name, "' is ", dtype_name(vi.dtype), " ", shape_str(vi.shape),
                " but its bound storage is ", dtype_name(kv.second.dtype()), " ", shape_str(kv.second.shape()));
    OTTER_CHECK(kv.second.device() == options_.device, "plan: value '", graph_.values[kv.first].name, "' is bound to ",
                device_name(kv.second.device()), " memory but the plan runs on ", device_name(options_.device));
    tensors_[kv.first] = kv.second;
  }

  // Schedule (see sink_order), then liveness: targets live to the end; shape-only reads do not count.
  {
    std::vector<bool> arena(graph_.values.size(), false);
    for (const Step& s : steps_)
      for (int v : s.outputs)
        if (v >= 0 && !tensors_[v].defined()) arena[v] = true;
    for (int v : options_.targets) arena[v] = false;
    std::vector<std::vector<int>> reads, needs, writes;
    for (const Step& s : steps_) {
      reads.emplace_back();
      for (size_t i = 0; i < s.inputs.size(); ++i)
        if (!s.shape_only[i]) reads.back().push_back(s.inputs[i]);
      needs.push_back(s.inputs);
      writes.push_back(s.outputs);
    }
    std::vector<Step> sorted;
    for (size_t s : sink_order(reads, needs, writes, arena)) sorted.push_back(std::move(steps_[s]));
    steps_ = std::move(sorted);
  }
  std::vector<int> last_use(graph_.values.size(), -1), first_def(graph_.values.size(), -1);
  for (size_t s = 0; s < steps_.size(); ++s) {
    for (size_t i = 0; i < steps_[s].inputs.size(); ++i)
      if (steps_[s].inputs[i] >= 0 && !steps_[s].shape_only[i]) last_use[steps_[s].inputs[i]] = static_cast<int>(s);
    for (int v : steps_[s].outputs)
      if (v >= 0) first_def[v] = static_cast<int>(s);
  }
  int end = static_cast<int>(steps_.size());
  for (int v : options_.targets) last_use[v] = end;
  std::vector<Block> blocks;
  for (size_t v = 0; v < graph_.values.size(); ++v) {
    if (first_def[v] < 0 || tensors_[v].defined()) continue;
    size_t bytes = aligned(std::max<size_t>(1, static_cast<size_t>(shape_numel(info_[v].shape)) * dtype_size(info_[v].dtype)));
    blocks.push_back({bytes, first_def[v], std::max(first_def[v], last_use[v]), 0, static_cast<int>(v)});
    memory_.intermediate_bytes += bytes;
  }
  memory_.arena_bytes = place_blocks(blocks);
  if (const char* dbg = std::getenv("OTTER_DEBUG_PLAN"); dbg && *dbg == '1') {
    std::vector<size_t> live(steps_.size() + 1, 0);
    for (const Block& b : blocks)
      for (int s = b.first; s <= b.last; ++s) live[s] += b.size;
    int peak_step = static_cast<int>(std::max_element(live.begin(), live.end()) - live.begin());
    std::fprintf(stderr, "[plan] %zu steps, %zu blocks, arena %zu, max live %zu at step %d (%s)\n", steps_.size(), blocks.size(),
                 memory_.arena_bytes, live[peak_step], peak_step,
                 peak_step < (int)steps_.size() ? graph_.nodes[steps_[peak_step].node].op_type.c_str() : "end");
    std::vector<const Block*> at_peak;
    for (const Block& b : blocks)
      if (b.first <= peak_step && peak_step <= b.last) at_peak.push_back(&b);
    std::sort(at_peak.begin(), at_peak.end(), [](const Block* a, const Block* b) { return a->size > b->size; });
    for (const Block* b : at_peak) {
      const Value& val = graph_.values[b->value];
      std::string uses;
      for (size_t s = 0; s < steps_.size(); ++s)
        for (int in : steps_[s].inputs)
          if (in == b->value) { uses += " " + graph_.nodes[steps_[s].node].op_type + "@" + std::to_string(s); break; }
      std::fprintf(stderr, "[plan]   %8zu %-8s [%4d,%4d] %-22s %s <-%s\n", b->size, dtype_name(info_[b->value].dtype), b->first, b->last,
                   val.producer >= 0 ? graph_.nodes[val.producer].op_type.c_str() : "-", val.name.c_str(), uses.c_str());
    }
  }
  size_t arena_size = std::max<size_t>(kAlign, aligned(memory_.arena_bytes));
  void* p = nullptr;
  if (options_.device == Device::CPU) {
    p = std::aligned_alloc(kAlign, arena_size);
    OTTER_CHECK_KIND(OutOfMemory, p, "out of host memory: the plan needs an arena of ", memory_.arena_bytes, " bytes");
    arena_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  } else {
    Tensor arena(DType::Uint8, {static_cast<int64_t>(arena_size)}, options_.device);
    p = arena.raw();
    arena_ = std::shared_ptr<void>(std::make_shared<Tensor>(arena), p);
  }
  for (const Block& b : blocks)
    tensors_[b.value] = Tensor::view(info_[b.value].dtype, info_[b.value].shape, arena_,
                                     static_cast<char*>(p) + b.offset, options_.device);
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
    if (s.promote) run_promoted(s, ctx);
    else s.fn(ctx);
  }
}

void Plan::run_promoted(const Step& s, KernelContext& ctx) {
  auto is_half = [](DType t) { return t == DType::Float16 || t == DType::BFloat16; };
  std::vector<Tensor> wide_in(ctx.inputs.size()), wide_out(ctx.outputs.size());
  for (size_t i = 0; i < ctx.inputs.size(); ++i)
    if (ctx.inputs[i] && is_half(ctx.inputs[i]->dtype())) {
      wide_in[i] = s.shape_only[i] ? Tensor::view(DType::Float32, ctx.inputs[i]->shape(), nullptr, nullptr)
                                   : ctx.inputs[i]->cast(DType::Float32);
      ctx.inputs[i] = &wide_in[i];
    }
  std::vector<Tensor*> narrow(ctx.outputs.size(), nullptr);
  for (size_t i = 0; i < ctx.outputs.size(); ++i)
    if (ctx.outputs[i] && is_half(ctx.outputs[i]->dtype())) {
      narrow[i] = ctx.outputs[i];
      wide_out[i] = Tensor(DType::Float32, narrow[i]->shape());
      ctx.outputs[i] = &wide_out[i];
    }
  s.fn(ctx);
  for (size_t i = 0; i < narrow.size(); ++i)
    if (narrow[i]) {
      Tensor rounded = wide_out[i].cast(narrow[i]->dtype());
      std::memcpy(narrow[i]->raw(), rounded.raw(), rounded.nbytes());
    }
}

void Plan::poison() {
  size_t bytes = std::max<size_t>(kAlign, aligned(memory_.arena_bytes));
  if (options_.device == Device::CPU) {
    std::memset(arena_.get(), 0xff, bytes);
    return;
  }
  Tensor ones(DType::Uint8, {static_cast<int64_t>(bytes)});
  std::memset(ones.raw(), 0xff, bytes);
  Tensor arena = Tensor::view(DType::Uint8, {static_cast<int64_t>(bytes)}, arena_, arena_.get(), options_.device);
  arena.copy_from(ones);
}

const Tensor& Plan::value(int id) const {
  OTTER_CHECK(id >= 0 && static_cast<size_t>(id) < tensors_.size() && tensors_[id].defined(),
              "plan: value ", id, " is not available");
  return tensors_[id];
}

}  // namespace otter
