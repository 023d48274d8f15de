// FP32 GEMM: OpenBLAS (cblas_sgemm, its OpenMP build) against oneDNN's sgemm (dnnl_sgemm) on the
// shapes of the CPU benchmarks' layers (mlp-large 784-1024-1024-10 at batch 256 forward and
// backward, the d256 GPT's q/k/v, MLP up and down projections over 768 rows, the d64 BERT-tiny's
// over 768 rows and their weight gradients): the choice behind
// kernels/cpu/matmul.cpp. Prints the best of 3 means of 20 calls per shape. Built and run by
// gemm_bench.sh (threads from OMP_NUM_THREADS).
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

int main() {
  struct Shape {
    int m, n, k;
    bool ta, tb;
  };
  const std::vector<Shape> shapes = {{256, 1024, 784, false, true},  {256, 1024, 1024, false, true},
                                     {256, 10, 1024, false, true},   {256, 1024, 10, false, false},
                                     {256, 1024, 1024, false, false}, {1024, 1024, 256, true, false},
                                     {1024, 784, 256, true, false},  {768, 256, 256, false, true},
                                     {768, 1024, 256, false, true},  {768, 256, 1024, false, true},
                                     {768, 64, 64, false, true},     {768, 256, 64, false, true},
                                     {768, 64, 256, false, true},    {64, 64, 768, true, false},
                                     {256, 64, 768, true, false},    {768, 64, 64, false, false},
                                     {768, 64, 256, false, false},   {512, 128, 128, false, true},
                                     {128, 128, 512, true, false}};
  std::printf("%5s %5s %5s %3s  %18s  %18s  %s\n", "m", "n", "k", "op", "OpenBLAS ms (GF/s)", "oneDNN ms (GF/s)",
              "OpenBLAS/oneDNN");
  for (const Shape& s : shapes) {
    const int lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
    std::vector<float> a(static_cast<size_t>(s.m) * s.k, 0.5f), b(static_cast<size_t>(s.k) * s.n, 0.25f),
        c(static_cast<size_t>(s.m) * s.n);
    auto mean_of_20 = [&](auto call) {
      auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < 20; ++r) call();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 20;
    };
    auto openblas = [&] {
      cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, s.m, s.n, s.k,
                  1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), s.n);
    };
    auto onednn = [&] {
      dnnl_sgemm(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(),
                 s.n);
    };
    mean_of_20(openblas);
    mean_of_20(onednn);
    double tb = 1e9, td = 1e9;
    for (int i = 0; i < 3; ++i) {
      tb = std::min(tb, mean_of_20(openblas));
      td = std::min(td, mean_of_20(onednn));
    }
    const double flop = 2.0 * s.m * s.n * s.k;
    std::printf("%5d %5d %5d  %c%c  %8.3f (%7.1f)  %8.3f (%7.1f)  %.2f\n", s.m, s.n, s.k, s.ta ? 'T' : 'N',
                s.tb ? 'T' : 'N', tb * 1e3, flop / tb / 1e9, td * 1e3, flop / td / 1e9, tb / td);
  }
  return 0;
}
