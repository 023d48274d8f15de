// Finite-difference checks of every gradient builder, in float64: for a one-op graph y = op(x...)
// the loss sum(y * R) (R random) is differentiated by autodiff and by central differences
// (eps 1e-6) with respect to every floating input. Tolerance |analytic - numeric| <= 1e-6 + 1e-5
// |numeric|: central differences in float64 are accurate to about eps^2 * |f'''| + 1e-16 / eps,
// far below it. Inputs are kept away from kinks (Relu, Abs at 0) and poles (Log, Div at 0).
#include <gtest/gtest.h>

#include <random>

#include "runtime/exec/infer.h"
#include "runtime/exec/plan.h"
#include "runtime/passes/autodiff.h"

using namespace otter;

namespace {

struct In {
  Tensor data;
  bool differentiable;
};

std::mt19937_64& rng() {
  static std::mt19937_64 r(1234);
  return r;
}

// Uniform in [lo, hi].
In P(Shape s, double lo = -1.0, double hi = 1.0) {
  Tensor t(DType::Float64, s);
  std::uniform_real_distribution<double> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = u(rng());
  return {t, true};
}
// Magnitude in [0.5, 1.5] with a random sign: away from 0.
In Pm(Shape s) {
  In p = P(s, 0.5, 1.5);
  std::bernoulli_distribution b(0.5);
  for (int64_t i = 0; i < p.data.numel(); ++i)
    if (b(rng())) p.data.data<double>()[i] *= -1;
  return p;
}
In Ci(std::vector<int64_t> v) { return {Tensor::from_vector(v, {static_cast<int64_t>(v.size())}), false}; }
In Ci(std::vector<int64_t> v, Shape s) { return {Tensor::from_vector(v, s), false}; }
In Cd(double v) { return {Tensor::scalar(v), false}; }
In Cb(std::vector<bool> v, Shape s) {
  Tensor t(DType::Bool, s);
  for (size_t i = 0; i < v.size(); ++i) t.data<bool>()[i] = v[i];
  return {t, false};
}
In Fixed(In p) { p.differentiable = false; return p; }
In None() { return {Tensor(), false}; }

void check(const std::string& op, std::vector<In> inputs, Attributes attrs = {}, int num_outputs = 1,
           const std::string& domain = "", int checked_output = 0) {
  SCOPED_TRACE(op);
  Graph g;
  g.opsets[""] = 21;
  std::vector<int> ins, params;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].data.defined()) { ins.push_back(-1); continue; }
    int v = g.add_value("in" + std::to_string(i), inputs[i].data.dtype());
    g.values[v].data = inputs[i].data;
    g.values[v].shape = inputs[i].data.shape();
    g.values[v].shape_known = true;
    g.values[v].is_initializer = true;
    g.initializers.push_back(v);
    ins.push_back(v);
    if (inputs[i].differentiable) params.push_back(v);
  }
  int node = g.add_node(op, ins, num_outputs, attrs, domain, "op");
  int y = g.nodes[node].outputs[checked_output];
  std::set<int> vars(params.begin(), params.end());
  annotate_graph(g, vars);
  // loss = ReduceSum(y * R)
  Tensor r(g.values[y].dtype, g.values[y].shape);
  std::uniform_real_distribution<double> u(-1, 1);
  for (int64_t i = 0; i < r.numel(); ++i) r.data<double>()[i] = u(rng());
  int rv = g.add_value("R", DType::Float64);
  g.values[rv].data = r;
  g.values[rv].shape = r.shape();
  g.values[rv].shape_known = true;
  g.values[rv].is_initializer = true;
  g.initializers.push_back(rv);
  int prod = g.nodes[g.add_node("Mul", {y, rv}, 1)].outputs[0];
  Attributes keep;
  keep["keepdims"] = Attribute::of_int(0);
  int loss = g.nodes[g.add_node("ReduceSum", {prod}, 1, keep)].outputs[0];
  annotate_graph(g, vars);
  Gradients grads = build_gradients(g, loss, params);
  annotate_graph(g, vars);
  ASSERT_TRUE(grads.unreachable.empty());

  PlanOptions options;
  options.targets.push_back(loss);
  for (int p : params) {
    options.bound[p] = g.values[p].data;  // shares memory: perturbing the tensor perturbs the plan's input
    options.variables.insert(p);
    options.targets.push_back(grads.of_param[p]);
  }
  std::map<int, Shape> shapes = {{grads.seed, {}}};
  Plan plan(g, shapes, options);
  std::map<int, Tensor> feeds = {{grads.seed, Tensor::scalar<double>(1.0)}};
  RunOptions ro;
  ro.seed = 7;
  auto loss_at = [&]() {
    plan.run(feeds, ro);
    return plan.value(loss).data<double>()[0];
  };
  plan.run(feeds, ro);
  std::map<int, std::vector<double>> analytic;
  for (int p : params) analytic[p] = plan.value(grads.of_param[p]).to_double_vector();
  const double eps = 1e-6;
  for (int p : params) {
    double* x = g.values[p].data.data<double>();
    for (int64_t i = 0; i < g.values[p].data.numel(); ++i) {
      double keep_x = x[i];
      x[i] = keep_x + eps;
      double up = loss_at();
      x[i] = keep_x - eps;
      double down = loss_at();
      x[i] = keep_x;
      double numeric = (up - down) / (2 * eps);
      double a = analytic[p][static_cast<size_t>(i)];
      ASSERT_NEAR(a, numeric, 1e-6 + 1e-5 * std::fabs(numeric))
          << "d loss / d " << g.values[p].name << "[" << i << "]";
    }
  }
}

