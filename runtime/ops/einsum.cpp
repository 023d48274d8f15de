// Einsum: inference and gradient. The equation is parsed by kernels/common/einsum_math.h (letters,
// "...", implicit output; diagonals such as "ii->i" run forward). The gradient of operand i of
// y = einsum(x_1..x_n) is another Einsum: dx_i = einsum(dy, x_1..x_{i-1}, x_{i+1}..x_n -> labels
// of x_i), with letters picked for the ellipsis dims; a label of x_i that nothing else carries
// (summed out inside x_i alone) is broadcast back with Unsqueeze + Expand, and dims an operand
// broadcast (size 1 against a larger size) are summed back with otter.SumToShapeOf. A gradient
// through an operand with a repeated subscript (a diagonal) is not supported and fails clearly.
// Registered from register_indexing_ops (runtime/ops/indexing.cpp).
#include <algorithm>

#include "kernels/common/einsum_math.h"
#include "runtime/ops/op.h"

namespace otter {
namespace {

einsum::Equation parse_node(const Node& n, const std::vector<int64_t>& ranks) {
  return einsum::parse(n.attr_string("equation", ""), ranks);
}

void infer_einsum(InferContext& c) {
  if (!c.node.has_attr("equation")) c.fail("the equation attribute is required");
  if (c.num_inputs() == 0) c.fail("needs at least one input");
  std::vector<int64_t> ranks;
  for (size_t i = 0; i < c.num_inputs(); ++i) {
    if (!c.has_input(i)) c.fail(cat("input ", i, " is omitted"));
    c.expect_dtype(i, {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int64, DType::Int32});
    c.expect_same_dtype(0, i);
    ranks.push_back(c.rank(i));
  }
  einsum::Equation eq = parse_node(c.node, ranks);
  if (!eq.error.empty()) c.fail(cat("equation '", c.node.attr_string("equation", ""), "': ", eq.error));
  // Label sizes: a known size other than 1 wins, then a symbol, then 1.
  std::vector<int64_t> size(static_cast<size_t>(eq.num_labels()), 1);
  std::vector<bool> seen(size.size(), false);
  for (size_t k = 0; k < eq.inputs.size(); ++k)
    for (size_t d = 0; d < eq.inputs[k].size(); ++d) {
      size_t id = static_cast<size_t>(eq.inputs[k][d]);
      int64_t n = c.shape(k)[d];
      int64_t& s = size[id];
      if (!seen[id] || s == 1) {
        s = n;
      } else if (n >= 0 && n != 1) {
        if (s >= 0 && s != n) {
          std::string label = eq.inputs[k][d] < einsum::kLetters ? std::string(1, einsum::letter_char(eq.inputs[k][d]))
                                                                 : std::string("...");
          c.fail(cat("subscript '", label, "' has size ", s, " in one place and ", n, " in input ", k, " ",
                     c.dims(c.shape(k))));
        }
        s = n;  // a known size replaces a symbol
      }
      seen[id] = true;
    }
  Shape out;
  for (int id : eq.output) out.push_back(size[static_cast<size_t>(id)]);
  c.set_output(0, c.dtype(0), out);
}

void einsum_grad(GradContext& g) {
  const Node n = g.node();  // a copy: emitting nodes may move the graph's node storage
  std::vector<int64_t> ranks;
  for (size_t i = 0; i < n.inputs.size(); ++i) ranks.push_back(g.rank(g.x(i)));
  einsum::Equation eq = parse_node(n, ranks);
  OTTER_CHECK(eq.error.empty(), n.describe(), ": ", eq.error);
  // Letters for every label id: the letters keep theirs, ellipsis dims take unused letters.
  std::vector<char> chars(static_cast<size_t>(eq.num_labels()), 0);
  std::vector<bool> used(einsum::kLetters, false);
  for (const auto& l : eq.inputs)
    for (int id : l)
      if (id < einsum::kLetters) used[static_cast<size_t>(id)] = true;
  int next_free = 0;
  for (int id = 0; id < eq.num_labels(); ++id) {
    if (id < einsum::kLetters) { chars[static_cast<size_t>(id)] = einsum::letter_char(id); continue; }
    while (next_free < einsum::kLetters && used[static_cast<size_t>(next_free)]) ++next_free;
    OTTER_CHECK(next_free < einsum::kLetters, n.describe(), ": too many subscripts to write the Einsum gradient");
    used[static_cast<size_t>(next_free)] = true;
    chars[static_cast<size_t>(id)] = einsum::letter_char(next_free++);
  }
  auto term = [&](const std::vector<int>& labels) {
    std::string s;
    for (int id : labels) s += chars[static_cast<size_t>(id)];
    return s;
  };
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    if (!g.wants(i)) continue;
    if (eq.has_repeated_label(i))
      OTTER_FAIL(n.describe(), ": the gradient of Einsum '", n.attr_string("equation", ""), "' with respect to input ",
                 i, " is not supported: the input repeats a subscript (a diagonal)");
    // Labels available from dy and the other operands.
    std::vector<bool> avail(static_cast<size_t>(eq.num_labels()), false);
    for (int id : eq.output) avail[static_cast<size_t>(id)] = true;
    std::vector<int> inputs = {g.dy()};
    std::string lhs = term(eq.output);
    for (size_t j = 0; j < n.inputs.size(); ++j) {
      if (j == i) continue;
      for (int id : eq.inputs[j]) avail[static_cast<size_t>(id)] = true;
      inputs.push_back(g.x(j));
      lhs += "," + term(eq.inputs[j]);
    }
    std::vector<int> kept;
    std::vector<int64_t> missing_axes;
    for (size_t d = 0; d < eq.inputs[i].size(); ++d) {
      int id = eq.inputs[i][d];
      if (avail[static_cast<size_t>(id)]) kept.push_back(id);
      else missing_axes.push_back(static_cast<int64_t>(d));
    }
    Attributes a;
    a["equation"] = Attribute::of_string(lhs + "->" + term(kept));
    int dx = g.emit("Einsum", inputs, a);
    if (!missing_axes.empty()) {
      dx = g.emit("Unsqueeze", {dx, g.constant_int64s(missing_axes)});
      dx = g.emit("Expand", {dx, g.shape_of(g.x(i))});
    }
    g.set_dx(i, g.sum_to_shape_of(dx, g.x(i)));
  }
}

}  // namespace

void register_einsum_ops(OpRegistry& r) {
  OpDef d;
  d.op_type = "Einsum";
  d.since_version = 12;
  d.infer = infer_einsum;
  d.gradient = einsum_grad;
  r.add(d);

  // Traits (runtime/ops/op.h).
  r.at("", "Einsum").precision = PrecisionClass::Lower;
}

}  // namespace otter
