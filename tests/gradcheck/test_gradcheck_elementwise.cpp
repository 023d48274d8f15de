// Finite-difference checks of the gradients of the activations and unary math ops (Sin, Cos,
// Atan, Softplus, Elu, Selu, HardSigmoid, HardSwish, Mish, Gelu), PRelu, the variadic
// Max/Min/Sum/Mean and the reductions ReduceMax/Min/L1/L2/SumSquare/Prod/LogSum/LogSumExp
// (harness and tolerance: tests/common/gradcheck.h); and a check that the piecewise-constant
// ops (Sign, Round, Floor, Ceil) pass no gradient back; Mod's dividend gradient.
#include "tests/common/gradcheck.h"

using namespace otter;
using namespace otter::testing;

namespace {

// Random values in [0.5, 1.5] times a sign from `signs` (cycled): for inputs whose gradient
// needs values away from zero (ReduceL1's kink, ReduceProd's y / x).
In Signed(Shape s, std::vector<int> signs) {
  In p = P(s, 0.5, 1.5);
  for (int64_t i = 0; i < p.data.numel(); ++i)
    p.data.data<double>()[i] *= signs[static_cast<size_t>(i) % signs.size()];
  return p;
}

}  // namespace

TEST(GradCheckElementwise, Activations) {
  for (int seed = 0; seed < 3; ++seed) {
    Shape s = {2, 3 + seed};
    check("Sin", {P(s, -3, 3)});
    check("Cos", {P(s, -3, 3)});
    check("Atan", {P(s, -3, 3)});
    check("Softplus", {P(s, -4, 4)});
    check("Elu", {Pm(s)});
    check("Elu", {Pm(s)}, A({{"alpha", F(0.3)}}));
    check("Selu", {Pm(s)});
    check("Selu", {Pm(s)}, A({{"alpha", F(1.2)}, {"gamma", F(0.8)}}));
    // Kinks of HardSigmoid at alpha x + beta in {0, 1}; of HardSwish at +-3: the random values
    // fall within eps of them with negligible probability, and cover all three pieces.
    check("HardSigmoid", {P(s, -4, 4)});
    check("HardSigmoid", {P(s, -3, 3)}, A({{"alpha", F(0.5)}, {"beta", F(0.3)}}));
    check("HardSwish", {P(s, -5, 5)});
    check("Mish", {P(s, -3, 3)});
    check("Gelu", {P(s, -3, 3)});
    check("Gelu", {P(s, -3, 3)}, A({{"approximate", S("none")}}));
    check("Gelu", {P(s, -3, 3)}, A({{"approximate", S("tanh")}}));
  }
}

// Sign, Round, Floor and Ceil have a zero gradient: no gradient node is built, so a parameter
// reached only through them has no differentiable path to the loss.
TEST(GradCheckElementwise, PiecewiseConstantPassNothing) {
  for (const char* op : {"Sign", "Round", "Floor", "Ceil"}) {
    SCOPED_TRACE(op);
    Graph g;
    g.opsets[""] = 21;
    In x = P({2, 3});
    int v = g.add_value("x", DType::Float64);
    g.values[v].data = x.data;
    g.values[v].shape = x.data.shape();
    g.values[v].shape_known = true;
    g.values[v].is_initializer = true;
    g.initializers.push_back(v);
    int y = g.nodes[g.add_node(op, {v}, 1)].outputs[0];
    Attributes keep;
    keep["keepdims"] = Attribute::of_int(0);
    int loss = g.nodes[g.add_node("ReduceSum", {y}, 1, keep)].outputs[0];
    std::set<int> vars = {v};
    annotate_graph(g, vars);
    Gradients grads = build_gradients(g, loss, {v});
    ASSERT_EQ(grads.unreachable.size(), 1u);
    EXPECT_EQ(grads.unreachable[0], v);
  }
}

TEST(GradCheckElementwise, PRelu) {
  // slope broadcast to X (unidirectionally): per channel, scalar, trailing dims, full shape.
  std::vector<std::pair<Shape, Shape>> shapes = {
      {{2, 3, 4}, {3, 1}}, {{2, 3, 4}, {1}}, {{2, 3, 4}, {4}}, {{2, 3, 4}, {2, 3, 4}}, {{3, 4}, {}}, {{2, 3, 2, 2}, {3, 1, 1}}};
  for (auto& s : shapes) {
    check("PRelu", {Pm(s.first), P(s.second)});
    check("PRelu", {Pm(s.first), Fixed(P(s.second))});
  }
}

