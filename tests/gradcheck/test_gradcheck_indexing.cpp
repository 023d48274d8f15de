// Finite-difference checks of the indexing and spatial families' gradients (GatherElements,
// ScatterElements, ScatterND, Trilu, Tile, CumSum, Einsum, Pad, Resize; harness and tolerance:
// tests/common/gradcheck.h). Scatter checks use indices without duplicates, where the gradient
// with respect to the updates is well defined.
#include "tests/common/gradcheck.h"

using namespace otter;
using namespace otter::testing;

namespace {

// A float32 constant (Resize's roi and scales are float tensors).
In Cf(std::vector<float> v) { return {Tensor::from_vector(v, {static_cast<int64_t>(v.size())}), false}; }
// An int64 scalar constant (Trilu's k, CumSum's axis).
In Cs(int64_t v) { return Ci({v}, {}); }

}  // namespace

TEST(GradCheckIndexing, GatherElements) {
  // Repeated indices accumulate.
  check("GatherElements", {P({3, 4}), Ci({0, 2, 2, 1, 1, 1, 0, 2}, {2, 4})}, A({{"axis", I(0)}}));
  check("GatherElements", {P({3, 4}), Ci({-1, 0, 3, 1, 1, -4, 2, 2, 2}, {3, 3})}, A({{"axis", I(1)}}));
  check("GatherElements", {P({2, 3, 4}), Ci({0, 3, 1, 1, 2, 0, 3, 3, 0, 0, 1, 2}, {2, 3, 2})}, A({{"axis", I(-1)}}));
}

TEST(GradCheckIndexing, ScatterElements) {
  for (const char* red : {"none", "add"}) {
    // Column by column along axis 0 the indices are distinct.
    check("ScatterElements", {P({3, 4}), Ci({1, 0, 2, 0, 2, 1, 0, 1}, {2, 4}), P({2, 4})},
          A({{"axis", I(0)}, {"reduction", S(red)}}));
    check("ScatterElements", {P({3, 5}), Ci({0, -1, 2, 3, 4, 1}, {3, 2}), P({3, 2})},
          A({{"axis", I(1)}, {"reduction", S(red)}}));
  }
  check("ScatterElements", {P({2, 3, 4}), Ci({3, 0, 1, 2, 2, 1}, {2, 3, 1}), P({2, 3, 1})}, A({{"axis", I(2)}}));
}

TEST(GradCheckIndexing, ScatterND) {
  for (const char* red : {"none", "add"}) {
    check("ScatterND", {P({4, 3}), Ci({2, 0}, {2, 1}), P({2, 3})}, A({{"reduction", S(red)}}));
    check("ScatterND", {P({2, 3, 4}), Ci({0, 1, 1, 2, 1, 0}, {3, 2}), P({3, 4})}, A({{"reduction", S(red)}}));
  }
  check("ScatterND", {P({3, 3}), Ci({0, 1, 2, -1}, {2, 2}), P({2})});
  check("ScatterND", {P({2, 3}), Ci({1, 0}, {1, 1, 2}), P({1, 1})});
}

TEST(GradCheckIndexing, Trilu) {
  for (int upper = 0; upper < 2; ++upper) {
    check("Trilu", {P({4, 5})}, A({{"upper", I(upper)}}));
    check("Trilu", {P({4, 5}), Cs(1)}, A({{"upper", I(upper)}}));
    check("Trilu", {P({4, 5}), Cs(-2)}, A({{"upper", I(upper)}}));
    check("Trilu", {P({2, 3, 4}), Cs(2)}, A({{"upper", I(upper)}}));
  }
}

TEST(GradCheckIndexing, Tile) {
  check("Tile", {P({2, 3}), Ci({2, 3})});
  check("Tile", {P({2, 1, 3}), Ci({1, 3, 2})});
  check("Tile", {P({4}), Ci({1})});
}

TEST(GradCheckIndexing, CumSum) {
  for (int exclusive = 0; exclusive < 2; ++exclusive)
    for (int reverse = 0; reverse < 2; ++reverse) {
      Attributes a = A({{"exclusive", I(exclusive)}, {"reverse", I(reverse)}});
      check("CumSum", {P({3, 4}), Cs(1)}, a);
      check("CumSum", {P({3, 4}), Cs(0)}, a);
      check("CumSum", {P({2, 3, 2}), Ci({-2})}, a);
    }
}

