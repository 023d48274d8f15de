// See denormals.h.
#include "runtime/core/denormals.h"

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

namespace otter {

namespace {

#if defined(__SSE2__)
constexpr unsigned kFtzDaz = 0x8040;  // MXCSR bits 15 (flush to zero) and 6 (denormals are zero)
// Sets this thread's FTZ and DAZ bits to `bits`; returns what they were.
unsigned set_mode(unsigned bits) {
  const unsigned before = _mm_getcsr();
  _mm_setcsr((before & ~kFtzDaz) | (bits & kFtzDaz));
  return before & kFtzDaz;
}
#else
constexpr unsigned kFtzDaz = 0;
unsigned set_mode(unsigned) { return 0; }
#endif

}  // namespace

bool can_flush_denormals() {
#if defined(__SSE2__)
  return true;
#else
  return false;
#endif
}

DenormalsFlushed::DenormalsFlushed(bool on) : on_(on && can_flush_denormals()) {
  if (!on_) return;
  caller_ = set_mode(kFtzDaz);
#if defined(_OPENMP)
  if (!omp_in_parallel()) {
    team_.assign(static_cast<size_t>(omp_get_max_threads()), 0);
#pragma omp parallel
    {
      const size_t t = static_cast<size_t>(omp_get_thread_num());
      if (t < team_.size()) team_[t] = set_mode(kFtzDaz);
    }
  }
#endif
}

DenormalsFlushed::~DenormalsFlushed() {
  if (!on_) return;
#if defined(_OPENMP)
  if (!team_.empty()) {
#pragma omp parallel num_threads(static_cast<int>(team_.size()))
    {
      const size_t t = static_cast<size_t>(omp_get_thread_num());
      if (t < team_.size()) set_mode(team_[t]);
    }
  }
#endif
  set_mode(caller_);
}

}  // namespace otter
