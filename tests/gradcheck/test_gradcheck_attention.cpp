// ONNX Attention, expanded into primitive ops at import (onnx_import/expand_functions.cpp):
// finite-difference gradient checks of the expanded graph with respect to Q, K, V (and
// past_key/past_value and a float attn_mask where given), in float64, for 4-D and 3-D inputs,
// grouped-query heads, causal masks with and without a cache, bool/float masks (padded, with a
// fully masked row), softcap, windows, nonpad_kv_seqlen and symbolic sizes read at run time;
// a forward comparison of a model with symbolic dims against the same model with static dims;
// and the import errors for what the expansion does not support. Forward correctness against
// the reference comes from the ONNX node tests (test_attention_*, run by NodeConformance).
#include <gtest/gtest.h>

#include <algorithm>

#include "tests/common/gradcheck.h"
#include "tests/common/onnx_builder.h"

namespace otter::testing {
namespace {

struct ModelInput {
  std::string name;
  int32_t elem_type;
  std::vector<Dim> dims;
};

void attr_float(onnx::NodeProto* n, const std::string& name, float v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}

constexpr int32_t kDouble = onnx::TensorProto::DOUBLE;
constexpr int32_t kBool = onnx::TensorProto::BOOL;
constexpr int32_t kInt64 = onnx::TensorProto::INT64;

// A model with one Attention node named "attn". node_inputs use "" for omitted inputs; outputs
// likewise ("" omits an output).
onnx::ModelProto attention_model(int64_t opset, const std::vector<ModelInput>& inputs,
                                 const std::vector<std::string>& node_inputs, const std::vector<std::string>& outputs,
                                 const std::vector<std::pair<std::string, int64_t>>& int_attrs,
                                 const std::vector<std::pair<std::string, float>>& float_attrs = {}) {
  onnx::ModelProto m = new_model(opset);
  for (const auto& in : inputs) add_input(m, in.name, in.elem_type, in.dims);
  auto* n = add_node(m, "Attention", node_inputs, outputs, "attn");
  for (const auto& a : int_attrs) attr_int(n, a.first, a.second);
  for (const auto& a : float_attrs) attr_float(n, a.first, a.second);
  for (const auto& o : outputs)
    if (!o.empty()) add_output(m, o, kDouble);
  return m;
}

// Gradient check of output `checked_output` of a loaded graph: the named graph inputs become
// initializers holding (a copy of) the given data, the differentiable ones named in `wrt` (all
// of them when empty) are the parameters, then check_gradients (gradcheck.h) differentiates the
// loss sum(y * R).
void check_graph(Graph& g, const std::map<std::string, In>& data, int checked_output = 0,
                 const std::set<std::string>& wrt = {}) {
  std::vector<int> params;
  for (const auto& kv : data) {
    int v = g.value_id(kv.first);
    Value& val = g.values[v];
    val.data = kv.second.data.clone();
    val.dtype = kv.second.data.dtype();
    val.shape = kv.second.data.shape();
    val.shape_known = true;
    val.is_initializer = true;
    g.initializers.push_back(v);
    g.inputs.erase(std::remove(g.inputs.begin(), g.inputs.end(), v), g.inputs.end());
    if (kv.second.differentiable && (wrt.empty() || wrt.count(kv.first))) params.push_back(v);
  }
  ASSERT_TRUE(g.inputs.empty()) << "every graph input needs data";
  check_gradients(g, params, g.outputs.at(static_cast<size_t>(checked_output)), RunOptions{}, true);
}

bool has_attention(const Graph& g) {
  for (const Node& n : g.nodes)
    if (n.op_type == "Attention") return true;
  return false;
}

TEST(GradcheckAttention, Causal4D) {
  auto m = attention_model(23, {{"Q", kDouble, {2, 2, 3, 4}}, {"K", kDouble, {2, 2, 3, 4}}, {"V", kDouble, {2, 2, 3, 5}}},
                           {"Q", "K", "V"}, {"Y"}, {{"is_causal", 1}});
  LoadedModel lm = load(m);
  EXPECT_FALSE(has_attention(lm.graph));
  check_graph(lm.graph, {{"Q", P({2, 2, 3, 4})}, {"K", P({2, 2, 3, 4})}, {"V", P({2, 2, 3, 5})}});
}

TEST(GradcheckAttention, NoMaskCrossAttention4D) {
  // Sq != Skv, explicit scale.
  auto m = attention_model(23, {{"Q", kDouble, {1, 2, 2, 3}}, {"K", kDouble, {1, 2, 4, 3}}, {"V", kDouble, {1, 2, 4, 3}}},
                           {"Q", "K", "V"}, {"Y"}, {}, {{"scale", 0.7f}});
  LoadedModel lm = load(m);
  check_graph(lm.graph, {{"Q", P({1, 2, 2, 3})}, {"K", P({1, 2, 4, 3})}, {"V", P({1, 2, 4, 3})}});
}

TEST(GradcheckAttention, FloatMaskQkOutputMode2) {
  // A float mask of rank 3 ([heads, Sq, Skv]) added to the scores; qk_matmul_output mode 2 is
  // the scores with the mask.
  auto m = attention_model(23,
                           {{"Q", kDouble, {2, 2, 2, 3}}, {"K", kDouble, {2, 2, 3, 3}}, {"V", kDouble, {2, 2, 3, 2}},
                            {"mask", kDouble, {2, 2, 3}}},
                           {"Q", "K", "V", "mask"}, {"Y", "", "", "qk"}, {{"qk_matmul_output_mode", 2}});
  std::map<std::string, In> data = {
      {"Q", P({2, 2, 2, 3})}, {"K", P({2, 2, 3, 3})}, {"V", P({2, 2, 3, 2})}, {"mask", P({2, 2, 3})}};
  for (int out : {0, 1}) {
    LoadedModel lm = load(m);
    check_graph(lm.graph, data, out, out == 0 ? std::set<std::string>{} : std::set<std::string>{"Q", "K", "mask"});
  }
}

TEST(GradcheckAttention, GqaPastFloatMaskSoftcap3D) {
  // 3-D inputs, 4 query heads over 2 kv heads, a cache (past 2 + new 3 keys), a float mask one
  // key shorter than the 5 keys (padded with -inf), softcap and qk_matmul_output (mode 1: after
  // the softcap; mode 2 would hold the padding's -inf).
  auto m = attention_model(
      23,
      {{"Q", kDouble, {2, 3, 8}}, {"K", kDouble, {2, 3, 4}}, {"V", kDouble, {2, 3, 6}}, {"mask", kDouble, {3, 4}},
       {"past_key", kDouble, {2, 2, 2, 2}}, {"past_value", kDouble, {2, 2, 2, 3}}},
      {"Q", "K", "V", "mask", "past_key", "past_value"}, {"Y", "present_key", "present_value", "qk"},
      {{"q_num_heads", 4}, {"kv_num_heads", 2}, {"qk_matmul_output_mode", 1}}, {{"softcap", 1.5f}});
  std::map<std::string, In> data = {{"Q", P({2, 3, 8})},          {"K", P({2, 3, 4})},
                                    {"V", P({2, 3, 6})},          {"mask", P({3, 4})},
                                    {"past_key", P({2, 2, 2, 2})}, {"past_value", P({2, 2, 2, 3})}};
  const std::set<std::string> wrt[4] = {{}, {"K", "past_key"}, {"V", "past_value"}, {"Q", "K", "past_key"}};
  for (int out : {0, 1, 2, 3}) {
    SCOPED_TRACE(out);
    LoadedModel lm = load(m);
    check_graph(lm.graph, data, out, wrt[out]);
  }
}

TEST(GradcheckAttention, CausalWithPast4D) {
  auto m = attention_model(24,
                           {{"Q", kDouble, {1, 2, 2, 3}}, {"K", kDouble, {1, 2, 2, 3}}, {"V", kDouble, {1, 2, 2, 3}},
                            {"past_key", kDouble, {1, 2, 3, 3}}, {"past_value", kDouble, {1, 2, 3, 3}}},
                           {"Q", "K", "V", "", "past_key", "past_value"}, {"Y", "present_key", "present_value"},
                           {{"is_causal", 1}});
  LoadedModel lm = load(m);
  check_graph(lm.graph, {{"Q", P({1, 2, 2, 3})},
                         {"K", P({1, 2, 2, 3})},
                         {"V", P({1, 2, 2, 3})},
                         {"past_key", P({1, 2, 3, 3})},
                         {"past_value", P({1, 2, 3, 3})}});
}

TEST(GradcheckAttention, BoolMaskWithFullyMaskedRow) {
  // Query row 1 attends no key: its output is 0 and its gradients are 0, without NaN.
  auto m = attention_model(23,
                           {{"Q", kDouble, {1, 2, 3, 4}}, {"K", kDouble, {1, 2, 3, 4}}, {"V", kDouble, {1, 2, 3, 4}},
                            {"mask", kBool, {3, 3}}},
                           {"Q", "K", "V", "mask"}, {"Y", "", "", "qk"}, {{"qk_matmul_output_mode", 3}});
  In mask = Cb({true, false, true, false, false, false, true, true, true}, {3, 3});
  for (int out : {0, 1}) {
    LoadedModel lm = load(m);
    check_graph(lm.graph, {{"Q", P({1, 2, 3, 4})}, {"K", P({1, 2, 3, 4})}, {"V", P({1, 2, 3, 4})}, {"mask", mask}},
                out, out == 0 ? std::set<std::string>{} : std::set<std::string>{"Q", "K"});
  }
}

TEST(GradcheckAttention, NonpadCausalGqa) {
  auto m = attention_model(24,
                           {{"Q", kDouble, {2, 4, 2, 3}}, {"K", kDouble, {2, 2, 4, 3}}, {"V", kDouble, {2, 2, 4, 3}},
                            {"nonpad", kInt64, {2}}},
                           {"Q", "K", "V", "", "", "", "nonpad"}, {"Y"}, {{"is_causal", 1}});
  LoadedModel lm = load(m);
  check_graph(lm.graph, {{"Q", P({2, 4, 2, 3})},
                         {"K", P({2, 2, 4, 3})},
                         {"V", P({2, 2, 4, 3})},
                         {"nonpad", Ci({3, 4})}});
}

TEST(GradcheckAttention, SlidingWindow) {
  auto m = attention_model(25, {{"Q", kDouble, {1, 1, 4, 2}}, {"K", kDouble, {1, 1, 4, 2}}, {"V", kDouble, {1, 1, 4, 2}}},
                           {"Q", "K", "V"}, {"Y"}, {{"left_window_size", 1}, {"right_window_size", 1}});
  LoadedModel lm = load(m);
  check_graph(lm.graph, {{"Q", P({1, 1, 4, 2})}, {"K", P({1, 1, 4, 2})}, {"V", P({1, 1, 4, 2})}});
}

TEST(GradcheckAttention, SymbolicSizes) {
  // Batch, heads and sequence lengths symbolic at import (kv heads fewer than query heads, a bool
  // mask whose key length is a symbol of its own, a cache): every size is read at run time.
  auto m = attention_model(23,
                           {{"Q", kDouble, {"B", "Hq", "S", 3}},
                            {"K", kDouble, {"B", "Hkv", "S", 3}},
                            {"V", kDouble, {"B", "Hkv", "S", 2}},
                            {"mask", kBool, {"S", "M"}},
                            {"past_key", kDouble, {"B", "Hkv", "P", 3}},
                            {"past_value", kDouble, {"B", "Hkv", "P", 2}}},
                           {"Q", "K", "V", "mask", "past_key", "past_value"}, {"Y", "present_key", "present_value"},
                           {{"is_causal", 1}});
  LoadedModel lm = load(m);
  In mask = Cb({true, true, false, true, true, true}, {2, 3});  // 3 of the 4 keys: the last is padded
  check_graph(lm.graph, {{"Q", P({2, 4, 2, 3})},
                         {"K", P({2, 2, 2, 3})},
                         {"V", P({2, 2, 2, 2})},
                         {"mask", mask},
                         {"past_key", P({2, 2, 2, 3})},
                         {"past_value", P({2, 2, 2, 2})}});
}

TEST(GradcheckAttention, TwoChainedNodes) {
  // The second Attention reads the first one's output: it is expanded after it, and the node
  // list stays in topological order (every input produced by an earlier node).
  onnx::ModelProto m = new_model(23);
  for (const char* name : {"Q", "K", "V"}) add_input(m, name, kDouble, {1, 2, 3, 2});
  add_node(m, "Mul", {"Q", "K"}, {"QK"}, "mul");
  attr_int(add_node(m, "Attention", {"QK", "K", "V"}, {"Y1"}, "attn1"), "is_causal", 1);
  add_node(m, "Attention", {"Y1", "K", "Y1"}, {"Y2"}, "attn2");
  add_node(m, "Neg", {"Y2"}, {"Y"}, "neg");
  add_output(m, "Y", kDouble);
  LoadedModel lm = load(m);
  const Graph& g = lm.graph;
  EXPECT_FALSE(has_attention(g));
  for (size_t n = 0; n < g.nodes.size(); ++n)
    for (int v : g.nodes[n].inputs) {
      if (v >= 0) {
        EXPECT_LT(g.values[v].producer, static_cast<int>(n)) << g.nodes[n].describe();
      }
    }
  EXPECT_EQ(g.nodes.front().name, "mul");
  EXPECT_EQ(g.nodes.back().name, "neg");
  EXPECT_EQ(g.nodes[g.values[g.value_id("Y1")].producer].op_type, "MatMul");
  check_graph(lm.graph, {{"Q", P({1, 2, 3, 2})}, {"K", P({1, 2, 3, 2})}, {"V", P({1, 2, 3, 2})}});
}

// Runs a loaded single-output graph on the given inputs.
Tensor run_forward(Graph& g, const std::map<std::string, Tensor>& inputs) {
  std::map<int, Shape> shapes;
  std::map<int, Tensor> feeds;
  PlanOptions options;
  options.targets = g.outputs;
  for (const auto& kv : inputs) {
    int v = g.value_id(kv.first);
    feeds[v] = kv.second;
    if (is_floating(kv.second.dtype())) shapes[v] = kv.second.shape();
    else options.bound[v] = kv.second;
  }
  Plan plan(g, shapes, options);
  RunOptions ro;
  ro.training = false;
  plan.run(feeds, ro);
  return plan.value(g.outputs[0]);
}

TEST(AttentionImport, SymbolicMatchesStatic3D) {
  // The same model with static and with symbolic dims (the mask's key length a symbol of its
  // own, shorter than the keys: padded at run time), on the same data.
  std::vector<std::string> in = {"Q", "K", "V", "mask"};
  std::vector<std::pair<std::string, int64_t>> attrs = {{"q_num_heads", 4}, {"kv_num_heads", 2}, {"is_causal", 1}};
  for (Shape mask_shape : {Shape{2, 1, 3, 4}, Shape{4}}) {
    std::vector<Dim> static_dims(mask_shape.begin(), mask_shape.end()), symbolic_dims = {"B", 1, "S", "M"};
    if (mask_shape.size() == 1) symbolic_dims = {"M"};
    auto fixed = attention_model(23, {{"Q", kDouble, {2, 3, 8}}, {"K", kDouble, {2, 5, 4}}, {"V", kDouble, {2, 5, 6}},
                                      {"mask", kDouble, static_dims}},
                                 in, {"Y"}, attrs);
    auto symbolic = attention_model(23, {{"Q", kDouble, {"B", "S", 8}}, {"K", kDouble, {"B", "T", "E"}},
                                         {"V", kDouble, {"B", "T", "F"}}, {"mask", kDouble, symbolic_dims}},
                                    in, {"Y"}, attrs);
    std::map<std::string, Tensor> data = {{"Q", P({2, 3, 8}).data}, {"K", P({2, 5, 4}).data},
                                          {"V", P({2, 5, 6}).data}, {"mask", P(mask_shape).data}};
    LoadedModel a = load(fixed), b = load(symbolic);
    std::vector<double> ya = run_forward(a.graph, data).to_double_vector();
    Tensor yb = run_forward(b.graph, data);
    EXPECT_EQ(yb.shape(), (Shape{2, 3, 12}));
    std::vector<double> yv = yb.to_double_vector();
    ASSERT_EQ(ya.size(), yv.size());
    for (size_t i = 0; i < ya.size(); ++i) EXPECT_NEAR(ya[i], yv[i], 1e-12) << i;
  }
}

// The message of the error loading `m` throws (empty if none).
std::string load_error(const onnx::ModelProto& m, ErrorKind* kind = nullptr) {
  try {
    load(m);
  } catch (const Error& e) {
    if (kind) *kind = e.kind();
    return e.what();
  }
  return "";
}

TEST(AttentionImport, ClearErrors) {
  std::vector<ModelInput> in4 = {{"Q", kDouble, {1, 2, 3, 4}}, {"K", kDouble, {1, 2, 3, 4}}, {"V", kDouble, {1, 2, 3, 4}}};
  std::vector<ModelInput> in3 = {{"Q", kDouble, {1, 3, 8}}, {"K", kDouble, {1, 3, 8}}, {"V", kDouble, {1, 3, 8}}};
  ErrorKind kind = ErrorKind::Internal;
  std::string e = load_error(attention_model(23, in4, {"Q", "K", "V"}, {"Y"}, {{"softmax_precision", 7}}), &kind);
  EXPECT_NE(e.find("Attention node 'attn'"), std::string::npos) << e;
  EXPECT_NE(e.find("softmax_precision"), std::string::npos) << e;
  EXPECT_EQ(kind, ErrorKind::Unsupported);
  e = load_error(attention_model(23, in4, {"Q", "K", "V"}, {"Y"}, {{"qk_matmul_output_mode", 5}}));
  EXPECT_NE(e.find("qk_matmul_output_mode"), std::string::npos) << e;
  e = load_error(attention_model(23, in4, {"Q", "K", "V"}, {"Y"}, {{"left_window_size", 2}}));
  EXPECT_NE(e.find("'left_window_size'"), std::string::npos) << e;  // an opset-25 attribute
  e = load_error(attention_model(23, in3, {"Q", "K", "V"}, {"Y"}, {}));
  EXPECT_NE(e.find("q_num_heads"), std::string::npos) << e;
  e = load_error(attention_model(23, in3, {"Q", "K", "V"}, {"Y"}, {{"q_num_heads", 3}, {"kv_num_heads", 2}}));
  EXPECT_NE(e.find("not divisible by 3 heads"), std::string::npos) << e;
  e = load_error(attention_model(23, in4, {"Q", "K", "V"}, {"Y"}, {}, {{"scale", -1.0f}}));
  EXPECT_NE(e.find("'scale'"), std::string::npos) << e;
  e = load_error(attention_model(23, {in4[0], in4[1], in4[2], {"mask", kInt64, {3, 3}}}, {"Q", "K", "V", "mask"}, {"Y"}, {}));
  EXPECT_NE(e.find("attn_mask of dtype"), std::string::npos) << e;
  e = load_error(attention_model(23, {in4[0], in4[1], in4[2], {"mask", kDouble, {3, 5}}}, {"Q", "K", "V", "mask"}, {"Y"}, {}));
  EXPECT_NE(e.find("more keys"), std::string::npos) << e;
  e = load_error(attention_model(23, {in4[0], in4[1], in4[2], {"past_key", kDouble, {1, 2, 1, 4}}},
                                 {"Q", "K", "V", "", "past_key"}, {"Y"}, {}));
  EXPECT_NE(e.find("past_key and past_value must be given together"), std::string::npos) << e;
  e = load_error(attention_model(23, {in4[0], in4[1], {"V", kDouble, {1, 3, 4}}}, {"Q", "K", "V"}, {"Y"}, {}));
  EXPECT_NE(e.find("same rank"), std::string::npos) << e;
}

}  // namespace
}  // namespace otter::testing
