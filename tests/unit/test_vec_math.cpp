// The vectorised float32 GELU and GELU gradient (kernels/cpu/vec_math.h) against float64 GELU
// (kernels/common/elementwise_math.h evaluated in double): a dense sweep of [-12, 12], tiny and
// huge magnitudes, signed zeros, infinities and NaN, at lengths that exercise the vector body and
// the masked tail. Bound: the Abramowitz-Stegun erf that PyTorch's CPU GELU also uses is within
// 1.5e-7 of erf, so GELU is within about 0.5 |x| 1.5e-7 plus float rounding; where the float32
// scalar functor it replaces is itself further off (the cancelling tails), twice its error.
// Non-finite cases must match the scalar path's. Skipped (with the reason) without AVX-512.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/common/elementwise_math.h"
#include "kernels/cpu/vec_math.h"
#include "runtime/core/convert.h"

namespace otter {
namespace {

std::vector<float> gelu_inputs() {
  std::vector<float> x;
  for (int i = -120000; i <= 120000; ++i) x.push_back(static_cast<float>(i) * 1e-4f);
  for (float v : {1e-30f, 1e-20f, 1e-7f, 3e-4f, 20.f, 50.f, 1e4f, 3e38f}) {
    x.push_back(v);
    x.push_back(-v);
  }
  x.push_back(0.0f);
  x.push_back(-0.0f);
  x.push_back(std::numeric_limits<float>::denorm_min());
  x.push_back(17.0f);  // an odd total length: the masked tail runs
  return x;
}

// |got - want| within `tol` or within twice the error of the scalar float32 functor it replaces
// (both GELU forms cancel in float near their tails: 1 + erf(x) and 1 - tanh^2 for x << 0).
void expect_close(float got, float scalar, double want, double tol, float x, const char* what) {
  if (!std::isfinite(want)) {  // inf or NaN from the math itself: the same value
    EXPECT_EQ(std::isnan(got), std::isnan(want)) << what << " at x = " << x << ": got " << got;
    if (!std::isnan(want)) {
      EXPECT_EQ(got, want) << what << " at x = " << x;
    }
    return;
  }
  if (!std::isfinite(scalar) && !std::isfinite(got)) return;  // float32 overflow (x^3 at 3e38) in both paths
  const double bound = std::max(tol, 2 * std::fabs(static_cast<double>(scalar) - want));
  EXPECT_LE(std::fabs(got - want), bound) << what << " at x = " << x << ": got " << got << ", want " << want
                                          << ", scalar float32 " << scalar;
}

TEST(VecMath, GeluAndItsGradientMatchFloat64) {
  if (!host_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU (or OTTER_CPU_ISA=scalar): the scalar functors run";
  const double eps = std::numeric_limits<float>::epsilon();
  std::vector<float> x = gelu_inputs();
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> dy(x.size());
  for (size_t i = 0; i < x.size(); ++i) dy[i] = 1.0f - 0.25f * static_cast<float>(i % 7);
  for (bool tanh_approx : {false, true}) {
    math::Gelu f{};
    f.tanh_approx = tanh_approx;
    std::vector<float> y(x.size()), dx(x.size());
    ASSERT_TRUE(cpu::vec_gelu(x.data(), y.data(), n, tanh_approx));
    ASSERT_TRUE(cpu::vec_gelu_grad(x.data(), dy.data(), dx.data(), n, tanh_approx));
    for (int64_t i = 0; i < n; ++i) {
      const double xd = x[i], dyd = dy[i];
      const double want_y = f(xd), want_dx = f.grad(xd, 0.0, dyd);
      const double slack = 1.6e-7 * (0.5 * std::fabs(xd) + 1);  // the erf approximation, float rounding
      expect_close(y[i], f(x[i]), want_y, slack + 4 * eps * std::fabs(want_y), x[i], tanh_approx ? "tanh gelu" : "gelu");
      expect_close(dx[i], f.grad(x[i], 0.0f, dy[i]), want_dx, std::fabs(dyd) * slack + 4 * eps * std::fabs(want_dx), x[i],
                   tanh_approx ? "tanh gelu grad" : "gelu grad");
    }
  }
  std::vector<float> nan_in = {std::numeric_limits<float>::quiet_NaN()}, out(1);
  cpu::vec_gelu(nan_in.data(), out.data(), 1, false);
  EXPECT_TRUE(std::isnan(out[0]));
}

TEST(VecMath, SoftmaxRowsMatchFloat64) {
  if (!host_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU (or OTTER_CPU_ISA=scalar): the scalar loops run";
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  for (int64_t n : {1, 7, 16, 17, 64, 1000}) {
    for (int variant = 0; variant < 3; ++variant) {
      std::vector<float> x(static_cast<size_t>(n));
      for (float& v : x) v = normal(rng) + (variant == 2 ? 80.0f : 0.0f);  // large logits: the max is subtracted
      if (variant == 1 && n > 1)  // masked positions: -inf and FP16's -65504
        for (int64_t i = 0; i < n; i += 3) x[static_cast<size_t>(i)] = i % 2 ? -65504.0f : -INFINITY;
      // The reference exponentiates the float difference x - max, as the scalar kernel does (that
      // rounding is the input's, not the exp's: large logits lose digits there on both paths).
      float mx = -INFINITY;
      double sum = 0;
      for (float v : x) mx = std::max(mx, v);
      for (float v : x) sum += std::exp(static_cast<double>(v - mx));
      std::vector<float> y(x.size()), ly(x.size());
      ASSERT_TRUE(cpu::vec_softmax_row(x.data(), y.data(), n, false));
      ASSERT_TRUE(cpu::vec_softmax_row(x.data(), ly.data(), n, true));
      for (size_t i = 0; i < x.size(); ++i) {
        const double want = std::exp(static_cast<double>(x[i] - mx)) / sum;
        const double want_log = static_cast<double>(x[i] - mx) - std::log(sum);
        if (want < 0x1p-150) {  // rounds to zero in float: exactly zero, never the smallest subnormal
          EXPECT_EQ(y[i], 0.0f) << "n " << n << " element " << i;
        } else {
          EXPECT_NEAR(y[i], want, 8 * std::numeric_limits<float>::epsilon() * want + 1e-45) << "n " << n << " element " << i;
        }
        if (std::isinf(want_log)) {
          EXPECT_EQ(ly[i], want_log);
        } else {
          EXPECT_NEAR(ly[i], want_log, 4 * std::numeric_limits<float>::epsilon() * std::max(1.0, std::fabs(want_log)))
              << "n " << n << " element " << i;
        }
      }
    }
  }
}

// The strided form (classes d apart, as in [N, C, D] scores) gives each column the bits the row
// kernel gives it as a contiguous line: odd and vector-multiple column counts (the masked tail),
// fewer classes than the 16 lanes, masked (-inf, -65504) and large logits, more columns than one
// slice of the kernel.
TEST(VecMath, LogSoftmaxColumnsEqualTheRowKernel) {
  if (!host_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU (or OTTER_CPU_ISA=scalar): the scalar loops run";
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 6.0f);
  for (int64_t c : {1, 5, 16, 37, 1000}) {
    for (int64_t d : {2, 15, 16, 17, 64, 1500}) {  // 1500: two column slices, the second partial
      std::vector<float> x(static_cast<size_t>(c * d));
      for (size_t i = 0; i < x.size(); ++i) {
        x[i] = normal(rng) + (i % 7 == 3 ? 90.0f : 0.0f);
        if (i % 11 == 5) x[i] = i % 2 ? -65504.0f : -INFINITY;
      }
      std::vector<float> y(x.size());
      ASSERT_TRUE(cpu::vec_log_softmax_columns(x.data(), y.data(), c, d));
      for (int64_t j = 0; j < d; ++j) {
        std::vector<float> line(static_cast<size_t>(c)), want(static_cast<size_t>(c));
        for (int64_t k = 0; k < c; ++k) line[static_cast<size_t>(k)] = x[static_cast<size_t>(k * d + j)];
        ASSERT_TRUE(cpu::vec_softmax_row(line.data(), want.data(), c, true));
        for (int64_t k = 0; k < c; ++k) {
          const float got = y[static_cast<size_t>(k * d + j)];
          ASSERT_EQ(std::memcmp(&got, &want[static_cast<size_t>(k)], sizeof(float)), 0)
              << "c " << c << " d " << d << " column " << j << " class " << k << ": " << got << " vs "
              << want[static_cast<size_t>(k)];
        }
      }
    }
  }
}

TEST(VecMath, ExpMatchesFloat64) {
  if (!host_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU (or OTTER_CPU_ISA=scalar): the scalar loops run";
  std::vector<float> x;
  for (int i = -100000; i <= 100000; ++i) x.push_back(static_cast<float>(i) * 1e-3f);  // [-100, 100]
  for (float v : {-200.0f, -104.0f, -103.98f, -103.96f, -87.5f, 88.7f, 89.0f, 200.0f, -INFINITY, INFINITY}) x.push_back(v);
  for (int i = 0; i < 300; ++i) x.push_back(-150.0f + 0.17f * static_cast<float>(i));  // the underflow edge
  x.push_back(std::numeric_limits<float>::quiet_NaN());
  std::vector<float> y(x.size());
  ASSERT_TRUE(cpu::vec_exp(x.data(), y.data(), static_cast<int64_t>(x.size())));
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(static_cast<double>(x[i]));
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(y[i]));
    } else if (want < 0x1p-150) {  // rounds to zero in float: exactly zero (a subnormal costs its readers)
      EXPECT_EQ(y[i], 0.0f) << "x = " << x[i];
    } else if (want > std::numeric_limits<float>::max()) {
      EXPECT_EQ(y[i], INFINITY) << "x = " << x[i];
    } else if (want < std::numeric_limits<float>::min()) {  // subnormal results: absolute error
      EXPECT_NEAR(y[i], want, 2e-45) << "x = " << x[i];
    } else {
      EXPECT_NEAR(y[i], want, 3 * std::numeric_limits<float>::epsilon() * want) << "x = " << x[i];
    }
  }
}

// LayerNorm rows: the AVX-512 rows against a long-double reference of the same formulas (the
// scalar kernel's double arithmetic; only the order of the sums differs), with and without B.
TEST(VecMath, LayerNormRowsMatchTheScalarFormulas) {
  if (!host_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU (or OTTER_CPU_ISA=scalar): the scalar loops run";
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t n : {1, 7, 8, 9, 64, 100, 768}) {
    for (bool with_b : {true, false}) {
      std::vector<float> x(static_cast<size_t>(n)), dy(x.size()), y(x.size()), dx(x.size());
      std::vector<double> w(x.size()), b(x.size()), gw(x.size(), 0.5), gb(x.size(), -0.25);
      for (size_t j = 0; j < x.size(); ++j) {
        x[j] = 3.0f + 2.0f * normal(rng);  // an offset mean: the two-pass variance matters
        dy[j] = normal(rng);
        w[j] = 1.0 + 0.1 * normal(rng);
        b[j] = 0.1 * normal(rng);
      }
      const double eps = 1e-5;
      double mean = 0, inv = 0;
      ASSERT_TRUE(cpu::vec_layer_norm_row(x.data(), w.data(), with_b ? b.data() : nullptr, y.data(), n, eps, &mean, &inv));
      std::vector<double> gw0 = gw, gb0 = gb;
      ASSERT_TRUE(cpu::vec_layer_norm_grad_row(x.data(), dy.data(), w.data(), dx.data(), gw.data(), with_b ? gb.data() : nullptr,
                                               n, eps));
      long double s = 0, q = 0;
      for (float v : x) s += v;
      const long double m = s / n;
      for (float v : x) q += (v - m) * (v - m);
      const long double iv = 1.0L / std::sqrt(q / n + eps);
      EXPECT_NEAR(mean, static_cast<double>(m), 1e-12 * (1 + std::fabs(static_cast<double>(m))));
      EXPECT_NEAR(inv, static_cast<double>(iv), 1e-12 * static_cast<double>(iv));
      long double s1 = 0, s2 = 0;
      for (size_t j = 0; j < x.size(); ++j) {
        s1 += dy[j] * w[j];
        s2 += dy[j] * w[j] * (x[j] - m) * iv;
      }
      for (size_t j = 0; j < x.size(); ++j) {
        const long double xhat = (x[j] - m) * iv;
        const double want_y = static_cast<double>(xhat * w[j] + (with_b ? b[j] : 0.0));
        const double want_dx = static_cast<double>(iv * (dy[j] * w[j] - s1 / n - xhat * s2 / n));
        EXPECT_NEAR(y[j], want_y, 2 * std::numeric_limits<float>::epsilon() * std::fabs(want_y) + 1e-6) << n << " " << j;
        EXPECT_NEAR(dx[j], want_dx, 2 * std::numeric_limits<float>::epsilon() * std::fabs(want_dx) + 1e-6) << n << " " << j;
        EXPECT_NEAR(gw[j], gw0[j] + static_cast<double>(dy[j] * xhat), 1e-12) << n << " " << j;
        if (with_b) EXPECT_NEAR(gb[j], gb0[j] + dy[j], 1e-12) << n << " " << j;
        else EXPECT_EQ(gb[j], gb0[j]);
      }
    }
  }
}

}  // namespace
}  // namespace otter
