// DenormalsFlushed (runtime/core/denormals.h): inside the scope every OpenMP thread flushes
// subnormal results to zero and reads subnormal inputs as zero; outside it (before, and after it
// ends) the same arithmetic gives the subnormal values IEEE 754 defines.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "kernels/common/train_math.h"
#include "kernels/step_ops.h"
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

// The same float bits, or both NaN (which NaN an instruction passes on is not pinned).
bool same_bits(float a, float b) {
  uint32_t x, y;
  std::memcpy(&x, &a, 4), std::memcpy(&y, &b, 4);
  return x == y || (std::isnan(a) && std::isnan(b));
}

// The CPU's Adam/AdamW update (kernels/cpu/step_ops.cpp) computes the multiplies, divides and
// square roots that may meet subnormals in double (no microcode assists) and the rest in float:
// every result must still have the bits of the float arithmetic of math::adam_element, here run
// element by element as the reference (this file is built for baseline x86-64: no FMA, so no
// contraction). Values cover every range the update's bounds separate: zeros, subnormals, tiny
// normals, ordinary values, huge ones, infinities.
TEST(Denormals, AdamUpdateKeepsTheFloatBitsAroundSubnormals) {
  std::mt19937 rng(7);
  auto draw = [&](int kind) -> float {
    std::uniform_real_distribution<float> unit(0.5f, 1.0f);
    const float sign = rng() % 2 ? -1.0f : 1.0f;
    switch (kind) {
      case 0: return 0.0f;
      case 1: return sign * unit(rng) * std::ldexp(1.0f, -127 - static_cast<int>(rng() % 22));  // subnormal
      case 2: return sign * unit(rng) * std::ldexp(1.0f, -126 + static_cast<int>(rng() % 70));  // tiny normal
      case 3: return sign * unit(rng) * std::ldexp(1.0f, -20 + static_cast<int>(rng() % 24));   // ordinary
      case 4: return sign * unit(rng) * std::ldexp(1.0f, 100);                                  // huge
      default: return sign * std::numeric_limits<float>::infinity();
    }
  };
  const int64_t n = 16 * 200 + 7;  // whole vectors and a tail
  for (bool decoupled : {true, false}) {
    for (int64_t step : {0, 1, 250}) {
      math::OptimizerParams opt;
      opt.kind = decoupled ? math::OptimizerKind::AdamW : math::OptimizerKind::Adam;
      opt.weight_decay = 0.01;
      std::vector<float> p(n), g(n), m(n), v(n);
      for (int64_t i = 0; i < n; ++i) {
        // Mostly ordinary values, the others often enough that most vectors hold one.
        auto kind = [&] { const uint32_t r = rng() % 16; return r < 10 ? 3 : static_cast<int>(r % 6); };
        p[i] = draw(kind()), g[i] = draw(kind()), m[i] = draw(kind());
        v[i] = std::fabs(draw(kind()));
      }
      std::vector<float> rp = p, rm = m, rv = v;
      const math::UpdateScalars u = math::update_scalars(opt, 1e-3, step);
      for (int64_t i = 0; i < n; ++i) math::adam_element(rp[i], g[i], rm[i], rv[i], decoupled, u);
      int64_t counters[4] = {step, 0, 0, 0};
      step_ops(Device::CPU)->optimizer_step(opt, math::ScheduleParams{}, 1e-3, p.data(), g.data(), m.data(), v.data(), n,
                                            nullptr, counters);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_TRUE(same_bits(p[i], rp[i])) << "p at " << i << ": " << p[i] << " vs " << rp[i] << " (step " << step << ")";
        ASSERT_TRUE(same_bits(m[i], rm[i])) << "m at " << i << ": " << m[i] << " vs " << rm[i];
        ASSERT_TRUE(same_bits(v[i], rv[i])) << "v at " << i << ": " << v[i] << " vs " << rv[i];
      }
    }
  }
}

// SGD (momentum, Nesterov, none) on the same ranges of values: the AVX-512 update's multiplies in
// double where a vector may meet a subnormal, every result the float arithmetic's bits
// (math::sgd_element element by element as the reference).
TEST(Denormals, SgdUpdateKeepsTheFloatBitsAroundSubnormals) {
  std::mt19937 rng(11);
  auto draw = [&]() -> float {
    std::uniform_real_distribution<float> unit(0.5f, 1.0f);
    const float sign = rng() % 2 ? -1.0f : 1.0f;
    switch (rng() % 10) {
      case 0: return 0.0f;
      case 1: return sign * unit(rng) * std::ldexp(1.0f, -127 - static_cast<int>(rng() % 22));  // subnormal
      case 2: return sign * unit(rng) * std::ldexp(1.0f, -126 + static_cast<int>(rng() % 8));   // near them
      case 3: return sign * std::numeric_limits<float>::infinity();
      default: return sign * unit(rng) * std::ldexp(1.0f, -20 + static_cast<int>(rng() % 24));
    }
  };
  const int64_t n = 16 * 100 + 9;
  struct Mode { double momentum; bool nesterov; };
  for (Mode mode : {Mode{0.9, false}, Mode{0.9, true}, Mode{0.0, false}})
    for (int64_t step : {0, 3}) {
      math::OptimizerParams opt;
      opt.kind = math::OptimizerKind::SGD;
      opt.momentum = mode.momentum;
      opt.nesterov = mode.nesterov;
      opt.weight_decay = 0.01;
      const bool momentum = mode.momentum != 0.0;
      std::vector<float> p(n), g(n), buf(n);
      for (int64_t i = 0; i < n; ++i) p[i] = draw(), g[i] = draw(), buf[i] = draw();
      std::vector<float> rp = p, rbuf = buf;
      const math::UpdateScalars u = math::update_scalars(opt, 0.05, step);
      for (int64_t i = 0; i < n; ++i) math::sgd_element(rp[i], g[i], momentum ? &rbuf[i] : nullptr, mode.nesterov, u);
      int64_t counters[4] = {step, 0, 0, 0};
      step_ops(Device::CPU)->optimizer_step(opt, math::ScheduleParams{}, 0.05, p.data(), g.data(),
                                            momentum ? buf.data() : nullptr, nullptr, n, nullptr, counters);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_TRUE(same_bits(p[i], rp[i])) << "p at " << i << ": " << p[i] << " vs " << rp[i] << " (step " << step << ")";
        if (momentum) {
          ASSERT_TRUE(same_bits(buf[i], rbuf[i])) << "buf at " << i << ": " << buf[i] << " vs " << rbuf[i];
        }
      }
    }
}

}  // namespace
}  // namespace otter
