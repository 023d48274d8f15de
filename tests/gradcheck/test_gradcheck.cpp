// Finite-difference checks of the foundation ops' gradient builders (harness and tolerance:
// tests/common/gradcheck.h).
#include "tests/common/gradcheck.h"

using namespace otter;
using namespace otter::testing;

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
