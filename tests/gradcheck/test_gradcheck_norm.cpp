// Gradient checks of the norm family (BatchNormalization in training and inference form,
// LayerNormalization, InstanceNormalization, GroupNormalization; harness: tests/common/gradcheck.h),
// plus unit tests of BatchNormalization's running statistics, its evaluation behaviour
// (RunOptions training = false uses input_mean/input_var), the ONNX *_training_mode node tests
// run in training, mixed dtypes and infer errors.
#include <filesystem>

#include "onnx_import/onnx_import.h"
#include "tests/common/gradcheck.h"

using namespace otter;
using namespace otter::testing;

TEST(GradCheckNorm, BatchNormalizationTraining) {
  // The harness runs plans in training mode, so batch statistics are used and differentiated.
  for (int outputs : {1, 3}) {
    check("BatchNormalization", {P({4, 3, 2, 2}), P({3}), P({3}), Fixed(P({3})), Fixed(P({3}, 0.5, 1.5))},
          A({{"training_mode", I(1)}, {"epsilon", F(1e-3)}}), outputs);
  }
  check("BatchNormalization", {P({5, 2}), P({2}), P({2}), Fixed(P({2})), Fixed(P({2}, 0.5, 1.5))},
        A({{"training_mode", I(1)}, {"momentum", F(0.7)}}));
  // Opset <= 13 form: no training_mode; the saved_mean/saved_var outputs mark training.
  check("BatchNormalization", {P({3, 2, 3}), P({2}), P({2}), Fixed(P({2})), Fixed(P({2}, 0.5, 1.5))}, {}, 5);
}

TEST(GradCheckNorm, BatchNormalizationInference) {
  check("BatchNormalization", {P({4, 3, 2, 2}), P({3}), P({3}), Fixed(P({3})), Fixed(P({3}, 0.5, 1.5))},
        A({{"training_mode", I(0)}}));
  check("BatchNormalization", {P({2, 3, 4}), P({3}), P({3}), Fixed(P({3})), Fixed(P({3}, 0.5, 1.5))},
        A({{"epsilon", F(0.01)}}));
}

TEST(GradCheckNorm, LayerNormalization) {
  for (int64_t axis : {-1, 1}) {
    Shape norm = axis == -1 ? Shape{4} : Shape{3, 4};
    check("LayerNormalization", {P({2, 3, 4}), P(norm), P(norm)}, A({{"axis", I(axis)}}));
    check("LayerNormalization", {P({2, 3, 4}), P(norm)}, A({{"axis", I(axis)}, {"epsilon", F(1e-3)}}));
    check("LayerNormalization", {P({2, 3, 4}), P(norm), None()}, A({{"axis", I(axis)}}), 3);
  }
  // Scale and B broadcast unidirectionally to X (also along the outer dims).
  check("LayerNormalization", {P({2, 3, 4}), P({1, 4}), P({4})}, A({{"axis", I(1)}}));
  check("LayerNormalization", {P({2, 3, 4}), P({2, 1, 4}), P({3, 1})}, A({{"axis", I(-1)}}));
  check("LayerNormalization", {P({3, 5}), P({3, 5}), P({1})}, A({{"axis", I(0)}}));
}

TEST(GradCheckNorm, InstanceNormalization) {
  check("InstanceNormalization", {P({2, 3, 2, 3}), P({3}), P({3})});
  check("InstanceNormalization", {P({3, 2, 5}), P({2}), P({2})}, A({{"epsilon", F(0.01)}}));
}

TEST(GradCheckNorm, GroupNormalization) {
  check("GroupNormalization", {P({2, 4, 2, 2}), P({4}), P({4})}, A({{"num_groups", I(2)}}));
  check("GroupNormalization", {P({3, 6, 3}), P({6}), P({6})}, A({{"num_groups", I(3)}, {"epsilon", F(0.01)}}));
  // Opset 18's per-group scale and bias.
  check("GroupNormalization", {P({2, 4, 3}), P({2}), P({2})}, A({{"num_groups", I(2)}}));
}

