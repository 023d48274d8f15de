// Plan construction (inference, folding, kernel selection, liveness memory planning) and the
// executor loop.
#include "runtime/exec/plan.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>

namespace otter {
namespace {

constexpr size_t kAlign = 64;
size_t aligned(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
size_t block_bytes(const ValueInfo& vi) {
  return aligned(std::max<size_t>(1, static_cast<size_t>(shape_numel(vi.shape)) * dtype_size(vi.dtype)));
}

struct Block {
  size_t size;
  int first, last;  // step indices of definition and last use
  size_t offset = 0;
  int value;
};

// Arena placement: each block gets an offset that does not overlap any block whose lifetime
// overlaps its own. The arena can be no smaller than the most bytes live at one step (the lower
// bound); greedy orders usually leave some gaps above it.
class Placer {
 public:
  explicit Placer(const std::vector<Block>& blocks) : blocks_(blocks), n_(blocks.size()), neighbours_(n_), rank_(n_) {
    std::vector<size_t> by_first(n_);
    for (size_t i = 0; i < n_; ++i) by_first[i] = i;
    std::sort(by_first.begin(), by_first.end(), [&](size_t a, size_t b) { return blocks_[a].first < blocks_[b].first; });
    for (size_t x = 0; x < n_; ++x)
      for (size_t y = x + 1; y < n_ && blocks_[by_first[y]].first <= blocks_[by_first[x]].last; ++y) {
        neighbours_[by_first[x]].push_back(by_first[y]);
        neighbours_[by_first[y]].push_back(by_first[x]);
      }
  }

  size_t lower_bound() const {
    int steps = 0;
    for (const Block& b : blocks_) steps = std::max(steps, b.last + 1);
    std::vector<size_t> delta(static_cast<size_t>(steps) + 1, 0), minus(static_cast<size_t>(steps) + 1, 0);
    for (const Block& b : blocks_) {
      delta[static_cast<size_t>(b.first)] += b.size;
      minus[static_cast<size_t>(b.last) + 1] += b.size;
    }
    size_t live = 0, most = 0;
    for (size_t k = 0; k < delta.size(); ++k) {
      live = live + delta[k] - minus[k];
      most = std::max(most, live);
    }
    return most;
  }

  // Places the blocks in `order`, each at the lowest offset (or, with `best_fit`, in the smallest
  // gap) clear of its placed neighbours. Stops as soon as the arena exceeds `limit`. Returns the
  // arena size; `top` is the block that reaches it.
  size_t place(const std::vector<size_t>& order, bool best_fit, size_t limit, std::vector<size_t>& offsets, size_t* top) {
    for (size_t p = 0; p < n_; ++p) rank_[order[p]] = p;
    size_t peak = 0;
    for (size_t p = 0; p < n_; ++p) {
      size_t idx = order[p];
      const Block& b = blocks_[idx];
      busy_.clear();
      for (size_t j : neighbours_[idx])
        if (rank_[j] < p) busy_.push_back({offsets[j], offsets[j] + blocks_[j].size});
      work += neighbours_[idx].size() + 1;
      std::sort(busy_.begin(), busy_.end());
      size_t offset = 0, chosen = SIZE_MAX, gap = SIZE_MAX;
      for (auto& r : busy_) {
        if (offset + b.size <= r.first) {
          if (!best_fit) break;
          if (r.first - offset < gap) { gap = r.first - offset; chosen = offset; }
        }
        offset = std::max(offset, r.second);
      }
      offsets[idx] = !best_fit || chosen == SIZE_MAX ? offset : chosen;
      if (offsets[idx] + b.size > peak) {
        peak = offsets[idx] + b.size;
        *top = idx;
        if (peak > limit) return peak;
      }
    }
    return peak;
  }

  size_t work = 0;  // neighbour visits so far (the search's budget)

 private:
  const std::vector<Block>& blocks_;
  size_t n_;
  std::vector<std::vector<size_t>> neighbours_;
  std::vector<size_t> rank_;
  std::vector<std::pair<size_t, size_t>> busy_;
};

// Greedy placement under several orders (largest first, longest-lived first, largest size x
// lifetime first, earliest first), each first-fit and best-fit; then, while the arena is above
// the lower bound, a bounded local search over the order: move the block that reaches the top (or
// a random one) elsewhere, keep the change when the arena does not grow. Deterministic (a fixed
// xorshift generator, a budget in neighbour visits rather than time).
size_t place_blocks(std::vector<Block>& blocks) {
  size_t n = blocks.size();
  if (n == 0) return 0;
  Placer placer(blocks);
  size_t bound = placer.lower_bound();
  auto span = [](const Block& b) { return static_cast<size_t>(b.last - b.first + 1); };
  std::vector<std::function<bool(const Block&, const Block&)>> keys = {
      [](const Block& a, const Block& b) { return a.size > b.size; },
      [&](const Block& a, const Block& b) { return span(a) != span(b) ? span(a) > span(b) : a.size > b.size; },
      [&](const Block& a, const Block& b) { return a.size * span(a) > b.size * span(b); },
      [](const Block& a, const Block& b) { return a.first != b.first ? a.first < b.first : a.size > b.size; },
  };
  size_t best = SIZE_MAX, best_top = 0;
  bool best_fit = false;
  std::vector<size_t> best_order, best_offsets, offsets(n, 0);
  for (auto& key : keys) {
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key(blocks[a], blocks[b]); });
    for (bool fit : {false, true}) {
      size_t top = 0, peak = placer.place(order, fit, SIZE_MAX, offsets, &top);
      if (peak < best) {
        best = peak, best_top = top, best_fit = fit, best_order = order, best_offsets = offsets;
      }
    }
    if (best == bound) break;
  }
  constexpr size_t kBudget = size_t(1) << 24;  // neighbour visits for the search
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&state](size_t range) {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return static_cast<size_t>(state % range);
  };
  std::vector<size_t> order = best_order;
  while (best > bound && placer.work < kBudget && n > 1) {
    std::vector<size_t> candidate = order;
    size_t from, to;
    if (next(2) == 0) {  // the block at the top, to a random earlier place
      from = static_cast<size_t>(std::find(candidate.begin(), candidate.end(), best_top) - candidate.begin());
      to = next(from + 1);
    } else {
      from = next(n), to = next(n);
    }
    size_t moved = candidate[from];
    candidate.erase(candidate.begin() + static_cast<std::ptrdiff_t>(from));
    candidate.insert(candidate.begin() + static_cast<std::ptrdiff_t>(to), moved);
    size_t top = 0, peak = placer.place(candidate, best_fit, best, offsets, &top);
    if (peak <= best) {
      best = peak, best_top = top, order = std::move(candidate), best_offsets = offsets;
    }
  }
  for (size_t i = 0; i < n; ++i) blocks[i].offset = best_offsets[i];
  return best;
}