TEST(GradCheckIndexing, Einsum) {
  std::vector<std::pair<const char*, std::vector<Shape>>> cases = {
      {"bij,bjk->bik", {{2, 3, 4}, {2, 4, 5}}},
      {"bhqd,bhkd->bhqk", {{2, 2, 3, 4}, {2, 2, 5, 4}}},
      {"bhqk,bhkd->bhqd", {{2, 2, 3, 5}, {2, 2, 5, 4}}},
      {"ij,jk->ik", {{3, 4}, {4, 5}}},
      {"ij,jk", {{3, 4}, {4, 5}}},  // implicit output "ik"
      {"bi,bi->b", {{3, 4}, {3, 4}}},
      {"i,j->ij", {{3}, {4}}},
      {"i,i", {{4}, {4}}},  // implicit scalar output
      {"ij->ji", {{3, 4}}},
      {"ij->i", {{3, 4}}},  // j summed inside one operand
      {"ijk->kji", {{2, 3, 4}}},
      {"ij,ij->ij", {{3, 4}, {3, 4}}},
      {" bij , jk -> bki ", {{2, 3, 4}, {4, 5}}},
      {"ij,jk,kl->il", {{3, 4}, {4, 5}, {5, 2}}},
      {"bij,ji->b", {{2, 3, 4}, {4, 3}}},
      {"...ij,...jk->...ik", {{2, 3, 4}, {1, 4, 5}}},  // broadcast ellipsis
      {"...j,jk->...k", {{2, 3, 4}, {4, 5}}},
      {"ij,kj->ikj", {{3, 4}, {5, 4}}},
  };
  for (auto& [e, shapes] : cases) {
    SCOPED_TRACE(e);
    std::vector<In> in;
    for (const Shape& s : shapes) in.push_back(P(s));
    check("Einsum", in, A({{"equation", S(e)}}));
  }
}

