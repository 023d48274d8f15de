// The CPU's native paths (kernels/cpu/onednn.h) against FP32/FP64 references computed from the
// same (already BF16-representable) inputs: BF16 MatMul and Gemm (transposes, alpha, beta, a
// broadcast bias, batched and broadcast MatMul, k = 0) must equal the FP64 result rounded to BF16
// within one BF16 rounding of FP32 accumulation; the oneDNN convolutions (FP32 and BF16, groups,
// strides, dilations, asymmetric pads; forward, backward data, backward weights) must match the
// im2col kernels' FP64 results. Skipped (not passed) where the CPU or the build lacks the path.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "kernels/common/attributes.h"
#include "kernels/cpu/gemm_half.h"
#include "kernels/cpu/onednn.h"
#include "kernels/registry.h"
#include "runtime/core/convert.h"
#include "runtime/core/half.h"

namespace otter {
namespace {

// A [shape] tensor of `dtype` whose values are BF16-representable (so every dtype sees the same
// numbers), uniform in [-1, 1].
Tensor bf16_values(Shape shape, DType dtype, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  Tensor f(DType::Float32, shape);
  for (int64_t i = 0; i < f.numel(); ++i) f.data<float>()[i] = math::bfloat16_bits_to_float(math::float_to_bfloat16_bits(u(rng)));
  return f.cast(dtype);
}

void run(const std::string& op, DType dtype, Attributes attrs, std::vector<const Tensor*> in, Tensor& out,
         const std::string& domain = "") {
  Node node;
  node.op_type = op;
  node.domain = domain;
  node.attrs = std::move(attrs);
  KernelFn fn = KernelRegistry::instance().find(domain, op, Device::CPU, dtype);
  ASSERT_NE(fn, nullptr) << op << " has no CPU " << dtype_name(dtype) << " kernel";
  KernelContext ctx(node);
  ctx.inputs = std::move(in);
  ctx.outputs = {&out};
  fn(ctx);
}

// |got - want| within `rel` of the reference's scale (max |want|, at least 1) per element.
void expect_close(const Tensor& got, const Tensor& want, double rel, const std::string& what) {
  std::vector<double> g = got.to_double_vector(), w = want.to_double_vector();
  ASSERT_EQ(g.size(), w.size());
  double scale = 1;
  for (double v : w) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < g.size(); ++i)
    ASSERT_NEAR(g[i], w[i], rel * scale) << what << " element " << i;
}

#define REQUIRE_NATIVE_BF16()                                                            \
  if (!cpu::onednn::native_bf16()) GTEST_SKIP() << "no native BF16 on this CPU or build"

TEST(CpuNative, Bf16MatMulMatchesFp64) {
  REQUIRE_NATIVE_BF16();
  struct Case { Shape a, b; };
  for (const Case& c : {Case{{37, 64}, {64, 19}}, Case{{3, 5, 33, 16}, {16, 40}}, Case{{4, 9, 24}, {4, 24, 7}},
                        Case{{2, 1, 6, 8}, {3, 8, 5}}, Case{{8, 0}, {0, 6}}, Case{{17}, {17, 3}},
                        Case{{2, 3, 5, 8}, {2, 3, 8, 6}}, Case{{0, 4, 3}, {0, 3, 2}}, Case{{2, 4, 0}, {2, 0, 3}}}) {
    Tensor a = bf16_values(c.a, DType::Float64, 1), b = bf16_values(c.b, DType::Float64, 2);
    Tensor want_shape_probe = a;  // reference: the FP64 kernel
    Shape ys;
    {
      Shape aa = c.a, bb = c.b;
      if (aa.size() == 1) aa.insert(aa.begin(), 1);
      if (bb.size() == 1) bb.push_back(1);
      size_t r = std::max(aa.size(), bb.size());
      for (size_t i = 0; i + 2 < r; ++i) {
        int64_t da = i + aa.size() >= r ? aa[i + aa.size() - r] : 1, db = i + bb.size() >= r ? bb[i + bb.size() - r] : 1;
        ys.push_back(std::max(da, db));
      }
      if (c.a.size() > 1) ys.push_back(aa[aa.size() - 2]);
      ys.push_back(bb.back());
    }
    Tensor want(DType::Float64, ys), got(DType::BFloat16, ys);
    run("MatMul", DType::Float64, {}, {&a, &b}, want);
    Tensor ab = a.cast(DType::BFloat16), bb = b.cast(DType::BFloat16);
    run("MatMul", DType::BFloat16, {}, {&ab, &bb}, got);
    expect_close(got, want, 1.0 / 128, "MatMul " + shape_str(c.a) + " x " + shape_str(c.b));
  }
}

TEST(CpuNative, Bf16GemmMatchesFp64) {
  REQUIRE_NATIVE_BF16();
  for (int ta : {0, 1})
    for (int tb : {0, 1})
      for (int bias : {0, 1, 2}) {  // none, a [n] row, a full [m, n] C
        int64_t m = 29, n = 45, k = 70;
        Tensor a = bf16_values(ta ? Shape{k, m} : Shape{m, k}, DType::Float64, 3);
        Tensor b = bf16_values(tb ? Shape{n, k} : Shape{k, n}, DType::Float64, 4);
        Tensor c = bf16_values(bias == 2 ? Shape{m, n} : Shape{n}, DType::Float64, 5);
        Attributes at = {{"transA", Attribute::of_int(ta)}, {"transB", Attribute::of_int(tb)},
                         {"alpha", Attribute::of_float(0.5)}, {"beta", Attribute::of_float(bias ? 2.0 : 1.0)}};
        Tensor want(DType::Float64, {m, n}), got(DType::BFloat16, {m, n});
        std::vector<const Tensor*> in64 = {&a, &b};
        if (bias) in64.push_back(&c);
        run("Gemm", DType::Float64, at, in64, want);
        Tensor a16 = a.cast(DType::BFloat16), b16 = b.cast(DType::BFloat16), c16 = c.cast(DType::BFloat16);
        std::vector<const Tensor*> in16 = {&a16, &b16};
        if (bias) in16.push_back(&c16);
        run("Gemm", DType::BFloat16, at, in16, got);
        expect_close(got, want, 1.0 / 128, "Gemm transA " + std::to_string(ta) + " transB " + std::to_string(tb) +
                                               " bias " + std::to_string(bias));
      }
}

// The conv family on one geometry, in `dtype` against the FP64 im2col kernels: the forward op
// (with bias), its input gradient and its weight gradient.
struct ConvCase {
  std::string name;
  bool transpose;
  Shape x, w, y;
  Attributes attrs;
};

void check_conv_family(const ConvCase& c, DType dtype, double rel) {
  const std::string fwd = c.transpose ? "ConvTranspose" : "Conv";
  int64_t out_channels = c.y[1];
  Tensor x = bf16_values(c.x, DType::Float64, 11), w = bf16_values(c.w, DType::Float64, 12);
  Tensor b = bf16_values({out_channels}, DType::Float64, 13), dy = bf16_values(c.y, DType::Float64, 14);
  Tensor xl = x.cast(dtype), wl = w.cast(dtype), bl = b.cast(dtype), dyl = dy.cast(dtype);
  struct Op { std::string domain, type; std::vector<const Tensor*> in64, in; Shape out; };
  std::vector<Op> ops = {
      {"", fwd, {&x, &w, &b}, {&xl, &wl, &bl}, c.y},
      {"otter", fwd + "GradInput", {&dy, &w, &x}, {&dyl, &wl, &xl}, c.x},
      {"otter", fwd + "GradWeight", {&dy, &x, &w}, {&dyl, &xl, &wl}, c.w},
  };
  for (const Op& op : ops) {
    Tensor want(DType::Float64, op.out), got(dtype, op.out);
    run(op.type, DType::Float64, c.attrs, op.in64, want, op.domain);
    run(op.type, dtype, c.attrs, op.in, got, op.domain);
    expect_close(got, want, rel, c.name + " " + op.type + " " + dtype_name(dtype));
  }
}

std::vector<ConvCase> conv_cases() {
  auto ints = [](std::vector<int64_t> v) { return Attribute::of_ints(std::move(v)); };
  return {
      {"2-D groups, strides, dilations, asymmetric pads", false, {2, 4, 9, 11}, {6, 2, 3, 3}, {2, 6, 5, 8},
       {{"group", Attribute::of_int(2)}, {"strides", ints({2, 1})}, {"dilations", ints({1, 2})}, {"pads", ints({1, 0, 2, 1})}}},
      {"1-D stride 3", false, {3, 5, 20}, {7, 5, 4}, {3, 7, 7}, {{"strides", ints({3})}, {"pads", ints({2, 0})}}},
      {"3-D", false, {1, 2, 5, 6, 4}, {3, 2, 2, 3, 2}, {1, 3, 4, 6, 4}, {{"pads", ints({0, 1, 0, 0, 1, 1})}}},
      {"negative end pad", false, {2, 3, 6, 6}, {4, 3, 3, 3}, {2, 4, 2, 2}, {{"strides", ints({2, 2})}}},
      // Grids of a few positions (the weight gradient's batched GEMM): a 1x1 grid whose 3x3 window
      // reads the image at its centre tap only, a 2x2 grid with groups and stride 2, a 3-D one.
      {"1x1 grid, pad 1", false, {4, 8, 1, 1}, {6, 8, 3, 3}, {4, 6, 1, 1}, {{"pads", ints({1, 1, 1, 1})}}},
      {"2x2 grid, groups, stride 2", false, {3, 4, 4, 4}, {6, 2, 3, 3}, {3, 6, 2, 2},
       {{"group", Attribute::of_int(2)}, {"strides", ints({2, 2})}, {"pads", ints({1, 1, 1, 1})}}},
      {"3-D 2x2x2 grid", false, {2, 2, 2, 2, 2}, {3, 2, 3, 3, 3}, {2, 3, 2, 2, 2}, {{"pads", ints({1, 1, 1, 1, 1, 1})}}},
      {"transpose from a 2x2 grid, stride 2", true, {3, 4, 2, 2}, {4, 3, 3, 3}, {3, 3, 5, 5}, {{"strides", ints({2, 2})}}},
      {"transpose: groups, strides, pads, output_padding", true, {2, 4, 5, 6}, {4, 3, 3, 3}, {2, 6, 10, 12},
       {{"group", Attribute::of_int(2)}, {"strides", ints({2, 2})}, {"pads", ints({1, 0, 1, 1})}, {"output_padding", ints({1, 0})}}},
  };
}

TEST(CpuNative, Fp32ConvolutionsMatchFp64) {
  for (const ConvCase& c : conv_cases()) check_conv_family(c, DType::Float32, 1e-5);
}

TEST(CpuNative, Bf16ConvolutionsMatchFp64) {
  REQUIRE_NATIVE_BF16();
  for (const ConvCase& c : conv_cases()) check_conv_family(c, DType::BFloat16, 1.0 / 64);
}

}  // namespace
}  // namespace otter

