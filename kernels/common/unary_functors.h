// Unary functors built from a node, shared by the CPU and CUDA kernels: make_functor reads an op's
// attributes (alpha, beta, gamma, approximate) with the functor's own defaults, and
// visit_grad_functor calls `visit` with the functor of the op an otter.UnaryGrad node names, so
// both backends support exactly the same gradient formulas (kernels/common/elementwise_math.h).
#pragma once
#include <string>
#include <type_traits>

#include "kernels/common/elementwise_math.h"
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
  if (op == "Abs") visit(make_functor<Abs>(n));
  else if (op == "Sqrt") visit(make_functor<Sqrt>(n));
  else if (op == "Reciprocal") visit(make_functor<Reciprocal>(n));
  else if (op == "Exp") visit(make_functor<Exp>(n));
  else if (op == "Log") visit(make_functor<Log>(n));
  else if (op == "Erf") visit(make_functor<Erf>(n));
  else if (op == "Relu") visit(make_functor<Relu>(n));
  else if (op == "LeakyRelu") visit(make_functor<LeakyRelu>(n));
  else if (op == "Sigmoid") visit(make_functor<Sigmoid>(n));
  else if (op == "Tanh") visit(make_functor<Tanh>(n));
  else if (op == "Sin") visit(make_functor<Sin>(n));
  else if (op == "Cos") visit(make_functor<Cos>(n));
  else if (op == "Atan") visit(make_functor<Atan>(n));
  else if (op == "Softplus") visit(make_functor<Softplus>(n));
  else if (op == "Elu") visit(make_functor<Elu>(n));
  else if (op == "Selu") visit(make_functor<Selu>(n));
  else if (op == "HardSigmoid") visit(make_functor<HardSigmoid>(n));
  else if (op == "HardSwish") visit(make_functor<HardSwish>(n));
  else if (op == "Mish") visit(make_functor<Mish>(n));
  else if (op == "Gelu") visit(make_functor<Gelu>(n));
  else OTTER_FAIL(n.describe(), ": no gradient formula for '", op, "'");
}

}  // namespace otter::math
