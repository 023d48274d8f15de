// ONNX LSTM, GRU and RNN, expanded at import into an unrolled graph of primitive ops
// (onnx_import/expand_rnn.cpp): float64 finite-difference gradient checks of the whole expanded
// graph with respect to X, W, R, B, initial_h, initial_c and P, for forward / reverse /
// bidirectional directions, per-batch sequence_lens, layout 1, clip, input_forget, GRU's both
// linear_before_reset forms, non-default activations and a symbolic batch; every output the
// node has (Y, Y_h, Y_c) is checked at once (flattened and concatenated into one output). Also
// the import errors (a symbolic sequence length, unknown activations). Forward correctness
// against references comes from the conformance suite (test_lstm_*, test_gru_*, test_*rnn_*
// node tests and tests/conformance/generate_rnn_cases.py, run by NodeConformance).
#include <gtest/gtest.h>

#include <algorithm>

#include "tests/common/gradcheck.h"
#include "tests/common/onnx_builder.h"

namespace otter::testing {
namespace {

constexpr int32_t kDouble = onnx::TensorProto::DOUBLE;
constexpr int32_t kInt32 = onnx::TensorProto::INT32;

struct RnnSpec {
  std::string op = "LSTM";  // LSTM, GRU or RNN
  std::string direction = "forward";
  int64_t seq = 3, batch = 2, input = 2, hidden = 2;
  int64_t layout = 0;
  bool bias = true, initial_h = false, initial_c = false, peepholes = false;
  std::vector<int32_t> lens;  // empty: no sequence_lens
  std::vector<std::string> outputs = {"Y", "Y_h", "Y_c"};  // "" omits one
  std::vector<std::pair<std::string, int64_t>> int_attrs;
  std::vector<std::pair<std::string, float>> float_attrs;
  std::vector<std::string> activations;
  std::vector<float> alphas, betas;
  Dim batch_dim = int64_t(-1);  // the batch's dim in the model (default: `batch`)
  Dim seq_dim = int64_t(-1);

  int64_t gates() const { return op == "LSTM" ? 4 : op == "GRU" ? 3 : 1; }
  int64_t dirs() const { return direction == "bidirectional" ? 2 : 1; }
};

void add_attr(onnx::NodeProto* n, const std::string& name, const std::string& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(v);
}
void add_attr(onnx::NodeProto* n, const std::string& name, float v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}
void add_attr(onnx::NodeProto* n, const std::string& name, const std::vector<std::string>& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRINGS);
  for (auto& s : v) a->add_strings(s);
}
void add_attr(onnx::NodeProto* n, const std::string& name, const std::vector<float>& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOATS);
  for (float f : v) a->add_floats(f);
}

Shape x_shape(const RnnSpec& s) { return s.layout ? Shape{s.batch, s.seq, s.input} : Shape{s.seq, s.batch, s.input}; }
Shape state_shape(const RnnSpec& s) {
  return s.layout ? Shape{s.batch, s.dirs(), s.hidden} : Shape{s.dirs(), s.batch, s.hidden};
}