namespace otter {
namespace {

// The FP16/BF16 elementwise kernels (chunked widening inside the kernel, kernels/cpu/
// elementwise.cpp) give exactly the bits of the path they replace: the FP32 kernel on widened
// inputs, its result rounded to the 16-bit type. Shapes exercise the contiguous, broadcast-row,
// broadcast-column, scalar and strided cases and lengths past one 512-element chunk; every input
// is a random FP32 value rounded to the 16-bit type (no special domain: Div's divisor and the
// gradients' inputs are kept away from 0 where the op needs it).
struct HalfCase {
  std::string op, domain;
  std::vector<Shape> shapes;
  Attributes attrs;
};

Tensor half_values(const Shape& shape, DType dtype, uint32_t seed, bool positive) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(positive ? 0.25f : -3.0f, 3.0f);
  Tensor f(DType::Float32, shape);
  for (int64_t i = 0; i < f.numel(); ++i) f.data<float>()[i] = u(rng);
  return f.cast(dtype);
}

TEST(CpuNative, HalfElementwiseKernelsEqualTheWidenedFp32Path) {
  auto grad_of = [](const std::string& op) {
    Attributes a;
    a["op"] = Attribute::of_string(op);
    return a;
  };
  Attributes tanh_gelu;
  tanh_gelu["approximate"] = Attribute::of_string("tanh");
  const std::vector<HalfCase> cases = {
      {"Add", "", {{4, 7, 300}, {300}}, {}},
      {"Add", "", {{3, 1200}, {3, 1200}}, {}},
      {"Sub", "", {{5, 9, 1}, {5, 9, 33}}, {}},
      {"Mul", "", {{1}, {6, 700}}, {}},
      {"Div", "", {{2, 3, 4, 5}, {3, 1, 5}}, {}},
      {"Mul", "", {{7, 1, 3}, {1, 5, 1}}, {}},
      {"Gelu", "", {{3, 777}}, {}},
      {"Gelu", "", {{1100}}, tanh_gelu},
      {"Tanh", "", {{5, 130}}, {}},
      {"Sigmoid", "", {{1031}}, {}},
      {"Relu", "", {{2, 600}}, {}},
      {"UnaryGrad", "otter", {{3, 700}, {3, 700}, {3, 700}}, grad_of("Gelu")},
      {"UnaryGrad", "otter", {{1029}, {1029}, {1029}}, grad_of("Tanh")},
      {"UnaryGrad", "otter", {{1029}, {1029}, {1029}}, grad_of("Sqrt")},
      {"SumToShapeOf", "otter", {{4, 9, 650}, {650}}, {}},
      {"SumToShapeOf", "otter", {{4, 9, 65}, {4, 1, 1}}, {}},
      {"SumToShapeOf", "otter", {{4, 9, 65}, {1}}, {}},
  };
  for (DType half : {DType::Float16, DType::BFloat16}) {
    for (const HalfCase& c : cases) {
      const bool positive = c.op == "Div" || c.attrs.count("op");  // Sqrt's grad divides by y
      std::vector<Tensor> low, wide;
      // GELU (FP16 in registers, vec_math.h) also sees NaNs with payloads, infinities and a
      // subnormal in its first vector and its tail: their lanes must take the same bits too.
      const bool specials = c.op == "Gelu" || (c.attrs.count("op") && c.attrs.at("op").s == "Gelu");
      const std::vector<uint16_t> special_bits =
          half == DType::Float16 ? std::vector<uint16_t>{0x7d01, 0x7e00, 0xfe03, 0x7c00, 0xfc00, 0x0001}
                                 : std::vector<uint16_t>{0x7f81, 0x7fc0, 0xffc3, 0x7f80, 0xff80, 0x0001};
      for (size_t i = 0; i < c.shapes.size(); ++i) {
        low.push_back(half_values(c.shapes[i], half, static_cast<uint32_t>(17 * i + 3), positive));
        if (specials)
          for (size_t k = 0; k < special_bits.size(); ++k) {
            auto* bits = static_cast<uint16_t*>(low.back().raw());
            bits[k + i] = special_bits[k];
            bits[low.back().numel() - 1 - static_cast<int64_t>(k)] = special_bits[k];
          }
        wide.push_back(low.back().cast(DType::Float32));
      }
      Shape out_shape;
      if (c.op == "SumToShapeOf") {
        out_shape = c.shapes[1];
      } else {  // the broadcast of the inputs
        size_t rank = 0;
        for (const Shape& s : c.shapes) rank = std::max(rank, s.size());
        out_shape.assign(rank, 1);
        for (const Shape& s : c.shapes)
          for (size_t k = 0; k < s.size(); ++k) out_shape[rank - s.size() + k] = std::max(out_shape[rank - s.size() + k], s[k]);
      }
      std::vector<const Tensor*> low_in, wide_in;
      for (size_t i = 0; i < low.size(); ++i) {
        low_in.push_back(&low[i]);
        wide_in.push_back(&wide[i]);
      }
      Tensor got(half, out_shape), wide_out(DType::Float32, out_shape);
      run(c.op, half, c.attrs, low_in, got, c.domain);
      run(c.op, DType::Float32, c.attrs, wide_in, wide_out, c.domain);
      Tensor want = wide_out.cast(half);
      const std::string what = c.op + (c.attrs.count("op") ? "(" + c.attrs.at("op").s + ")" : "") + " " + dtype_name(half);
      if (specials) {  // GELU in registers: a NaN result is a NaN, its sign and payload not kept
        auto is_nan = [&](uint16_t b) {
          return half == DType::Float16 ? (b & 0x7c00) == 0x7c00 && (b & 0x03ff) != 0 : (b & 0x7f80) == 0x7f80 && (b & 0x007f) != 0;
        };
        const auto* g = static_cast<const uint16_t*>(got.raw());
        const auto* w = static_cast<const uint16_t*>(want.raw());
        int nans = 0;
        for (int64_t i = 0; i < want.numel(); ++i) {
          nans += is_nan(w[i]);
          ASSERT_TRUE(g[i] == w[i] || (is_nan(g[i]) && is_nan(w[i]))) << what << ": element " << i << " differs from the widened path";
        }
        EXPECT_GT(nans, 0) << what;
        continue;
      }
      ASSERT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << what << ": bits differ from the widened path";
    }
  }
}

// MatMul's widening kernel (kernels/cpu/matmul.cpp) converts each batch item while it computes:
// the bits must be the widened path's (both operands widened whole, the FP32 kernel, the result
// rounded). It handles only the same batch on both sides and says so for other shapes.
TEST(CpuNative, MatMulWideningKernelEqualsTheWidenedPath) {
  WideningKernelFn widening = KernelRegistry::instance().find_widening("", "MatMul");
  ASSERT_NE(widening, nullptr);
  struct Case {
    Shape a, b;
    bool handled;
  };
  const std::vector<Case> cases = {{{16, 2, 32, 32}, {16, 2, 32, 32}, true},  // attention's products
                                   {{8, 2, 24, 24}, {8, 2, 24, 32}, true},    // k = 24: rows widened as one run
                                   {{4, 30, 20}, {4, 20, 64}, true},          // two panels, a partial row tile
                                   {{2, 16, 400}, {2, 400, 32}, true},        // k past 384: B widened in blocks
                                   {{3, 5, 7}, {3, 7, 4}, true},
                                   {{2, 3, 40, 1}, {2, 3, 1, 9}, true},       // k = 1
                                   {{2, 4, 0}, {2, 0, 6}, true},              // k = 0: zeros
                                   {{4, 0, 8}, {4, 8, 5}, true},              // nothing to write
                                   {{6, 8, 16}, {16, 12}, false},             // a weight matrix
                                   {{1, 8, 16}, {3, 16, 12}, false}};         // a broadcast batch
  for (DType half : {DType::Float16, DType::BFloat16}) {
    for (const Case& c : cases) {
      Tensor a = half_values(c.a, half, 5, false), b = half_values(c.b, half, 6, false);
      Shape out_shape = c.a;
      out_shape.back() = c.b.back();
      if (c.b.size() > c.a.size()) out_shape.insert(out_shape.begin(), c.b[0]);
      Tensor got(half, out_shape);
      std::memset(got.raw(), 0x7f, got.nbytes());
      Node node;
      node.op_type = "MatMul";
      KernelContext ctx(node);
      ctx.inputs = {&a, &b};
      ctx.outputs = {&got};
      const std::string what = shape_str(c.a) + " x " + shape_str(c.b) + " " + dtype_name(half);
      ASSERT_EQ(widening(ctx), c.handled) << what;
      if (!c.handled) continue;
      Tensor wa = a.cast(DType::Float32), wb = b.cast(DType::Float32), wide_out(DType::Float32, out_shape);
      run("MatMul", DType::Float32, {}, {&wa, &wb}, wide_out);
      Tensor want = wide_out.cast(half);
      ASSERT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << what << ": bits differ from the widened path";
    }
  }
}

// The FP32 kernels' parallel paths against naive float64 loops: a same-batch MatMul (batch items
// on the threads) and small Gemms without transA (one row block per thread, several blocks here),
// with transB, a bias row, alpha and beta.
TEST(CpuNative, Fp32BatchItemsAndRowBlocksMatchNaiveFp64) {
  {
    const int64_t items = 32, m = 32, k = 32, n = 24;
    Tensor a = bf16_values({16, 2, m, k}, DType::Float32, 21), b = bf16_values({16, 2, k, n}, DType::Float32, 22);
    Tensor got(DType::Float32, {16, 2, m, n}), want(DType::Float64, {16, 2, m, n});
    run("MatMul", DType::Float32, {}, {&a, &b}, got);
    const float *pa = a.data<float>(), *pb = b.data<float>();
    for (int64_t i = 0; i < items; ++i)
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < n; ++c) {
          double acc = 0;
          for (int64_t p = 0; p < k; ++p) acc += double(pa[(i * m + r) * k + p]) * double(pb[(i * k + p) * n + c]);
          want.data<double>()[(i * m + r) * n + c] = acc;
        }
    expect_close(got, want, 1e-6, "same-batch MatMul");
  }
  struct Case {
    int64_t m, n, k;
    bool trans_a, trans_b;
    double alpha, beta;
  };
  for (const Case& c : {Case{512, 256, 64, false, true, 1.0, 1.0}, Case{768, 64, 64, false, false, 0.5, 2.0},
                        Case{256, 64, 768, true, false, 1.0, 1.0}}) {  // the last: a weight gradient's row blocks
    Tensor a = bf16_values(c.trans_a ? Shape{c.k, c.m} : Shape{c.m, c.k}, DType::Float32, 23);
    Tensor b = bf16_values(c.trans_b ? Shape{c.n, c.k} : Shape{c.k, c.n}, DType::Float32, 24);
    Tensor bias = bf16_values({c.n}, DType::Float32, 25);
    Attributes attrs;
    attrs["transA"] = Attribute::of_int(c.trans_a);
    attrs["transB"] = Attribute::of_int(c.trans_b);
    attrs["alpha"] = Attribute::of_float(c.alpha);
    attrs["beta"] = Attribute::of_float(c.beta);
    Tensor got(DType::Float32, {c.m, c.n}), want(DType::Float64, {c.m, c.n});
    run("Gemm", DType::Float32, attrs, {&a, &b, &bias}, got);
    for (int64_t r = 0; r < c.m; ++r)
      for (int64_t j = 0; j < c.n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < c.k; ++p)
          acc += double(a.data<float>()[c.trans_a ? p * c.m + r : r * c.k + p]) *
                 double(b.data<float>()[c.trans_b ? j * c.k + p : p * c.n + j]);
        want.data<double>()[r * c.n + j] = c.alpha * acc + c.beta * double(bias.data<float>()[j]);
      }
    expect_close(got, want, 1e-6, "row-blocked Gemm " + std::to_string(c.m) + "x" + std::to_string(c.n));
  }
}

