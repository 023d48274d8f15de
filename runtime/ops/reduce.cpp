// Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2,
// ReduceSumSquare, ReduceLogSum and ReduceLogSumExp in their opset-18 form (axes as an optional
// input, keepdims, noop_with_empty_axes; the importer moves older `axes` attributes into an
// input). The gradient of ReduceSum/ReduceMean is otter.ReduceGrad, which broadcasts dy back over
// the reduced axes (divided by the reduced count for the mean); the others use
// otter.ReduceOutputGrad, which also reads the input and the output: ReduceMax/ReduceMin give dy
// to the positions equal to the extreme (divided equally among ties), ReduceProd uses y / x and
// so assumes the input has no zeros, ReduceL2 gives 0 where the norm is 0.
#include <algorithm>

#include "kernels/common/attributes.h"
#include "runtime/ops/op.h"

namespace otter {

namespace {

const std::initializer_list<DType> kReduceTypes = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16,
                                                    DType::Int64,   DType::Int32};
// ReduceMax / ReduceMin also take 8-bit integers and (opset 20) bool.
const std::initializer_list<DType> kExtremeTypes = {DType::Float32, DType::Float64, DType::Float16,
                                                    DType::BFloat16, DType::Int64,  DType::Int32,
                                                    DType::Int8,    DType::Uint8,   DType::Bool};

void infer_reduce_as(InferContext& c, std::initializer_list<DType> allowed) {
  c.expect_dtype(0, allowed);
  if (c.has_input(1)) c.expect_dtype(1, {DType::Int64});
  std::optional<std::vector<int64_t>> axes_in;
  if (c.has_input(1)) {
    axes_in = c.int_values(1);
    if (!axes_in) {  // axes known only at run time: the rank is all we know
      int64_t keep = c.node.attr_int("keepdims", 1);
      if (!keep) c.fail("axes must be a constant when keepdims=0");
      Shape s(c.shape(0).size());
      for (auto& d : s) d = c.unknown_dim();
      c.set_output(0, c.dtype(0), s);
      return;
    }
  }
  bool noop = false;
  std::vector<int64_t> axes = reduction_axes(c.node, axes_in, c.rank(0), &noop);
  if (noop) { infer_same_as_input0(c); return; }
  bool keep = c.node.attr_int("keepdims", 1) != 0;
  Shape out;
  for (int64_t i = 0; i < c.rank(0); ++i) {
    bool reduced = std::binary_search(axes.begin(), axes.end(), i);
    if (!reduced) out.push_back(c.shape(0)[i]);
    else if (keep) out.push_back(1);
  }
  c.set_output(0, c.dtype(0), out);
}

void infer_reduce(InferContext& c) { infer_reduce_as(c, kReduceTypes); }

// dx = ReduceOutputGrad[op](dy, x, y, axes?): the formula per op is in kernels/cpu/reduce.cpp
// (elementwise parts in kernels/common/elementwise_math.h).
GradFn reduce_output_grad(const std::string& op) {
  return [op](GradContext& g) {
    Attributes a = g.node().attrs;
    a["op"] = Attribute::of_string(op);
    std::vector<int> inputs = {g.dy(), g.x(0), g.y(0)};
    if (g.x(1) >= 0) inputs.push_back(g.x(1));
    g.set_dx(0, g.emit("ReduceOutputGrad", inputs, a, "otter"));
  };
}

GradFn reduce_grad(bool mean) {
  return [mean](GradContext& g) {
    Attributes a = g.node().attrs;
    a["mean"] = Attribute::of_int(mean ? 1 : 0);
    std::vector<int> inputs = {g.dy(), g.x(0)};
    if (g.x(1) >= 0) inputs.push_back(g.x(1));
    g.set_dx(0, g.emit("ReduceGrad", inputs, a, "otter"));
  };
}

}  // namespace

void register_reduce_ops(OpRegistry& r) {
  for (bool mean : {false, true}) {
    OpDef d;
    d.op_type = mean ? "ReduceMean" : "ReduceSum";
    d.infer = infer_reduce;
    d.gradient = reduce_grad(mean);
    d.differentiable_inputs = {0};
    r.add(d);
  }
  for (const char* op : {"ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare",
                         "ReduceLogSum", "ReduceLogSumExp"}) {
    OpDef d;
    d.op_type = op;
    bool extreme = std::string(op) == "ReduceMax" || std::string(op) == "ReduceMin";
    if (extreme) d.infer = [](InferContext& c) { infer_reduce_as(c, kExtremeTypes); };
    else d.infer = infer_reduce;
    d.gradient = reduce_output_grad(op);
    d.differentiable_inputs = {0};
    r.add(d);
  }
  OpDef g;
  g.domain = "otter";
  g.op_type = "ReduceGrad";  // (dy, x, axes?) -> dx shaped like x; x is read for its shape only
  g.infer = [](InferContext& c) { c.set_output(0, c.dtype(0), c.shape(1)); };
  r.add(g);
  OpDef o;
  o.domain = "otter";
  o.op_type = "ReduceOutputGrad";  // (dy, x, y, axes?) -> dx shaped like x
  o.infer = [](InferContext& c) { c.set_output(0, c.dtype(0), c.shape(1)); };
  r.add(o);

  // Traits (runtime/ops/op.h).
  r.at("otter", "ReduceGrad").shape_only = shape_only_inputs({1});
  for (const char* op : {"ReduceSum", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
                         "ReduceLogSumExp", "ReduceSumSquare"})
    r.at("", op).precision = PrecisionClass::Fp32;
}

}  // namespace otter