Attributes A(std::initializer_list<std::pair<const std::string, Attribute>> l) { return Attributes(l); }
Attribute I(int64_t v) { return Attribute::of_int(v); }
Attribute F(double v) { return Attribute::of_float(v); }
Attribute Is(std::vector<int64_t> v) { return Attribute::of_ints(v); }
Attribute S(const std::string& v) { return Attribute::of_string(v); }

}  // namespace

TEST(GradCheck, Unary) {
  for (int seed = 0; seed < 3; ++seed) {
    Shape s = {2, 3 + seed};
    check("Abs", {Pm(s)});
    check("Neg", {P(s)});
    check("Sqrt", {P(s, 0.5, 2.0)});
    check("Reciprocal", {Pm(s)});
    check("Exp", {P(s)});
    check("Log", {P(s, 0.5, 2.0)});
    check("Erf", {P(s)});
    check("Relu", {Pm(s)});
    check("LeakyRelu", {Pm(s)}, A({{"alpha", F(0.2)}}));
    check("Sigmoid", {P(s, -3, 3)});
    check("Tanh", {P(s)});
    check("Identity", {P(s)});
    check("Clip", {Pm(s), Cd(-0.9), Cd(0.8)});
    check("Clip", {Pm(s), None(), Cd(0.7)});
    check("Cast", {P(s)}, A({{"to", I(11)}}));
  }
}

TEST(GradCheck, BinaryBroadcast) {
  std::vector<std::pair<Shape, Shape>> shapes = {{{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{2, 1, 3}, {4, 1}}, {{}, {2, 3}}};
  for (auto& s : shapes) {
    check("Add", {P(s.first), P(s.second)});
    check("Sub", {P(s.first), P(s.second)});
    check("Mul", {P(s.first), P(s.second)});
    check("Div", {P(s.first), Pm(s.second)});
    check("Pow", {P(s.first, 0.5, 2.0), P(s.second)});
  }
  check("Where", {Cb({true, false, true, false, false, true}, {2, 3}), P({2, 3}), P({3})});
}

TEST(GradCheck, MatMulAndGemm) {
  check("MatMul", {P({3, 4}), P({4, 5})});
  check("MatMul", {P({2, 3, 4}), P({4, 5})});
  check("MatMul", {P({2, 3, 4}), P({1, 4, 5})});
  check("MatMul", {P({2, 1, 3, 4}), P({3, 4, 2})});
  check("MatMul", {P({4}), P({2, 4, 5})});
  check("MatMul", {P({2, 3, 4}), P({4})});
  check("MatMul", {P({4}), P({4})});
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      Shape a = ta ? Shape{4, 3} : Shape{3, 4}, b = tb ? Shape{5, 4} : Shape{4, 5};
      check("Gemm", {P(a), P(b), P({5})}, A({{"transA", I(ta)}, {"transB", I(tb)}, {"alpha", F(0.7)}, {"beta", F(1.3)}}));
      check("Gemm", {P(a), P(b), P({3, 1})}, A({{"transA", I(ta)}, {"transB", I(tb)}}));
      check("Gemm", {P(a), P(b)}, A({{"transA", I(ta)}, {"transB", I(tb)}}));
    }
}