// Gemm's widening kernel (row blocks, kernels/cpu/matmul.cpp) against the widened path: the FP32
// kernel on widened operands, rounded; B and the bias row either 16-bit or FP32 (the wide weight
// copies). FP16 takes half_gemm (gemm_half.h), transA included; large GEMMs and the cases
// half_gemm leaves are widened whole.
TEST(CpuNative, GemmWideningKernelEqualsTheWidenedPath) {
  WideningKernelFn widening = KernelRegistry::instance().find_widening("", "Gemm");
  ASSERT_NE(widening, nullptr);
  struct Case {
    int64_t m, n, k;
    bool trans_a, trans_b, bias, wide_b;
    double alpha, beta;
    bool handled;
  };
  const std::vector<Case> cases = {
      {512, 256, 64, false, true, true, true, 1.0, 1.0, true},     // a linear layer, wide weight and bias
      {768, 64, 64, false, false, false, true, 1.0, 1.0, true},    // dX = dY W
      {512, 64, 256, false, false, false, true, 1.0, 1.0, true},   // dX of a wider layer (k = 256)
      {301, 70, 200, false, true, true, false, 1.0, 1.0, true},    // partial tiles and panels, 16-bit B and bias
      {40, 33, 300, false, true, true, true, 1.0, 1.0, true},      // k > 256: rows widened for the FP32 GEMM
      {37, 19, 23, false, true, true, false, 0.5, 2.0, true},      // 16-bit B and bias, alpha, beta
      {5, 8, 3, false, false, true, false, 1.0, 0.0, true},        // beta 0: the bias is ignored
      {200, 64, 512, true, false, false, false, 1.0, 1.0, true},   // dW = dY^T X over 512 rows: k in blocks
      {64, 256, 768, true, false, false, false, 1.0, 1.0, true},   // dW over 768 rows: blocks, two chains
      {30, 70, 200, true, false, true, false, 1.0, 1.0, true},     // transA in blocks, a bias, partial tiles
      {37, 64, 700, false, false, false, false, 1.0, 1.0, true},   // 16-bit B widened block by block
      {48, 40, 300, true, true, false, false, 1.0, 1.0, true},     // transA (FP16) and transB, one chain
      {100, 64, 600, false, false, false, true, 1.0, 1.0, true},   // two chains (k = 600, no bias)
      {40, 33, 500, false, true, true, false, 1.0, 1.0, true},     // two chains and a bias: widened rows
      {1024, 1024, 64, false, true, false, true, 1.0, 1.0, false}, // large: one GEMM on all threads
  };
  for (DType half : {DType::Float16, DType::BFloat16}) {
    uint32_t seed = 11;
    for (const Case& c : cases) {
      Tensor a = half_values(c.trans_a ? Shape{c.k, c.m} : Shape{c.m, c.k}, half, seed++, false);
      Tensor b = half_values(c.trans_b ? Shape{c.n, c.k} : Shape{c.k, c.n}, half, seed++, false);
      Tensor bias = half_values({c.n}, half, seed++, false);
      Tensor wb = b.cast(DType::Float32), wbias = bias.cast(DType::Float32), wa = a.cast(DType::Float32);
      Attributes attrs;
      attrs["transA"] = Attribute::of_int(c.trans_a);
      attrs["transB"] = Attribute::of_int(c.trans_b);
      attrs["alpha"] = Attribute::of_float(c.alpha);
      attrs["beta"] = Attribute::of_float(c.beta);
      Node node;
      node.op_type = "Gemm";
      node.attrs = attrs;
      Tensor got(half, {c.m, c.n});
      std::memset(got.raw(), 0x7f, got.nbytes());
      KernelContext ctx(node);
      ctx.inputs = {&a, c.wide_b ? &wb : &b};
      if (c.bias) ctx.inputs.push_back(c.wide_b ? &wbias : &bias);
      ctx.outputs = {&got};
      const std::string what = std::to_string(c.m) + "x" + std::to_string(c.n) + "x" + std::to_string(c.k) + " " +
                               dtype_name(half);
      const bool handled = c.handled && (half == DType::Float16 || !c.trans_a);  // transA: the FP16 GEMM only
      ASSERT_EQ(widening(ctx), handled) << what;
      if (!handled) continue;
      Tensor wide_out(DType::Float32, {c.m, c.n});
      std::vector<const Tensor*> in = {&wa, &wb};
      if (c.bias) in.push_back(&wbias);
      run("Gemm", DType::Float32, attrs, in, wide_out);
      Tensor want = wide_out.cast(half);
      ASSERT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << what << ": bits differ from the widened path";
      // An FP32 output standing for the FP16 one (a fused output Cast): the FP16 GEMM's cases only,
      // the widened path's result rounded through FP16.
      Tensor got_wide(DType::Float32, {c.m, c.n});
      std::memset(got_wide.raw(), 0x7f, got_wide.nbytes());
      ctx.outputs = {&got_wide};
      const std::vector<DType> round_to = {half};
      ctx.rounded_outputs = &round_to;
      const bool half_gemm = half == DType::Float16 && c.alpha == 1.0 && (c.beta == 1.0 || c.beta == 0.0) &&
                             (c.k <= 384 || (c.k <= 768 && !(c.bias && c.beta != 0.0)));
      const bool rounded = widening(ctx);
      if (half_gemm && cpu::half_gemm_matches_sgemm()) {
        EXPECT_TRUE(rounded) << what;
      }
      if (!half_gemm) {
        EXPECT_FALSE(rounded) << what;
      }
      if (!rounded) continue;
      Tensor want_wide = want.cast(DType::Float32);
      ASSERT_EQ(std::memcmp(got_wide.raw(), want_wide.raw(), want_wide.nbytes()), 0) << what << ", FP32 output: bits differ";
    }
  }
  std::printf("half_gemm (kernels/cpu/gemm_half.h) %s here\n",
              cpu::half_gemm_matches_sgemm() ? "gives the FP32 GEMM's bits and is used" : "is not used (another summation order)");
  // With oneDNN 2.6's AVX-512 sgemm (Intel and AMD Zen 4 alike) the orders agree: a mismatch here
  // means a broken tile or a oneDNN that sums otherwise (FP16 GEMMs then widen, slower).
  if (host_avx512() && cpu::onednn::available()) {
    EXPECT_TRUE(cpu::half_gemm_matches_sgemm()) << "half_gemm does not give oneDNN's sgemm bits on this host";
  }
}