TEST(GradCheckIndexing, EinsumDiagonalGradientFailsClearly) {
  try {
    check("Einsum", {P({3, 3})}, A({{"equation", S("ii->i")}}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("diagonal"), std::string::npos) << e.what();
  }
}

TEST(GradCheckIndexing, Pad) {
  check("Pad", {P({2, 3}), Ci({1, 0, 2, 1}), Cd(0.5)}, A({{"mode", S("constant")}}));
  check("Pad", {P({2, 3}), Ci({1, 2, 0, 1})});
  check("Pad", {P({3, 4}), Ci({-1, 1, 0, -2})});  // negative pads crop
  check("Pad", {P({2, 3, 4}), Ci({1, 2, 0, 1}), None(), Ci({-1, 1})});  // axes
  for (const char* mode : {"reflect", "edge", "wrap"}) {
    check("Pad", {P({3, 4}), Ci({2, 1, 1, 3})}, A({{"mode", S(mode)}}));
    check("Pad", {P({2, 3, 4}), Ci({1, 2, 0, 1}), None(), Ci({-1, 1})}, A({{"mode", S(mode)}}));
  }
  check("Pad", {P({3}), Ci({5, 4})}, A({{"mode", S("reflect")}}));  // reflected more than once
  check("Pad", {P({2}), Ci({3, 4})}, A({{"mode", S("wrap")}}));
}

TEST(GradCheckIndexing, ResizeNearest) {
  for (const char* nm : {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}) {
    Attributes a = A({{"mode", S("nearest")}, {"nearest_mode", S(nm)}});
    check("Resize", {P({1, 2, 3, 3}), None(), Cf({1, 1, 2, 2})}, a);
    check("Resize", {P({1, 1, 4, 6}), None(), Cf({1, 1, 0.5f, 0.5f})}, a);
  }
  Attributes asym = A({{"mode", S("nearest")}, {"coordinate_transformation_mode", S("asymmetric")}});
  check("Resize", {P({1, 1, 3, 4}), None(), None(), Ci({1, 1, 5, 7})}, asym);
  check("Resize", {P({1, 1, 4, 5}), None(), None(), Ci({1, 1, 2, 3})}, A({{"mode", S("nearest")}}));
  check("Resize", {P({2, 1, 5}), None(), Cf({1, 1, 2})}, A({{"mode", S("nearest")}}));  // 1-D
}

TEST(GradCheckIndexing, ResizeLinear) {
  for (const char* ct : {"half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "half_pixel_symmetric"}) {
    Attributes a = A({{"mode", S("linear")}, {"coordinate_transformation_mode", S(ct)}});
    check("Resize", {P({1, 2, 3, 3}), None(), Cf({1, 1, 2, 2})}, a);
    check("Resize", {P({1, 1, 4, 6}), None(), Cf({1, 1, 0.5f, 0.5f})}, a);
    check("Resize", {P({1, 1, 3, 4}), None(), None(), Ci({1, 1, 5, 7})}, a);
    check("Resize", {P({1, 1, 5, 4}), None(), None(), Ci({1, 1, 2, 3})}, a);
  }
  Attributes lin = A({{"mode", S("linear")}});
  check("Resize", {P({2, 1, 5}), None(), Cf({1, 1, 2})}, lin);                       // 1-D
  check("Resize", {P({1, 1, 2, 3, 2}), None(), Cf({1, 1, 2, 1.5f, 2})}, lin);        // 3-D
  check("Resize", {P({1, 1, 6, 4, 4}), None(), Cf({1, 1, 0.5f, 0.5f, 0.5f})}, lin);  // 3-D down
  check("Resize", {P({1, 1, 3, 4}), None(), Cf({2, 0.5f})}, A({{"mode", S("linear")}, {"axes", Is({3, 2})}}));
  check("Resize", {P({1, 1, 3, 4}), None(), None(), Ci({6, 6})},
        A({{"mode", S("linear")}, {"axes", Is({2, 3})}, {"keep_aspect_ratio_policy", S("not_larger")}}));
  check("Resize", {P({1, 1, 8, 6}), None(), Cf({1, 1, 0.5f, 0.5f})},
        A({{"mode", S("linear")}, {"antialias", I(1)}}));
  check("Resize", {P({1, 1, 4, 4}), Cf({0, 0, 0.2f, 0.1f, 1, 1, 0.8f, 1.2f}), None(), Ci({1, 1, 3, 3})},
        A({{"mode", S("linear")}, {"coordinate_transformation_mode", S("tf_crop_and_resize")},
           {"extrapolation_value", F(0.5)}}));
}

TEST(GradCheckIndexing, ResizeCubic) {
  check("Resize", {P({1, 1, 4, 4}), None(), Cf({1, 1, 2, 2})}, A({{"mode", S("cubic")}}));
  check("Resize", {P({1, 1, 4, 4}), None(), Cf({1, 1, 0.5f, 0.5f})},
        A({{"mode", S("cubic")}, {"exclude_outside", I(1)}, {"cubic_coeff_a", F(-0.5)}}));
  check("Resize", {P({1, 1, 6, 6}), None(), Cf({1, 1, 0.5f, 0.5f})}, A({{"mode", S("cubic")}, {"antialias", I(1)}}));
}

namespace {

// For an op linear in its differentiable input x (the others fixed): with L = sum(R * op(x)),
// the gradient g = dL/dx satisfies sum(g * x) = L. Checked at sizes large enough to run the
// kernels' parallel loops, which the small finite-difference checks do not reach.
void check_adjoint(const std::string& op, std::vector<In> inputs, Attributes attrs = {}) {
  SCOPED_TRACE(op);
  Graph g;
  g.opsets[""] = 21;
  std::vector<int> ins;
  int param = -1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].data.defined()) { ins.push_back(-1); continue; }
    int v = g.add_value("in" + std::to_string(i), inputs[i].data.dtype());
    g.values[v].data = inputs[i].data;
    g.values[v].shape = inputs[i].data.shape();
    g.values[v].shape_known = true;
    g.values[v].is_initializer = true;
    g.initializers.push_back(v);
    ins.push_back(v);
    if (inputs[i].differentiable) param = v;
  }
  ASSERT_GE(param, 0);
  int y = g.nodes[g.add_node(op, ins, 1, attrs, "", "op")].outputs[0];
  std::set<int> vars = {param};
  annotate_graph(g, vars);
  In r = P(g.values[y].shape);
  int rv = g.add_value("R", DType::Float64);
  g.values[rv].data = r.data;
  g.values[rv].shape = r.data.shape();
  g.values[rv].shape_known = true;
  g.values[rv].is_initializer = true;
  g.initializers.push_back(rv);
  int prod = g.nodes[g.add_node("Mul", {y, rv}, 1)].outputs[0];
  int loss = g.nodes[g.add_node("ReduceSum", {prod}, 1, A({{"keepdims", I(0)}}))].outputs[0];
  annotate_graph(g, vars);
  Gradients grads = build_gradients(g, loss, {param});
  annotate_graph(g, vars);
  ASSERT_TRUE(grads.unreachable.empty());
  PlanOptions options;
  options.targets = {loss, grads.of_param[param]};
  options.bound[param] = g.values[param].data;
  options.variables.insert(param);
  Plan plan(g, {{grads.seed, {}}}, options);
  plan.run({{grads.seed, Tensor::scalar<double>(1.0)}}, RunOptions());
  double l = plan.value(loss).data<double>()[0];
  std::vector<double> grad = plan.value(grads.of_param[param]).to_double_vector();
  std::vector<double> x = g.values[param].data.to_double_vector();
  ASSERT_EQ(grad.size(), x.size());
  double dot = 0;
  for (size_t i = 0; i < x.size(); ++i) dot += grad[i] * x[i];
  EXPECT_NEAR(dot, l, 1e-9 * (1 + std::fabs(l)));
}

}  // namespace

