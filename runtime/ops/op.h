// What each op IS: its shape/type inference, its gradient builder and which of its inputs are
// differentiable. One registry of OpDefs keyed by (domain, op_type), filled by one explicit
// registration function per op family (see op_registry.cpp); no static-initialiser magic.
//
// Inference is shared by the IR (symbolic shapes: negative dims are symbols) and the execution
// plan (concrete shapes): an infer function sees ValueInfos and may read an input's data when it
// is known (a Constant, an initializer that is not trained, a Shape result). Gradient builders
// emit ordinary graph nodes (see GradContext); shapes they need at run time come from Shape
// nodes or from otter-domain ops that read a value only for its shape.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "runtime/ir/graph.h"

namespace otter {

struct ValueInfo {
  DType dtype = DType::Undefined;
  Shape shape;
  Tensor data;                      // known data, if any
  std::vector<int64_t> shape_data;  // for 1-D int64 shape tensors: elements, possibly symbolic
  bool has_shape_data = false;
};

class InferContext {
 public:
  InferContext(Graph* graph, const Node& node, std::vector<const ValueInfo*> inputs)
      : node(node), outputs(node.outputs.size()), graph_(graph), inputs_(std::move(inputs)) {}

  const Node& node;
  std::vector<ValueInfo> outputs;
  size_t num_inputs() const { return inputs_.size(); }
  bool has_input(size_t i) const { return i < inputs_.size() && inputs_[i] != nullptr; }
  const ValueInfo& input(size_t i) const;
  DType dtype(size_t i) const { return input(i).dtype; }
  const Shape& shape(size_t i) const { return input(i).shape; }
  int64_t rank(size_t i) const { return static_cast<int64_t>(input(i).shape.size()); }
  // The input's data, or nullptr when it is not known before running.
  const Tensor* data(size_t i) const;
  // The input's values as int64 when known (from data or from a Shape), else nullopt.
  std::optional<std::vector<int64_t>> int_values(size_t i) const;
  void set_output(size_t i, DType dtype, Shape shape);
  // A fresh symbolic dim for a size not known before running (IR level only; in a plan every
  // size is known, so asking for one there is an error).
  int64_t unknown_dim();
  [[noreturn]] void fail(const std::string& problem) const;
  // Normalises a possibly negative axis for a tensor of `rank`, with a clear error.
  int64_t axis(int64_t axis, int64_t rank, const char* what = "axis") const;
  // Checks that input i has one of the dtypes.
  void expect_dtype(size_t i, std::initializer_list<DType> allowed) const;
  void expect_same_dtype(size_t a, size_t b) const;
  std::string dims(const Shape& s) const { return graph_ ? graph_->shape_str(s) : shape_str(s); }

 private:
  Graph* graph_;
  std::vector<const ValueInfo*> inputs_;
};

class GradContext {
 public:
  GradContext(Graph& graph, int node_id, std::vector<int> output_grads, std::vector<bool> wanted)
      : graph(graph), input_grads(graph.nodes[node_id].inputs.size(), -1), node_id_(node_id),
        output_grads_(std::move(output_grads)), wanted_(std::move(wanted)) {}

  Graph& graph;
  std::vector<int> input_grads;
  // A reference into graph.nodes: emit() may reallocate the list, so read what you need from it
  // before emitting (holding it across an emit was a use-after-free found by fuzzing under ASan).
  const Node& node() const { return graph.nodes[node_id_]; }
  int x(size_t i) const { return node().input(i); }   // forward input value id
  int y(size_t i) const { return node().outputs.at(i); }  // forward output value id
  int dy(size_t i = 0) const { return i < output_grads_.size() ? output_grads_[i] : -1; }
  bool wants(size_t i) const { return i < wanted_.size() && wanted_[i]; }
  void set_dx(size_t i, int grad_value) { if (wants(i)) input_grads[i] = grad_value; }
  // A reference into graph.values: do not hold it across emit() either.
  const Value& value(int id) const { return graph.values[id]; }
  int64_t rank(int value_id) const { return static_cast<int64_t>(graph.values[value_id].shape.size()); }

  // Emits a node and returns its first output value id (or all of them with emit_n).
  int emit(const std::string& op, const std::vector<int>& inputs, Attributes attrs = {},
           const std::string& domain = "");
  std::vector<int> emit_n(const std::string& op, const std::vector<int>& inputs, int num_outputs,
                          Attributes attrs = {}, const std::string& domain = "");
  int shape_of(int value_id) { return emit("Shape", {value_id}); }
  // Sums `grad` over broadcast dims so that it has the shape of value `like`.
  int sum_to_shape_of(int grad, int like);
  int constant_int64s(const std::vector<int64_t>& values);
  int constant_scalar(double value, DType dtype);

