// DenormalsFlushed (runtime/core/denormals.h): inside the scope every OpenMP thread flushes
// subnormal results to zero and reads subnormal inputs as zero; outside it (before, and after it
// ends) the same arithmetic gives the subnormal values IEEE 754 defines.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "runtime/core/denormals.h"

namespace otter {
namespace {

struct Seen {
  bool product_subnormal = true;  // 1e-30 * 1e-10 stayed a (nonzero) subnormal on every thread
  bool input_read = true;         // a subnormal input times 1 stayed nonzero on every thread
};

// The same two operations on every OpenMP thread (volatile: computed at run time, not folded).
Seen on_every_thread() {
  int threads = 1;
#if defined(_OPENMP)
  threads = omp_get_max_threads();
#endif
  std::vector<int> product(static_cast<size_t>(threads), 1), input(static_cast<size_t>(threads), 1);
#pragma omp parallel num_threads(threads)
  {
    size_t t = 0;
#if defined(_OPENMP)
    t = static_cast<size_t>(omp_get_thread_num());
#endif
    volatile float a = 1e-30f, b = 1e-10f, sub = 1e-40f, one = 1.0f;
    const float p = a * b, q = sub * one;
    product[t] = std::fpclassify(p) == FP_SUBNORMAL;
    input[t] = q != 0.0f;
  }
  Seen s;
  for (int i = 0; i < threads; ++i) {
    s.product_subnormal = s.product_subnormal && product[static_cast<size_t>(i)];
    s.input_read = s.input_read && input[static_cast<size_t>(i)];
  }
  return s;
}

TEST(Denormals, FlushedOnEveryThreadInsideTheScopeOnly) {
  if (!can_flush_denormals()) GTEST_SKIP() << "this CPU build cannot flush subnormals";
  Seen before = on_every_thread();
  EXPECT_TRUE(before.product_subnormal);
  EXPECT_TRUE(before.input_read);
  {
    DenormalsFlushed flushed(true);
    Seen inside = on_every_thread();
    EXPECT_FALSE(inside.product_subnormal);
    EXPECT_FALSE(inside.input_read);
  }
  Seen after = on_every_thread();
  EXPECT_TRUE(after.product_subnormal);
  EXPECT_TRUE(after.input_read);
  {
    DenormalsFlushed off(false);  // the option's default: nothing changes
    EXPECT_TRUE(on_every_thread().product_subnormal);
  }
}

}  // namespace
}  // namespace otter
