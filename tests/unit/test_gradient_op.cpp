// The Gradient pass (runtime/passes/gradient_op.h) on small IR graphs: a non-scalar y is
// differentiated as the sum of its elements, an x that y does not reach gets zeros, several
// Gradient nodes in one graph, and the errors (second-order gradients, unknown names, inputs that
// are not the xs).
#include <gtest/gtest.h>

#include "runtime/exec/infer.h"
#include "runtime/exec/plan.h"
#include "runtime/passes/gradient_op.h"

using namespace otter;

namespace {

constexpr const char* kTraining = "ai.onnx.preview.training";

int input(Graph& g, const std::string& name, Shape shape) {
  int v = g.add_value(name, DType::Float32);
  g.values[v].shape = shape;
  g.values[v].shape_known = true;
  g.inputs.push_back(v);
  return v;
}

Attributes gradient_attrs(const std::vector<std::string>& xs, const std::string& y) {
  Attributes a;
  Attribute s;
  s.kind = Attribute::Kind::Strings;
  s.strings = xs;
  a["xs"] = s;
  a["y"] = Attribute::of_string(y);
  return a;
}

Graph base(int* a, int* b, int* c, int* y) {
  Graph g;
  g.opsets[""] = 17;
  g.opsets[kTraining] = 1;
  *a = input(g, "a", {3});
  *b = input(g, "b", {3});
  *c = input(g, "c", {2});
  *y = g.nodes[g.add_node("Mul", {*a, *b}, 1, {}, "", "mul")].outputs[0];
  return g;
}

std::map<int, Tensor> feeds(const Graph& g) {
  return {{g.value_id("a"), Tensor::from_vector<float>({1, 2, 3}, {3})},
          {g.value_id("b"), Tensor::from_vector<float>({4, 5, 6}, {3})},
          {g.value_id("c"), Tensor::from_vector<float>({7, 8}, {2})}};
}

}  // namespace

TEST(GradientOp, SumOfNonScalarYAndZerosForUnreachedX) {
  int a, b, c, y;
  Graph g = base(&a, &b, &c, &y);
  int n = g.add_node("Gradient", {a, c}, 2, gradient_attrs({"a", "c"}, g.values[y].name), kTraining, "grad");
  std::vector<int> outs = g.nodes[n].outputs;
  g.outputs = {y, outs[0], outs[1]};
  annotate_graph(g, {});
  ASSERT_TRUE(has_gradient_ops(g));
  expand_gradient_ops(g);
  EXPECT_FALSE(has_gradient_ops(g));
  annotate_graph(g, {});
  PlanOptions o;
  o.targets = g.outputs;
  std::map<int, Shape> shapes = {{a, {3}}, {b, {3}}, {c, {2}}};
  Plan plan(g, shapes, o);
  plan.run(feeds(g), RunOptions());
  EXPECT_EQ(plan.value(outs[0]).to_double_vector(), (std::vector<double>{4, 5, 6}));  // d sum(a*b) / da = b
  EXPECT_EQ(plan.value(outs[1]).to_double_vector(), (std::vector<double>{0, 0}));     // c does not reach y
}

TEST(GradientOp, TwoGradientNodes) {
  int a, b, c, y;
  Graph g = base(&a, &b, &c, &y);
  int n1 = g.add_node("Gradient", {a}, 1, gradient_attrs({"a"}, g.values[y].name), kTraining, "grad_a");
  int n2 = g.add_node("Gradient", {b}, 1, gradient_attrs({"b"}, g.values[y].name), kTraining, "grad_b");
  int ga = g.nodes[n1].outputs[0], gb = g.nodes[n2].outputs[0];
  g.outputs = {ga, gb};
  annotate_graph(g, {});
  expand_gradient_ops(g);
  annotate_graph(g, {});
  PlanOptions o;
  o.targets = g.outputs;
  Plan plan(g, {{a, {3}}, {b, {3}}, {c, {2}}}, o);
  plan.run(feeds(g), RunOptions());
  EXPECT_EQ(plan.value(ga).to_double_vector(), (std::vector<double>{4, 5, 6}));
  EXPECT_EQ(plan.value(gb).to_double_vector(), (std::vector<double>{1, 2, 3}));
}

TEST(GradientOp, ErrorsNameTheProblem) {
  auto error_of = [](Graph g) {
    try {
      annotate_graph(g, {});
      expand_gradient_ops(g);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  int a, b, c, y;
  {  // Second order: y computed from a Gradient output.
    Graph g = base(&a, &b, &c, &y);
    int n = g.add_node("Gradient", {a}, 1, gradient_attrs({"a"}, g.values[y].name), kTraining, "first");
    int ga = g.nodes[n].outputs[0];
    int z = g.nodes[g.add_node("Mul", {ga, ga}, 1, {}, "", "square")].outputs[0];
    int m = g.add_node("Gradient", {a}, 1, gradient_attrs({"a"}, g.values[z].name), kTraining, "second");
    g.outputs = {g.nodes[m].outputs[0]};
    EXPECT_NE(error_of(g).find("second-order"), std::string::npos) << error_of(g);
  }
  {  // An unknown y.
    Graph g = base(&a, &b, &c, &y);
    int n = g.add_node("Gradient", {a}, 1, gradient_attrs({"a"}, "nothing"), kTraining, "grad");
    g.outputs = {g.nodes[n].outputs[0]};
    EXPECT_NE(error_of(g).find("y 'nothing' is not a value"), std::string::npos) << error_of(g);
  }
  {  // Inputs that are not the xs.
    Graph g = base(&a, &b, &c, &y);
    int n = g.add_node("Gradient", {b}, 1, gradient_attrs({"a"}, g.values[y].name), kTraining, "grad");
    g.outputs = {g.nodes[n].outputs[0]};
    EXPECT_NE(error_of(g).find("input 0 must be xs[0] 'a'"), std::string::npos) << error_of(g);
  }
}
