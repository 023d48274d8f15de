// The linear_gemm pass (runtime/passes/linear_gemm.h): MatMul(X, Transpose(W)) becomes Gemm on X's
// rows with transB. Checked in float64: the rewritten graph computes exactly the original forward
// values (up to GEMM summation order), its gradients match central differences (the harness of
// tests/common/gradcheck.h), the MatMuls it rewrites read no Transpose any more, X's rows view is
// shared by the layers reading X, and the patterns it must not touch (a permuted 3-D weight, a
// transposed value something else also reads) stay as they were.
#include "runtime/passes/linear_gemm.h"

#include "runtime/exec/infer.h"
#include "tests/common/gradcheck.h"

using namespace otter;
using namespace otter::testing;

namespace {

// A graph with float64 parameters `params` (name -> data) and the given nodes appended by `build`;
// returns the graph and the ids of the parameters.
struct Built {
  Graph g;
  std::map<std::string, int> ids;
};

int add_param(Built& b, const std::string& name, const Tensor& data) {
  int v = b.g.add_value(name, DType::Float64);
  Value& val = b.g.values[v];
  val.data = data.clone();
  val.shape = data.shape();
  val.shape_known = true;
  val.is_initializer = true;
  b.g.initializers.push_back(v);
  b.ids[name] = v;
  return v;
}

int node(Graph& g, const std::string& op, const std::vector<int>& in, Attributes a = {}) {
  return g.nodes[g.add_node(op, in, 1, std::move(a))].outputs[0];
}

Attributes perm(std::vector<int64_t> p) {
  Attributes a;
  a["perm"] = Attribute::of_ints(std::move(p));
  return a;
}

// q = X W1^T, k = X W2^T (X shared), y = q + k; X of `x_shape`, W1/W2 [5, K].
Built two_layers(const Shape& x_shape) {
  Built b;
  const int64_t k = x_shape.back();
  int x = add_param(b, "X", P(x_shape).data);
  int w1 = add_param(b, "W1", P({5, k}).data);
  int w2 = add_param(b, "W2", P({5, k}).data);
  int q = node(b.g, "MatMul", {x, node(b.g, "Transpose", {w1}, perm({1, 0}))});
  int kk = node(b.g, "MatMul", {x, node(b.g, "Transpose", {w2})});  // default perm: reversed
  int y = node(b.g, "Add", {q, kk});
  b.g.outputs.push_back(y);
  return b;
}

Tensor forward(Graph g, int y) {  // a copy: plans annotate the graph
  std::set<int> none;
  annotate_graph(g, none);
  PlanOptions o;
  o.targets = {y};
  Plan plan(g, {}, o);
  plan.run({}, RunOptions{});
  return plan.value(y).clone();
}

}  // namespace

TEST(GradCheckLinear, RewrittenLayersKeepTheirValuesAndGradients) {
  for (const Shape& xs : {Shape{3, 4}, Shape{2, 3, 4}, Shape{2, 1, 3, 4}}) {
    Built b = two_layers(xs);
    std::set<int> none;
    annotate_graph(b.g, none);
    const int y = b.g.outputs[0];
    const Tensor before = forward(b.g, y);
    ASSERT_EQ(fold_linear_transposes(b.g), 2) << shape_str(xs);
    annotate_graph(b.g, none);
    int gemms = 0, reshapes_of_x = 0;
    for (const Node& n : b.g.nodes) {
      gemms += n.op_type == "Gemm";
      reshapes_of_x += n.op_type == "Reshape" && n.inputs[0] == b.ids["X"];
      if (n.op_type == "MatMul") ADD_FAILURE() << "a MatMul is left: " << n.describe();
    }
    EXPECT_EQ(gemms, 2);
    EXPECT_EQ(reshapes_of_x, xs.size() > 2 ? 1 : 0) << "X's rows view is shared by both layers";
    EXPECT_EQ(b.g.values[y].shape, before.shape());
    const Tensor after = forward(b.g, y);
    std::vector<double> u = before.to_double_vector(), v = after.to_double_vector();
    ASSERT_EQ(u.size(), v.size());
    for (size_t i = 0; i < u.size(); ++i) EXPECT_NEAR(u[i], v[i], 1e-12) << shape_str(xs) << " element " << i;
    check_gradients(b.g, {b.ids["X"], b.ids["W1"], b.ids["W2"]}, y, RunOptions{}, true);
  }
}