namespace {

// A graph with input x (dtype of `xv`) and BatchNormalization over constant statistics.
struct BatchNormGraph {
  Graph g;
  int x, y, rm, rv;
  BatchNormGraph(const Tensor& xv, const std::vector<Tensor>& params, Attributes attrs) {
    g.opsets[""] = 15;
    x = g.add_value("x", xv.dtype());
    g.values[x].shape = xv.shape();
    g.values[x].shape_known = true;
    g.inputs.push_back(x);
    std::vector<int> ins = {x};
    const char* names[] = {"scale", "bias", "mean", "var"};
    for (size_t i = 0; i < params.size(); ++i) {
      int v = g.add_value(names[i], params[i].dtype());
      g.values[v].data = params[i];
      g.values[v].shape = params[i].shape();
      g.values[v].shape_known = true;
      g.values[v].is_initializer = true;
      g.initializers.push_back(v);
      ins.push_back(v);
    }
    int n = g.add_node("BatchNormalization", ins, 3, std::move(attrs), "", "bn");
    y = g.nodes[n].outputs[0];
    rm = g.nodes[n].outputs[1];
    rv = g.nodes[n].outputs[2];
    g.outputs = {y, rm, rv};
    annotate_graph(g, {});
  }
};

Tensor f32(std::vector<float> v, Shape s) { return Tensor::from_vector(v, std::move(s)); }

void expect_all_near(const Tensor& t, const std::vector<double>& want, double tol, const char* what) {
  std::vector<double> got = t.to_double_vector();
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << what << "[" << i << "]";
}

}  // namespace

TEST(BatchNormalization, RunningStatisticsAndEvaluation) {
  // X [N=2, C=2, 3]; channel 0 holds 1..6, channel 1 holds 2 * (1..6).
  Tensor x = f32({1, 2, 3, 2, 4, 6, 4, 5, 6, 8, 10, 12}, {2, 2, 3});
  std::vector<float> scale = {1.5f, 0.5f}, bias = {0.1f, -0.2f}, mean = {0.5f, -1.0f}, var = {2.0f, 0.25f};
  const double momentum = 0.8, eps = 1e-3;
  BatchNormGraph bn(x, {f32(scale, {2}), f32(bias, {2}), f32(mean, {2}), f32(var, {2})},
                    A({{"training_mode", I(1)}, {"momentum", F(momentum)}, {"epsilon", F(eps)}}));
  PlanOptions options;
  options.targets = {bn.y, bn.rm, bn.rv};
  Plan plan(bn.g, {{bn.x, x.shape()}}, options);

  // Batch statistics per channel (mean of 1..6 = 3.5, biased variance 35/12; channel 1 doubled).
  double bm[2] = {3.5, 7.0}, bv[2] = {35.0 / 12.0, 4 * 35.0 / 12.0};
  std::vector<double> xs = x.to_double_vector();
  auto expected_y = [&](const double* m, const double* v) {
    std::vector<double> y(12);
    for (int n = 0; n < 2; ++n)
      for (int c = 0; c < 2; ++c)
        for (int k = 0; k < 3; ++k) {
          int i = (n * 2 + c) * 3 + k;
          y[i] = scale[c] * (xs[i] - m[c]) / std::sqrt(v[c] + eps) + bias[c];
        }
    return y;
  };

  RunOptions train;
  train.training = true;
  plan.run({{bn.x, x}}, train);
  expect_all_near(plan.value(bn.rm), {mean[0] * momentum + bm[0] * (1 - momentum), mean[1] * momentum + bm[1] * (1 - momentum)},
                  1e-5, "running_mean");
  expect_all_near(plan.value(bn.rv), {var[0] * momentum + bv[0] * (1 - momentum), var[1] * momentum + bv[1] * (1 - momentum)},
                  1e-5, "running_var");
  expect_all_near(plan.value(bn.y), expected_y(bm, bv), 1e-5, "Y (training)");

  // Evaluation: the running statistics (the inputs) normalise X; the outputs pass them through.
  RunOptions eval;
  eval.training = false;
  plan.run({{bn.x, x}}, eval);
  double im[2] = {mean[0], mean[1]}, iv[2] = {var[0], var[1]};
  expect_all_near(plan.value(bn.y), expected_y(im, iv), 1e-5, "Y (eval)");
  expect_all_near(plan.value(bn.rm), {mean[0], mean[1]}, 0, "running_mean (eval)");
  expect_all_near(plan.value(bn.rv), {var[0], var[1]}, 0, "running_var (eval)");
}