// Inputs a kernel reads only for their shape, never their data (the internal gradient ops that
// take a forward value to know the shape of the gradient they write). Such a read does not keep
// the value alive in the arena: the kernel is given a view of the shape with no data, so a kernel
// that did read the data would crash at once (a null pointer) rather than read memory given to
// another value. (A field of OpDef would be the better home for this table.)
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

// Ops whose output is their input's bytes under another shape: the plan makes the output a view
// of the input instead of running them (SumToShapeOf and Expand when nothing is summed or
// broadcast; Dropout and DropoutGrad only with ratio 0, which the plan checks).
bool is_view(const Node& n, const ValueInfo& in, const ValueInfo& out) {
  if (in.dtype != out.dtype || shape_numel(in.shape) != shape_numel(out.shape)) return false;
  if (n.domain.empty())
    return n.op_type == "Identity" || n.op_type == "Reshape" || n.op_type == "Flatten" || n.op_type == "Squeeze" ||
           n.op_type == "Unsqueeze" || n.op_type == "Expand";
  return n.domain == "otter" && (n.op_type == "SumToShapeOf" || n.op_type == "DropoutGrad");
}

// A schedule with shorter lifetimes. The topological order runs a node as soon as its inputs
// exist, so a gradient node that reads only forward values (the Transposes of a MatMul's
// gradient, a parameter's Transpose) runs during the forward pass and its output is held across
// it. Each step, from the last to the first, moves to just before the first step that needs one
// of its outputs when the arena values it reads that would then live longer (those not read
// again at or after that point) take no more bytes than its outputs: the live bytes do not grow
// at any step (a tie is taken, so that a chain such as Cast -> Transpose can follow). `reads`:
// data inputs; `needs`: all inputs (shape-only reads too: the order keeps them after their
// producers); `arena[v]`: v is an arena value that does not live to the end, of `bytes[v]`.
std::vector<size_t> sink_order(const std::vector<std::vector<int>>& reads, const std::vector<std::vector<int>>& needs,
                               const std::vector<std::vector<int>>& writes, const std::vector<bool>& arena,
                               const std::vector<size_t>& bytes) {
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
    size_t longer = 0, shorter = 0;  // bytes of the inputs that would live longer, of the outputs
    std::set<int> seen;
    for (int v : reads[s]) {
      if (v < 0 || !arena[v] || !seen.insert(v).second) continue;
      bool read_later = false;
      for (size_t u : readers[v]) read_later = read_later || (u != s && pos[u] >= first);
      if (!read_later) longer += bytes[v];
    }
    for (int v : writes[s])
      if (v >= 0 && arena[v] && seen.insert(v).second) shorter += bytes[v];
    if (shorter == 0 || longer > shorter) continue;
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
    steps_.push_back({n, fn, node.inputs, node.outputs, promote, shape_only,
                      std::vector<DType>(node.outputs.size(), DType::Undefined),
                      std::vector<DType>(node.inputs.size(), DType::Undefined)});
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

  // Memory. Five rewrites of the steps keep the arena small (all off with !optimize_memory): fused
  // output Casts, views, a schedule with shorter lifetimes, fused input Casts, recomputation.
  //
  // A promoted step whose FP16/BF16 output is read only by a Cast to FP32 bound outside the arena
  // (a weight gradient on its way to the flat FP32 gradient buffer) writes the FP32 value rounded
  // to the half type straight into the Cast's output: the same numbers, without the half value in
  // the arena. (Into an arena value it would not pay: the FP32 value would live from this step.)
  if (options_.optimize_memory) {
    std::set<int> targets(options_.targets.begin(), options_.targets.end());
    std::vector<std::vector<size_t>> needers(graph_.values.size());
    for (size_t s = 0; s < steps_.size(); ++s)
      for (int v : steps_[s].inputs)
        if (v >= 0) needers[v].push_back(s);
    std::vector<bool> fused(steps_.size(), false);
    for (Step& s : steps_) {
      if (!s.promote) continue;
      for (size_t o = 0; o < s.outputs.size(); ++o) {
        int h = s.outputs[o];
        if (h < 0 || tensors_[h].defined() || targets.count(h) || needers[h].size() != 1) continue;
        DType half = info_[h].dtype;
        if (half != DType::Float16 && half != DType::BFloat16) continue;
        size_t c = needers[h][0];
        const Node& cast = graph_.nodes[steps_[c].node];
        if (!cast.domain.empty() || cast.op_type != "Cast" || steps_[c].inputs.size() != 1 || steps_[c].outputs.size() != 1 ||
            steps_[c].outputs[0] < 0 || info_[steps_[c].outputs[0]].dtype != DType::Float32 ||
            !tensors_[steps_[c].outputs[0]].defined())
          continue;
        s.outputs[o] = steps_[c].outputs[0];
        s.round_to[o] = half;
        fused[c] = true;
      }
    }
    std::vector<Step> kept;
    for (size_t s = 0; s < steps_.size(); ++s)
      if (!fused[s]) kept.push_back(std::move(steps_[s]));
    steps_ = std::move(kept);
  }

  // Views: a step whose output is its input's bytes (see is_view) does not run; its output is a
  // view of the input's block. root[v]: the value whose block v uses (v itself for most). A
  // Dropout with ratio 0 is the identity (its mask is all true), and so is the DropoutGrad of one:
  // the Dropout becomes a view when nothing else reads its mask, which then does not exist.
  std::vector<int> root(graph_.values.size());
  for (size_t v = 0; v < root.size(); ++v) root[v] = static_cast<int>(v);
  if (options_.optimize_memory) {
    std::set<int> targets(options_.targets.begin(), options_.targets.end());
    std::vector<bool> in_arena(graph_.values.size(), false);
    std::vector<std::vector<size_t>> needers(graph_.values.size());
    for (size_t s = 0; s < steps_.size(); ++s) {
      for (int v : steps_[s].outputs)
        if (v >= 0 && !tensors_[v].defined()) in_arena[v] = true;
      for (int v : steps_[s].inputs)
        if (v >= 0) needers[v].push_back(s);
    }
    auto zero = [&](const Step& s, size_t i) {  // input i is a folded constant 0
      int v = i < s.inputs.size() ? s.inputs[i] : -1;
      return v >= 0 && info_[v].data.defined() && info_[v].data.numel() == 1 && info_[v].data.to_double_vector()[0] == 0.0;
    };
    auto viewable = [&](const Step& s) {
      int in = s.inputs.empty() ? -1 : s.inputs[0], out = s.outputs.empty() ? -1 : s.outputs[0];
      if (in < 0 || out < 0 || !in_arena[in] || !in_arena[out] || !is_view(graph_.nodes[s.node], info_[in], info_[out]))
        return false;
      const Node& node = graph_.nodes[s.node];
      if (node.domain == "otter" && node.op_type == "DropoutGrad") return zero(s, 2);
      return s.outputs.size() == 1;
    };
    std::vector<bool> view(steps_.size(), false);
    for (size_t k = 0; k < steps_.size(); ++k) {
      const Step& s = steps_[k];
      const Node& node = graph_.nodes[s.node];
      if (node.domain.empty() && node.op_type == "Dropout" && s.outputs.size() <= 2 && zero(s, 1)) {
        int in = s.inputs[0], out = s.outputs[0], mask = s.outputs.size() > 1 ? s.outputs[1] : -1;
        bool ok = in >= 0 && out >= 0 && in_arena[in] && in_arena[out] && info_[in].dtype == info_[out].dtype;
        if (mask >= 0) {
          ok = ok && !targets.count(mask) && !options_.bound.count(mask);
          for (size_t u : needers[mask]) ok = ok && viewable(steps_[u]) && steps_[u].inputs[1] == mask;
        }
        view[k] = ok;
      } else {
        view[k] = viewable(s);
      }
    }
    std::vector<Step> kept;
    for (size_t k = 0; k < steps_.size(); ++k) {
      if (view[k]) {
        root[steps_[k].outputs[0]] = root[steps_[k].inputs[0]];
        continue;
      }
      kept.push_back(std::move(steps_[k]));
    }
    steps_ = std::move(kept);
  }
  auto bytes_of = [&](int v) { return block_bytes(info_[v]); };

  // Schedule (see sink_order), then liveness: a value's block lives from its step to the last
  // data read of it or of a view of it; targets live to the end; shape-only reads do not count.
  std::set<int> target_roots;
  for (int v : options_.targets) target_roots.insert(root[v]);
  if (options_.optimize_memory) {
    std::vector<bool> arena(graph_.values.size(), false);
    std::vector<size_t> bytes(graph_.values.size(), 0);
    for (const Step& s : steps_)
      for (int v : s.outputs)
        if (v >= 0 && !tensors_[v].defined() && !target_roots.count(v)) {
          arena[v] = true;
          bytes[v] = bytes_of(v);
        }
    std::vector<std::vector<int>> reads, needs, writes;
    for (const Step& s : steps_) {
      reads.emplace_back();
      needs.emplace_back();
      for (size_t i = 0; i < s.inputs.size(); ++i) {
        int v = s.inputs[i] < 0 ? -1 : root[s.inputs[i]];
        needs.back().push_back(v);
        if (!s.shape_only[i]) reads.back().push_back(v);
      }
      writes.push_back(s.outputs);
    }
    std::vector<Step> sorted;
    for (size_t s : sink_order(reads, needs, writes, arena, bytes)) sorted.push_back(std::move(steps_[s]));
    steps_ = std::move(sorted);
  }

  // A Cast from FP32 to FP16/BF16 whose readers (and its views' readers) are all promoted steps,
  // which widen the copy again, does not run when its FP32 source is read again after them anyway
  // (a residual gradient, whose low-precision copy feeds a branch's MatMul gradients) or lives
  // outside the arena (a feed): each reader rounds the FP32 source to the half type as it widens
  // it. The same numbers, without the copy in the arena. The copy and its views become FP32 views
  // of the source (wide[v]).
  std::vector<bool> wide(graph_.values.size(), false);
  if (options_.optimize_memory) {
    std::set<int> pinned;  // targets and bound values
    for (int v : options_.targets) pinned.insert(v);
    for (auto& kv : options_.bound) pinned.insert(kv.first);
    std::vector<bool> produced(graph_.values.size(), false);
    std::vector<std::vector<std::pair<size_t, size_t>>> readers(graph_.values.size());  // (step, input)
    std::vector<std::vector<int>> views(graph_.values.size());
    for (size_t v = 0; v < root.size(); ++v)
      if (root[v] != static_cast<int>(v)) views[root[v]].push_back(static_cast<int>(v));
    for (size_t k = 0; k < steps_.size(); ++k) {
      for (int v : steps_[k].outputs)
        if (v >= 0) produced[v] = true;
      for (size_t i = 0; i < steps_[k].inputs.size(); ++i)
        if (steps_[k].inputs[i] >= 0) readers[steps_[k].inputs[i]].push_back({k, i});
    }
    std::vector<bool> fused(steps_.size(), false);
    for (size_t k = 0; k < steps_.size(); ++k) {
      const Step& c = steps_[k];
      const Node& node = graph_.nodes[c.node];
      if (!node.domain.empty() || node.op_type != "Cast" || c.inputs.size() != 1 || c.outputs.size() != 1) continue;
      int src = c.inputs[0], h = c.outputs[0];
      if (src < 0 || h < 0 || info_[src].dtype != DType::Float32 || tensors_[h].defined() ||
          (info_[h].dtype != DType::Float16 && info_[h].dtype != DType::BFloat16))
        continue;
      std::vector<int> members = views[h];
      members.push_back(h);
      bool ok = true;
      int last = -1;
      for (int v : members) {
        ok = ok && !pinned.count(v);
        for (auto& r : readers[v]) {
          ok = ok && steps_[r.first].promote && !steps_[r.first].shape_only[r.second];
          last = std::max(last, static_cast<int>(r.first));
        }
      }
      int r = root[src];
      bool block = produced[r] && !tensors_[r].defined();  // the source has an arena block
      if (!ok || last < 0 || (!block && members.size() > 1)) continue;
      if (block && !pinned.count(r)) {
        int again = -1;  // the last data read of the source's block after the Cast
        for (size_t u = k + 1; u < steps_.size(); ++u)
          for (size_t i = 0; i < steps_[u].inputs.size(); ++i)
            if (steps_[u].inputs[i] >= 0 && root[steps_[u].inputs[i]] == r && !steps_[u].shape_only[i]) again = static_cast<int>(u);
        if (again <= last) continue;
      }
      for (int v : members) {
        for (auto& rd : readers[v]) {
          steps_[rd.first].round_in[rd.second] = info_[h].dtype;
          if (!block) steps_[rd.first].inputs[rd.second] = src;  // a feed, a constant, bound storage: read it
        }
        if (!block) continue;
        root[v] = r;
        wide[v] = true;
        views[r].push_back(v);
      }
      views[h].clear();
      fused[k] = true;
    }
    std::vector<Step> kept;
    for (size_t k = 0; k < steps_.size(); ++k)
      if (!fused[k]) kept.push_back(std::move(steps_[k]));
    steps_ = std::move(kept);
  }
  // Recomputation: a value read again late (by the backward pass) that a few cheap steps compute
  // from smaller or longer-lived values (an embedding sum from the ids; an FP32 residual sum from
  // the previous residual, kept anyway, and an FP16 branch output) is computed a second time just
  // before its late readers instead of being held in between, when that lowers the most bytes
  // live at one step. The copies are values of the plan only (ids past the graph's); origin[v] is
  // the value whose name a copy carries.
  std::vector<int> origin(info_.size());
  for (size_t v = 0; v < origin.size(); ++v) origin[v] = static_cast<int>(v);
  if (options_.optimize_memory) recompute_late_values(root, wide, origin, target_roots);
  std::vector<int> last_use(info_.size(), -1), first_def(info_.size(), -1);
  for (size_t s = 0; s < steps_.size(); ++s) {
    for (size_t i = 0; i < steps_[s].inputs.size(); ++i)
      if (steps_[s].inputs[i] >= 0 && !steps_[s].shape_only[i]) last_use[root[steps_[s].inputs[i]]] = static_cast<int>(s);
    for (int v : steps_[s].outputs)
      if (v >= 0) first_def[v] = static_cast<int>(s);
  }
  int end = static_cast<int>(steps_.size());
  for (int v : target_roots) last_use[v] = end;
  std::vector<Block> blocks;
  for (size_t v = 0; v < info_.size(); ++v) {
    if (first_def[v] < 0 || tensors_[v].defined()) continue;
    size_t bytes = bytes_of(static_cast<int>(v));
    blocks.push_back({bytes, first_def[v], std::max(first_def[v], last_use[v]), 0, static_cast<int>(v)});
    memory_.intermediate_bytes += bytes;
  }
  memory_.arena_bytes = place_blocks(blocks);
  if (const char* debug = std::getenv("OTTER_DEBUG_PLAN"); debug && std::string(debug) == "1") {
    // Diagnostics: the step with the most live bytes and every block live there, largest first.
    std::vector<size_t> live(steps_.size() + 1, 0);
    for (const Block& b : blocks)
      for (int k = b.first; k <= b.last; ++k) live[k] += b.size;
    int at = static_cast<int>(std::max_element(live.begin(), live.end()) - live.begin());
    std::fprintf(stderr, "[plan] %zu steps, arena %zu bytes, %zu live at step %d\n", steps_.size(), memory_.arena_bytes,
                 live[at], at);
    std::vector<const Block*> peak;
    for (const Block& b : blocks)
      if (b.first <= at && at <= b.last) peak.push_back(&b);
    std::sort(peak.begin(), peak.end(), [](const Block* a, const Block* b) { return a->size > b->size; });
    for (const Block* b : peak) {
      const Value& val = graph_.values[origin[b->value]];
      std::fprintf(stderr, "[plan] %10zu %-8s steps %4d-%-4d %-24s %s\n", b->size, dtype_name(info_[b->value].dtype),
                   b->first, b->last, val.producer >= 0 ? graph_.nodes[val.producer].op_type.c_str() : "-", val.name.c_str());
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
  std::vector<char*> base(info_.size(), nullptr);
  for (const Block& b : blocks) {
    base[b.value] = static_cast<char*>(p) + b.offset;
    tensors_[b.value] = Tensor::view(info_[b.value].dtype, info_[b.value].shape, arena_, base[b.value], options_.device);
  }
  for (size_t v = 0; v < root.size(); ++v)
    if (root[v] != static_cast<int>(v))
      tensors_[v] = Tensor::view(wide[v] ? DType::Float32 : info_[v].dtype, info_[v].shape, arena_, base[root[v]],
                                 options_.device);
}

// Recomputation (see the constructor): for each candidate value x, largest first, the steps that
// would compute it again just before its late readers, from values outside the arena, values
// still live there, or values whose lifetime this extends; kept when the most bytes live at one
// step (or, equal, the sum over steps) goes down.
void Plan::recompute_late_values(std::vector<int>& root, std::vector<bool>& wide, std::vector<int>& origin,
                                 const std::set<int>& target_roots) {
  std::vector<long long> live;  // bytes live at each step, as of the last profile()
  auto profile = [&]() {  // (the most bytes live at one step, the sum over steps)
    std::vector<int> first(info_.size(), -1), last(info_.size(), -1);
    for (size_t k = 0; k < steps_.size(); ++k) {
      for (size_t i = 0; i < steps_[k].inputs.size(); ++i)
        if (steps_[k].inputs[i] >= 0 && !steps_[k].shape_only[i]) last[root[steps_[k].inputs[i]]] = static_cast<int>(k);
      for (int v : steps_[k].outputs)
        if (v >= 0 && first[v] < 0) first[v] = static_cast<int>(k);
    }
    for (int v : target_roots) last[v] = static_cast<int>(steps_.size());
    std::vector<long long> delta(steps_.size() + 2, 0);
    for (size_t v = 0; v < info_.size(); ++v)
      if (first[v] >= 0 && !tensors_[v].defined()) {
        long long b = static_cast<long long>(block_bytes(info_[v]));
        delta[static_cast<size_t>(first[v])] += b;
        delta[static_cast<size_t>(std::max(first[v], last[v])) + 1] -= b;
      }
    long long now = 0, most = 0, area = 0;
    live.clear();
    for (long long d : delta) {
      now += d;
      live.push_back(now);
      most = std::max(most, now);
      area += now;
    }
    return std::make_pair(most, area);
  };
  // Cheap to compute again: data movement and elementwise arithmetic (not random, not reductions).
  static const std::set<std::string> cheap = {"Gather", "Add", "Sub", "Mul", "Neg", "Cast", "Transpose",
                                              "Unsqueeze", "Squeeze", "Reshape", "Expand"};
  auto is_cheap = [&](const Step& s) {
    const Node& n = graph_.nodes[s.node];
    return s.outputs.size() == 1 && s.outputs[0] >= 0 && n.domain.empty() && cheap.count(n.op_type);
  };
  std::set<int> pinned(target_roots);
  for (auto& kv : options_.bound) pinned.insert(kv.first);
  std::vector<int> candidates;
  for (const Step& s : steps_)
    if (is_cheap(s) && !tensors_[s.outputs[0]].defined() && !pinned.count(s.outputs[0])) candidates.push_back(s.outputs[0]);
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](int a, int b) { return block_bytes(info_[a]) > block_bytes(info_[b]); });
  // Activations: values that depend on a feed (the others derive from parameters and constants
  // alone: a transposed weight and its low-precision copy are kept, as autocast's weight cache).
  std::vector<bool> activation(info_.size(), false);
  for (const Step& s : steps_) {
    bool a = false;
    for (int u : s.inputs) {
      if (u < 0) continue;
      int r = root[u];
      a = a || activation[r] || (!tensors_[r].defined() && !options_.bound.count(r) && graph_.values[r].producer < 0);
    }
    for (int v : s.outputs)
      if (v >= 0) activation[v] = a;
  }
  auto best = profile();
  std::vector<int> producer, last_read;
  std::vector<std::vector<std::pair<size_t, size_t>>> reads_of;  // by root: data reads (step, input)
  bool stale = true;  // the indexes above describe the steps before the last accepted change
  for (int x : candidates) {
    if (!activation[x] || target_roots.count(x)) continue;
    if (stale) {
      producer.assign(info_.size(), -1);
      last_read.assign(info_.size(), -1);
      reads_of.assign(info_.size(), {});
      for (size_t k = 0; k < steps_.size(); ++k) {
        for (int v : steps_[k].outputs)
          if (v >= 0) producer[v] = static_cast<int>(k);
        for (size_t i = 0; i < steps_[k].inputs.size(); ++i)
          if (steps_[k].inputs[i] >= 0 && !steps_[k].shape_only[i]) {
            int r = root[steps_[k].inputs[i]];
            last_read[r] = static_cast<int>(k);
            reads_of[r].push_back({k, i});
          }
      }
      stale = false;
    }
    if (producer[x] < 0) continue;  // dropped by an earlier recomputation
    // Reads of x (or of its views), split at the widest gap between two reads (or after x's step).
    // Only a value live at a step with the most bytes live can lower that.
    const std::vector<std::pair<size_t, size_t>> reads = reads_of[x];
    if (reads.empty()) continue;
    bool at_top = false;
    for (size_t k = static_cast<size_t>(producer[x]); k <= reads.back().first && !at_top; ++k) at_top = live[k] == best.first;
    if (!at_top) continue;
    size_t split = reads[0].first, gap = reads[0].first - static_cast<size_t>(producer[x]);
    for (size_t j = 1; j < reads.size(); ++j)
      if (reads[j].first - reads[j - 1].first > gap) gap = reads[j].first - reads[j - 1].first, split = reads[j].first;
    if (gap < 2) continue;
    // The steps to copy, in order: x's, and those of its inputs that are dead by the split and
    // cheap, up to three deep. Other inputs are read where they are (a value outside the arena, a
    // value still live, or one whose block then lives longer: the profile judges).
    std::vector<size_t> chain;
    std::function<bool(int, int)> collect = [&](int v, int depth) {
      size_t k = static_cast<size_t>(producer[v]);
      if (std::find(chain.begin(), chain.end(), k) != chain.end()) return true;
      for (int u : steps_[k].inputs) {
        if (u < 0) continue;
        int r = root[u];
        if (producer[r] < 0) continue;  // a feed, a parameter, a constant
        bool again = !tensors_[r].defined() && last_read[r] < static_cast<int>(split) && depth < 3 &&
                     is_cheap(steps_[static_cast<size_t>(producer[r])]);
        if (again && !collect(r, depth + 1)) return false;
      }
      chain.push_back(k);
      return true;
    };
    if (!collect(x, 1)) continue;
    // Copy the chain just before the first late read; late readers read the copy (or views of it).
    std::vector<Step> saved = steps_;
    size_t values = info_.size();
    std::map<int, int> copy;
    auto add_value = [&](int like, int of) {  // a new plan value like `like`; a view of `of` if >= 0
      int id = static_cast<int>(info_.size());
      info_.push_back(info_[like]);
      info_.back().data = Tensor();
      tensors_.push_back(Tensor());
      if (!host_constants_.empty()) host_constants_.push_back(Tensor());
      root.push_back(of < 0 ? id : of);
      activation.push_back(activation[like]);
      wide.push_back(wide[like]);
      origin.push_back(origin[like]);
      return id;
    };
    auto copied = [&](int u) {  // u as the copies read it
      if (u < 0 || copy.count(u)) return u < 0 ? u : copy[u];
      if (!copy.count(root[u])) return u;
      return copy[u] = add_value(u, copy[root[u]]);  // a view of a copied value: the same view of the copy
    };
    std::vector<Step> copies;
    for (size_t k : chain) {
      Step c = steps_[k];
      for (int& in : c.inputs) in = copied(in);
      for (int& out : c.outputs) out = copy[out] = add_value(out, -1);
      copies.push_back(std::move(c));
    }
    for (auto& rd : reads)
      if (rd.first >= split) steps_[rd.first].inputs[rd.second] = copied(steps_[rd.first].inputs[rd.second]);
    steps_.insert(steps_.begin() + static_cast<std::ptrdiff_t>(split), copies.begin(), copies.end());
    // Steps whose outputs nobody reads any more (the originals, when every read was late) go.
    for (bool dropped = true; dropped;) {
      dropped = false;
      std::vector<bool> read(info_.size(), false);
      for (const Step& s : steps_)
        for (int v : s.inputs)
          if (v >= 0) read[root[v]] = read[v] = true;
      for (size_t k = steps_.size(); k-- > 0;) {
        bool unread = !steps_[k].outputs.empty();
        for (int v : steps_[k].outputs) unread = unread && (v < 0 || (!read[v] && !pinned.count(v) && !tensors_[v].defined()));
        if (unread) {
          steps_.erase(steps_.begin() + static_cast<std::ptrdiff_t>(k));
          dropped = true;
        }
      }
    }
    std::vector<long long> before = live;
    auto now = profile();
    if (now.first < best.first || (now.first == best.first && now.second < best.second)) {
      best = now;
      stale = true;
      continue;
    }
    live = std::move(before);
    steps_ = std::move(saved);
    info_.resize(values);
    tensors_.resize(values);
    if (!host_constants_.empty()) host_constants_.resize(values);
    root.resize(values);
    activation.resize(values);
    wide.resize(values);
    origin.resize(values);
  }
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
    if (s.promote) run_promoted(s, ctx);
    else s.fn(ctx);
  }
}

void Plan::run_promoted(const Step& s, KernelContext& ctx) {
  auto is_half = [](DType t) { return t == DType::Float16 || t == DType::BFloat16; };
  std::vector<Tensor> wide_in(ctx.inputs.size()), wide_out(ctx.outputs.size());
  for (size_t i = 0; i < ctx.inputs.size(); ++i)
    if (ctx.inputs[i] && s.round_in[i] != DType::Undefined) {
      wide_in[i] = ctx.inputs[i]->cast(s.round_in[i]).cast(DType::Float32);
      ctx.inputs[i] = &wide_in[i];
    } else if (ctx.inputs[i] && is_half(ctx.inputs[i]->dtype())) {
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
  for (size_t i = 0; i < s.round_to.size(); ++i)
    if (s.round_to[i] != DType::Undefined) {
      Tensor rounded = ctx.outputs[i]->cast(s.round_to[i]).cast(DType::Float32);
      std::memcpy(ctx.outputs[i]->raw(), rounded.raw(), rounded.nbytes());
    }
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