// The widening kernels of Add/Sub/Mul/Div (kernels/cpu/elementwise.cpp) with FP16/BF16 and FP32
// operands mixed, as promote_through_casts leaves them (an FP16 tensor times an FP32 scalar, an
// FP16 branch added to the FP32 residual, an FP16 score plus an FP32 mask into an FP32 output):
// the same bits as the FP32 kernel on the widened operands, rounded when the output is 16-bit.
// The conv family's widening kernels (grids of a few positions: one GEMM over the batch) against
// the widened path, the FP32 kernel on widened operands, rounded: the forward op with a bias,
// the input gradient and the weight gradient, each into a 16-bit output and into an FP32 one
// standing for it (a fused output Cast), with 16-bit weights and with FP32 ones (the wide weight
// copy). A larger grid is declined.
TEST(CpuNative, ConvWideningKernelsEqualTheWidenedPath) {
  auto ints = [](std::vector<int64_t> v) { return Attribute::of_ints(std::move(v)); };
  struct Case {
    Shape x, w, y;
    Attributes attrs;
    bool weight_grad, all;  // handled: the weight gradient; every op (taps that read no image)
  };
  const std::vector<Case> cases = {
      {{32, 16, 1, 1}, {24, 16, 3, 3}, {32, 24, 1, 1}, {{"pads", ints({1, 1, 1, 1})}}, true, true},
      {{8, 4, 4, 4}, {6, 2, 3, 3}, {8, 6, 2, 2},  // every tap live: oneDNN's forward and dX
       {{"group", Attribute::of_int(2)}, {"strides", ints({2, 2})}, {"pads", ints({1, 1, 1, 1})}}, true, false},
      {{4, 6, 2, 2}, {5, 6, 5, 5}, {4, 5, 2, 2}, {{"pads", ints({2, 2, 2, 2})}}, true, true},  // 5x5 over 2x2
      {{2, 3, 8, 8}, {4, 3, 3, 3}, {2, 4, 8, 8}, {{"pads", ints({1, 1, 1, 1})}}, false, false},  // 64 positions
  };
  for (DType half : {DType::Float16, DType::BFloat16}) {
    uint32_t seed = 3;
    for (const Case& c : cases)
      for (bool wide_w : {false, true}) {
        Tensor x = half_values(c.x, half, seed++, false), dy = half_values(c.y, half, seed++, false);
        Tensor w16 = half_values(c.w, half, seed++, false), b16 = half_values({c.y[1]}, half, seed++, false);
        Tensor w32 = w16.cast(DType::Float32);
        const Tensor& w = wide_w ? w32 : w16;
        struct Op { std::string domain, type; std::vector<const Tensor*> in; Shape out; };
        const std::vector<Op> ops = {{"", "Conv", {&x, &w, &b16}, c.y},
                                     {"otter", "ConvGradInput", {&dy, &w, &x}, c.x},
                                     {"otter", "ConvGradWeight", {&dy, &x, &w}, c.w}};
        for (const Op& op : ops) {
          WideningKernelFn widening = KernelRegistry::instance().find_widening(op.domain, op.type);
          ASSERT_NE(widening, nullptr) << op.type;
          Node node;
          node.domain = op.domain;
          node.op_type = op.type;
          node.attrs = c.attrs;
          Tensor got(half, op.out);
          std::memset(got.raw(), 0x7f, got.nbytes());
          KernelContext ctx(node);
          for (const Tensor* t : op.in) ctx.inputs.push_back(t);
          ctx.outputs = {&got};
          const std::string what = op.type + " " + shape_str(c.x) + " " + dtype_name(half) + (wide_w ? " (FP32 W)" : "");
          const bool handled = op.type == "ConvGradWeight" ? c.weight_grad : c.all;
          ASSERT_EQ(widening(ctx), handled) << what;
          if (!handled) continue;
          std::vector<Tensor> wide;
          std::vector<const Tensor*> wide_in;
          for (const Tensor* t : op.in) wide.push_back(t->cast(DType::Float32));
          for (const Tensor& t : wide) wide_in.push_back(&t);
          Tensor wide_out(DType::Float32, op.out);
          run(op.type, DType::Float32, c.attrs, wide_in, wide_out, op.domain);
          Tensor want = wide_out.cast(half);
          ASSERT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << what << ": bits differ from the widened path";
          Tensor got_wide(DType::Float32, op.out);
          ctx.outputs = {&got_wide};
          const std::vector<DType> round_to = {half};
          ctx.rounded_outputs = &round_to;
          ASSERT_TRUE(widening(ctx)) << what;
          Tensor want_wide = want.cast(DType::Float32);
          ASSERT_EQ(std::memcmp(got_wide.raw(), want_wide.raw(), want_wide.nbytes()), 0) << what << ", FP32 output";
        }
      }
  }
}