TEST(GradCheckLinear, OtherPatternsAreLeftAlone) {
  Built b;
  int x = add_param(b, "X", P({2, 3, 4}).data);
  int w3 = add_param(b, "W3", P({2, 5, 4}).data);  // a batched (3-D) weight: not a linear layer
  int w = add_param(b, "W", P({5, 4}).data);
  int t3 = node(b.g, "Transpose", {w3}, perm({0, 2, 1}));
  int y3 = node(b.g, "MatMul", {x, t3});
  int t = node(b.g, "Transpose", {w}, perm({1, 0}));
  int y = node(b.g, "MatMul", {x, t});
  b.g.outputs = {y3, y, t};  // the Transpose itself is also an output: it must stay for it
  std::set<int> none;
  annotate_graph(b.g, none);
  EXPECT_EQ(fold_linear_transposes(b.g), 1);
  annotate_graph(b.g, none);
  EXPECT_EQ(b.g.nodes[b.g.values[y3].producer].op_type, "MatMul");
  EXPECT_EQ(b.g.nodes[b.g.values[t].producer].op_type, "Transpose");
  EXPECT_EQ(b.g.nodes[b.g.values[y].producer].op_type, "Reshape");
}

// nn.Linear with its bias: Add(MatMul(X, W^T), b) (either operand order) becomes Gemm(X rows, W,
// b, transB) and an Identity; the Transposes are removed; values and gradients (b's included) hold.
TEST(GradCheckLinear, BiasAddBecomesTheGemmsC) {
  for (const Shape& xs : {Shape{3, 4}, Shape{2, 3, 4}}) {
    for (bool bias_first : {false, true}) {
      Built b;
      int x = add_param(b, "X", P(xs).data);
      int w = add_param(b, "W", P({5, 4}).data);
      int bias = add_param(b, "B", P({5}).data);
      int mm = node(b.g, "MatMul", {x, node(b.g, "Transpose", {w}, perm({1, 0}))});
      int y = node(b.g, "Add", bias_first ? std::vector<int>{bias, mm} : std::vector<int>{mm, bias});
      b.g.outputs = {y};
      std::set<int> none;
      annotate_graph(b.g, none);
      const Tensor before = forward(b.g, y);
      ASSERT_EQ(fold_linear_transposes(b.g), 1);
      annotate_graph(b.g, none);
      int gemms_with_c = 0;
      for (const Node& n : b.g.nodes) {
        gemms_with_c += n.op_type == "Gemm" && n.inputs.size() == 3 && n.inputs[2] == bias;
        EXPECT_NE(n.op_type, "Add") << n.describe();
        EXPECT_NE(n.op_type, "Transpose") << "a Transpose nothing reads is left";
      }
      EXPECT_EQ(gemms_with_c, 1) << shape_str(xs);
      EXPECT_EQ(b.g.nodes[b.g.values[y].producer].op_type, "Identity");
      const Tensor after = forward(b.g, y);
      ASSERT_EQ(after.shape(), before.shape());
      std::vector<double> u = before.to_double_vector(), v = after.to_double_vector();
      for (size_t i = 0; i < u.size(); ++i) EXPECT_NEAR(u[i], v[i], 1e-12) << shape_str(xs) << " element " << i;
      check_gradients(b.g, {x, w, bias}, y, RunOptions{}, true);
    }
  }
  // A product read by something else besides the Add keeps its Add.
  Built b;
  int x = add_param(b, "X", P({2, 3, 4}).data);
  int w = add_param(b, "W", P({5, 4}).data);
  int bias = add_param(b, "B", P({5}).data);
  int mm = node(b.g, "MatMul", {x, node(b.g, "Transpose", {w}, perm({1, 0}))});
  int y = node(b.g, "Add", {mm, bias});
  b.g.outputs = {y, mm};
  std::set<int> none;
  annotate_graph(b.g, none);
  ASSERT_EQ(fold_linear_transposes(b.g), 1);
  EXPECT_EQ(b.g.nodes[b.g.values[y].producer].op_type, "Add");
}