// Min/Max: random values are distinct (no ties within eps) with probability 1.
TEST(GradCheckElementwise, VariadicBroadcast) {
  std::vector<std::vector<Shape>> cases = {
      {{3, 4}},                           // one input
      {{3, 4}, {3, 4}},                   // same shapes
      {{3, 4}, {4}},                      // broadcast
      {{2, 1, 3}, {4, 1}, {3}},           // three inputs, all broadcast
      {{}, {2, 3}, {1, 3}, {2, 1}},       // scalar among four
  };
  for (auto& shapes : cases) {
    for (const char* op : {"Max", "Min", "Sum", "Mean"}) {
      std::vector<In> inputs;
      for (auto& s : shapes) inputs.push_back(P(s));
      check(op, inputs);
    }
  }
  // Some inputs fixed (not differentiated).
  check("Max", {P({3, 4}), Fixed(P({4})), P({3, 1})});
  check("Mean", {Fixed(P({3, 4})), P({4})});
}

TEST(GradCheckElementwise, Reductions) {
  struct Axes {
    bool given;
    std::vector<int64_t> axes;
  };
  std::vector<Axes> variants = {{true, {1}}, {true, {0, -1}}, {true, {-2}}, {true, {2, 0, 1}}, {false, {}}};
  for (int keep = 0; keep < 2; ++keep) {
    for (auto& v : variants) {
      Attributes a = A({{"keepdims", I(keep)}});
      auto with_axes = [&](In x) {
        std::vector<In> in = {x};
        if (v.given) in.push_back(Ci(v.axes));
        return in;
      };
      Shape s = {3, 4, 2};
      check("ReduceMax", with_axes(P(s)), a);
      check("ReduceMin", with_axes(P(s)), a);
      check("ReduceL1", with_axes(Pm(s)), a);
      check("ReduceL2", with_axes(P(s)), a);
      check("ReduceSumSquare", with_axes(P(s)), a);
      check("ReduceLogSumExp", with_axes(P(s, -3, 3)), a);
      check("ReduceLogSum", with_axes(P(s, 0.5, 2.0)), a);
      check("ReduceProd", with_axes(Signed(s, {1, -1, 1, 1, -1})), a);
    }
  }
  // noop_with_empty_axes: each element reduced alone.
  Attributes noop = A({{"noop_with_empty_axes", I(1)}});
  for (const char* op : {"ReduceMax", "ReduceMin", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp"})
    check(op, {P({2, 3})}, noop);
  check("ReduceL1", {Pm({2, 3})}, noop);
  check("ReduceLogSum", {P({2, 3}, 0.5, 2.0)}, noop);
  check("ReduceProd", {Pm({2, 3})}, noop);
  // Rank 1 and 4.
  check("ReduceLogSumExp", {P({5}, -3, 3)}, A({{"keepdims", I(0)}}));
  check("ReduceMax", {P({2, 3, 2, 2}), Ci({1, 3})});
  check("ReduceL2", {P({2, 3, 2, 2}), Ci({0, 2})}, A({{"keepdims", I(0)}}));
}

// Ties: the gradient of ReduceMax/Max at tied extremes is split equally (checked directly: the
// finite difference is not defined there).
TEST(GradCheckElementwise, TiesSplitEqually) {
  auto grads_of = [](const std::string& op, std::vector<Tensor> xs) {
    Graph g;
    g.opsets[""] = 21;
    std::vector<int> ins, params;
    for (size_t i = 0; i < xs.size(); ++i) {
      int v = g.add_value("x" + std::to_string(i), xs[i].dtype());
      g.values[v].data = xs[i];
      g.values[v].shape = xs[i].shape();
      g.values[v].shape_known = true;
      g.values[v].is_initializer = true;
      g.initializers.push_back(v);
      ins.push_back(v);
      if (xs[i].dtype() == DType::Float64) params.push_back(v);
    }
    Attributes a;
    if (op == "ReduceMax") a["keepdims"] = Attribute::of_int(0);
    int y = g.nodes[g.add_node(op, ins, 1, a)].outputs[0];
    Attributes keep;
    keep["keepdims"] = Attribute::of_int(0);
    int loss = g.nodes[g.add_node("ReduceSum", {y}, 1, keep)].outputs[0];
    std::set<int> vars(params.begin(), params.end());
    annotate_graph(g, vars);
    Gradients gr = build_gradients(g, loss, params);
    annotate_graph(g, vars);
    PlanOptions options;
    options.targets.push_back(loss);
    for (int p : params) {
      options.bound[p] = g.values[p].data;
      options.variables.insert(p);
      options.targets.push_back(gr.of_param[p]);
    }
    Plan plan(g, {{gr.seed, {}}}, options);
    plan.run({{gr.seed, Tensor::scalar<double>(1.0)}}, RunOptions{});
    std::vector<std::vector<double>> r;
    for (int p : params) r.push_back(plan.value(gr.of_param[p]).to_double_vector());
    return r;
  };
  // ReduceMax over axis 1 of [[1, 3, 3], [2, 0, 2]] (axes: last input).
  auto r = grads_of("ReduceMax", {Tensor::from_vector<double>({1, 3, 3, 2, 0, 2}, {2, 3}),
                                  Tensor::from_vector<int64_t>({1}, {1})});
  EXPECT_EQ(r[0], (std::vector<double>{0, 0.5, 0.5, 0.5, 0, 0.5}));
  // Max of three inputs with a three-way tie in element 0 and a two-way tie in element 1.
  r = grads_of("Max", {Tensor::from_vector<double>({2, 1}, {2}), Tensor::from_vector<double>({2, 1}, {2}),
                       Tensor::from_vector<double>({2, 0}, {2})});
  std::vector<double> third = {1.0 / 3, 0.5};
  EXPECT_NEAR(r[0][0], third[0], 1e-12);
  EXPECT_NEAR(r[0][1], third[1], 1e-12);
  EXPECT_NEAR(r[2][0], third[0], 1e-12);
  EXPECT_EQ(r[2][1], 0.0);
}

// Bad attributes and shapes fail in inference with a message naming the problem.
TEST(GradCheckElementwise, InferRejectsBadInputs) {
  auto infer_fails = [](const std::string& op, std::vector<Shape> shapes, Attributes attrs, const std::string& what) {
    Graph g;
    g.opsets[""] = 21;
    std::vector<int> ins;
    for (size_t i = 0; i < shapes.size(); ++i) {
      int v = g.add_value("x" + std::to_string(i), DType::Float32);
      g.values[v].shape = shapes[i];
      g.values[v].shape_known = true;
      g.inputs.push_back(v);
      ins.push_back(v);
    }
    g.add_node(op, ins, 1, attrs);
    try {
      annotate_graph(g, {});
      ADD_FAILURE() << op << ": inference accepted the node";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  infer_fails("Gelu", {{2, 3}}, A({{"approximate", S("fast")}}), "approximate");
  infer_fails("PRelu", {{2, 3}, {4}}, {}, "unidirectionally broadcastable");
  infer_fails("PRelu", {{3}, {2, 3}}, {}, "higher rank");
  infer_fails("Max", {{2, 3}, {4}}, {}, "do not broadcast");
  infer_fails("ReduceMax", {{2, 3}}, A({{"axes", Is({2})}}), "out of range");
}

// Mod (fmod 0 and 1): the dividend's gradient is dy away from the jumps at multiples of the
// divisor (random values fall within eps of one with negligible probability); the divisor is a
// constant (no gradient is built for it).
TEST(GradCheckElementwise, Mod) {
  for (int64_t fmod : {0, 1}) {
    check("Mod", {P({2, 5}, -7, 7), Fixed(Signed({2, 5}, {1, -1}))}, A({{"fmod", I(fmod)}}));
    check("Mod", {P({3, 4}, -7, 7), Fixed(Signed({4}, {1, 1, -1, 1}))}, A({{"fmod", I(fmod)}}));  // broadcast
  }
}