TEST(BatchNormalization, HalfInputWithFloatStatistics) {
  // Mixed precision: X float16, scale/B/mean/var float32 (T vs T1/T2).
  Tensor x32 = f32({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2});
  Tensor x = x32.cast(DType::Float16);
  BatchNormGraph bn(x, {f32({1, 2}, {2}), f32({0, 1}, {2}), f32({0, 0}, {2}), f32({1, 1}, {2})},
                    A({{"training_mode", I(1)}}));
  EXPECT_EQ(bn.g.values[bn.y].dtype, DType::Float16);
  EXPECT_EQ(bn.g.values[bn.rm].dtype, DType::Float32);
  PlanOptions options;
  options.targets = {bn.y, bn.rm, bn.rv};
  Plan plan(bn.g, {{bn.x, x.shape()}}, options);
  RunOptions ro;
  plan.run({{bn.x, x}}, ro);
  // Channel 0: 1, 2, 5, 6 (mean 3.5, var 4.25); channel 1: 3, 4, 7, 8 (mean 5.5, var 4.25).
  expect_all_near(plan.value(bn.rm), {0.1 * 3.5, 0.1 * 5.5}, 1e-6, "running_mean");
  expect_all_near(plan.value(bn.rv), {0.9 + 0.1 * 4.25, 0.9 + 0.1 * 4.25}, 1e-6, "running_var");
  double inv = 1 / std::sqrt(4.25 + 1e-5);
  expect_all_near(plan.value(bn.y),
                  {-2.5 * inv, -1.5 * inv, 2 * -2.5 * inv + 1, 2 * -1.5 * inv + 1, 1.5 * inv, 2.5 * inv,
                   2 * 1.5 * inv + 1, 2 * 2.5 * inv + 1},
                  4e-3, "Y");
}

