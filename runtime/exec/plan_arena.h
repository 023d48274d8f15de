// The arena of a plan: liveness of the draft's values, placement of their blocks (greedy orders
// plus a bounded local search, deterministic) and the OTTER_DEBUG_PLAN=1 dump of the blocks live
// at the peak.
#pragma once
#include <cstddef>
#include <vector>

#include "runtime/exec/plan_passes.h"

namespace otter {

constexpr size_t kArenaAlign = 64;
inline size_t arena_aligned(size_t n) { return (n + kArenaAlign - 1) / kArenaAlign * kArenaAlign; }
// The bytes a value takes in the arena (aligned, at least one alignment unit).
inline size_t block_bytes(const ValueInfo& vi) {
  return arena_aligned(std::max<size_t>(1, static_cast<size_t>(shape_numel(vi.shape)) * dtype_size(vi.dtype)));
}

struct ArenaBlock {
  size_t size;
  int first, last;  // step indices of definition and last use
  size_t offset = 0;
  int value;
};

struct ArenaLayout {
  std::vector<ArenaBlock> blocks;  // one per arena value, placed
  size_t arena_bytes = 0;          // the placed arena's size
  size_t intermediate_bytes = 0;   // the sum of the blocks
};

// Places blocks so that no two with overlapping lifetimes overlap; returns the arena size.
size_t place_blocks(std::vector<ArenaBlock>& blocks);
// Liveness of the draft's arena values and their placement (and the debug dump).
ArenaLayout plan_arena(const PlanDraft& d);

}  // namespace otter
