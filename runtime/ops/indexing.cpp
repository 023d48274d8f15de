// The indexing op family: GatherElements, ScatterElements, ScatterND, Trilu, Tile and CumSum,
// their gradients and the internal ops those use (otter.GatherElementsGrad: a scatter-add into
// zeros of the data's shape; otter.GatherND: ScatterND's gather, batch_dims 0, for the updates'
// gradient; otter.TileGrad: the sum over the tiles). Scatter gradients exist for reduction none
// (d data = dy with the scattered places zeroed, d updates = dy gathered at the indices) and add
// (d data = dy); mul/max/min fail clearly. Trilu's gradient is Trilu of dy, CumSum's is CumSum of
// dy with `reverse` flipped.
#include <algorithm>

#include "runtime/ops/op.h"

namespace otter {

namespace {

const std::initializer_list<DType> kIndexTypes = {DType::Int64, DType::Int32};

// Checks that `indices` (input i) has the rank of data (input 0) and that its dims fit data's
// dims off the axis (ScatterElements, GatherElements).
void check_element_indices(InferContext& c, size_t i, int64_t axis) {
  c.expect_dtype(i, kIndexTypes);
  const Shape& d = c.shape(0);
  const Shape& x = c.shape(i);
  if (x.size() != d.size())
    c.fail(cat("indices ", c.dims(x), " must have the rank of data ", c.dims(d)));
  for (size_t k = 0; k < d.size(); ++k)
    if (static_cast<int64_t>(k) != axis && d[k] >= 0 && x[k] >= 0 && x[k] > d[k])
      c.fail(cat("indices ", c.dims(x), " are larger than data ", c.dims(d), " along axis ", k));
}

std::string reduction_of(const InferContext& c) {
  std::string r = c.node.attr_string("reduction", "none");
  if (r != "none" && r != "add" && r != "mul" && r != "max" && r != "min")
    c.fail(cat("unknown reduction '", r, "' (expected none, add, mul, max or min)"));
  return r;
}

// ---- GatherElements ----

void infer_gather_elements(InferContext& c) {
  int64_t r = c.rank(0);
  if (r == 0) c.fail("data must have rank >= 1");
  int64_t axis = c.axis(c.node.attr_int("axis", 0), r);
  check_element_indices(c, 1, axis);
  c.set_output(0, c.dtype(0), c.shape(1));
}

void gather_elements_grad(GradContext& g) {
  Attributes a;
  a["axis"] = Attribute::of_int(g.node().attr_int("axis", 0));
  g.set_dx(0, g.emit("GatherElementsGrad", {g.dy(), g.x(1), g.x(0)}, a, "otter"));
}

// ---- ScatterElements ----

void infer_scatter_elements(InferContext& c) {
  int64_t r = c.rank(0);
  if (r == 0) c.fail("data must have rank >= 1");
  int64_t axis = c.axis(c.node.attr_int("axis", 0), r);
  check_element_indices(c, 1, axis);
  c.expect_same_dtype(0, 2);
  const Shape& x = c.shape(1);
  const Shape& u = c.shape(2);
  bool same = x.size() == u.size();
  for (size_t k = 0; same && k < x.size(); ++k)
    if (x[k] >= 0 && u[k] >= 0 && x[k] != u[k]) same = false;
  if (!same) c.fail(cat("updates ", c.dims(u), " must have the shape of indices ", c.dims(x)));
  reduction_of(c);
  c.set_output(0, c.dtype(0), c.shape(0));
}

// Zeros of the shape of value `like`, of the dtype of value `dtype_of`.
int zeros_like(GradContext& g, int like, int dtype_of) {
  Attributes a;
  a["value"] = Attribute::of_tensor(Tensor::from_vector<double>({0.0}, {1}).cast(g.value(dtype_of).dtype));
  return g.emit("ConstantOfShape", {g.shape_of(like)}, a);
}

// The scatter gradients: d data and d updates, with `gather` emitting dy at the indices.
template <class Gather>
void scatter_grad(GradContext& g, const char* op, Gather gather) {
  const Node n = g.node();  // a copy: emitting nodes may move the graph's node storage
  std::string reduction = n.attr_string("reduction", "none");
  if (reduction != "none" && reduction != "add")
    OTTER_FAIL(n.describe(), ": the gradient of ", op, " with reduction '", reduction,
               "' is not supported (only none and add)");
  if (g.wants(0)) {
    if (reduction == "add") {
      g.set_dx(0, g.dy());
    } else {  // the scattered places were overwritten: no gradient flows to them
      g.set_dx(0, g.emit(op, {g.dy(), g.x(1), zeros_like(g, g.x(2), g.x(0))}, n.attrs));
    }
  }
  if (g.wants(2)) g.set_dx(2, gather(g));
}

void scatter_elements_grad(GradContext& g) {
  scatter_grad(g, "ScatterElements", [](GradContext& gc) {
    Attributes a;
    a["axis"] = Attribute::of_int(gc.node().attr_int("axis", 0));
    return gc.emit("GatherElements", {gc.dy(), gc.x(1)}, a);
  });
}

// ---- ScatterND and otter.GatherND ----

// The shape ScatterND's updates must have (indices.shape[:-1] + data.shape[k:]), or fails.
Shape gather_nd_shape(InferContext& c, const Shape& data, const Shape& indices) {
  if (data.empty()) c.fail("data must have rank >= 1");
  if (indices.empty()) c.fail("indices must have rank >= 1");
  int64_t k = indices.back();
  if (k < 0) c.fail("the last dim of indices must be known");
  if (k > static_cast<int64_t>(data.size()))
    c.fail(cat("indices ", c.dims(indices), " index ", k, " dims but data ", c.dims(data), " has rank ", data.size()));
  Shape s(indices.begin(), indices.end() - 1);
  s.insert(s.end(), data.begin() + k, data.end());
  return s;
}

void infer_scatter_nd(InferContext& c) {
  c.expect_dtype(1, kIndexTypes);
  c.expect_same_dtype(0, 2);
  if (c.rank(1) == 0) c.fail("indices must have rank >= 1");
  if (c.shape(1).back() < 0) {  // the updates' shape cannot be checked until the tuple length is known
    reduction_of(c);
    c.set_output(0, c.dtype(0), c.shape(0));
    return;
  }
  Shape want = gather_nd_shape(c, c.shape(0), c.shape(1));
  const Shape& u = c.shape(2);
  bool same = want.size() == u.size();
  for (size_t k = 0; same && k < u.size(); ++k)
    if (want[k] >= 0 && u[k] >= 0 && want[k] != u[k]) same = false;
  if (!same)
    c.fail(cat("updates ", c.dims(u), " must have shape ", c.dims(want), " (indices.shape[:-1] + data.shape[k:])"));
  reduction_of(c);
  c.set_output(0, c.dtype(0), c.shape(0));
}

void scatter_nd_grad(GradContext& g) {
  scatter_grad(g, "ScatterND", [](GradContext& gc) { return gc.emit("GatherND", {gc.dy(), gc.x(1)}, {}, "otter"); });
}

// otter.GatherND(data, indices): ONNX GatherND with batch_dims 0.
void infer_gather_nd(InferContext& c) {
  c.expect_dtype(1, kIndexTypes);
  c.set_output(0, c.dtype(0), gather_nd_shape(c, c.shape(0), c.shape(1)));
}

// ---- Trilu ----

void check_scalar_int(InferContext& c, size_t i, const char* what) {
  if (!c.has_input(i)) return;
  c.expect_dtype(i, kIndexTypes);
  const Shape& s = c.shape(i);
  if (!(s.empty() || (s.size() == 1 && (s[0] == 1 || s[0] < 0))))
    c.fail(cat("the ", what, " input must be a scalar, got shape ", c.dims(s)));
}

void infer_trilu(InferContext& c) {
  if (c.rank(0) < 2) c.fail(cat("input must have rank >= 2, got ", c.dims(c.shape(0))));
  check_scalar_int(c, 1, "k");
  c.set_output(0, c.dtype(0), c.shape(0));
}

void trilu_grad(GradContext& g) {
  std::vector<int> in = {g.dy()};
  if (g.x(1) >= 0) in.push_back(g.x(1));
  g.set_dx(0, g.emit("Trilu", in, g.node().attrs));
}

// ---- Tile ----

void infer_tile(InferContext& c) {
  c.expect_dtype(1, {DType::Int64});
  const Shape& in = c.shape(0);
  const Shape& rs = c.shape(1);
  int64_t r = c.rank(0);
  if (rs.size() != 1 || (rs[0] >= 0 && rs[0] != r))
    c.fail(cat("repeats must be 1-D with one value per input dim (", r, "), got shape ", c.dims(rs)));
  std::optional<std::vector<int64_t>> reps = c.int_values(1);  // data, or dims from a Shape result
  bool literal = c.data(1) != nullptr;
  if (reps && static_cast<int64_t>(reps->size()) != r)
    c.fail(cat("repeats has ", reps->size(), " values for an input of rank ", r));
  Shape out;
  for (int64_t k = 0; k < r; ++k) {
    int64_t rep = reps ? (*reps)[static_cast<size_t>(k)] : -1;
    if (rep < 0 && literal) c.fail(cat("repeat ", rep, " for axis ", k, " is negative"));
    if (rep < 0) { out.push_back(c.unknown_dim()); continue; }  // unknown, or a symbolic dim
    if (in[k] >= 0) out.push_back(in[k] * rep);
    else out.push_back(rep == 1 ? in[k] : (rep == 0 ? 0 : c.unknown_dim()));
  }
  c.set_output(0, c.dtype(0), out);
}

void tile_grad(GradContext& g) { g.set_dx(0, g.emit("TileGrad", {g.dy(), g.x(0)}, {}, "otter")); }

// ---- CumSum ----

void infer_cumsum(InferContext& c) {
  c.expect_dtype(0, {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int64, DType::Int32});
  check_scalar_int(c, 1, "axis");
  int64_t r = c.rank(0);
  if (r == 0) c.fail("input must have rank >= 1");
  if (const Tensor* t = c.data(1)) {
    std::vector<int64_t> v = t->to_int64_vector();
    if (v.size() != 1) c.fail("the axis input must hold one value");
    c.axis(v[0], r);
  }
  c.set_output(0, c.dtype(0), c.shape(0));
}

void cumsum_grad(GradContext& g) {
  Attributes a = g.node().attrs;
  a["reverse"] = Attribute::of_int(g.node().attr_int("reverse", 0) ? 0 : 1);
  g.set_dx(0, g.emit("CumSum", {g.dy(), g.x(1)}, a));
}

// ---- internal ops ----

// Float gradient of input 0's dtype with the shape of input `like`.
void infer_grad_like(InferContext& c, size_t like) {
  c.expect_dtype(0, {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16});
  c.set_output(0, c.dtype(0), c.shape(like));
}

OpDef def(const std::string& op, int64_t since, InferFn infer, GradFn grad, std::vector<int> diff) {
  OpDef d;
  d.op_type = op;
  d.since_version = since;
  d.infer = std::move(infer);
  d.gradient = std::move(grad);
  d.differentiable_inputs = std::move(diff);
  return d;
}

OpDef internal(const std::string& op, InferFn infer) {
  OpDef d = def(op, 1, std::move(infer), {}, {});
  d.domain = "otter";
  return d;
}

}  // namespace

void register_indexing_ops(OpRegistry& r) {
  r.add(def("GatherElements", 11, infer_gather_elements, gather_elements_grad, {0}));
  r.add(def("ScatterElements", 11, infer_scatter_elements, scatter_elements_grad, {0, 2}));
  r.add(def("ScatterND", 11, infer_scatter_nd, scatter_nd_grad, {0, 2}));
  r.add(def("Trilu", 14, infer_trilu, trilu_grad, {0}));
  r.add(def("Tile", 6, infer_tile, tile_grad, {0}));
  r.add(def("CumSum", 11, infer_cumsum, cumsum_grad, {0}));

  // GatherElementsGrad(dy, indices, data): zeros of data's shape with dy added at the indices
  // along `axis` (data read only for its shape).
  r.add(internal("GatherElementsGrad", [](InferContext& c) {
    c.expect_dtype(1, kIndexTypes);
    if (c.rank(1) != c.rank(2) || c.rank(0) != c.rank(1)) c.fail("dy, indices and data must have one rank");
    c.axis(c.node.attr_int("axis", 0), c.rank(2));
    infer_grad_like(c, 2);
  }));
  r.add(internal("GatherND", infer_gather_nd));
  // TileGrad(dy, x): dy summed over the tiles, with x's shape (x read only for its shape).
  r.add(internal("TileGrad", [](InferContext& c) {
    if (c.rank(0) != c.rank(1)) c.fail("dy and x must have one rank");
    infer_grad_like(c, 1);
  }));

  // Traits (runtime/ops/op.h).
  r.at("", "GatherElements").index_inputs = {IndexInput{1, 0, "axis", 0, false}};
  r.at("otter", "GatherElementsGrad").shape_only = shape_only_inputs({2});
  r.at("otter", "TileGrad").shape_only = shape_only_inputs({1});
  r.at("", "CumSum").precision = PrecisionClass::Fp32;
}

}  // namespace otter