TEST(GradCheck, SoftmaxAndReductions) {
  for (int64_t axis : {0, 1, -1}) {
    check("Softmax", {P({3, 4, 5})}, A({{"axis", I(axis)}}));
    check("LogSoftmax", {P({3, 4, 5})}, A({{"axis", I(axis)}}));
  }
  for (int keep = 0; keep < 2; ++keep) {
    check("ReduceSum", {P({3, 4, 5}), Ci({1})}, A({{"keepdims", I(keep)}}));
    check("ReduceSum", {P({3, 4, 5}), Ci({0, -1})}, A({{"keepdims", I(keep)}}));
    check("ReduceSum", {P({3, 4})}, A({{"keepdims", I(keep)}}));
    check("ReduceMean", {P({3, 4, 5}), Ci({2})}, A({{"keepdims", I(keep)}}));
    check("ReduceMean", {P({3, 4})}, A({{"keepdims", I(keep)}}));
  }
}

TEST(GradCheck, ShapeOps) {
  check("Reshape", {P({2, 3, 4}), Ci({4, -1})});
  check("Flatten", {P({2, 3, 4})}, A({{"axis", I(2)}}));
  check("Transpose", {P({2, 3, 4})}, A({{"perm", Is({1, 2, 0})}}));
  check("Squeeze", {P({2, 1, 3}), Ci({1})});
  check("Unsqueeze", {P({2, 3}), Ci({0, -1})});
  check("Concat", {P({2, 3}), P({2, 2}), P({2, 1})}, A({{"axis", I(1)}}));
  check("Split", {P({2, 6}), Ci({2, 4})}, A({{"axis", I(1)}}), 2, "", 1);
  check("Split", {P({4, 3})}, A({{"axis", I(0)}}), 2, "", 0);
  check("Slice", {P({5, 6}), Ci({1, -1}), Ci({4, 0}), Ci({0, 1}), Ci({2, -2})});
  check("Gather", {P({5, 3}), Ci({0, 2, 2, 4}, {2, 2})}, A({{"axis", I(0)}}));
  check("Gather", {P({3, 5}), Ci({-1, 1, 1})}, A({{"axis", I(1)}}));
  check("Expand", {P({3, 1}), Ci({2, 3, 4})});
}

TEST(GradCheck, Losses) {
  for (const char* red : {"mean", "sum", "none"}) {
    check("SoftmaxCrossEntropyLoss", {P({4, 5}), Ci({0, 3, 4, 1}, {4})}, A({{"reduction", S(red)}}));
    check("SoftmaxCrossEntropyLoss", {P({2, 3, 4}), Ci({0, 2, 1, 1, 0, 2, 2, 0}, {2, 4})},
          A({{"reduction", S(red)}, {"ignore_index", I(2)}}));
    check("SoftmaxCrossEntropyLoss", {P({4, 3}), Ci({0, 2, 1, 1}, {4}), Fixed(P({3}, 0.5, 1.5))}, A({{"reduction", S(red)}}));
    check("NegativeLogLikelihoodLoss", {P({4, 5}), Ci({0, 3, 4, 1}, {4})}, A({{"reduction", S(red)}}));
    check("NegativeLogLikelihoodLoss", {P({2, 3, 4}), Ci({0, 2, 1, 1, 0, 2, 2, 0}, {2, 4}), Fixed(P({3}, 0.5, 1.5))},
          A({{"reduction", S(red)}, {"ignore_index", I(1)}}));
  }
}

TEST(GradCheck, DropoutTrainingMode) {
  // The mask is a function of (seed, step, node), identical on every run of the plan.
  check("Dropout", {P({4, 8}), Cd(0.3)});
}
