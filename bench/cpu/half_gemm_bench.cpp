// half_gemm (kernels/cpu/gemm_half.h, the FP16 GEMM of the CPU widening kernels) against the
// widened path it replaces (FP16 operands widened to FP32, then oneDNN's sgemm) and against sgemm
// on FP32 operands that are already there, on the shapes of the CPU benchmarks' models: BERT-tiny
// (768 rows, d64, MLP 256) and GPT d64 (512 rows) forward, dX and weight-gradient (transA) GEMMs.
// Checks that half_gemm's bits are the widened path's rounded to FP16 on every shape, then prints
// the best of 7 means of 100 calls per shape, one thread (OMP_NUM_THREADS=1 in half_gemm_bench.sh).
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "kernels/cpu/gemm_half.h"
#include "runtime/core/convert.h"

using namespace otter;

template <class F>
double best_us(F f) {
  for (int i = 0; i < 10; ++i) f();
  double best = 1e30;
  for (int r = 0; r < 7; ++r) {
    const auto t = std::chrono::steady_clock::now();
    for (int i = 0; i < 100; ++i) f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count() / 100 * 1e6);
  }
  return best;
}

int main() {
  struct Shape {
    int m, n, k;
    bool ta, tb, bias;
    const char* what;
  };
  const std::vector<Shape> shapes = {
      {768, 64, 64, false, true, true, "bert-tiny q/k/v/o forward"},
      {768, 64, 64, false, false, false, "bert-tiny q/k/v/o dX"},
      {768, 256, 64, false, true, true, "bert-tiny MLP up forward"},
      {768, 64, 256, false, false, false, "bert-tiny MLP up dX"},
      {64, 64, 768, true, false, false, "bert-tiny q/k/v/o dW"},
      {64, 256, 768, true, false, false, "bert-tiny MLP up dW"},
      {256, 64, 768, true, false, false, "bert-tiny MLP down dW"},
      {512, 192, 64, false, true, true, "gpt-2l-d64 c_attn forward"},
      {64, 256, 512, true, false, false, "gpt-2l-d64 c_fc dW"},
      {512, 256, 64, false, true, true, "gpt-2l-d64 c_fc forward"},
  };
  std::printf("%-38s %5s %5s %5s %2s %2s  %9s %13s %9s  %s\n", "shape", "m", "n", "k", "tA", "tB", "half_gemm",
              "widen+sgemm", "sgemm", "half_gemm / widen+sgemm");
  if (!cpu::half_gemm_supported(2, 1, 1, false) || !cpu::half_gemm_matches_sgemm()) {
    std::printf("half_gemm is not used on this host (no AVX-512, or another summation order): nothing to measure\n");
    return 0;
  }
  for (const Shape& s : shapes) {
    const size_t a_size = size_t(s.m) * s.k, b_size = size_t(s.k) * s.n, y_size = size_t(s.m) * s.n;
    // FP16 operands of moderate size (exponents 0x3000-0x3bff: 0.125 to ~1), B FP16 (an activation
    // gradient) for the weight gradients and FP32 (the wide weight copy) otherwise, as in the plans.
    std::vector<uint16_t> a(a_size), b16(b_size), y(y_size), y_ref(y_size);
    for (size_t i = 0; i < a_size; ++i) a[i] = static_cast<uint16_t>(0x3000 + (i * 7) % 0xbff);
    for (size_t i = 0; i < b_size; ++i) b16[i] = static_cast<uint16_t>(0x3000 + (i * 13) % 0xbff);
    std::vector<float> b32(b_size), bias(s.n), wa(a_size), wb(b_size), wy(y_size);
    widen_n(DType::Float16, b16.data(), b32.data(), static_cast<int64_t>(b_size));
    for (int j = 0; j < s.n; ++j) bias[j] = 0.01f * static_cast<float>(j % 7);
    const bool b_half = s.ta;
    cpu::HalfGemm h;
    h.m = s.m, h.n = s.n, h.k = s.k, h.a = a.data(), h.lda = s.ta ? s.m : s.k, h.trans_a = s.ta;
    h.b = b_half ? static_cast<const void*>(b16.data()) : b32.data();
    h.b_type = b_half ? DType::Float16 : DType::Float32, h.ldb = s.tb ? s.k : s.n, h.trans_b = s.tb;
    if (s.bias) h.bias = bias.data();
    h.y = y.data(), h.ldy = s.n;
    std::vector<float> packed(cpu::half_gemm_packed_size(h)), scratch(cpu::half_gemm_scratch_size(h, s.m));
    const int64_t panels = (s.n + cpu::half_gemm_panel_width() - 1) / cpu::half_gemm_panel_width();
    auto half = [&] {
      if (!cpu::half_gemm_blocked(h)) cpu::half_gemm_pack(h, packed.data(), 0, panels);
      cpu::half_gemm_rows(h, packed.data(), 0, s.m, scratch.data());
    };
    auto sgemm = [&](const float* pa, const float* pb) {
      if (s.bias)
        for (int i = 0; i < s.m; ++i) std::memcpy(wy.data() + size_t(i) * s.n, bias.data(), sizeof(float) * s.n);
      dnnl_sgemm(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.m, s.n, s.k, 1.0f, pa, s.ta ? s.m : s.k, pb, s.tb ? s.k : s.n,
                 s.bias ? 1.0f : 0.0f, wy.data(), s.n);
    };
    auto widened = [&] {  // what the widened path does: widen the FP16 operands, sgemm, round
      widen_n(DType::Float16, a.data(), wa.data(), static_cast<int64_t>(a_size));
      if (b_half) widen_n(DType::Float16, b16.data(), wb.data(), static_cast<int64_t>(b_size));
      sgemm(wa.data(), b_half ? wb.data() : b32.data());
      narrow_n(DType::Float16, wy.data(), y_ref.data(), static_cast<int64_t>(y_size));
    };
    half();
    widened();
    if (std::memcmp(y.data(), y_ref.data(), y_size * sizeof(uint16_t)) != 0) {
      std::printf("%s: half_gemm's bits differ from the widened path's\n", s.what);
      return 1;
    }
    widen_n(DType::Float16, a.data(), wa.data(), static_cast<int64_t>(a_size));
    const double t_half = best_us(half), t_widened = best_us(widened);
    const double t_sgemm = best_us([&] { sgemm(wa.data(), b32.data()); });
    std::printf("%-38s %5d %5d %5d %2d %2d  %7.1f us %10.1f us %6.1f us  %.2f\n", s.what, s.m, s.n, s.k, s.ta, s.tb,
                t_half, t_widened, t_sgemm, t_half / t_widened);
  }
  return 0;
}
