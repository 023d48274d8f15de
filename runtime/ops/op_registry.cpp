// The op registry and the contexts that inference and gradient builders work through.
#include "runtime/ops/op.h"

#include <algorithm>

namespace otter {

const ValueInfo& InferContext::input(size_t i) const {
  if (!has_input(i)) fail(cat("input ", i, " is required"));
  return *inputs_[i];
}

const Tensor* InferContext::data(size_t i) const {
  if (!has_input(i) || !inputs_[i]->data.defined()) return nullptr;
  return &inputs_[i]->data;
}

std::optional<std::vector<int64_t>> InferContext::int_values(size_t i) const {
  if (!has_input(i)) return std::nullopt;
  const ValueInfo& v = *inputs_[i];
  if (v.data.defined()) return v.data.to_int64_vector();
  if (v.has_shape_data) return v.shape_data;
  return std::nullopt;
}

void InferContext::set_output(size_t i, DType dtype, Shape shape) {
  if (i >= outputs.size()) return;  // an omitted optional output
  outputs[i].dtype = dtype;
  outputs[i].shape = std::move(shape);
}

int64_t InferContext::unknown_dim() {
  if (!graph_) fail("an output size depends on data that is not known when the plan is built");
  return graph_->symbol(graph_->unique_name("unk"));
}

void InferContext::fail(const std::string& problem) const {
  OTTER_FAIL(node.describe(), ": ", problem);
}

int64_t InferContext::axis(int64_t axis, int64_t rank, const char* what) const {
  if (axis < -rank || axis >= rank) fail(cat(what, " ", axis, " is out of range for rank ", rank));
  return axis < 0 ? axis + rank : axis;
}

void InferContext::expect_dtype(size_t i, std::initializer_list<DType> allowed) const {
  DType t = dtype(i);
  for (DType a : allowed)
    if (a == t) return;
  std::string names;
  for (DType a : allowed) names += std::string(names.empty() ? "" : ", ") + dtype_name(a);
  fail(cat("input ", i, " has dtype ", dtype_name(t), "; expected one of ", names));
}

void InferContext::expect_same_dtype(size_t a, size_t b) const {
  if (dtype(a) != dtype(b))
    fail(cat("dtype mismatch: input ", a, " is ", dtype_name(dtype(a)), " but input ", b, " is ",
             dtype_name(dtype(b))));
}

int GradContext::emit(const std::string& op, const std::vector<int>& inputs, Attributes attrs,
                      const std::string& domain) {
  return emit_n(op, inputs, 1, std::move(attrs), domain)[0];
}

std::vector<int> GradContext::emit_n(const std::string& op, const std::vector<int>& inputs, int num_outputs,
                                     Attributes attrs, const std::string& domain) {
  std::string name = graph.unique_name("grad/" + graph.nodes[node_id_].name + "/" + op);
  int id = graph.add_node(op, inputs, num_outputs, std::move(attrs), domain, name);
  return graph.nodes[id].outputs;
}

int GradContext::sum_to_shape_of(int grad, int like) {
  const Value& g = graph.values[grad];
  const Value& l = graph.values[like];
  if (g.shape_known && l.shape_known && g.shape == l.shape) return grad;  // no broadcast
  return emit("SumToShapeOf", {grad, like}, {}, "otter");
}

int GradContext::constant_int64s(const std::vector<int64_t>& values) {
  Attributes a;
  a["value"] = Attribute::of_tensor(Tensor::from_vector(values, {static_cast<int64_t>(values.size())}));
  return emit("Constant", {}, std::move(a));
}

int GradContext::constant_scalar(double value, DType dtype) {
  Attributes a;
  a["value"] = Attribute::of_tensor(Tensor::scalar<double>(value).cast(dtype));
  return emit("Constant", {}, std::move(a));
}

Shape broadcast_shapes(const InferContext& ctx, const std::vector<Shape>& shapes) {
  size_t rank = 0;
  for (const Shape& s : shapes) rank = std::max(rank, s.size());
  Shape out(rank, 1);
  for (size_t k = 0; k < rank; ++k) {
    int64_t dim = 1;
    for (const Shape& s : shapes) {
      if (k + s.size() < rank) continue;
      int64_t d = s[k + s.size() - rank];
      if (d == 1) continue;
      if (dim == 1) dim = d;
      else if (d != dim) {
        if (d < 0 || dim < 0) { dim = d < 0 ? dim : d; continue; }  // symbolic vs known: trust the known
        std::string all;
        for (const Shape& t : shapes) all += (all.empty() ? "" : " and ") + ctx.dims(t);
        ctx.fail(cat("shapes ", all, " do not broadcast"));
      }
    }
    out[k] = dim;
  }
  return out;
}

void infer_same_as_input0(InferContext& ctx) { ctx.set_output(0, ctx.dtype(0), ctx.shape(0)); }

OpDef& OpRegistry::add(OpDef def) {
  std::string key = def.domain + "::" + def.op_type;
  return defs_[key] = std::move(def);
}

OpDef& OpRegistry::at(const std::string& domain, const std::string& op_type) {
  auto it = defs_.find(domain + "::" + op_type);
  OTTER_CHECK(it != defs_.end(), "op registry: ", domain, "::", op_type, " is not registered");
  return it->second;
}

ShapeOnlyFn shape_only_inputs(std::vector<size_t> inputs) {
  return [inputs](const Node&, size_t i) { return std::find(inputs.begin(), inputs.end(), i) != inputs.end(); };
}

ShapeOnlyFn shape_only_from(size_t first) {
  return [first](const Node&, size_t i) { return i >= first; };
}

std::function<bool(const Node&, const KnownInputFn&)> view_when_input_zero(size_t input) {
  return [input](const Node&, const KnownInputFn& known) {
    const Tensor* t = known(input);
    return t && t->defined() && t->numel() == 1 && t->to_double_vector()[0] == 0.0;
  };
}

bool check_index_values(const Node& n, const IndexInput& index, const Shape& data, const Tensor& values) {
  int64_t axis = index.axis_attr.empty() ? index.default_axis : n.attr_int(index.axis_attr, index.default_axis);
  if (axis < 0) axis += static_cast<int64_t>(data.size());
  if (axis < 0 || axis >= static_cast<int64_t>(data.size())) return false;  // the kernel reports it
  const int64_t size = data[static_cast<size_t>(axis)];
  const bool has_ignore = index.labels && n.has_attr("ignore_index");
  const int64_t ignore = n.attr_int("ignore_index", 0);
  std::vector<int64_t> v = values.to_int64_vector();
  for (size_t i = 0; i < v.size(); ++i) {
    if (index.labels)
      OTTER_CHECK((has_ignore && v[i] == ignore) || (v[i] >= 0 && v[i] < size), n.describe(), ": label ", v[i],
                  " at position ", i, " is out of range [0, ", size, ")");
    else
      OTTER_CHECK(v[i] >= -size && v[i] < size, n.describe(), ": index ", v[i], " is out of range for axis ", axis,
                  " of size ", size);
  }
  return true;
}

const OpDef* OpRegistry::find(const std::string& domain, const std::string& op_type) const {
  std::string d = domain == "ai.onnx" ? "" : domain;
  auto it = defs_.find(d + "::" + op_type);
  return it == defs_.end() ? nullptr : &it->second;
}

std::vector<const OpDef*> OpRegistry::all() const {
  std::vector<const OpDef*> r;
  for (auto& kv : defs_) r.push_back(&kv.second);
  return r;
}

const OpRegistry& OpRegistry::instance() {
  static const OpRegistry registry = [] {
    OpRegistry r;
#define OTTER_FAMILY(NAME) register_##NAME##_ops(r);
#include "runtime/ops/families.h"
    register_ort_grad_ops(r);
    return r;
  }();
  return registry;
}

}  // namespace otter
