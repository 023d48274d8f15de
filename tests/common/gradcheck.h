// The finite-difference gradient checker shared by the gradcheck tests: for a one-op graph
// y = op(x...) the loss sum(y * R) (R random) is differentiated by autodiff and by central
// differences (eps 1e-6) in float64 with respect to every differentiable input. Tolerance
// |analytic - numeric| <= 1e-6 + 1e-5 |numeric|: central differences in float64 are accurate to
// about eps^2 |third derivative| + 1e-16 / eps, far below it. Inputs: P (random), Pm (random
// sign, magnitude in [0.5, 1.5]: away from kinks and poles), Ci (int64 constant), Cd (double
// scalar constant), Cb (bool constant), Fixed (a float input not differentiated), None (an
// omitted optional input). check(op, inputs, attrs, num_outputs, domain, checked_output);
// check_gradients(graph, params, y, run options) for a whole graph.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "runtime/exec/infer.h"
#include "runtime/exec/plan.h"
#include "runtime/passes/autodiff.h"

namespace otter::testing {


struct In {
  Tensor data;
  bool differentiable;
};

inline std::mt19937_64& rng() {
  static std::mt19937_64 r(1234);
  return r;
}

// Uniform in [lo, hi].
inline In P(Shape s, double lo = -1.0, double hi = 1.0) {
  Tensor t(DType::Float64, s);
  std::uniform_real_distribution<double> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = u(rng());
  return {t, true};
}
// Magnitude in [0.5, 1.5] with a random sign: away from 0.
inline In Pm(Shape s) {
  In p = P(s, 0.5, 1.5);
  std::bernoulli_distribution b(0.5);
  for (int64_t i = 0; i < p.data.numel(); ++i)
    if (b(rng())) p.data.data<double>()[i] *= -1;
  return p;
}
inline In Ci(std::vector<int64_t> v) { return {Tensor::from_vector(v, {static_cast<int64_t>(v.size())}), false}; }
inline In Ci(std::vector<int64_t> v, Shape s) { return {Tensor::from_vector(v, s), false}; }
inline In Cd(double v) { return {Tensor::scalar(v), false}; }
inline In Cb(std::vector<bool> v, Shape s) {
  Tensor t(DType::Bool, s);
  for (size_t i = 0; i < v.size(); ++i) t.data<bool>()[i] = v[i];
  return {t, false};
}
inline In Fixed(In p) { p.differentiable = false; return p; }
inline In None() { return {Tensor(), false}; }

// The shared part of every check: g holds the parameters `params` (float64 initializers) and the
// checked value y; adds loss = ReduceSum(y * R), differentiates it, and compares each gradient
// element with central differences. require_finite: also fail on a non-finite loss or gradient
// with a message saying so (graphs whose masking could produce them).
inline void check_gradients(Graph& g, const std::vector<int>& params, int y, const RunOptions& ro,
                            bool require_finite = false) {
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
  Plan plan(g, {{grads.seed, {}}}, options);
  std::map<int, Tensor> feeds = {{grads.seed, Tensor::scalar<double>(1.0)}};
  auto loss_at = [&]() {
    plan.run(feeds, ro);
    return plan.value(loss).data<double>()[0];
  };
  double base = loss_at();
  if (require_finite) {
    ASSERT_TRUE(std::isfinite(base)) << "the loss is not finite";
  }
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
      if (require_finite) {
        ASSERT_TRUE(std::isfinite(a)) << "d loss / d " << g.values[p].name << "[" << i << "] is " << a;
      }
      ASSERT_NEAR(a, numeric, 1e-6 + 1e-5 * std::fabs(numeric))
          << "d loss / d " << g.values[p].name << "[" << i << "]";
    }
  }
}

inline void check(const std::string& op, std::vector<In> inputs, Attributes attrs = {}, int num_outputs = 1,
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
  RunOptions ro;
  ro.seed = 7;
  check_gradients(g, params, g.nodes[node].outputs[checked_output], ro);
}

inline Attributes A(std::initializer_list<std::pair<const std::string, Attribute>> l) { return Attributes(l); }
inline Attribute I(int64_t v) { return Attribute::of_int(v); }
inline Attribute F(double v) { return Attribute::of_float(v); }
inline Attribute Is(std::vector<int64_t> v) { return Attribute::of_ints(v); }
inline Attribute S(const std::string& v) { return Attribute::of_string(v); }


}  // namespace otter::testing