// A model with one RNN node named "rnn", its inputs as graph inputs (with data in `data`), and
// one graph output "all": the node's outputs flattened and concatenated.
onnx::ModelProto rnn_model(const RnnSpec& s, std::map<std::string, In>* data) {
  onnx::ModelProto m = new_model(14);
  const int64_t gh = s.gates() * s.hidden, d = s.dirs();
  Dim bdim = std::holds_alternative<int64_t>(s.batch_dim) && std::get<int64_t>(s.batch_dim) < 0 ? Dim(s.batch)
                                                                                                 : s.batch_dim;
  Dim sdim = std::holds_alternative<int64_t>(s.seq_dim) && std::get<int64_t>(s.seq_dim) < 0 ? Dim(s.seq) : s.seq_dim;
  std::vector<std::string> in;
  auto input = [&](const std::string& name, const Shape& shape, std::vector<Dim> dims = {}) {
    if (dims.empty()) dims.assign(shape.begin(), shape.end());
    add_input(m, name, kDouble, dims);
    (*data)[name] = P(shape);
    in.push_back(name);
  };
  auto absent = [&]() { in.push_back(""); };
  std::vector<Dim> xd = s.layout ? std::vector<Dim>{bdim, sdim, s.input} : std::vector<Dim>{sdim, bdim, s.input};
  std::vector<Dim> sd = s.layout ? std::vector<Dim>{bdim, d, s.hidden} : std::vector<Dim>{d, bdim, s.hidden};
  input("X", x_shape(s), xd);
  input("W", {d, gh, s.input});
  input("Rw", {d, gh, s.hidden});  // not "R": check_gradients adds a value "R"
  if (s.bias) input("B", {d, 2 * gh});
  else absent();
  if (!s.lens.empty()) {
    add_input(m, "sequence_lens", kInt32, {bdim});
    Tensor t(DType::Int32, {static_cast<int64_t>(s.lens.size())});
    std::copy(s.lens.begin(), s.lens.end(), t.data<int32_t>());
    (*data)["sequence_lens"] = In{t, false};
    in.push_back("sequence_lens");
  } else {
    absent();
  }
  if (s.initial_h) input("initial_h", state_shape(s), sd);
  else absent();
  if (s.op == "LSTM") {
    if (s.initial_c) input("initial_c", state_shape(s), sd);
    else absent();
    if (s.peepholes) input("P", {d, 3 * s.hidden});
    else absent();
  }
  while (!in.empty() && in.back().empty()) in.pop_back();
  std::vector<std::string> outs = s.outputs;
  if (s.op != "LSTM") outs.resize(2);
  while (!outs.empty() && outs.back().empty()) outs.pop_back();
  auto* n = add_node(m, s.op, in, outs, "rnn");
  attr_int(n, "hidden_size", s.hidden);
  add_attr(n, "direction", s.direction);
  if (s.layout) attr_int(n, "layout", s.layout);
  for (auto& a : s.int_attrs) attr_int(n, a.first, a.second);
  for (auto& a : s.float_attrs) add_attr(n, a.first, a.second);
  if (!s.activations.empty()) add_attr(n, "activations", s.activations);
  if (!s.alphas.empty()) add_attr(n, "activation_alpha", s.alphas);
  if (!s.betas.empty()) add_attr(n, "activation_beta", s.betas);
  add_int64_init(m, "flat", {-1});
  std::vector<std::string> flat;
  for (auto& o : outs)
    if (!o.empty()) {
      add_node(m, "Reshape", {o, "flat"}, {o + "_flat"}, o + "_reshape");
      flat.push_back(o + "_flat");
    }
  auto* c = add_node(m, "Concat", flat, {"all"}, "concat");
  attr_int(c, "axis", 0);
  add_output(m, "all", kDouble);
  return m;
}

bool has_rnn(const Graph& g) {
  for (const Node& n : g.nodes)
    if (n.op_type == "LSTM" || n.op_type == "GRU" || n.op_type == "RNN") return true;
  return false;
}

// Gradient check of the model's one output ("all") with respect to every float input; the
// inputs become initializers holding the data (see test_gradcheck_attention.cpp).
void check_rnn(const RnnSpec& s) {
  std::map<std::string, In> data;
  onnx::ModelProto m = rnn_model(s, &data);
  LoadedModel lm = load(m);
  Graph& g = lm.graph;
  ASSERT_FALSE(has_rnn(g));
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
    if (kv.second.differentiable) params.push_back(v);
  }
  ASSERT_TRUE(g.inputs.empty());
  check_gradients(g, params, g.outputs.at(0), RunOptions{}, true);
}

// ---- LSTM ----

TEST(GradcheckRnn, LstmForwardSeqLensInitialPeepholes) {
  RnnSpec s;
  s.lens = {3, 1};
  s.initial_h = s.initial_c = s.peepholes = true;
  check_rnn(s);
}

TEST(GradcheckRnn, LstmReverseSeqLensClip) {
  RnnSpec s;
  s.direction = "reverse";
  s.lens = {2, 3};
  s.initial_c = true;
  s.peepholes = true;
  s.float_attrs = {{"clip", 0.6f}};
  check_rnn(s);
}

TEST(GradcheckRnn, LstmBidirectionalSeqLensInitial) {
  RnnSpec s;
  s.direction = "bidirectional";
  s.lens = {1, 3};
  s.initial_h = s.initial_c = s.peepholes = true;
  check_rnn(s);
}

TEST(GradcheckRnn, LstmBidirectionalLayout1InputForgetActivations) {
  RnnSpec s;
  s.direction = "bidirectional";
  s.layout = 1;
  s.lens = {3, 2};
  s.initial_h = true;
  s.bias = false;
  s.int_attrs = {{"input_forget", 1}};
  s.activations = {"HardSigmoid", "Softsign", "ScaledTanh", "Sigmoid", "Elu", "Softplus"};
  s.alphas = {0.3f, 0.8f, 1.2f};
  s.betas = {0.45f, 0.7f};
  s.outputs = {"", "Y_h", "Y_c"};
  check_rnn(s);
}

TEST(GradcheckRnn, LstmSymbolicBatch) {
  RnnSpec s;
  s.batch_dim = std::string("N");
  s.outputs = {"Y", "", "Y_c"};
  check_rnn(s);
}

// ---- GRU ----

TEST(GradcheckRnn, GruForwardSeqLens) {
  for (int64_t lbr : {0, 1}) {
    SCOPED_TRACE(lbr);
    RnnSpec s;
    s.op = "GRU";
    s.lens = {2, 3};
    s.int_attrs = {{"linear_before_reset", lbr}};
    check_rnn(s);
  }
}