namespace {

void expect_infer_error(const std::string& op, std::vector<Shape> shapes, Attributes attrs, const std::string& needle) {
  Graph g;
  g.opsets[""] = 21;
  std::vector<int> ins;
  for (size_t i = 0; i < shapes.size(); ++i) {
    int v = g.add_value("in" + std::to_string(i), DType::Float32);
    g.values[v].shape = shapes[i];
    g.values[v].shape_known = true;
    g.inputs.push_back(v);
    ins.push_back(v);
  }
  g.add_node(op, ins, 1, std::move(attrs), "", "norm");
  try {
    annotate_graph(g, {});
    ADD_FAILURE() << op << ": expected an error containing '" << needle << "'";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(NormInfer, ClearErrors) {
  expect_infer_error("BatchNormalization", {{2, 3, 4}, {4}, {3}, {3}, {3}}, {}, "4 elements but X has 3 channels");
  expect_infer_error("BatchNormalization", {{3}, {3}, {3}, {3}, {3}}, {}, "rank >= 2");
  expect_infer_error("BatchNormalization", {{2, 3}, {3}, {3}, {3}, {3}}, A({{"training_mode", I(2)}}), "training_mode");
  expect_infer_error("LayerNormalization", {{2, 3, 4}, {3}}, {}, "does not broadcast");
  expect_infer_error("LayerNormalization", {{2, 3}, {3}}, A({{"axis", I(2)}}), "out of range");
  expect_infer_error("LayerNormalization", {{2, 3}, {3}}, A({{"stash_type", I(7)}}), "stash_type");
  expect_infer_error("InstanceNormalization", {{2, 3, 4}, {2}, {3}}, {}, "2 elements but X has 3 channels");
  expect_infer_error("GroupNormalization", {{2, 6, 4}, {6}, {6}}, A({{"num_groups", I(4)}}), "does not divide");
  expect_infer_error("GroupNormalization", {{2, 6, 4}, {4}, {4}}, A({{"num_groups", I(3)}}), "expected C = 6");
  expect_infer_error("GroupNormalization", {{2, 6, 4}, {6}, {6}}, {}, "num_groups is required");
}

TEST(BatchNormalization, TrainingModeNodeTestsRunInTraining) {
  // The ONNX node tests *_training_mode expect batch statistics; the conformance runner runs in
  // evaluation (where Otter uses input_mean/input_var), so they are checked here in training.
  namespace fs = std::filesystem;
  for (const char* name : {"test_batchnorm_example_training_mode", "test_batchnorm_epsilon_training_mode"}) {
    SCOPED_TRACE(name);
    fs::path dir = fs::path(OTTER_TESTDATA) / "node" / name;
    if (!fs::exists(dir)) GTEST_SKIP() << dir << " is missing: run the generate_testdata fixture";
    LoadedModel m = load_model_file((dir / "model.onnx").string());
    Graph& g = m.graph;
    fs::path data = dir / "test_data_set_0";
    std::map<int, Shape> shapes;
    std::map<int, Tensor> feeds;
    for (size_t i = 0; i < g.inputs.size(); ++i) {
      Tensor t = load_tensor_file((data / ("input_" + std::to_string(i) + ".pb")).string());
      shapes[g.inputs[i]] = t.shape();
      feeds[g.inputs[i]] = t;
    }
    PlanOptions options;
    options.targets = g.outputs;
    Plan plan(g, shapes, options);
    RunOptions ro;
    ro.training = true;
    plan.run(feeds, ro);
    ASSERT_EQ(g.outputs.size(), 3u);
    for (size_t i = 0; i < g.outputs.size(); ++i) {
      Tensor want = load_tensor_file((data / ("output_" + std::to_string(i) + ".pb")).string());
      std::vector<double> w = want.to_double_vector();
      std::vector<double> got = plan.value(g.outputs[i]).to_double_vector();
      ASSERT_EQ(got.size(), w.size());
      for (size_t k = 0; k < w.size(); ++k) EXPECT_NEAR(got[k], w[k], 1e-5 + 1e-4 * std::fabs(w[k])) << "output " << i << "[" << k << "]";
    }
  }
}

namespace {

// Runs one kernel directly (large sizes take the multi-threaded paths).
void run_kernel(const std::string& domain, const std::string& op, Attributes attrs, std::vector<const Tensor*> in,
                std::vector<Tensor*> out) {
  Node node;
  node.op_type = op;
  node.domain = domain;
  node.attrs = std::move(attrs);
  KernelFn fn = KernelRegistry::instance().find(domain, op, Device::CPU, in.at(1)->dtype());
  ASSERT_NE(fn, nullptr);
  KernelContext ctx(node);
  ctx.inputs = std::move(in);
  ctx.outputs = std::move(out);
  fn(ctx);
}

Tensor random_tensor(Shape s, double lo = -1, double hi = 1) { return P(std::move(s), lo, hi).data; }

}  // namespace

TEST(NormKernels, LargeGradientsMatchDirectSums) {
  // LayerNormalization over [rows, cols]: dScale = sum_r dy * xhat, dB = sum_r dy.
  {
    const int64_t rows = 300, cols = 256;
    Tensor x = random_tensor({rows, cols}), dy = random_tensor({rows, cols}), w = random_tensor({cols}), b = random_tensor({cols});
    Tensor dx(DType::Float64, {rows, cols}), dw(DType::Float64, {cols}), db(DType::Float64, {cols});
    run_kernel("otter", "LayerNormalizationGrad", A({{"axis", I(-1)}}), {&dy, &x, &w, &b}, {&dx, &dw, &db});
    std::vector<double> ew(cols, 0.0), eb(cols, 0.0);
    const double* px = x.data<double>();
    const double* pdy = dy.data<double>();
    for (int64_t r = 0; r < rows; ++r) {
      double m = 0, v = 0;
      for (int64_t j = 0; j < cols; ++j) m += px[r * cols + j] / cols;
      for (int64_t j = 0; j < cols; ++j) v += (px[r * cols + j] - m) * (px[r * cols + j] - m) / cols;
      for (int64_t j = 0; j < cols; ++j) {
        ew[j] += pdy[r * cols + j] * (px[r * cols + j] - m) / std::sqrt(v + 1e-5);
        eb[j] += pdy[r * cols + j];
      }
    }
    expect_all_near(dw, ew, 1e-9, "LayerNormalization dScale");
    expect_all_near(db, eb, 1e-9, "LayerNormalization dB");
  }
  // BatchNormalization with batch statistics over [N, C, S]: dB = sum dy; sum over the batch of
  // dX is 0 per channel (the mean's gradient).
  {
    const int64_t n = 64, c = 4, s = 512;
    Tensor x = random_tensor({n, c, s}), dy = random_tensor({n, c, s}), scale = random_tensor({c});
    Tensor mean = random_tensor({c}), var = random_tensor({c}, 0.5, 1.5), bias = random_tensor({c});
    Tensor dx(DType::Float64, {n, c, s}), ds(DType::Float64, {c}), db(DType::Float64, {c});
    run_kernel("otter", "BatchNormalizationGrad", A({{"training_mode", I(1)}}), {&dy, &x, &scale, &mean, &var, &bias},
               {&dx, &ds, &db});
    std::vector<double> eb(c, 0.0), sum_dx(c, 0.0);
    for (int64_t i = 0; i < n * c * s; ++i) {
      eb[(i / s) % c] += dy.data<double>()[i];
      sum_dx[(i / s) % c] += dx.data<double>()[i];
    }
    expect_all_near(db, eb, 1e-9, "BatchNormalization dB");
    expect_all_near(Tensor::from_vector(sum_dx, {c}), std::vector<double>(c, 0.0), 1e-8, "BatchNormalization sum dX");
  }
}
