// ONNX Runtime's gradient ops that ORT training artifacts use and that Otter runs through its own
// gradient builders (docs/training-graphs.md, "ONNX Runtime artifacts"): com.microsoft ConvGrad
// (dY, X, W) -> (dX, dW, dB) and MaxPoolGrad (dY, Indices) -> dX (ORT writes the latter without a
// domain; the importer, onnx_import/ort_artifacts.cpp, files it under com.microsoft). Both are
// graph-level (no kernel): runtime/passes/ort_grad_ops.h replaces each with the backward nodes of
// its forward node (the Conv reading X and W, the MaxPool whose Indices it reads), built by that
// op's Otter gradient builder. Their inference only gives the outputs' types and ranks.
// com.microsoft FusedMatMul (A, B; alpha, transA, transB, transBatchA, transBatchB) is graph-level
// too, because its expansion (Transpose, MatMul, Mul by alpha) needs the operands' ranks: Y =
// alpha * op(A) @ op(B), where transBatch moves dim 0 to just before the last dim (perm [1, ...,
// r-2, 0, r-1], checked against ORT's kernel) and trans then swaps the last two dims.
#include "runtime/ops/op.h"

namespace otter {

void register_ort_grad_ops(OpRegistry& r) {
  OpDef conv;
  conv.domain = "com.microsoft";
  conv.op_type = "ConvGrad";
  conv.graph_level = true;
  conv.infer = [](InferContext& c) {
    if (c.num_inputs() != 3) c.fail("expects (dY, X, W)");
    c.set_output(0, c.dtype(1), c.shape(1));
    c.set_output(1, c.dtype(2), c.shape(2));
    if (c.rank(2) < 1) c.fail("W must have rank >= 1");
    c.set_output(2, c.dtype(2), Shape{c.shape(2)[0]});
  };
  r.add(conv);

  OpDef pool;
  pool.domain = "com.microsoft";
  pool.op_type = "MaxPoolGrad";
  pool.graph_level = true;
  pool.infer = [](InferContext& c) {
    if (c.num_inputs() != 2) c.fail("expects (dY, Indices)");
    Shape s(static_cast<size_t>(c.rank(0)));
    for (size_t k = 0; k < s.size(); ++k) s[k] = k < 2 ? c.shape(0)[k] : c.unknown_dim();  // X's spatial dims
    c.set_output(0, c.dtype(0), s);
  };
  r.add(pool);

  OpDef fmm;
  fmm.domain = "com.microsoft";
  fmm.op_type = "FusedMatMul";
  fmm.graph_level = true;
  fmm.infer = [](InferContext& c) {
    if (c.num_inputs() != 2) c.fail("expects (A, B)");
    c.expect_dtype(0, {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16});
    c.expect_same_dtype(0, 1);
    Shape a = fused_matmul_operand(c.shape(0), c.node.attr_int("transBatchA", 0), c.node.attr_int("transA", 0));
    Shape b = fused_matmul_operand(c.shape(1), c.node.attr_int("transBatchB", 0), c.node.attr_int("transB", 0));
    if (a.empty() || b.empty()) c.fail("operands must have rank >= 1");
    const bool a_vec = a.size() == 1, b_vec = b.size() == 1;
    if (a_vec) a.insert(a.begin(), 1);
    if (b_vec) b.push_back(1);
    const int64_t ka = a[a.size() - 1], kb = b[b.size() - 2];
    if (ka >= 0 && kb >= 0 && ka != kb)
      c.fail(cat("inner dimensions differ: ", c.dims(c.shape(0)), " @ ", c.dims(c.shape(1)), " (after transposition)"));
    Shape out = broadcast_shapes(c, {Shape(a.begin(), a.end() - 2), Shape(b.begin(), b.end() - 2)});
    if (!a_vec) out.push_back(a[a.size() - 2]);
    if (!b_vec) out.push_back(b[b.size() - 1]);
    c.set_output(0, c.dtype(0), out);
  };
  r.add(fmm);
}

std::vector<int64_t> fused_matmul_perm(size_t rank, bool trans_batch, bool trans) {
  std::vector<int64_t> perm(rank);
  for (size_t k = 0; k < rank; ++k) perm[k] = static_cast<int64_t>(k);
  if (rank < 2) return perm;
  if (trans_batch && rank > 2) {  // [1, ..., r-2, 0, r-1]
    for (size_t k = 0; k + 2 < rank; ++k) perm[k] = static_cast<int64_t>(k + 1);
    perm[rank - 2] = 0;
  }
  if (trans) std::swap(perm[rank - 2], perm[rank - 1]);
  return perm;
}

Shape fused_matmul_operand(const Shape& s, bool trans_batch, bool trans) {
  std::vector<int64_t> perm = fused_matmul_perm(s.size(), trans_batch, trans);
  Shape r(s.size());
  for (size_t k = 0; k < s.size(); ++k) r[k] = s[static_cast<size_t>(perm[k])];
  return r;
}

}  // namespace otter