TEST(GradCheckIndexing, LargeShapesAdjoint) {
  std::vector<int64_t> idx(200 * 200);
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>((i * 7919) % 200);
  check_adjoint("GatherElements", {P({200, 200}), Ci(idx, {200, 200})}, A({{"axis", I(0)}}));
  std::vector<int64_t> perm(200 * 200);  // a permutation of 0..199 in every column: unique along axis 0
  for (int64_t i = 0; i < 200; ++i)
    for (int64_t j = 0; j < 200; ++j) perm[static_cast<size_t>(i * 200 + j)] = (i * 37 + j) % 200;
  // The scatters are affine in each input: fix the other one at zero to make them linear.
  auto zeros = [](Shape s) { return In{Tensor(DType::Float64, s), false}; };
  check_adjoint("ScatterElements", {P({200, 200}), Ci(perm, {200, 200}), zeros({200, 200})}, A({{"axis", I(0)}}));
  check_adjoint("ScatterElements", {zeros({200, 200}), Ci(perm, {200, 200}), P({200, 200})}, A({{"axis", I(0)}}));
  check_adjoint("ScatterElements", {P({200, 200}), Ci(std::vector<int64_t>(perm.begin(), perm.begin() + 100 * 200), {100, 200}), zeros({100, 200})}, A({{"axis", I(0)}}));
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < 20; ++i) rows.push_back((i * 3) % 50);
  check_adjoint("ScatterND", {P({50, 2000}), Ci(rows, {20, 1}), zeros({20, 2000})});
  check_adjoint("ScatterND", {zeros({50, 2000}), Ci(rows, {20, 1}), P({20, 2000})});
  check_adjoint("Trilu", {P({4, 200, 200}), Cs(3)});
  check_adjoint("Tile", {P({100, 200}), Ci({2, 2})});
  check_adjoint("CumSum", {P({300, 200}), Cs(0)}, A({{"exclusive", I(1)}}));
  check_adjoint("CumSum", {P({300, 200}), Cs(1)}, A({{"reverse", I(1)}}));
  check_adjoint("Einsum", {P({2, 4, 64, 32}), Fixed(P({2, 4, 64, 32}))}, A({{"equation", S("bhqd,bhkd->bhqk")}}));
  check_adjoint("Einsum", {Fixed(P({2, 4, 64, 32})), P({2, 4, 64, 32})}, A({{"equation", S("bhqd,bhkd->bhqk")}}));
  check_adjoint("Einsum", {P({4, 30, 40}), Fixed(P({1, 40, 50}))}, A({{"equation", S("...ij,...jk->...ik")}}));
  check_adjoint("Einsum", {Fixed(P({4, 30, 40})), P({1, 40, 50})}, A({{"equation", S("...ij,...jk->...ik")}}));
  check_adjoint("Pad", {P({200, 200}), Ci({10, 5, 3, 12})}, A({{"mode", S("reflect")}}));
  check_adjoint("Pad", {P({200, 200}), Ci({10, 5, 3, 12})}, A({{"mode", S("constant")}}));
  check_adjoint("Resize", {P({2, 3, 40, 40}), None(), Cf({1, 1, 2, 2})}, A({{"mode", S("linear")}}));
  check_adjoint("Resize", {P({2, 3, 80, 80}), None(), Cf({1, 1, 0.5f, 0.5f})}, A({{"mode", S("cubic")}}));
  check_adjoint("Resize", {P({2, 3, 40, 40}), None(), Cf({1, 1, 2, 2})}, A({{"mode", S("nearest")}}));
}

TEST(GradCheckIndexing, EmptyTensors) {
  check("GatherElements", {P({3, 0}), Ci({}, {2, 0})}, A({{"axis", I(0)}}));
  check("Tile", {P({2, 3}), Ci({0, 2})});
  check("Pad", {P({0, 3}), Ci({1, 0, 0, 1})});
  check("Einsum", {P({2, 0}), P({0, 3})}, A({{"equation", S("ij,jk->ik")}}));
}