// BatchNormalization and its gradient on 16-bit X / dY (the widening kernels): the bits of widening
// the operands, the FP32 kernel and rounding, in training and evaluation forms, over 4-D, 3-D and
// 2-D inputs (S = 1), channel counts that split over threads unevenly; the running statistics
// (FP32) too. Declined: 16-bit statistics outputs, a rounded FP32 operand.
TEST(CpuNative, BatchNormWideningKernelsEqualTheWidenedPath) {
  const std::vector<Shape> shapes = {{6, 5, 4, 4}, {32, 67, 1, 1}, {3, 7, 9}, {40, 3}, {2, 130, 2, 2}};
  for (DType half : {DType::Float16, DType::BFloat16}) {
    uint32_t seed = 50;
    for (const Shape& xs : shapes)
      for (bool training : {true, false}) {
        const Shape cs = {xs[1]};
        Tensor x = half_values(xs, half, seed++, false), dy = half_values(xs, half, seed++, false);
        Tensor scale = half_values(cs, DType::Float32, seed++, true), bias = half_values(cs, DType::Float32, seed++, false);
        Tensor mean = half_values(cs, DType::Float32, seed++, false), var = half_values(cs, DType::Float32, seed++, true);
        const std::string what = shape_str(xs) + " " + dtype_name(half) + (training ? " training" : " eval");
        Attributes attrs;
        attrs["training_mode"] = Attribute::of_int(training ? 1 : 0);
        attrs["epsilon"] = Attribute::of_float(1e-3f);
        attrs["momentum"] = Attribute::of_float(0.8f);
        auto widened = [&](const std::string& domain, const std::string& op, std::vector<const Tensor*> in,
                           std::vector<Tensor*> out) {
          std::vector<Tensor> wide;
          wide.reserve(in.size() + out.size());
          Node node;
          node.domain = domain;
          node.op_type = op;
          node.attrs = attrs;
          KernelContext ctx(node);
          for (const Tensor* t : in) {
            wide.push_back(t->cast(DType::Float32));
            ctx.inputs.push_back(&wide.back());
          }
          for (Tensor* t : out) {
            wide.emplace_back(DType::Float32, t->shape());
            ctx.outputs.push_back(&wide.back());
          }
          KernelRegistry::instance().find(domain, op, Device::CPU, DType::Float32)(ctx);
          for (size_t i = 0; i < out.size(); ++i) ctx.outputs[i]->cast_into(*out[i]);
        };
        auto widening = [&](const std::string& domain, const std::string& op, std::vector<const Tensor*> in,
                            std::vector<Tensor*> out, const std::vector<DType>* rounded_in = nullptr) {
          Node node;
          node.domain = domain;
          node.op_type = op;
          node.attrs = attrs;
          KernelContext ctx(node);
          ctx.inputs = std::move(in);
          ctx.outputs = std::move(out);
          ctx.rounded_inputs = rounded_in;
          return KernelRegistry::instance().find_widening(domain, op)(ctx);
        };
        auto same = [&](const Tensor& a, const Tensor& b, const std::string& name) {
          ASSERT_EQ(a.nbytes(), b.nbytes());
          ASSERT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << what << ": " << name << " differs from the widened path";
        };
        {  // forward: Y (16-bit) and the running statistics (FP32)
          Tensor y(half, xs), rm(DType::Float32, cs), rv(DType::Float32, cs), want_y(half, xs), want_rm(DType::Float32, cs),
              want_rv(DType::Float32, cs);
          std::memset(y.raw(), 0x7f, y.nbytes());
          ASSERT_TRUE(widening("", "BatchNormalization", {&x, &scale, &bias, &mean, &var}, {&y, &rm, &rv})) << what;
          widened("", "BatchNormalization", {&x, &scale, &bias, &mean, &var}, {&want_y, &want_rm, &want_rv});
          same(y, want_y, "Y");
          same(rm, want_rm, "running mean");
          same(rv, want_rv, "running var");
          Tensor rm16(half, cs);
          EXPECT_FALSE(widening("", "BatchNormalization", {&x, &scale, &bias, &mean, &var}, {&y, &rm16})) << what;
        }
        {  // gradient: dX (16-bit), dScale and dB (FP32)
          Tensor dx(half, xs), ds(DType::Float32, cs), db(DType::Float32, cs), want_dx(half, xs), want_ds(DType::Float32, cs),
              want_db(DType::Float32, cs);
          std::memset(dx.raw(), 0x7f, dx.nbytes());
          const std::vector<const Tensor*> in = {&dy, &x, &scale, &mean, &var, &bias};
          ASSERT_TRUE(widening("otter", "BatchNormalizationGrad", in, {&dx, &ds, &db})) << what;
          widened("otter", "BatchNormalizationGrad", in, {&want_dx, &want_ds, &want_db});
          same(dx, want_dx, "dX");
          same(ds, want_ds, "dScale");
          same(db, want_db, "dB");
          const std::vector<DType> rounded = {DType::Undefined, half};
          Tensor x32 = x.cast(DType::Float32);
          EXPECT_FALSE(widening("otter", "BatchNormalizationGrad", {&dy, &x32, &scale, &mean, &var, &bias}, {&dx, &ds, &db},
                                &rounded))
              << what;
        }
      }
  }
}

