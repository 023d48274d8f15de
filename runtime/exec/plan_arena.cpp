// Liveness, arena placement and the OTTER_DEBUG_PLAN dump of a plan (see plan_arena.h).
#include "runtime/exec/plan_arena.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>

namespace otter {
namespace {

// Arena placement: each block gets an offset that does not overlap any block whose lifetime
// overlaps its own. The arena can be no smaller than the most bytes live at one step (the lower
// bound); greedy orders usually leave some gaps above it.
class Placer {
 public:
  explicit Placer(const std::vector<ArenaBlock>& blocks) : blocks_(blocks), n_(blocks.size()), neighbours_(n_), rank_(n_) {
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
    for (const ArenaBlock& b : blocks_) steps = std::max(steps, b.last + 1);
    std::vector<size_t> delta(static_cast<size_t>(steps) + 1, 0), minus(static_cast<size_t>(steps) + 1, 0);
    for (const ArenaBlock& b : blocks_) {
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
      const ArenaBlock& b = blocks_[idx];
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
  const std::vector<ArenaBlock>& blocks_;
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
}  // namespace

size_t place_blocks(std::vector<ArenaBlock>& blocks) {
  size_t n = blocks.size();
  if (n == 0) return 0;
  Placer placer(blocks);
  size_t bound = placer.lower_bound();
  auto span = [](const ArenaBlock& b) { return static_cast<size_t>(b.last - b.first + 1); };
  std::vector<std::function<bool(const ArenaBlock&, const ArenaBlock&)>> keys = {
      [](const ArenaBlock& a, const ArenaBlock& b) { return a.size > b.size; },
      [&](const ArenaBlock& a, const ArenaBlock& b) { return span(a) != span(b) ? span(a) > span(b) : a.size > b.size; },
      [&](const ArenaBlock& a, const ArenaBlock& b) { return a.size * span(a) > b.size * span(b); },
      [](const ArenaBlock& a, const ArenaBlock& b) { return a.first != b.first ? a.first < b.first : a.size > b.size; },
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

ArenaLayout plan_arena(const PlanDraft& d) {
  // Liveness: a value's block lives from its step to the last data read of it or of a view of
  // it; targets live to the end; shape-only reads do not count.
  ArenaLayout layout;
  std::vector<int> last_use(d.info.size(), -1), first_def(d.info.size(), -1);
  for (size_t s = 0; s < d.steps.size(); ++s) {
    for (size_t i = 0; i < d.steps[s].inputs.size(); ++i)
      if (d.steps[s].inputs[i] >= 0 && !d.steps[s].shape_only[i]) last_use[d.root[d.steps[s].inputs[i]]] = static_cast<int>(s);
    for (int v : d.steps[s].outputs)
      if (v >= 0) first_def[v] = static_cast<int>(s);
  }
  int end = static_cast<int>(d.steps.size());
  for (int v : d.target_roots) last_use[v] = end;

  for (size_t v = 0; v < d.info.size(); ++v) {
    if (first_def[v] < 0 || d.tensors[v].defined()) continue;
    size_t bytes = block_bytes(d.info[v]);
    layout.blocks.push_back({bytes, first_def[v], std::max(first_def[v], last_use[v]), 0, static_cast<int>(v)});
    layout.intermediate_bytes += bytes;
  }
  layout.arena_bytes = place_blocks(layout.blocks);
  if (const char* debug = std::getenv("OTTER_DEBUG_PLAN"); debug && std::string(debug) == "1") {
    // Diagnostics: the step with the most live bytes and every block live there, largest first.
    std::vector<size_t> live(d.steps.size() + 1, 0);
    for (const ArenaBlock& b : layout.blocks)
      for (int k = b.first; k <= b.last; ++k) live[k] += b.size;
    int at = static_cast<int>(std::max_element(live.begin(), live.end()) - live.begin());
    std::fprintf(stderr, "[plan] %zu steps, arena %zu bytes, %zu live at step %d\n", d.steps.size(), layout.arena_bytes,
                 live[at], at);
    std::vector<const ArenaBlock*> peak;
    for (const ArenaBlock& b : layout.blocks)
      if (b.first <= at && at <= b.last) peak.push_back(&b);
    std::sort(peak.begin(), peak.end(), [](const ArenaBlock* a, const ArenaBlock* b) { return a->size > b->size; });
    for (const ArenaBlock* b : peak) {
      const Value& val = d.graph.values[d.origin[b->value]];
      std::fprintf(stderr, "[plan] %10zu %-8s steps %4d-%-4d %-24s %s\n", b->size, dtype_name(d.info[b->value].dtype),
                   b->first, b->last, val.producer >= 0 ? d.graph.nodes[val.producer].op_type.c_str() : "-", val.name.c_str());
    }
  }
  return layout;
}

}  // namespace otter