TEST(GradcheckRnn, GruReverseSeqLensInitialClip) {
  for (int64_t lbr : {0, 1}) {
    SCOPED_TRACE(lbr);
    RnnSpec s;
    s.op = "GRU";
    s.direction = "reverse";
    s.lens = {3, 1};
    s.initial_h = true;
    s.float_attrs = {{"clip", 0.7f}};
    s.int_attrs = {{"linear_before_reset", lbr}};
    check_rnn(s);
  }
}

TEST(GradcheckRnn, GruBidirectionalSeqLensInitial) {
  for (int64_t lbr : {0, 1}) {
    SCOPED_TRACE(lbr);
    RnnSpec s;
    s.op = "GRU";
    s.direction = "bidirectional";
    s.lens = {2, 3};
    s.initial_h = true;
    s.int_attrs = {{"linear_before_reset", lbr}};
    check_rnn(s);
  }
}

TEST(GradcheckRnn, GruLayout1Activations) {
  RnnSpec s;
  s.op = "GRU";
  s.layout = 1;
  s.int_attrs = {{"linear_before_reset", 1}};
  s.activations = {"HardSigmoid", "LeakyRelu"};
  s.alphas = {0.25f, 0.1f};
  s.betas = {0.5f};
  check_rnn(s);
}

// ---- RNN ----

TEST(GradcheckRnn, RnnForwardSeqLens) {
  RnnSpec s;
  s.op = "RNN";
  s.lens = {1, 3};
  check_rnn(s);
}

TEST(GradcheckRnn, RnnReverseSeqLensInitialClip) {
  RnnSpec s;
  s.op = "RNN";
  s.direction = "reverse";
  s.lens = {2, 3};
  s.initial_h = true;
  s.float_attrs = {{"clip", 0.5f}};
  check_rnn(s);
}

TEST(GradcheckRnn, RnnBidirectionalSeqLensActivations) {
  RnnSpec s;
  s.op = "RNN";
  s.direction = "bidirectional";
  s.lens = {3, 2};
  s.initial_h = true;
  s.activations = {"Affine", "Tanh"};
  s.alphas = {0.7f};
  s.betas = {0.2f};
  check_rnn(s);
}

// ---- import ----

std::string load_error(const onnx::ModelProto& m, ErrorKind* kind) {
  try {
    load(m);
  } catch (const Error& e) {
    *kind = e.kind();
    return e.what();
  }
  return "";
}

TEST(RnnImport, ClearErrors) {
  std::map<std::string, In> data;
  ErrorKind kind = ErrorKind::Internal;
  RnnSpec s;
  s.seq_dim = std::string("S");
  std::string e = load_error(rnn_model(s, &data), &kind);
  EXPECT_NE(e.find("LSTM node 'rnn'"), std::string::npos) << e;
  EXPECT_NE(e.find("sequence length"), std::string::npos) << e;
  EXPECT_EQ(kind, ErrorKind::Unsupported);

  RnnSpec a;
  a.op = "GRU";
  a.activations = {"Sigmoid", "Gelu"};
  kind = ErrorKind::Internal;
  e = load_error(rnn_model(a, &data), &kind);
  EXPECT_NE(e.find("GRU node 'rnn'"), std::string::npos) << e;
  EXPECT_NE(e.find("activation 'Gelu'"), std::string::npos) << e;
  EXPECT_EQ(kind, ErrorKind::Unsupported);

  RnnSpec c;
  c.op = "RNN";
  c.activations = {"Tanh", "Tanh", "Tanh"};
  kind = ErrorKind::Internal;
  e = load_error(rnn_model(c, &data), &kind);
  EXPECT_NE(e.find("'activations' has 3 entries"), std::string::npos) << e;
}

TEST(RnnImport, ExpandedNodesKeepOutputIdsAndNames) {
  std::map<std::string, In> data;
  RnnSpec s;
  s.direction = "bidirectional";
  LoadedModel lm = load(rnn_model(s, &data));
  const Graph& g = lm.graph;
  EXPECT_FALSE(has_rnn(g));
  for (const char* out : {"Y", "Y_h", "Y_c"}) {
    int v = g.value_id(out);
    ASSERT_GE(g.values[v].producer, 0) << out;
    EXPECT_EQ(g.nodes[g.values[v].producer].name.rfind("rnn/", 0), 0u) << out;
  }
  int matmuls = 0;
  for (const Node& n : g.nodes) matmuls += n.op_type == "MatMul";
  EXPECT_EQ(matmuls, 2 * (1 + 3));  // per direction: X W^T once, H R^T per step
}

}  // namespace
}  // namespace otter::testing
