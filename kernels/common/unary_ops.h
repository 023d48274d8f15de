// The one list of unary elementwise ops y = f(x) computed by one functor math::<Op>
// (kernels/common/elementwise_math.h). OTTER_UNARY_OPS(X) expands X(Op, Grad) once per op, where
// Grad is Formula (dx = math::<Op>::grad(x, y, dy), through otter.UnaryGrad) or Zero (piecewise
// constant: no gradient flows). Expanded by runtime/ops/elementwise.cpp (the OpDefs),
// kernels/common/unary_functors.h (the UnaryGrad formulas), kernels/cpu/elementwise.cpp and
// kernels/cuda/elementwise.cu (the kernels), and walked by tests/unit/test_op_traits.cpp. Adding a
// unary op: its functor in elementwise_math.h (with grad, and attributes in make_functor), one line
// here, the count below. Neg and Sign are not listed: they also run on integers (their own dtype
// lists and kernels).
#pragma once

#define OTTER_UNARY_OPS(X) \
  X(Abs, Formula)          \
  X(Sqrt, Formula)         \
  X(Reciprocal, Formula)   \
  X(Exp, Formula)          \
  X(Log, Formula)          \
  X(Erf, Formula)          \
  X(Relu, Formula)         \
  X(LeakyRelu, Formula)    \
  X(Sigmoid, Formula)      \
  X(Tanh, Formula)         \
  X(Sin, Formula)          \
  X(Cos, Formula)          \
  X(Atan, Formula)         \
  X(Softplus, Formula)     \
  X(Elu, Formula)          \
  X(Selu, Formula)         \
  X(HardSigmoid, Formula)  \
  X(HardSwish, Formula)    \
  X(Mish, Formula)         \
  X(Gelu, Formula)         \
  X(Floor, Zero)           \
  X(Ceil, Zero)            \
  X(Round, Zero)

namespace otter::unary_ops {

enum class Grad { Formula, Zero };

struct Entry {
  const char* name;
  Grad grad;
};

#define OTTER_UNARY_ENTRY(op, grad) Entry{#op, Grad::grad},
inline constexpr Entry kAll[] = {OTTER_UNARY_OPS(OTTER_UNARY_ENTRY)};
#undef OTTER_UNARY_ENTRY

#define OTTER_UNARY_COUNT(op, grad) +1
inline constexpr int kCount = 0 OTTER_UNARY_OPS(OTTER_UNARY_COUNT);
#undef OTTER_UNARY_COUNT
#define OTTER_UNARY_COUNT_FORMULA(op, grad) +(Grad::grad == Grad::Formula ? 1 : 0)
inline constexpr int kFormulaCount = 0 OTTER_UNARY_OPS(OTTER_UNARY_COUNT_FORMULA);
#undef OTTER_UNARY_COUNT_FORMULA

// A new op changes these on purpose (and docs/ops.md, regenerated): the expansions, the test
// and the documentation then agree on one number.
static_assert(kCount == 23, "unary op list changed: update the count (and regenerate docs/ops.md)");
static_assert(kFormulaCount == 20, "unary ops with a gradient formula changed: update the count");
static_assert(sizeof(kAll) / sizeof(kAll[0]) == kCount, "the list expands to one entry per op");

}  // namespace otter::unary_ops