// FP32 2-D MaxPool and otter.MaxPoolArgmax (vec_max_pool_2d: 16 output columns a vector inside
// the row, scalar borders) against a naive first maximum (row-major taps, strict >) and against the
// FP64 kernel's window table: ties, NaN (first or not), -inf and -0; strides 1, 2, 3 (the three
// load forms), pads, dilations, ceil_mode, rows narrower (flattened, gathered) and wider than a
// vector.
TEST(CpuNative, MaxPool2dEqualsTheFirstMaximumOfEachWindow) {
  auto ints = [](std::vector<int64_t> v) { return Attribute::of_ints(std::move(v)); };
  struct Case {
    Shape x;
    std::vector<int64_t> kernel, strides, pads, dilations;
    int64_t ceil_mode;
  };
  const std::vector<Case> cases = {
      {{2, 3, 16, 16}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0},   // ResNet's stem pool
      {{1, 2, 9, 70}, {3, 3}, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},    // stride 1, a tail
      {{1, 2, 11, 100}, {2, 2}, {2, 2}, {0, 0, 0, 0}, {1, 1}, 0},  // stride 2, no padding
      {{2, 1, 13, 97}, {3, 5}, {3, 3}, {1, 2, 0, 1}, {2, 1}, 1},   // stride 3 (gather), ceil_mode
      {{1, 1, 7, 5}, {2, 2}, {1, 1}, {1, 1, 1, 1}, {3, 3}, 0},     // narrower than a vector, dilated
      {{1, 2, 6, 40}, {3, 3}, {2, 2}, {2, 2, 2, 2}, {1, 1}, 0},    // wide rows, wide padding
      {{3, 2, 6, 10}, {3, 3}, {2, 2}, {2, 2, 2, 2}, {1, 1}, 1},    // narrow rows, ceil_mode
      {{2, 2, 5, 5}, {2, 3}, {1, 1}, {0, 1, 1, 2}, {1, 2}, 0},     // asymmetric pads, dilated
  };
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> pick(0, 15);
  for (const Case& c : cases) {
    Tensor x(DType::Float32, c.x);
    float* px = x.data<float>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const int k = pick(rng);  // few distinct values: ties everywhere
      px[i] = k < 12 ? static_cast<float>(k % 5 - 2) : k == 12 ? NAN : k == 13 ? -INFINITY : -0.0f;
    }
    Node node;
    node.op_type = "MaxPool";
    node.attrs["kernel_shape"] = ints(c.kernel);
    node.attrs["strides"] = ints(c.strides);
    node.attrs["pads"] = ints(c.pads);
    node.attrs["dilations"] = ints(c.dilations);
    node.attrs["ceil_mode"] = Attribute::of_int(c.ceil_mode);
    const Shape in(c.x.begin() + 2, c.x.end());
    std::vector<int64_t> strides, dilations, pb, pe, out;
    window_geometry(node, in, c.kernel, true, strides, dilations, pb, pe, out);
    const Shape ys = {c.x[0], c.x[1], out[0], out[1]};
    Tensor y(DType::Float32, ys), arg(DType::Int32, ys);
    run("MaxPool", DType::Float32, node.attrs, {&x}, y);
    run("MaxPoolArgmax", DType::Float32, node.attrs, {&x}, arg, "otter");
    Tensor x64 = x.cast(DType::Float64), y64(DType::Float64, ys), arg64(DType::Int32, ys);
    run("MaxPool", DType::Float64, node.attrs, {&x64}, y64);
    run("MaxPoolArgmax", DType::Float64, node.attrs, {&x64}, arg64, "otter");
    const std::string what = shape_str(c.x) + " kernel " + std::to_string(c.kernel[0]) + "x" + std::to_string(c.kernel[1]);
    for (int64_t p = 0; p < c.x[0] * c.x[1]; ++p)
      for (int64_t r = 0; r < out[0]; ++r)
        for (int64_t q = 0; q < out[1]; ++q) {
          float v = 0.0f;
          int64_t best = -1;
          for (int64_t i = 0; i < c.kernel[0]; ++i)
            for (int64_t j = 0; j < c.kernel[1]; ++j) {
              const int64_t ih = r * strides[0] - pb[0] + i * dilations[0], iw = q * strides[1] - pb[1] + j * dilations[1];
              if (ih < 0 || ih >= in[0] || iw < 0 || iw >= in[1]) continue;
              const float u = px[p * in[0] * in[1] + ih * in[1] + iw];
              if (best < 0 || u > v) { v = u; best = ih * in[1] + iw; }
            }
          const int64_t o = (p * out[0] + r) * out[1] + q;
          const float got = y.data<float>()[o];
          ASSERT_EQ(std::memcmp(&got, &v, sizeof(float)), 0) << what << " plane " << p << " output " << r << "," << q
                                                                << ": " << got << " vs " << v;
          ASSERT_EQ(arg.data<int32_t>()[o], best) << what << " plane " << p << " output " << r << "," << q;
          ASSERT_EQ(arg64.data<int32_t>()[o], best) << what << " (FP64 window table)";
          const double wide = y64.data<double>()[o];
          ASSERT_TRUE(std::isnan(v) ? std::isnan(wide) : wide == static_cast<double>(v)) << what << " (FP64)";
        }
  }
}

