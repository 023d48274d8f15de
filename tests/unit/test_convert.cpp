// The bulk FP16/BF16 conversions (runtime/core/convert.h) give exactly the bits of the scalar
// conversions of half.h: every one of the 65,536 16-bit patterns widened, and a strided sweep of
// the FP32 bit patterns (with the rounding ties, subnormals, infinities and NaNs of both
// formats) narrowed, at lengths that exercise the vector body, the scalar tail and the threaded
// split. On a CPU with AVX-512 this compares the vector path with the scalar one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "runtime/core/convert.h"
#include "runtime/core/half.h"
#include "runtime/core/tensor.h"

namespace otter {
namespace {

std::vector<float> float_patterns() {
  std::vector<uint32_t> bits;
  for (uint64_t u = 0; u <= 0xffffffffull; u += 4099) bits.push_back(static_cast<uint32_t>(u));
  // Ties and near-ties of both formats around a few exponents, both signs.
  for (uint32_t e : {0x00u, 0x01u, 0x66u, 0x67u, 0x70u, 0x71u, 0x7eu, 0x8eu, 0x8fu, 0xfeu})
    for (uint32_t m : {0x0u, 0x1u, 0xfffu, 0x1000u, 0x1001u, 0x2000u, 0x3000u, 0x7fffu, 0x8000u, 0x8001u, 0x18000u, 0x7fffffu})
      for (uint32_t s : {0u, 0x80000000u}) bits.push_back(s | (e << 23) | m);
  for (uint32_t special : {0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffc12345u, 0x477fefffu, 0x477ff000u})
    bits.push_back(special);
  std::vector<float> f(bits.size());
  std::memcpy(f.data(), bits.data(), bits.size() * sizeof(float));
  return f;
}

TEST(Convert, WideningEveryHalfAndBFloat16PatternMatchesTheScalarCode) {
  std::vector<uint16_t> h(65536);
  for (uint32_t i = 0; i < 65536; ++i) h[i] = static_cast<uint16_t>(i);
  std::vector<float> got(h.size());
  half_to_float_n(h.data(), got.data(), static_cast<int64_t>(h.size()));
  for (uint32_t i = 0; i < 65536; ++i)
    ASSERT_EQ(math::float_bits(got[i]), math::float_bits(math::half_bits_to_float(h[i]))) << "half 0x" << std::hex << i;
  bfloat16_to_float_n(h.data(), got.data(), static_cast<int64_t>(h.size()));
  for (uint32_t i = 0; i < 65536; ++i)
    ASSERT_EQ(math::float_bits(got[i]), math::float_bits(math::bfloat16_bits_to_float(h[i]))) << "bf16 0x" << std::hex << i;
}

TEST(Convert, NarrowingMatchesTheScalarCodeAtEveryLength) {
  std::vector<float> f = float_patterns();
  std::vector<uint16_t> h(f.size()), b(f.size());
  float_to_half_n(f.data(), h.data(), static_cast<int64_t>(f.size()));
  float_to_bfloat16_n(f.data(), b.data(), static_cast<int64_t>(f.size()));
  for (size_t i = 0; i < f.size(); ++i) {
    ASSERT_EQ(h[i], math::float_to_half_bits(f[i])) << "float bits 0x" << std::hex << math::float_bits(f[i]);
    ASSERT_EQ(b[i], math::float_to_bfloat16_bits(f[i])) << "float bits 0x" << std::hex << math::float_bits(f[i]);
  }
  // Short lengths: the scalar tail alone, and one vector plus a tail, at an unaligned start.
  for (int64_t n : {1, 7, 15, 16, 17, 33}) {
    std::vector<uint16_t> out(static_cast<size_t>(n) + 1, 0xabcd);
    float_to_half_n(f.data() + 3, out.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(out[i], math::float_to_half_bits(f[3 + i]));
    ASSERT_EQ(out[n], 0xabcd) << "wrote past the end at n = " << n;
  }
  std::printf("conversion path: %s\n", conversion_path());
}

TEST(Convert, CastIntoConvertsInPlaceAndRefusesAWrongCount) {
  Tensor x = Tensor::from_vector<float>({1.0f, -2.5f, 65520.0f, 1e-8f}, {4});
  Tensor h(DType::Float16, {4}), back(DType::Float32, {4});
  x.cast_into(h);
  h.cast_into(back);
  EXPECT_EQ(back.data<float>()[0], 1.0f);
  EXPECT_EQ(back.data<float>()[1], -2.5f);
  EXPECT_TRUE(std::isinf(back.data<float>()[2]));
  EXPECT_EQ(back.data<float>()[3], math::half_bits_to_float(math::float_to_half_bits(1e-8f)));
  Tensor wrong(DType::Float16, {3});
  EXPECT_THROW(x.cast_into(wrong), Error);
}

TEST(Convert, RoundThroughEqualsNarrowingThenWidening) {
  // runtime/core/convert.h's round_through_n (the plan's FP32 sources read as 16-bit values): the
  // bits of a 16-bit store and load, in place too, at a length past its 2048-element blocks.
  std::vector<float> x = float_patterns();
  const int64_t n = static_cast<int64_t>(x.size());
  for (bool to_half : {true, false}) {
    std::vector<float> got(x.size()), in_place = x;
    round_through_n(x.data(), got.data(), n, to_half);
    round_through_n(in_place.data(), in_place.data(), n, to_half);
    for (size_t i = 0; i < x.size(); ++i) {
      const float want = to_half ? math::half_bits_to_float(math::float_to_half_bits(x[i]))
                                 : math::bfloat16_bits_to_float(math::float_to_bfloat16_bits(x[i]));
      ASSERT_EQ(math::float_bits(got[i]), math::float_bits(want)) << (to_half ? "half" : "bfloat16") << " element " << i;
      ASSERT_EQ(math::float_bits(in_place[i]), math::float_bits(want)) << "in place, element " << i;
    }
  }
}

}  // namespace
}  // namespace otter
