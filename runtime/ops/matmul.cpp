// MatMul (numpy semantics: batched, broadcast, 1-D operands) and Gemm (transA, transB, alpha,
// beta, unidirectionally broadcast C). Gradients are MatMul/Gemm/Transpose nodes; broadcast batch
// dims are summed back with otter.SumToShapeOf.
#include "runtime/ops/op.h"

namespace otter {
namespace {

void infer_matmul(InferContext& c) {
  c.expect_dtype(0, {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int64, DType::Int32});
  c.expect_same_dtype(0, 1);
  Shape a = c.shape(0), b = c.shape(1);
  if (a.empty() || b.empty()) c.fail("MatMul operands must have rank >= 1");
  bool a_vec = a.size() == 1, b_vec = b.size() == 1;
  if (a_vec) a.insert(a.begin(), 1);
  if (b_vec) b.push_back(1);
  int64_t ka = a[a.size() - 1], kb = b[b.size() - 2];
  if (ka >= 0 && kb >= 0 && ka != kb)
    c.fail(cat("inner dimensions differ: ", c.dims(c.shape(0)), " @ ", c.dims(c.shape(1))));
  Shape batch_a(a.begin(), a.end() - 2), batch_b(b.begin(), b.end() - 2);
  Shape out = broadcast_shapes(c, {batch_a, batch_b});
  if (!a_vec) out.push_back(a[a.size() - 2]);
  if (!b_vec) out.push_back(b[b.size() - 1]);
  c.set_output(0, c.dtype(0), out);
}

Attributes perm_swap_last_two(int64_t rank) {
  std::vector<int64_t> perm(static_cast<size_t>(rank));
  for (int64_t i = 0; i < rank; ++i) perm[i] = i;
  std::swap(perm[rank - 1], perm[rank - 2]);
  Attributes a;
  a["perm"] = Attribute::of_ints(perm);
  return a;
}

void matmul_grad(GradContext& g) {
  int a = g.x(0), b = g.x(1), dy = g.dy();
  int64_t ra = g.rank(a), rb = g.rank(b);
  if (ra == 1 && rb == 1) {  // dot product: y is a scalar
    g.set_dx(0, g.emit("Mul", {dy, b}));
    g.set_dx(1, g.emit("Mul", {dy, a}));
    return;
  }
  if (ra == 1) {  // y[..., n] = sum_k a[k] B[..., k, n]
    int dy2 = g.emit("Unsqueeze", {dy, g.constant_int64s({-2})});                 // [..., 1, N]
    if (g.wants(0)) g.set_dx(0, g.sum_to_shape_of(g.emit("MatMul", {dy2, g.emit("Transpose", {b}, perm_swap_last_two(rb))}), a));
    if (g.wants(1)) {
      int a_col = g.emit("Unsqueeze", {a, g.constant_int64s({1})});               // [K, 1]
      g.set_dx(1, g.sum_to_shape_of(g.emit("MatMul", {a_col, dy2}), b));
    }
    return;
  }
  if (rb == 1) {  // y[..., m] = sum_k A[..., m, k] b[k]
    int dy2 = g.emit("Unsqueeze", {dy, g.constant_int64s({-1})});                 // [..., M, 1]
    if (g.wants(0)) {
      int b_row = g.emit("Unsqueeze", {b, g.constant_int64s({0})});               // [1, K]
      g.set_dx(0, g.sum_to_shape_of(g.emit("MatMul", {dy2, b_row}), a));
    }
    if (g.wants(1)) {
      int t = g.emit("MatMul", {g.emit("Transpose", {a}, perm_swap_last_two(ra)), dy2});  // [..., K, 1]
      g.set_dx(1, g.sum_to_shape_of(g.emit("Squeeze", {t, g.constant_int64s({-1})}), b));
    }
    return;
  }
  if (rb == 2 && g.value(b).shape_known && g.value(b).shape[0] >= 0 && g.value(b).shape[1] >= 0) {
    // A linear layer, B a [K, N] matrix and A [..., K]: dB = A^T dY as one GEMM over A's rows
    // flattened to [rows, K] (not a batched MatMul of transposed activations summed over the
    // batch: that wrote batch x K x N and copied A), dA = dY B^T (a plain matrix A needs no
    // transposed copy of B either: dA is a GEMM over dY's rows with transB, reshaped to A's shape,
    // so the only readers of B are GEMMs).
    const int64_t k = g.value(b).shape[0], n = g.value(b).shape[1];
    auto gemm = [&](int p, int q, bool tp, bool tq) {
      Attributes at;
      at["transA"] = Attribute::of_int(tp);
      at["transB"] = Attribute::of_int(tq);
      return g.emit("Gemm", {p, q}, at);
    };
    int dy2 = -1;  // dY's rows, [rows, N]
    auto dy_rows = [&] { return dy2 >= 0 ? dy2 : (dy2 = ra == 2 ? dy : g.emit("Reshape", {dy, g.constant_int64s({-1, n})})); };
    if (g.wants(0)) {
      int da = gemm(dy_rows(), b, false, true);
      g.set_dx(0, ra == 2 ? da : g.emit("Reshape", {da, g.emit("Shape", {a})}));
    }
    if (g.wants(1)) {
      int a2 = ra == 2 ? a : g.emit("Reshape", {a, g.constant_int64s({-1, k})});
      g.set_dx(1, gemm(a2, dy_rows(), true, false));
    }
    return;
  }
  if (g.wants(0))
    g.set_dx(0, g.sum_to_shape_of(g.emit("MatMul", {dy, g.emit("Transpose", {b}, perm_swap_last_two(rb))}), a));
  if (g.wants(1))
    g.set_dx(1, g.sum_to_shape_of(g.emit("MatMul", {g.emit("Transpose", {a}, perm_swap_last_two(ra)), dy}), b));
}

void infer_gemm(InferContext& c) {
  c.expect_dtype(0, {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16});
  c.expect_same_dtype(0, 1);
  if (c.rank(0) != 2 || c.rank(1) != 2)
    c.fail(cat("A and B must be 2-D, got ", c.dims(c.shape(0)), " and ", c.dims(c.shape(1))));
  bool ta = c.node.attr_int("transA", 0) != 0, tb = c.node.attr_int("transB", 0) != 0;
  int64_t m = c.shape(0)[ta ? 1 : 0], ka = c.shape(0)[ta ? 0 : 1];
  int64_t kb = c.shape(1)[tb ? 1 : 0], n = c.shape(1)[tb ? 0 : 1];
  if (ka >= 0 && kb >= 0 && ka != kb)
    c.fail(cat("inner dimensions differ: A ", c.dims(c.shape(0)), (ta ? " (transposed)" : ""), ", B ",
               c.dims(c.shape(1)), (tb ? " (transposed)" : "")));
  Shape out = {m, n};
  if (c.has_input(2)) {
    c.expect_same_dtype(0, 2);
    Shape bc = broadcast_shapes(c, {out, c.shape(2)});
    if (bc.size() != 2 || (bc[0] >= 0 && m >= 0 && bc[0] != m) || (bc[1] >= 0 && n >= 0 && bc[1] != n))
      c.fail(cat("C ", c.dims(c.shape(2)), " does not broadcast to ", c.dims(out)));
  }
  c.set_output(0, c.dtype(0), out);
}

void gemm_grad(GradContext& g) {
  const Node& n = g.node();
  bool ta = n.attr_int("transA", 0) != 0, tb = n.attr_int("transB", 0) != 0;
  double alpha = n.attr_float("alpha", 1.0), beta = n.attr_float("beta", 1.0);
  int a = g.x(0), b = g.x(1), c = g.x(2), dy = g.dy();
  auto gemm = [&](int p, int q, bool tp, bool tq) {
    Attributes at;
    at["transA"] = Attribute::of_int(tp);
    at["transB"] = Attribute::of_int(tq);
    at["alpha"] = Attribute::of_float(alpha);
    return g.emit("Gemm", {p, q}, at);
  };
  // Y = alpha * op(A) op(B) + beta * C
  if (g.wants(0)) {
    if (!ta) g.set_dx(0, tb ? gemm(dy, b, false, false) : gemm(dy, b, false, true));
    else g.set_dx(0, tb ? gemm(b, dy, true, true) : gemm(b, dy, false, true));
  }
  if (g.wants(1)) {
    if (!tb) g.set_dx(1, ta ? gemm(a, dy, false, false) : gemm(a, dy, true, false));
    else g.set_dx(1, ta ? gemm(dy, a, true, true) : gemm(dy, a, true, false));
  }
  if (c >= 0 && g.wants(2)) {
    int d = dy;
    if (beta != 1.0) d = g.emit("Mul", {dy, g.constant_scalar(beta, g.value(a).dtype)});
    g.set_dx(2, g.sum_to_shape_of(d, c));
  }
}

}  // namespace

void register_matmul_ops(OpRegistry& r) {
  OpDef mm;
  mm.op_type = "MatMul";
  mm.infer = infer_matmul;
  mm.gradient = matmul_grad;
  r.add(mm);
  OpDef gemm;
  gemm.op_type = "Gemm";
  gemm.infer = infer_gemm;
  gemm.gradient = gemm_grad;
  r.add(gemm);

  // Traits (runtime/ops/op.h).
  for (const char* op : {"MatMul", "Gemm"}) r.at("", op).precision = PrecisionClass::Lower;
}

}  // namespace otter
