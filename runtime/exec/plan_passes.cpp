// The memory passes of a plan (see plan_passes.h). Each rewrites the draft's steps and aliases
// without changing a result bit (tests/e2e/test_memory.cpp runs each alone and all together
// against the plain plan).
#include "runtime/exec/plan_passes.h"

#include <algorithm>
#include <functional>

#include "kernels/registry.h"
#include "runtime/exec/plan_arena.h"

namespace otter {
namespace {

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

// On the CPU, an FP32 step between policy Casts (a softmax in FP32 between FP16 MatMuls, the
// attention scale's Mul by an FP32 scalar, a residual Add of an FP16 branch) reads the FP16/BF16
// value itself instead of a Cast's FP32 copy that only it reads, and writes its FP16/BF16 output
// itself instead of an FP32 value that only a Cast to that type reads: the step becomes promoted
// (it widens and rounds as the Casts did: the same numbers), the Casts and their FP32 values
// leave the plan, and an op with a widening kernel converts in cache-sized chunks.
void promote_through_casts(PlanDraft& d) {
  if (d.options.device != Device::CPU) return;
  std::set<int> pinned(d.options.targets.begin(), d.options.targets.end());
  for (auto& kv : d.options.bound) pinned.insert(kv.first);
  auto is_half = [](DType t) { return t == DType::Float16 || t == DType::BFloat16; };
  std::vector<std::vector<size_t>> readers(d.graph.values.size());  // steps, one entry per input slot
  std::vector<int> producer(d.graph.values.size(), -1);
  for (size_t k = 0; k < d.steps.size(); ++k) {
    for (int v : d.steps[k].inputs)
      if (v >= 0) readers[v].push_back(k);
    for (int v : d.steps[k].outputs)
      if (v >= 0) producer[v] = static_cast<int>(k);
  }
  auto is_cast = [&](size_t k) {
    const Node& n = d.graph.nodes[d.steps[k].node];
    return n.domain.empty() && n.op_type == "Cast" && d.steps[k].inputs.size() == 1 && d.steps[k].outputs.size() == 1 &&
           d.steps[k].inputs[0] >= 0 && d.steps[k].outputs[0] >= 0;
  };
  // An FP32 arena value whose data only step k reads (other steps may read its shape).
  auto only_read_by = [&](int v, size_t k) {
    if (pinned.count(v) || d.tensors[v].defined() || d.info[v].dtype != DType::Float32) return false;
    for (size_t r : readers[v])
      for (size_t i = 0; i < d.steps[r].inputs.size(); ++i)
        if (d.steps[r].inputs[i] == v && r != k && !d.steps[r].shape_only[i]) return false;
    return true;
  };
  const OpRegistry& ops = OpRegistry::instance();
  const KernelRegistry& kernels = KernelRegistry::instance();
  std::vector<bool> dropped(d.steps.size(), false);
  for (size_t k = 0; k < d.steps.size(); ++k) {
    PlanStep& s = d.steps[k];
    const Node& node = d.graph.nodes[s.node];
    // A step that may become a view of its input (make_views) costs nothing as it is.
    if (is_cast(k) || dropped[k] || !ops.find(node.domain, node.op_type)->views.empty()) continue;
    // An FP32 kernel: a promoted step, or one whose floating data are all FP32.
    bool fp32 = s.promote;
    if (!fp32) {
      fp32 = true;
      for (size_t i = 0; i < s.inputs.size(); ++i)
        if (s.inputs[i] >= 0 && !s.shape_only[i] && is_floating(d.info[s.inputs[i]].dtype))
          fp32 = fp32 && d.info[s.inputs[i]].dtype == DType::Float32;
      for (int v : s.outputs)
        if (v >= 0 && is_floating(d.info[v].dtype)) fp32 = fp32 && d.info[v].dtype == DType::Float32;
    }
    if (!fp32) continue;
    bool changed = false;
    for (size_t i = 0; i < s.inputs.size(); ++i) {
      int f = s.inputs[i];
      if (f < 0 || s.shape_only[i] || producer[f] < 0 || !is_cast(static_cast<size_t>(producer[f])) || !only_read_by(f, k))
        continue;
      const size_t c = static_cast<size_t>(producer[f]);
      const int h = d.steps[c].inputs[0];
      if (!is_half(d.info[h].dtype)) continue;
      for (size_t r : readers[f])  // shape-only readers read the same shape from the half value
        for (int& in : d.steps[r].inputs)
          if (in == f) in = h;
      readers[h].insert(readers[h].end(), readers[f].begin(), readers[f].end());
      dropped[c] = true;
      changed = true;
    }
    for (size_t o = 0; o < s.outputs.size(); ++o) {
      int f = s.outputs[o];
      if (f < 0 || d.info[f].dtype != DType::Float32 || readers[f].size() != 1 || pinned.count(f) || d.tensors[f].defined())
        continue;
      const size_t c = readers[f][0];
      const int h = d.steps[c].outputs[0];
      if (!is_cast(c) || dropped[c] || !is_half(d.info[h].dtype) || pinned.count(h) || d.tensors[h].defined()) continue;
      s.outputs[o] = h;
      dropped[c] = true;
      changed = true;
    }
    if (changed && !s.promote) {
      s.promote = true;
      s.widening = kernels.find_widening(node.domain, node.op_type);
    }
  }
  std::vector<PlanStep> kept;
  for (size_t k = 0; k < d.steps.size(); ++k)
    if (!dropped[k]) kept.push_back(std::move(d.steps[k]));
  d.steps = std::move(kept);
}

// A promoted step whose FP16/BF16 output is read only by a Cast to FP32 writes the FP32 value
// rounded to the half type straight into the Cast's output: the same numbers, without the half
// value, its widened scratch or the Cast's pass. The Cast's output is either bound outside the
// arena (a weight gradient on its way to the flat FP32 gradient buffer) or an arena value when the
// Cast follows after steps that write fewer arena bytes than the half value holds (a tied
// weight's gradient, summed after): the FP32 value then lives from this step, but no step in
// between holds more than the half and FP32 values held together at the Cast.
void fuse_output_casts(PlanDraft& d) {
  std::set<int> targets(d.options.targets.begin(), d.options.targets.end());
  std::vector<std::vector<size_t>> needers(d.graph.values.size());
  for (size_t s = 0; s < d.steps.size(); ++s)
    for (int v : d.steps[s].inputs)
      if (v >= 0) needers[v].push_back(s);
  auto few_bytes_between = [&](size_t from, size_t to, size_t limit) {
    if (to <= from) return false;
    size_t written = 0;
    for (size_t q = from + 1; q < to && written < limit; ++q)
      for (int v : d.steps[q].outputs)
        if (v >= 0 && !d.tensors[v].defined()) written += block_bytes(d.info[v]);
    return written < limit;
  };
  const OpRegistry& ops = OpRegistry::instance();
  std::vector<bool> fused(d.steps.size(), false);
  for (size_t p = 0; p < d.steps.size(); ++p) {
    PlanStep& s = d.steps[p];
    const Node& node = d.graph.nodes[s.node];
    // A step that may become a view of its input (make_views) costs nothing as it is.
    if (!s.promote || !ops.find(node.domain, node.op_type)->views.empty()) continue;
    for (size_t o = 0; o < s.outputs.size(); ++o) {
      int h = s.outputs[o];
      if (h < 0 || d.tensors[h].defined() || targets.count(h) || needers[h].size() != 1) continue;
      DType half = d.info[h].dtype;
      if (half != DType::Float16 && half != DType::BFloat16) continue;
      size_t c = needers[h][0];
      const Node& cast = d.graph.nodes[d.steps[c].node];
      if (!cast.domain.empty() || cast.op_type != "Cast" || d.steps[c].inputs.size() != 1 || d.steps[c].outputs.size() != 1 ||
          d.steps[c].outputs[0] < 0 || d.info[d.steps[c].outputs[0]].dtype != DType::Float32 ||
          (!d.tensors[d.steps[c].outputs[0]].defined() && !few_bytes_between(p, c, block_bytes(d.info[h]))))
        continue;
      s.outputs[o] = d.steps[c].outputs[0];
      s.round_to[o] = half;
      fused[c] = true;
    }
  }
  std::vector<PlanStep> kept;
  for (size_t s = 0; s < d.steps.size(); ++s)
    if (!fused[s]) kept.push_back(std::move(d.steps[s]));
  d.steps = std::move(kept);
}

// Views: a step whose output is its input's bytes (OpDef::views) does not run; its output is a
// view of the input's block. root[v]: the value whose block v uses (v itself for most). A
// Dropout with ratio 0 is the identity (its mask is all true), and so is the DropoutGrad of one:
// the Dropout becomes a view when nothing else reads its mask, which then does not exist.
void make_views(PlanDraft& d) {
  const OpRegistry& ops = OpRegistry::instance();
  std::set<int> targets(d.options.targets.begin(), d.options.targets.end());
  std::vector<bool> in_arena(d.graph.values.size(), false);
  std::vector<std::vector<size_t>> needers(d.graph.values.size());
  for (size_t s = 0; s < d.steps.size(); ++s) {
    for (int v : d.steps[s].outputs)
      if (v >= 0 && !d.tensors[v].defined()) in_arena[v] = true;
    for (int v : d.steps[s].inputs)
      if (v >= 0) needers[v].push_back(s);
  }
  // The op's view trait (OpDef::views) for output 0, when its predicate holds for this step.
  auto view_trait = [&](const PlanStep& s) -> const ViewTrait* {
    const Node& node = d.graph.nodes[s.node];
    const OpDef* def = ops.find(node.domain, node.op_type);
    for (const ViewTrait& t : def->views) {
      int in = static_cast<size_t>(t.input) < s.inputs.size() ? s.inputs[static_cast<size_t>(t.input)] : -1;
      int out = static_cast<size_t>(t.output) < s.outputs.size() ? s.outputs[static_cast<size_t>(t.output)] : -1;
      if (t.output != 0 || t.input != 0 || in < 0 || out < 0 || !in_arena[in] || !in_arena[out]) continue;
      if (d.info[in].dtype != d.info[out].dtype || shape_numel(d.info[in].shape) != shape_numel(d.info[out].shape)) continue;
      KnownInputFn known = [&](size_t i) -> const Tensor* {
        int v = i < s.inputs.size() ? s.inputs[i] : -1;
        return v >= 0 && d.info[v].data.defined() ? &d.info[v].data : nullptr;
      };
      if (!t.when || t.when(node, known)) return &t;
    }
    return nullptr;
  };
  // A view step's other outputs (Dropout's mask) must not be needed: neither pinned nor read,
  // except by steps that are views themselves and do not read them as their viewed input.
  std::vector<bool> view(d.steps.size(), false);
  for (size_t k = 0; k < d.steps.size(); ++k) {
    const PlanStep& s = d.steps[k];
    const ViewTrait* t = view_trait(s);
    bool ok = t != nullptr;
    for (size_t o = 1; ok && o < s.outputs.size(); ++o) {
      int extra = s.outputs[o];
      if (extra < 0) continue;
      ok = !targets.count(extra) && !d.options.bound.count(extra);
      for (size_t u : needers[extra]) {
        const ViewTrait* tu = view_trait(d.steps[u]);
        ok = ok && tu && d.steps[u].inputs[static_cast<size_t>(tu->input)] != extra;
      }
    }
    view[k] = ok;
  }
  std::vector<PlanStep> kept;
  for (size_t k = 0; k < d.steps.size(); ++k) {
    if (view[k]) {
      d.root[d.steps[k].outputs[0]] = d.root[d.steps[k].inputs[0]];
      continue;
    }
    kept.push_back(std::move(d.steps[k]));
  }
  d.steps = std::move(kept);
}

// Schedule (see sink_order): each step moves to just before its first consumer when that does
// not raise the live bytes.
void sink_schedule(PlanDraft& d) {
  std::vector<bool> arena(d.graph.values.size(), false);
  std::vector<size_t> bytes(d.graph.values.size(), 0);
  for (const PlanStep& s : d.steps)
    for (int v : s.outputs)
      if (v >= 0 && !d.tensors[v].defined() && !d.target_roots.count(v)) {
        arena[v] = true;
        bytes[v] = block_bytes(d.info[v]);
      }
  std::vector<std::vector<int>> reads, needs, writes;
  for (const PlanStep& s : d.steps) {
    reads.emplace_back();
    needs.emplace_back();
    for (size_t i = 0; i < s.inputs.size(); ++i) {
      int v = s.inputs[i] < 0 ? -1 : d.root[s.inputs[i]];
      needs.back().push_back(v);
      if (!s.shape_only[i]) reads.back().push_back(v);
    }
    writes.push_back(s.outputs);
  }
  std::vector<PlanStep> sorted;
  for (size_t s : sink_order(reads, needs, writes, arena, bytes)) sorted.push_back(std::move(d.steps[s]));
  d.steps = std::move(sorted);
}

// A Cast from FP32 to FP16/BF16 whose readers (and its views' readers) are all promoted steps,
// which widen the copy again, does not run when its FP32 source is read again after them anyway
// (a residual gradient, whose low-precision copy feeds a branch's MatMul gradients) or lives
// outside the arena (a feed): each reader rounds the FP32 source to the half type as it widens
// it. The same numbers, without the copy in the arena. The copy and its views become FP32 views
// of the source (wide[v]).
void fuse_input_casts(PlanDraft& d) {
  std::set<int> pinned;  // targets and bound values
  for (int v : d.options.targets) pinned.insert(v);
  for (auto& kv : d.options.bound) pinned.insert(kv.first);
  std::vector<bool> produced(d.graph.values.size(), false);
  std::vector<std::vector<std::pair<size_t, size_t>>> readers(d.graph.values.size());  // (step, input)
  std::vector<std::vector<int>> views(d.graph.values.size());
  for (size_t v = 0; v < d.root.size(); ++v)
    if (d.root[v] != static_cast<int>(v)) views[d.root[v]].push_back(static_cast<int>(v));
  for (size_t k = 0; k < d.steps.size(); ++k) {
    for (int v : d.steps[k].outputs)
      if (v >= 0) produced[v] = true;
    for (size_t i = 0; i < d.steps[k].inputs.size(); ++i)
      if (d.steps[k].inputs[i] >= 0) readers[d.steps[k].inputs[i]].push_back({k, i});
  }
  std::vector<bool> fused(d.steps.size(), false);
  for (size_t k = 0; k < d.steps.size(); ++k) {
    const PlanStep& c = d.steps[k];
    const Node& node = d.graph.nodes[c.node];
    if (!node.domain.empty() || node.op_type != "Cast" || c.inputs.size() != 1 || c.outputs.size() != 1) continue;
    int src = c.inputs[0], h = c.outputs[0];
    if (src < 0 || h < 0 || d.info[src].dtype != DType::Float32 || d.tensors[h].defined() ||
        (d.info[h].dtype != DType::Float16 && d.info[h].dtype != DType::BFloat16))
      continue;
    std::vector<int> members = views[h];
    members.push_back(h);
    bool ok = true;
    int last = -1;
    for (int v : members) {
      ok = ok && !pinned.count(v);
      for (auto& r : readers[v]) {
        ok = ok && d.steps[r.first].promote && !d.steps[r.first].shape_only[r.second];
        last = std::max(last, static_cast<int>(r.first));
      }
    }
    int r = d.root[src];
    bool block = produced[r] && !d.tensors[r].defined();  // the source has an arena block
    if (!ok || last < 0 || (!block && members.size() > 1)) continue;
    if (block && !pinned.count(r)) {
      int again = -1;  // the last data read of the source's block after the Cast
      for (size_t u = k + 1; u < d.steps.size(); ++u)
        for (size_t i = 0; i < d.steps[u].inputs.size(); ++i)
          if (d.steps[u].inputs[i] >= 0 && d.root[d.steps[u].inputs[i]] == r && !d.steps[u].shape_only[i]) again = static_cast<int>(u);
      if (again <= last) continue;
    }
    for (int v : members) {
      for (auto& rd : readers[v]) {
        d.steps[rd.first].round_in[rd.second] = d.info[h].dtype;
        if (!block) d.steps[rd.first].inputs[rd.second] = src;  // a feed, a constant, bound storage: read it
      }
      if (!block) continue;
      d.root[v] = r;
      d.wide[v] = true;
      views[r].push_back(v);
    }
    views[h].clear();
    fused[k] = true;
  }
  std::vector<PlanStep> kept;
  for (size_t k = 0; k < d.steps.size(); ++k)
    if (!fused[k]) kept.push_back(std::move(d.steps[k]));
  d.steps = std::move(kept);
}

// Recomputation: a value read again late (by the backward pass) that a few cheap steps compute
// from smaller or longer-lived values (an embedding sum from the ids; an FP32 residual sum from
// the previous residual, kept anyway, and an FP16 branch output) is computed a second time just
// before its late readers instead of being held in between, when that lowers the most bytes
// live at one step. The copies are values of the plan only (ids past the graph's); origin[v] is
// the value whose name a copy carries. For each candidate value x, largest first, the steps that
// would compute it again just before its late readers, from values outside the arena, values
// still live there, or values whose lifetime this extends; kept when the most bytes live at one
// step (or, equal, the sum over steps) goes down.
void recompute_late_values(PlanDraft& d) {
  std::vector<int>& root = d.root;
  std::vector<bool>& wide = d.wide;
  std::vector<int>& origin = d.origin;
  const std::set<int>& target_roots = d.target_roots;
  std::vector<long long> live;  // bytes live at each step, as of the last profile()
  auto profile = [&]() {  // (the most bytes live at one step, the sum over steps)
    std::vector<int> first(d.info.size(), -1), last(d.info.size(), -1);
    for (size_t k = 0; k < d.steps.size(); ++k) {
      for (size_t i = 0; i < d.steps[k].inputs.size(); ++i)
        if (d.steps[k].inputs[i] >= 0 && !d.steps[k].shape_only[i]) last[root[d.steps[k].inputs[i]]] = static_cast<int>(k);
      for (int v : d.steps[k].outputs)
        if (v >= 0 && first[v] < 0) first[v] = static_cast<int>(k);
    }
    for (int v : target_roots) last[v] = static_cast<int>(d.steps.size());
    std::vector<long long> delta(d.steps.size() + 2, 0);
    for (size_t v = 0; v < d.info.size(); ++v)
      if (first[v] >= 0 && !d.tensors[v].defined()) {
        long long b = static_cast<long long>(block_bytes(d.info[v]));
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
  auto is_cheap = [&](const PlanStep& s) {
    const Node& n = d.graph.nodes[s.node];
    return s.outputs.size() == 1 && s.outputs[0] >= 0 && n.domain.empty() && cheap.count(n.op_type);
  };
  std::set<int> pinned(target_roots);
  for (auto& kv : d.options.bound) pinned.insert(kv.first);
  std::vector<int> candidates;
  for (const PlanStep& s : d.steps)
    if (is_cheap(s) && !d.tensors[s.outputs[0]].defined() && !pinned.count(s.outputs[0])) candidates.push_back(s.outputs[0]);
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](int a, int b) { return block_bytes(d.info[a]) > block_bytes(d.info[b]); });
  // Activations: values that depend on a feed (the others derive from parameters and constants
  // alone: a transposed weight and its low-precision copy are kept, as autocast's weight cache).
  std::vector<bool> activation(d.info.size(), false);
  for (const PlanStep& s : d.steps) {
    bool a = false;
    for (int u : s.inputs) {
      if (u < 0) continue;
      int r = root[u];
      a = a || activation[r] || (!d.tensors[r].defined() && !d.options.bound.count(r) && d.graph.values[r].producer < 0);
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
      producer.assign(d.info.size(), -1);
      last_read.assign(d.info.size(), -1);
      reads_of.assign(d.info.size(), {});
      for (size_t k = 0; k < d.steps.size(); ++k) {
        for (int v : d.steps[k].outputs)
          if (v >= 0) producer[v] = static_cast<int>(k);
        for (size_t i = 0; i < d.steps[k].inputs.size(); ++i)
          if (d.steps[k].inputs[i] >= 0 && !d.steps[k].shape_only[i]) {
            int r = root[d.steps[k].inputs[i]];
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
      for (int u : d.steps[k].inputs) {
        if (u < 0) continue;
        int r = root[u];
        if (producer[r] < 0) continue;  // a feed, a parameter, a constant
        bool again = !d.tensors[r].defined() && last_read[r] < static_cast<int>(split) && depth < 3 &&
                     is_cheap(d.steps[static_cast<size_t>(producer[r])]);
        if (again && !collect(r, depth + 1)) return false;
      }
      chain.push_back(k);
      return true;
    };
    if (!collect(x, 1)) continue;
    // Copy the chain just before the first late read; late readers read the copy (or views of it).
    std::vector<PlanStep> saved = d.steps;
    size_t values = d.info.size();
    std::map<int, int> copy;
    auto add_value = [&](int like, int of) {  // a new plan value like `like`; a view of `of` if >= 0
      int id = static_cast<int>(d.info.size());
      d.info.push_back(d.info[like]);
      d.info.back().data = Tensor();
      d.tensors.push_back(Tensor());
      if (!d.host_constants.empty()) d.host_constants.push_back(Tensor());
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
    std::vector<PlanStep> copies;
    for (size_t k : chain) {
      PlanStep c = d.steps[k];
      for (int& in : c.inputs) in = copied(in);
      for (int& out : c.outputs) out = copy[out] = add_value(out, -1);
      copies.push_back(std::move(c));
    }
    for (auto& rd : reads)
      if (rd.first >= split) d.steps[rd.first].inputs[rd.second] = copied(d.steps[rd.first].inputs[rd.second]);
    d.steps.insert(d.steps.begin() + static_cast<std::ptrdiff_t>(split), copies.begin(), copies.end());
    // Steps whose outputs nobody reads any more (the originals, when every read was late) go.
    for (bool dropped = true; dropped;) {
      dropped = false;
      std::vector<bool> read(d.info.size(), false);
      for (const PlanStep& s : d.steps)
        for (int v : s.inputs)
          if (v >= 0) read[root[v]] = read[v] = true;
      for (size_t k = d.steps.size(); k-- > 0;) {
        bool unread = !d.steps[k].outputs.empty();
        for (int v : d.steps[k].outputs) unread = unread && (v < 0 || (!read[v] && !pinned.count(v) && !d.tensors[v].defined()));
        if (unread) {
          d.steps.erase(d.steps.begin() + static_cast<std::ptrdiff_t>(k));
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
    d.steps = std::move(saved);
    d.info.resize(values);
    d.tensors.resize(values);
    if (!d.host_constants.empty()) d.host_constants.resize(values);
    root.resize(values);
    activation.resize(values);
    wide.resize(values);
    origin.resize(values);
  }
}

void optimise_memory(PlanDraft& d, unsigned passes) {
  if (passes & kPromoteThroughCasts) promote_through_casts(d);
  if (passes & kFuseOutputCasts) fuse_output_casts(d);
  if (passes & kViews) make_views(d);
  d.target_roots.clear();
  for (int v : d.options.targets) d.target_roots.insert(d.root[v]);
  if (passes & kSinkSchedule) sink_schedule(d);
  if (passes & kFuseInputCasts) fuse_input_casts(d);
  if (passes & kRecompute) recompute_late_values(d);
}

}  // namespace otter