 private:
  int node_id_;
  std::vector<int> output_grads_;
  std::vector<bool> wanted_;
};

using InferFn = std::function<void(InferContext&)>;
using GradFn = std::function<void(GradContext&)>;

// ---- Op traits: facts about an op that other layers (plan, session, autocast) ask for ----

// The precision policy's class of an op (runtime/passes/autocast.cpp, design decision 8):
// Lower runs in FP16/BF16, Fp32 in FP32, Follow takes the widest activation input's type.
enum class PrecisionClass { Lower, Fp32, Follow };

// Which inputs a kernel reads only for their shape, never their data (the internal gradient ops
// that take a forward value to know the shape of what they write). The plan does not keep such a
// value alive for the read and hands the kernel a data-less view (a kernel that did read the data
// would crash on a null pointer rather than read memory given to another value).
using ShapeOnlyFn = std::function<bool(const Node& node, size_t input)>;
ShapeOnlyFn shape_only_inputs(std::vector<size_t> inputs);  // exactly these inputs
ShapeOnlyFn shape_only_from(size_t first);                  // inputs first, first + 1, ...

// Output `output` may be a view of input `input` (the same bytes under another shape) when both
// have one dtype and one element count and `when` holds (empty: always). `when` sees the node and
// the input's value when it is known at plan time (else nullptr), e.g. Dropout at ratio 0. Other
// outputs of the op (Dropout's mask) are dropped by the plan only when nothing needs them.
using KnownInputFn = std::function<const Tensor*(size_t input)>;
struct ViewTrait {
  int input = 0;
  int output = 0;
  std::function<bool(const Node& node, const KnownInputFn& known)> when;
};
// A predicate for ViewTrait::when: input i is a known scalar equal to 0.
std::function<bool(const Node&, const KnownInputFn&)> view_when_input_zero(size_t input);

// An input holding indices (or class labels) into input `data`'s dim `axis`. Feeds for it are
// range-checked on the host (runtime/train/session.cpp), so the device kernel may skip its own
// synchronising check (KernelContext::checked_inputs). Indices are valid in [-size, size); labels
// in [0, size) or equal to the node's ignore_index attribute when it has one.
struct IndexInput {
  int input = 1;
  int data = 0;
  std::string axis_attr;      // empty: the axis is fixed at default_axis
  int64_t default_axis = 0;
  bool labels = false;
};
// Throws (naming the node) when `values` (int32/int64 on the host) holds an index out of range
// for data of shape `data`; returns false, checking nothing, when the axis is itself out of range
// (the kernel reports that).
bool check_index_values(const Node& node, const IndexInput& index, const Shape& data, const Tensor& values);

struct OpDef {
  std::string domain;
  std::string op_type;
  int64_t since_version = 1;  // oldest ai.onnx opset whose form this definition accepts
  InferFn infer;
  GradFn gradient;            // empty: not differentiable (or gradient not supported)
  std::vector<int> differentiable_inputs;  // empty: all floating inputs
  bool deterministic = true;  // false for random ops (never constant-folded)
  int kernel_type_input = 0;  // which input's dtype picks the kernel (-1: output 0)
  // Traits (see above): asked by exec/plan, train/session and passes/autocast; checked against
  // the kernels by tests/unit/test_op_traits.cpp.
  ShapeOnlyFn shape_only;                // empty: every input's data is read
  std::vector<ViewTrait> views;          // outputs the plan may make views instead of running the op
  std::vector<IndexInput> index_inputs;  // inputs range-checked on the host
  PrecisionClass precision = PrecisionClass::Follow;
  // A graph-level op with no kernel: a pass rewrites it into other nodes before a graph is planned
  // (ai.onnx.preview.training Gradient: runtime/passes/gradient_op.h).
  bool graph_level = false;

  bool reads_only_shape(const Node& node, size_t input) const { return shape_only && shape_only(node, input); }
};

class OpRegistry {
 public:
  static const OpRegistry& instance();
  const OpDef* find(const std::string& domain, const std::string& op_type) const;
  OpDef& add(OpDef def);
  // A registered definition, to set traits after a family's loop of adds (fails if absent).
  OpDef& at(const std::string& domain, const std::string& op_type);
  std::vector<const OpDef*> all() const;

 private:
  std::map<std::string, OpDef> defs_;
};

// One registration function per op family (runtime/ops/families.h lists them).
#define OTTER_FAMILY(NAME) void register_##NAME##_ops(OpRegistry& registry);
#include "runtime/ops/families.h"
// Graph-level ops with no kernels (com.microsoft ConvGrad, MaxPoolGrad of ORT artifacts): not a
// kernel family, so not in families.h.
void register_ort_grad_ops(OpRegistry& registry);
// com.microsoft FusedMatMul's operand permutation (runtime/ops/ort_grad.cpp): transBatch moves dim
// 0 to just before the last dim, then trans swaps the last two; and the permuted shape.
std::vector<int64_t> fused_matmul_perm(size_t rank, bool trans_batch, bool trans);
Shape fused_matmul_operand(const Shape& shape, bool trans_batch, bool trans);

// Helpers shared by the op families.
// Numpy-style broadcast of shapes (symbolic dims allowed); fails with a message naming the node.
Shape broadcast_shapes(const InferContext& ctx, const std::vector<Shape>& shapes);
// Output dtype = input 0 dtype, shape = input 0 shape.
void infer_same_as_input0(InferContext& ctx);

}  // namespace otter
