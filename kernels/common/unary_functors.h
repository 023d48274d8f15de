// Unary functors built from a node, shared by the CPU and CUDA kernels: make_functor reads an op's
// attributes (alpha, beta, gamma, approximate) with the functor's own defaults, and
// visit_grad_functor calls `visit` with the functor of the op an otter.UnaryGrad node names (the
// Formula ops of kernels/common/unary_ops.h), so
// both backends support exactly the same gradient formulas (kernels/common/elementwise_math.h).
#pragma once
#include <string>
#include <type_traits>

#include "kernels/common/elementwise_math.h"
#include "kernels/common/unary_ops.h"
#include "runtime/ir/graph.h"

namespace otter::math {

// The forward node, or a UnaryGrad node (which carries the forward node's attributes).
template <class F>
F make_functor(const Node& n) {
  F f{};
  if constexpr (std::is_same_v<F, LeakyRelu> || std::is_same_v<F, Elu>) {
    f.alpha = n.attr_float("alpha", f.alpha);
  } else if constexpr (std::is_same_v<F, Selu>) {
    f.alpha = n.attr_float("alpha", f.alpha);
    f.gamma = n.attr_float("gamma", f.gamma);
  } else if constexpr (std::is_same_v<F, HardSigmoid>) {
    f.alpha = n.attr_float("alpha", f.alpha);
    f.beta = n.attr_float("beta", f.beta);
  } else if constexpr (std::is_same_v<F, Gelu>) {
    f.tanh_approx = n.attr_string("approximate", "none") == "tanh";
  }
  return f;
}

// Calls visit(functor) for UnaryGrad node `n` (its "op" attribute); fails naming an unknown op.
template <class Visit>
void visit_grad_functor(const Node& n, Visit&& visit) {
  std::string op = n.attr_string("op", "");
#define OTTER_GRAD_Formula(name)                 \
  if (op == #name) {                             \
    visit(make_functor<name>(n));                \
    return;                                      \
  }
#define OTTER_GRAD_Zero(name)
#define OTTER_GRAD(name, grad) OTTER_GRAD_##grad(name)
  OTTER_UNARY_OPS(OTTER_GRAD)
#undef OTTER_GRAD
#undef OTTER_GRAD_Zero
#undef OTTER_GRAD_Formula
  OTTER_FAIL(n.describe(), ": no gradient formula for '", op, "'");
}

}  // namespace otter::math
