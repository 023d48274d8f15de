// Trains the bundled digits MLP (examples/digits) on the CPU, reports test accuracy, and exports
// the trained model together with the inputs and Otter's outputs on the test set, so that
// tests/python/check_export.py can verify the export in ONNX Runtime.
//
//   train_digits DATA_DIR OUT_DIR [--optimizer sgd|adam|adamw] [--epochs N]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "runtime/train/npz.h"
#include "runtime/train/session.h"

using namespace otter;

static Tensor rows(const Tensor& t, int64_t begin, int64_t end) {
  Shape s = t.shape();
  int64_t row = t.numel() / s[0];
  s[0] = end - begin;
  Tensor r(t.dtype(), s);
  std::memcpy(r.raw(), static_cast<const char*>(t.raw()) + begin * row * dtype_size(t.dtype()), r.nbytes());
  return r;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s DATA_DIR OUT_DIR [--optimizer sgd|adam|adamw] [--epochs N]\n", argv[0]);
    return 2;
  }
  std::string data = argv[1], out = argv[2], opt = "adamw";
  int epochs = 20;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--optimizer")) opt = argv[i + 1];
    else if (!std::strcmp(argv[i], "--epochs")) epochs = std::atoi(argv[i + 1]);
  }
  try {
    std::filesystem::create_directories(out);
    auto train = read_npz(data + "/train.npz");
    auto test = read_npz(data + "/test.npz");
    TrainConfig cfg;
    cfg.loss.kind = "cross_entropy";
    cfg.loss.output = "logits";
    cfg.loss.label = "label";
    cfg.optimizer.kind = opt;
    cfg.optimizer.lr = opt == "sgd" ? 0.1 : 3e-3;
    if (opt == "sgd") cfg.optimizer.momentum = 0.9;
    Session session(load_model_file(data + "/mlp.onnx"), cfg);
    const int64_t batch = 32, n = train["x"].shape()[0];
    auto start = std::chrono::steady_clock::now();
    for (int e = 0; e < epochs; ++e) {
      double sum = 0;
      int64_t steps = 0;
      for (int64_t b = 0; b < n; b += batch, ++steps)
        sum += session.train_step({{"x", rows(train["x"], b, std::min(n, b + batch))},
                                   {"label", rows(train["y"], b, std::min(n, b + batch))}});
      if (e % 5 == 4 || e == epochs - 1) std::printf("epoch %d  mean loss %.4f\n", e + 1, sum / steps);
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double loss = 0;
    auto outputs = session.eval_step({{"x", test["x"]}, {"label", test["y"]}}, &loss);
    const Tensor& logits = outputs["logits"];
    const float* p = logits.data<float>();
    const int64_t* y = test["y"].data<int64_t>();
    int64_t correct = 0, m = logits.shape()[0];
    for (int64_t i = 0; i < m; ++i) {
      int64_t best = 0;
      for (int64_t c = 1; c < 10; ++c) if (p[i * 10 + c] > p[i * 10 + best]) best = c;
      correct += best == y[i];
    }
    std::printf("trained %d epochs in %.2f s; test loss %.4f, accuracy %.2f%% (%ld/%ld)\n", epochs, seconds, loss,
                100.0 * correct / m, (long)correct, (long)m);
    session.export_model(out + "/mlp_trained.onnx");
    write_npz(out + "/inputs.npz", {{"x", test["x"]}});
    write_npz(out + "/expected.npz", {{"logits", logits}});
    std::printf("exported %s/mlp_trained.onnx\n", out.c_str());
    return correct * 100 >= 95 * m ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
