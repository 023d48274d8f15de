// The digits MLP fixture (examples/digits: Gemm, Relu, Gemm + cross-entropy; data generated into
// OTTER_TESTDATA/digits by the testdata fixture), shared by the end-to-end tests
// (tests/e2e/test_digits.cpp) and the GPU session tests (tests/gpu/test_cuda_session.cpp): the
// data in batches, a training configuration, test accuracy and the parameters as one vector.
#pragma once
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "runtime/train/npz.h"
#include "runtime/train/session.h"
#include "tests/common/batches.h"
#include "tests/common/testdata.h"

namespace otter::testing {

inline std::string digits_dir() { return testdata_dir() + "/digits"; }

struct DigitsData {
  std::map<std::string, Tensor> train = read_npz(digits_dir() + "/train.npz");
  std::map<std::string, Tensor> test = read_npz(digits_dir() + "/test.npz");
  // Batch i of `size` rows, in order around the training set (the last of a pass may be shorter).
  std::map<std::string, Tensor> batch(int64_t i, int64_t size = 32) const {
    int64_t n = train.at("x").shape()[0];
    int64_t b = (i * size) % n;
    int64_t e = std::min(n, b + size);
    return {{"x", rows(train.at("x"), b, e)}, {"label", rows(train.at("y"), b, e)}};
  }
  // Batch i of exactly `size` rows: every step has the same shapes (one plan, so every step can
  // be captured as a CUDA graph).
  std::map<std::string, Tensor> full_batch(int64_t i, int64_t size = 32) const {
    int64_t n = train.at("x").shape()[0];
    int64_t b = (i * size) % (n - size);
    return {{"x", rows(train.at("x"), b, b + size)}, {"label", rows(train.at("y"), b, b + size)}};
  }
};

// Cross-entropy on the logits, optimizer `opt` (SGD with momentum 0.9) at learning rate lr.
inline TrainConfig digits_config(const std::string& opt, double lr) {
  TrainConfig c;
  c.loss.kind = "cross_entropy";
  c.loss.output = "logits";
  c.optimizer.kind = opt;
  c.optimizer.lr = lr;
  if (opt == "sgd") c.optimizer.momentum = 0.9;
  return c;
}

// The share of the test set the session classifies correctly.
inline double digits_accuracy(Session& s, const DigitsData& d) {
  auto out = s.eval_step({{"x", d.test.at("x")}});
  const float* p = out["logits"].data<float>();
  const int64_t* y = d.test.at("y").data<int64_t>();
  int64_t m = out["logits"].shape()[0], correct = 0;
  for (int64_t i = 0; i < m; ++i) {
    int64_t best = 0;
    for (int64_t c = 1; c < 10; ++c) if (p[i * 10 + c] > p[i * 10 + best]) best = c;
    correct += best == y[i];
  }
  return static_cast<double>(correct) / m;
}

// Every parameter's values (FP32 masters), in the session's parameter order.
inline std::vector<float> all_params(const Session& s) {
  std::vector<float> r;
  for (auto& p : s.parameters()) {
    Tensor t = s.get_parameter(p.name);
    r.insert(r.end(), t.data<float>(), t.data<float>() + t.numel());
  }
  return r;
}

}  // namespace otter::testing