// Kernels on tensors with no elements write nothing (an empty batch once wrote a whole softmax
// row past its buffer: parallel_for handed the kernel an empty range; the ASan job checks).
TEST(CpuNative, EmptyTensorsWriteNothing) {
  for (const char* op : {"Softmax", "LogSoftmax"}) {
    Tensor x(DType::Float32, {0, 37}), y(DType::Float32, {0, 37});
    run(op, DType::Float32, {}, {&x}, y);
    EXPECT_EQ(y.numel(), 0);
  }
}

// FP32 SoftmaxCrossEntropyLoss and its gradient over [N, C, D] scores (classes D apart, as a
// language model's [batch, vocab, time]) give the bits of the same scores laid out [N * D, C]
// (the contiguous, vectorised rows), with an ignored label and sample weights; and the loss is
// within float rounding of FP64.
TEST(CpuNative, SoftmaxCrossEntropyOverStridedClassesEqualsContiguousRows) {
  const int64_t N = 3, C = 37, D = 19;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 5.0f);
  Tensor x(DType::Float32, {N, C, D}), rows(DType::Float32, {N * D, C});
  Tensor labels(DType::Int64, {N, D}), row_labels(DType::Int64, {N * D});
  Tensor weights(DType::Float32, {C});
  for (int64_t c = 0; c < C; ++c) weights.data<float>()[c] = 0.5f + 0.03f * static_cast<float>(c);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t d = 0; d < D; ++d) {
      const int64_t label = (n * 7 + d * 5) % C == 4 ? -100 : (n * 7 + d * 5) % C;  // -100: ignored
      labels.data<int64_t>()[n * D + d] = row_labels.data<int64_t>()[n * D + d] = label;
      for (int64_t c = 0; c < C; ++c)
        x.data<float>()[(n * C + c) * D + d] = rows.data<float>()[(n * D + d) * C + c] = normal(rng);
    }
  for (const char* reduction : {"mean", "sum"}) {
    Attributes attrs;
    attrs["reduction"] = Attribute::of_string(reduction);
    attrs["ignore_index"] = Attribute::of_int(-100);
    auto forward = [&](const Tensor& scores, const Tensor& t, Tensor& loss, Tensor& log_prob) {
      Node node;
      node.op_type = "SoftmaxCrossEntropyLoss";
      node.attrs = attrs;
      KernelContext ctx(node);
      ctx.inputs = {&scores, &t, &weights};
      ctx.outputs = {&loss, &log_prob};
      KernelRegistry::instance().find("", "SoftmaxCrossEntropyLoss", Device::CPU, DType::Float32)(ctx);
    };
    Tensor loss(DType::Float32, {}), row_loss(DType::Float32, {});
    Tensor lp(DType::Float32, {N, C, D}), row_lp(DType::Float32, {N * D, C});
    forward(x, labels, loss, lp);
    forward(rows, row_labels, row_loss, row_lp);
    EXPECT_EQ(std::memcmp(loss.raw(), row_loss.raw(), sizeof(float)), 0) << reduction << ": " << loss.data<float>()[0]
                                                                          << " vs " << row_loss.data<float>()[0];
    Tensor dy(DType::Float32, {});
    dy.data<float>()[0] = 0.75f;
    Tensor dx(DType::Float32, {N, C, D}), row_dx(DType::Float32, {N * D, C});
    run("SoftmaxCrossEntropyLossGrad", DType::Float32, attrs, {&dy, &lp, &labels, &weights}, dx, "otter");
    run("SoftmaxCrossEntropyLossGrad", DType::Float32, attrs, {&dy, &row_lp, &row_labels, &weights}, row_dx, "otter");
    double want = 0, wsum = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t d = 0; d < D; ++d) {
        for (int64_t c = 0; c < C; ++c) {
          const size_t at = static_cast<size_t>((n * C + c) * D + d), row_at = static_cast<size_t>((n * D + d) * C + c);
          ASSERT_EQ(std::memcmp(lp.data<float>() + at, row_lp.data<float>() + row_at, sizeof(float)), 0)
              << reduction << " log_prob n " << n << " c " << c << " d " << d;
          ASSERT_EQ(std::memcmp(dx.data<float>() + at, row_dx.data<float>() + row_at, sizeof(float)), 0)
              << reduction << " gradient n " << n << " c " << c << " d " << d;
        }
        const int64_t t = labels.data<int64_t>()[n * D + d];
        if (t < 0) continue;
        double mx = -INFINITY, sum = 0;
        for (int64_t c = 0; c < C; ++c) mx = std::max(mx, static_cast<double>(x.data<float>()[(n * C + c) * D + d]));
        for (int64_t c = 0; c < C; ++c) sum += std::exp(static_cast<double>(x.data<float>()[(n * C + c) * D + d]) - mx);
        const double w = weights.data<float>()[t];
        want -= w * (static_cast<double>(x.data<float>()[(n * C + t) * D + d]) - mx - std::log(sum));
        wsum += w;
      }
    if (std::string(reduction) == "mean") want /= wsum;
    EXPECT_NEAR(loss.data<float>()[0], want, 1e-5 * std::abs(want)) << reduction;
  }
}

TEST(CpuNative, ArithmeticWideningKernelsTakeMixedOperands) {
  struct Case {
    const char* op;
    Shape a, b, out;
    bool a_wide, b_wide, out_wide;
    bool handled;  // rows shorter than half a chunk are left to the widened path
  };
  const std::vector<Case> cases = {
      {"Mul", {16, 2, 32, 32}, {1}, {16, 2, 32, 32}, false, true, false, true},      // the attention scale
      {"Add", {16, 32, 64}, {16, 32, 64}, {16, 32, 64}, true, false, true, true},    // residual + FP16 branch
      {"Add", {16, 2, 32, 32}, {32, 32}, {16, 2, 32, 32}, false, true, true, true},  // scores + FP32 mask
      {"Sub", {7, 1, 300}, {5, 1}, {7, 5, 300}, false, false, true, true},           // both 16-bit, broadcast, FP32 out
      {"Div", {3, 4097}, {3, 1}, {3, 4097}, false, true, false, true},               // rows longer than a chunk
      {"Add", {4, 2, 24, 24}, {4, 1, 1, 24}, {4, 2, 24, 24}, false, true, true, false},  // a padding mask: short rows
  };
  for (DType half : {DType::Float16, DType::BFloat16}) {
    uint32_t seed = 31;
    for (const Case& c : cases) {
      WideningKernelFn widening = KernelRegistry::instance().find_widening("", c.op);
      ASSERT_NE(widening, nullptr) << c.op;
      Tensor a = half_values(c.a, half, seed++, true), b = half_values(c.b, half, seed++, true);
      // Specials in the first vector of a and in its last elements (the tails): signalling and
      // quiet NaNs with payloads, infinities, a subnormal (NaN lanes take the scalar conversions).
      const std::vector<uint16_t> specials = half == DType::Float16
                                                 ? std::vector<uint16_t>{0x7d01, 0x7e00, 0xfe03, 0x7c00, 0xfc00, 0x0001}
                                                 : std::vector<uint16_t>{0x7f81, 0x7fc0, 0xffc3, 0x7f80, 0xff80, 0x0001};
      for (size_t i = 0; i < specials.size() && static_cast<int64_t>(i) < a.numel(); ++i) {
        static_cast<uint16_t*>(a.raw())[i] = specials[i];
        static_cast<uint16_t*>(a.raw())[a.numel() - 1 - static_cast<int64_t>(i)] = specials[i];  // in the tails
      }
      Tensor wa = a.cast(DType::Float32), wb = b.cast(DType::Float32);
      const Shape& out_shape = c.out;
      Tensor got(c.out_wide ? DType::Float32 : half, out_shape);
      std::memset(got.raw(), 0x7f, got.nbytes());
      Node node;
      node.op_type = c.op;
      KernelContext ctx(node);
      ctx.inputs = {c.a_wide ? &wa : &a, c.b_wide ? &wb : &b};
      ctx.outputs = {&got};
      const std::string what = std::string(c.op) + " " + dtype_name(half);
      ASSERT_EQ(widening(ctx), c.handled) << what;
      if (!c.handled) continue;
      Tensor wide_out(DType::Float32, out_shape);
      run(c.op, DType::Float32, {}, {&wa, &wb}, wide_out);
      Tensor want = c.out_wide ? wide_out : wide_out.cast(half);
      ASSERT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << what << ": bits differ from the widened path";
    }
  }
}

TEST(CpuNative, HalfCastsConvertDirectly) {
  for (DType half : {DType::Float16, DType::BFloat16}) {
    Tensor x = half_values({1000}, half, 5, false);
    Tensor to_f32(DType::Float32, {1000}), back(half, {1000});
    Attributes to;
    to["to"] = Attribute::of_int(1);
    run("Cast", half, to, {&x}, to_f32);
    ASSERT_EQ(std::memcmp(to_f32.raw(), x.cast(DType::Float32).raw(), to_f32.nbytes()), 0) << dtype_name(half);
    to["to"] = Attribute::of_int(half == DType::Float16 ? 10 : 16);
    run("Cast", DType::Float32, to, {&to_f32}, back);
    ASSERT_EQ(std::memcmp(back.raw(), x.raw(), x.nbytes()), 0) << dtype_name(half);
  }
}

}  // namespace
}  // namespace otter
