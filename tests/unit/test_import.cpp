// ONNX import: models built in C++ with ONNX's own protobuf classes, written to a temporary
// folder. Covers the buffer/file paths, every initializer storage form (typed fields, raw_data,
// external data files and the refusal of paths that leave the model's folder), the structural
// and op-level errors a user meets (each message must name the node, op, input or opset), the
// older opset forms the importer normalises, symbolic shapes, and the autodiff pass building only
// the gradients that are used.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "onnx_import/onnx_import.h"
#include "runtime/exec/infer.h"
#include "runtime/exec/plan.h"
#include "runtime/train/session.h"
#include "tests/common/onnx_builder.h"

using namespace otter;
using namespace otter::testing;
namespace fs = std::filesystem;

namespace {

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// Runs fn, expects an otter::Error whose message contains every needle.
void expect_error(const std::function<void()>& fn, std::initializer_list<std::string> needles) {
  try {
    fn();
    std::string all;
    for (auto& n : needles) all += " '" + n + "'";
    ADD_FAILURE() << "expected an otter::Error containing" << all;
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "missing '" << n << "' in: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected an otter::Error, got another exception: " << e.what();
  }
}

Tensor floats(const std::vector<float>& v, Shape s) { return Tensor::from_vector(v, std::move(s)); }

// Builds a plan for the graph outputs with the given float feeds and runs it.
std::map<std::string, Tensor> run_plan(Graph& g, const std::map<std::string, Tensor>& feeds) {
  std::map<int, Shape> shapes;
  std::map<int, Tensor> by_id;
  for (auto& kv : feeds) {
    int id = g.value_id(kv.first);
    shapes[id] = kv.second.shape();
    by_id[id] = kv.second;
  }
  PlanOptions options;
  options.targets = g.outputs;
  Plan plan(g, shapes, options);
  RunOptions ro;
  ro.training = false;
  plan.run(by_id, ro);
  std::map<std::string, Tensor> out;
  for (int v : g.outputs) out[g.values[v].name] = plan.value(v).clone();
  return out;
}

void expect_values(const Tensor& got, const Shape& shape, const std::vector<double>& want, const std::string& what) {
  EXPECT_EQ(got.shape(), shape) << what;
  if (got.shape() != shape) return;
  std::vector<double> v = got.to_double_vector();
  ASSERT_EQ(v.size(), want.size()) << what;
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(v[i], want[i], 1e-5 * (1 + std::fabs(want[i]))) << what << " [" << i << "]";
}

// Everything the importer produced, as text, to compare two loads.
std::string dump(const Graph& g) {
  std::ostringstream s;
  for (auto& kv : g.opsets) s << "opset " << kv.first << "=" << kv.second << "\n";
  for (const std::string& sym : g.symbols) s << "symbol " << sym << "\n";
  for (const Value& v : g.values) {
    s << "value " << v.name << " " << dtype_name(v.dtype) << " " << g.shape_str(v.shape) << " known=" << v.shape_known
      << " producer=" << v.producer << " init=" << v.is_initializer;
    if (v.data.defined()) {
      s << " data=";
      for (double x : v.data.to_double_vector()) s << x << ",";
    }
    s << "\n";
  }
  for (const Node& n : g.nodes) {
    s << "node " << n.name << " " << n.domain << ":" << n.op_type << " in=";
    for (int i : n.inputs) s << i << ",";
    s << " out=";
    for (int o : n.outputs) s << o << ",";
    for (auto& kv : n.attrs) s << " attr " << kv.first << " kind=" << static_cast<int>(kv.second.kind) << " i=" << kv.second.i;
    s << "\n";
  }
  for (int v : g.inputs) s << "input " << v << "\n";
  for (int v : g.outputs) s << "output " << v << "\n";
  for (int v : g.initializers) s << "initializer " << v << "\n";
  return s.str();
}

const Value& value(const Graph& g, const std::string& name) { return g.values[g.value_id(name)]; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Buffer and file.

TEST(Import, BufferAndFileGiveTheSameGraph) {
  onnx::ModelProto m = new_model(18);
  add_input(m, "x", onnx::TensorProto::FLOAT, {std::string("N"), int64_t(4)});
  add_float_init(m, "w", {4, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  add_float_init(m, "b", {3}, {0.5f, -0.5f, 0});
  add_node(m, "MatMul", {"x", "w"}, {"xw"}, "mm");
  add_node(m, "Add", {"xw", "b"}, {"xwb"}, "add");
  add_int64_init(m, "axes", {1});
  auto* r = add_node(m, "ReduceMean", {"xwb", "axes"}, {"y"}, "mean");
  attr_int(r, "keepdims", 0);
  add_output(m, "y");
  fs::path d = temp_dir("buffer_file");
  std::string bytes = serialize(m);
  write_file(d / "model.onnx", bytes);

  LoadedModel from_file = load_model_file((d / "model.onnx").string());
  LoadedModel from_buffer = load_model_buffer(bytes.data(), bytes.size(), d.string());
  EXPECT_EQ(dump(from_file.graph), dump(from_buffer.graph));
  EXPECT_EQ(from_file.model_bytes.str(), bytes);
  EXPECT_EQ(from_buffer.model_bytes.str(), bytes);
  EXPECT_EQ(fs::weakly_canonical(from_file.base_dir), fs::weakly_canonical(d));
  EXPECT_EQ(from_file.graph.nodes.size(), 3u);
  EXPECT_EQ(from_file.graph.inputs.size(), 1u);
  EXPECT_EQ(from_file.graph.initializers.size(), 3u);
  fs::remove_all(d);
}

// ---------------------------------------------------------------------------------------------
// Initializer storage forms.

TEST(Import, InitializerStorageForms) {
  onnx::ModelProto m = new_model(18);
  add_init(m, "raw_f", onnx::TensorProto::FLOAT, {2, 2})->set_raw_data(bytes_of(std::vector<float>{1.5f, -2, 3, 4.25f}));
  {
    auto* t = add_init(m, "float_data", onnx::TensorProto::FLOAT, {3});
    for (float v : {0.25f, -1.0f, 8.0f}) t->add_float_data(v);
  }
  {
    auto* t = add_init(m, "int64_data", onnx::TensorProto::INT64, {2});
    t->add_int64_data(-7);
    t->add_int64_data(int64_t(1) << 40);
  }
  {
    auto* t = add_init(m, "int32_data", onnx::TensorProto::INT32, {3});
    for (int32_t v : {-3, 0, 2147483647}) t->add_int32_data(v);
  }
  {
    auto* t = add_init(m, "bool_data", onnx::TensorProto::BOOL, {4});
    for (int32_t v : {1, 0, 0, 1}) t->add_int32_data(v);
  }
  {
    auto* t = add_init(m, "double_data", onnx::TensorProto::DOUBLE, {2, 1});
    t->add_double_data(1e-300);
    t->add_double_data(-0.1);
  }
  add_init(m, "raw_i64", onnx::TensorProto::INT64, {3})->set_raw_data(bytes_of(std::vector<int64_t>{5, -6, 7}));
  add_init(m, "scalar", onnx::TensorProto::FLOAT, {})->add_float_data(42.0f);
  add_input(m, "x", onnx::TensorProto::FLOAT, {int64_t(2), int64_t(2)});
  add_node(m, "Add", {"x", "raw_f"}, {"y"}, "add");
  add_output(m, "y");
  LoadedModel lm = load(m);
  const Graph& g = lm.graph;

  const Tensor& rf = value(g, "raw_f").data;
  ASSERT_EQ(rf.dtype(), DType::Float32);
  EXPECT_EQ(rf.shape(), (Shape{2, 2}));
  EXPECT_EQ(std::vector<float>(rf.data<float>(), rf.data<float>() + 4), (std::vector<float>{1.5f, -2, 3, 4.25f}));

  const Tensor& fd = value(g, "float_data").data;
  ASSERT_EQ(fd.dtype(), DType::Float32);
  EXPECT_EQ(std::vector<float>(fd.data<float>(), fd.data<float>() + 3), (std::vector<float>{0.25f, -1, 8}));

  const Tensor& i64 = value(g, "int64_data").data;
  ASSERT_EQ(i64.dtype(), DType::Int64);
  EXPECT_EQ(i64.to_int64_vector(), (std::vector<int64_t>{-7, int64_t(1) << 40}));

  const Tensor& i32 = value(g, "int32_data").data;
  ASSERT_EQ(i32.dtype(), DType::Int32);
  EXPECT_EQ(std::vector<int32_t>(i32.data<int32_t>(), i32.data<int32_t>() + 3), (std::vector<int32_t>{-3, 0, 2147483647}));

  const Tensor& b = value(g, "bool_data").data;
  ASSERT_EQ(b.dtype(), DType::Bool);
  EXPECT_EQ(std::vector<bool>(b.data<bool>(), b.data<bool>() + 4), (std::vector<bool>{true, false, false, true}));

  const Tensor& dd = value(g, "double_data").data;
  ASSERT_EQ(dd.dtype(), DType::Float64);
  EXPECT_EQ(dd.shape(), (Shape{2, 1}));
  EXPECT_EQ(dd.data<double>()[0], 1e-300);
  EXPECT_EQ(dd.data<double>()[1], -0.1);

  EXPECT_EQ(value(g, "raw_i64").data.to_int64_vector(), (std::vector<int64_t>{5, -6, 7}));
  const Tensor& sc = value(g, "scalar").data;
  EXPECT_EQ(sc.rank(), 0);
  EXPECT_EQ(sc.data<float>()[0], 42.0f);
  for (int v : g.initializers) EXPECT_TRUE(g.values[v].is_initializer) << g.values[v].name;
  EXPECT_EQ(g.initializers.size(), 8u);
}

TEST(Import, WrongValueCountsAreClearErrors) {
  {
    onnx::ModelProto m = new_model(18);
    auto* t = add_init(m, "w", onnx::TensorProto::FLOAT, {2, 3});
    for (int i = 0; i < 5; ++i) t->add_float_data(1.0f);
    expect_error([&] { load(m); }, {"'w'", "5 values", "6"});
  }
  {
    onnx::ModelProto m = new_model(18);
    add_init(m, "r", onnx::TensorProto::FLOAT, {4})->set_raw_data(std::string(15, '\0'));
    expect_error([&] { load(m); }, {"'r'", "raw_data", "15 bytes", "16"});
  }
}

namespace {

// Two tensors in one external file: "a" (3 floats at offset 0) and "b" (2 int64 at offset 16,
// after 4 bytes of padding).
onnx::ModelProto external_model(const std::string& location_a, const std::string& location_b) {
  onnx::ModelProto m = new_model(18);
  auto external = [&](const std::string& name, int32_t dtype, int64_t n, const std::string& location, int64_t offset,
                       int64_t length) {
    auto* t = add_init(m, name, dtype, {n});
    t->set_data_location(onnx::TensorProto::EXTERNAL);
    auto kv = [&](const std::string& k, const std::string& v) {
      auto* e = t->add_external_data();
      e->set_key(k);
      e->set_value(v);
    };
    kv("location", location);
    kv("offset", std::to_string(offset));
    kv("length", std::to_string(length));
  };
  external("a", onnx::TensorProto::FLOAT, 3, location_a, 0, 12);
  external("b", onnx::TensorProto::INT64, 2, location_b, 16, 16);
  add_input(m, "x", onnx::TensorProto::FLOAT, {int64_t(3)});
  add_node(m, "Add", {"x", "a"}, {"y"}, "add");
  add_output(m, "y");
  return m;
}

std::string external_bytes() {
  std::string s = bytes_of(std::vector<float>{1.25f, -2.5f, 1e6f});
  s += std::string(4, '\x7f');  // padding
  s += bytes_of(std::vector<int64_t>{-9, 123456789012345});
  return s;
}

}  // namespace

TEST(Import, ExternalDataBesideTheModel) {
  fs::path d = temp_dir("external");
  fs::create_directories(d / "weights");
  write_file(d / "weights" / "data.bin", external_bytes());
  onnx::ModelProto m = external_model("weights/data.bin", "weights/data.bin");
  write_file(d / "model.onnx", serialize(m));

  for (int via_buffer = 0; via_buffer < 2; ++via_buffer) {
    LoadedModel lm = via_buffer ? load(m, d.string()) : load_model_file((d / "model.onnx").string());
    const Tensor& a = value(lm.graph, "a").data;
    ASSERT_EQ(a.dtype(), DType::Float32);
    EXPECT_EQ(std::vector<float>(a.data<float>(), a.data<float>() + 3), (std::vector<float>{1.25f, -2.5f, 1e6f}));
    const Tensor& b = value(lm.graph, "b").data;
    ASSERT_EQ(b.dtype(), DType::Int64);
    EXPECT_EQ(b.to_int64_vector(), (std::vector<int64_t>{-9, 123456789012345}));
    auto out = run_plan(lm.graph, {{"x", floats({1, 1, 1}, {3})}});
    expect_values(out["y"], {3}, {2.25, -1.5, 1e6 + 1}, "y");
  }
  // A path that goes down and back up but stays inside is fine.
  LoadedModel inside = load(external_model("weights/../weights/data.bin", "./weights/data.bin"), d.string());
  EXPECT_EQ(value(inside.graph, "b").data.to_int64_vector(), (std::vector<int64_t>{-9, 123456789012345}));
  fs::remove_all(d);
}

TEST(Import, ExternalDataOutsideTheFolderIsRefused) {
  fs::path root = temp_dir("external_escape");
  fs::path d = root / "model";
  fs::create_directories(d);
  write_file(d / "data.bin", external_bytes());
  write_file(root / "x.bin", external_bytes());  // exists, so only the location can be the problem
  expect_error([&] { load(external_model("../x.bin", "data.bin"), d.string()); },
               {"'a'", "../x.bin", "leaves the model's folder"});
  expect_error([&] { load(external_model("data.bin", "sub/../../x.bin"), d.string()); },
               {"'b'", "leaves the model's folder"});
  std::string absolute = (root / "x.bin").string();
  expect_error([&] { load(external_model(absolute, "data.bin"), d.string()); }, {"'a'", absolute, "absolute"});
  // Through a file, too: the message names the model file.
  write_file(d / "model.onnx", serialize(external_model("data.bin", "../x.bin")));
  expect_error([&] { load_model_file((d / "model.onnx").string()); },
               {"model.onnx", "'b'", "leaves the model's folder"});
  fs::remove_all(root);
}

TEST(Import, MissingOrShortExternalFileIsAClearError) {
  fs::path d = temp_dir("external_missing");
  expect_error([&] { load(external_model("nothere.bin", "nothere.bin"), d.string()); },
               {"'a'", "cannot open external data file", "nothere.bin"});
  write_file(d / "short.bin", std::string(20, '\0'));  // "b" needs bytes 16..32
  expect_error([&] { load(external_model("short.bin", "short.bin"), d.string()); }, {"'b'", "too short"});
  fs::remove_all(d);
}

// ---------------------------------------------------------------------------------------------
// Structural and op-level errors.

TEST(Import, UnsupportedOpFailsAtAnnotateNamingTheNode) {
  onnx::ModelProto m = new_model(18);
  add_input(m, "boxes", onnx::TensorProto::FLOAT, {int64_t(1), int64_t(4), int64_t(4)});
  add_input(m, "scores", onnx::TensorProto::FLOAT, {int64_t(1), int64_t(1), int64_t(4)});
  add_node(m, "NonMaxSuppression", {"boxes", "scores"}, {"selected"}, "nms_1");
  add_output(m, "selected", onnx::TensorProto::INT64);
  LoadedModel lm = load(m);  // loading checks structure only
  expect_error([&] { annotate_graph(lm.graph, {}); }, {"nms_1", "NonMaxSuppression", "not supported", "opset 18"});
}

TEST(Import, MissingInputNamesTheInputAndNode) {
  onnx::ModelProto m = new_model(17);
  add_input(m, "x", onnx::TensorProto::FLOAT, {int64_t(2)});
  add_node(m, "Add", {"x", "ghost"}, {"y"}, "add_ghost");
  add_output(m, "y");
  expect_error([&] { load(m); }, {"add_ghost", "Add", "opset 17", "'ghost'", "missing input"});
}

TEST(Import, CycleIsReported) {
  // a = Relu(b); b = Relu(a): two nodes feeding each other.
  onnx::ModelProto m = new_model(18);
  add_input(m, "x", onnx::TensorProto::FLOAT, {int64_t(2)});
  add_node(m, "Relu", {"b"}, {"a"}, "relu_a");
  add_node(m, "Relu", {"a"}, {"b"}, "relu_b");
  add_node(m, "Add", {"x", "a"}, {"y"}, "add");
  add_output(m, "y");
  // Regression: the importer once resolved inputs against earlier nodes only, so a cycle was
  // reported as a missing input. Inputs are now resolved in two passes and topo_order names it.
  expect_error([&] { load(m); }, {"cycle", "relu_"});
}

TEST(IR, TopoOrderNamesTheCycle) {
  // The same cycle built through the IR API, where it can be expressed.
  Graph g;
  int x = g.add_value("x", DType::Float32);
  g.inputs.push_back(x);
  int n1 = g.add_node("Relu", {x}, 1, {}, "", "relu_a");
  int n2 = g.add_node("Relu", {g.nodes[n1].outputs[0]}, 1, {}, "", "relu_b");
  g.nodes[n1].inputs[0] = g.nodes[n2].outputs[0];
  expect_error([&] { g.topo_order(); }, {"cycle", "relu_"});
}

TEST(Import, OpsetOutsideTheSupportedRange) {
  for (int64_t opset : {11, 12, 29}) {
    onnx::ModelProto m = new_model(opset);
    add_input(m, "x", onnx::TensorProto::FLOAT, {int64_t(2)});
    add_node(m, "Relu", {"x"}, {"y"}, "relu");
    add_output(m, "y");
    expect_error([&] { load(m); }, {"opset " + std::to_string(opset), std::to_string(kMinOpset) + " to " + std::to_string(kMaxOpset)});
  }
  onnx::ModelProto none = new_model(18);
  none.clear_opset_import();
  auto* other = none.add_opset_import();
  other->set_domain("com.example");
  other->set_version(1);
  add_input(none, "x", onnx::TensorProto::FLOAT, {int64_t(2)});
  expect_error([&] { load(none); }, {"opset", "default"});
}

TEST(Import, StringInputIsAnUnsupportedDtype) {
  onnx::ModelProto m = new_model(18);
  add_input(m, "words", onnx::TensorProto::STRING, {int64_t(3)});
  add_node(m, "Identity", {"words"}, {"y"}, "id");
  add_output(m, "y", onnx::TensorProto::STRING);
  expect_error([&] { load(m); }, {"'words'", "unsupported dtype", "STRING"});
  // And as an initializer.
  onnx::ModelProto m2 = new_model(18);
  auto* t = add_init(m2, "names", onnx::TensorProto::STRING, {1});
  t->add_string_data("hello");
  expect_error([&] { load(m2); }, {"'names'", "unsupported dtype"});
}

TEST(Import, DtypeMismatchNamesTheNode) {
  onnx::ModelProto m = new_model(18);
  add_input(m, "f", onnx::TensorProto::FLOAT, {int64_t(2)});
  add_input(m, "d", onnx::TensorProto::DOUBLE, {int64_t(2)});
  add_node(m, "Add", {"f", "d"}, {"y"}, "add_mixed");
  add_output(m, "y");
  LoadedModel lm = load(m);
  expect_error([&] { annotate_graph(lm.graph, {}); }, {"add_mixed", "Add", "dtype mismatch", "float32", "float64"});
}

TEST(Import, DuplicateNamesAreErrors) {
  onnx::ModelProto m = new_model(18);
  add_input(m, "x", onnx::TensorProto::FLOAT, {int64_t(2)});
  add_node(m, "Relu", {"x"}, {"y"}, "r1");
  add_node(m, "Relu", {"x"}, {"y"}, "r2");
  add_output(m, "y");
  expect_error([&] { load(m); }, {"r2", "'y'", "already defined"});
  onnx::ModelProto m2 = new_model(18);
  add_float_init(m2, "w", {1}, {1});
  add_float_init(m2, "w", {1}, {2});
  expect_error([&] { load(m2); }, {"'w'", "twice"});
  onnx::ModelProto m3 = new_model(18);
  add_input(m3, "x", onnx::TensorProto::FLOAT, {int64_t(2)});
  add_output(m3, "nowhere");
  expect_error([&] { load(m3); }, {"'nowhere'", "not produced"});
}

// ---------------------------------------------------------------------------------------------
// Older opset forms.

TEST(Import, Opset13ReduceMeanAxesAttributeBecomesAnInput) {
  for (int64_t keepdims : {0, 1}) {
    onnx::ModelProto m = new_model(13);
    add_input(m, "x", onnx::TensorProto::FLOAT, {int64_t(2), int64_t(3)});
    auto* n = add_node(m, "ReduceMean", {"x"}, {"y"}, "rm");
    attr_ints(n, "axes", {-1});
    attr_int(n, "keepdims", keepdims);
    add_output(m, "y");
    LoadedModel lm = load(m);
    Graph& g = lm.graph;
    ASSERT_EQ(g.nodes.size(), 1u);
    const Node& node = g.nodes[0];
    EXPECT_FALSE(node.has_attr("axes"));
    EXPECT_EQ(node.attr_int("keepdims", 1), keepdims);
    ASSERT_EQ(node.inputs.size(), 2u);
    EXPECT_EQ(node.inputs[0], g.value_id("x"));
    ASSERT_GE(node.inputs[1], 0);
    const Value& axes = g.values[node.inputs[1]];
    ASSERT_TRUE(axes.data.defined());
    EXPECT_EQ(axes.data.dtype(), DType::Int64);
    EXPECT_EQ(axes.data.to_int64_vector(), (std::vector<int64_t>{-1}));
    annotate_graph(g, {});
    EXPECT_EQ(value(g, "y").shape, keepdims ? (Shape{2, 1}) : (Shape{2}));
    auto out = run_plan(g, {{"x", floats({1, 2, 3, 4, 5, 9}, {2, 3})}});
    expect_values(out["y"], keepdims ? Shape{2, 1} : Shape{2}, {2, 6}, "ReduceMean keepdims=" + std::to_string(keepdims));
  }
}

TEST(Import, Opset13ReduceMeanWithoutAxesReducesEverything) {
  onnx::ModelProto m = new_model(13);
  add_input(m, "x", onnx::TensorProto::FLOAT, {int64_t(2), int64_t(2)});
  auto* n = add_node(m, "ReduceMean", {"x"}, {"y"}, "rm_all");
  attr_int(n, "keepdims", 0);
  add_output(m, "y");
  LoadedModel lm = load(m);
  auto out = run_plan(lm.graph, {{"x", floats({1, 2, 3, 6}, {2, 2})}});
  expect_values(out["y"], {}, {3}, "ReduceMean over all axes");
}

TEST(Import, Opset13ReduceSumAxesInput) {
  onnx::ModelProto m = new_model(13);
  add_input(m, "x", onnx::TensorProto::FLOAT, {int64_t(2), int64_t(3)});
  add_int64_init(m, "axes", {0});
  auto* n = add_node(m, "ReduceSum", {"x", "axes"}, {"y"}, "rs");
  attr_int(n, "keepdims", 0);
  add_output(m, "y");
  LoadedModel lm = load(m);
  Graph& g = lm.graph;
  ASSERT_EQ(g.nodes[0].inputs.size(), 2u);
  EXPECT_EQ(g.nodes[0].inputs[1], g.value_id("axes"));
  annotate_graph(g, {});
  EXPECT_EQ(value(g, "y").shape, (Shape{3}));
  auto out = run_plan(g, {{"x", floats({1, 2, 3, 10, 20, 30}, {2, 3})}});
  expect_values(out["y"], {3}, {11, 22, 33}, "ReduceSum");
}

TEST(Import, Opset13SqueezeUnsqueezeAxesInput) {
  onnx::ModelProto m = new_model(13);
  add_input(m, "x", onnx::TensorProto::FLOAT, {int64_t(2), int64_t(1), int64_t(3), int64_t(1)});
  add_int64_init(m, "sq_axes", {1, -1});
  add_int64_init(m, "unsq_axes", {0, -1});
  add_node(m, "Squeeze", {"x", "sq_axes"}, {"s"}, "sq");
  add_node(m, "Unsqueeze", {"s", "unsq_axes"}, {"y"}, "unsq");
  add_output(m, "s");
  add_output(m, "y");
  LoadedModel lm = load(m);
  Graph& g = lm.graph;
  annotate_graph(g, {});
  EXPECT_EQ(value(g, "s").shape, (Shape{2, 3}));
  EXPECT_EQ(value(g, "y").shape, (Shape{1, 2, 3, 1}));
  auto out = run_plan(g, {{"x", floats({1, 2, 3, 4, 5, 6}, {2, 1, 3, 1})}});
  expect_values(out["s"], {2, 3}, {1, 2, 3, 4, 5, 6}, "Squeeze");
  expect_values(out["y"], {1, 2, 3, 1}, {1, 2, 3, 4, 5, 6}, "Unsqueeze");
}

TEST(Import, Opset13SplitWithSplitInput) {
  onnx::ModelProto m = new_model(13);
  add_input(m, "x", onnx::TensorProto::FLOAT, {int64_t(2), int64_t(3)});
  add_int64_init(m, "split", {1, 2});
  auto* n = add_node(m, "Split", {"x", "split"}, {"a", "b"}, "split13");
  attr_int(n, "axis", 1);
  add_output(m, "a");
  add_output(m, "b");
  LoadedModel lm = load(m);
  Graph& g = lm.graph;
  annotate_graph(g, {});
  EXPECT_EQ(value(g, "a").shape, (Shape{2, 1}));
  EXPECT_EQ(value(g, "b").shape, (Shape{2, 2}));
  auto out = run_plan(g, {{"x", floats({1, 2, 3, 4, 5, 6}, {2, 3})}});
  expect_values(out["a"], {2, 1}, {1, 4}, "split a");
  expect_values(out["b"], {2, 2}, {2, 3, 5, 6}, "split b");
}

TEST(Import, Opset18SplitWithNumOutputs) {
  // 7 along axis 0 in 3 parts: ceil(7/3) = 3, so 3, 3, 1 (the last chunk is smaller).
  onnx::ModelProto m = new_model(18);
  add_input(m, "x", onnx::TensorProto::FLOAT, {int64_t(7)});
  auto* n = add_node(m, "Split", {"x"}, {"a", "b", "c"}, "split18");
  attr_int(n, "axis", 0);
  attr_int(n, "num_outputs", 3);
  add_output(m, "a");
  add_output(m, "b");
  add_output(m, "c");
  LoadedModel lm = load(m);
  Graph& g = lm.graph;
  annotate_graph(g, {});
  EXPECT_EQ(value(g, "a").shape, (Shape{3}));
  EXPECT_EQ(value(g, "b").shape, (Shape{3}));
  EXPECT_EQ(value(g, "c").shape, (Shape{1}));
  auto out = run_plan(g, {{"x", floats({0, 1, 2, 3, 4, 5, 6}, {7})}});
  expect_values(out["a"], {3}, {0, 1, 2}, "a");
  expect_values(out["b"], {3}, {3, 4, 5}, "b");
  expect_values(out["c"], {1}, {6}, "c");

  // num_outputs disagreeing with the node's outputs names the node.
  onnx::ModelProto bad = new_model(18);
  add_input(bad, "x", onnx::TensorProto::FLOAT, {int64_t(6)});
  auto* nb = add_node(bad, "Split", {"x"}, {"a", "b"}, "split_bad");
  attr_int(nb, "num_outputs", 3);
  add_output(bad, "a");
  LoadedModel lb = load(bad);
  expect_error([&] { annotate_graph(lb.graph, {}); }, {"split_bad", "num_outputs"});
}

// ---------------------------------------------------------------------------------------------
// Symbolic shapes.

TEST(Import, SymbolicBatchDimFlowsThroughMatMul) {
  onnx::ModelProto m = new_model(18);
  add_input(m, "x", onnx::TensorProto::FLOAT, {std::string("N"), int64_t(64)});
  add_init(m, "w", onnx::TensorProto::FLOAT, {64, 10})->set_raw_data(std::string(64 * 10 * 4, '\0'));
  add_node(m, "MatMul", {"x", "w"}, {"y"}, "mm");
  add_output(m, "y");
  LoadedModel lm = load(m);
  Graph& g = lm.graph;
  const Shape xs = value(g, "x").shape;
  ASSERT_EQ(xs.size(), 2u);
  ASSERT_LT(xs[0], 0);
  EXPECT_EQ(xs[1], 64);
  annotate_graph(g, {});
  const Value& y = value(g, "y");
  EXPECT_TRUE(y.shape_known);
  EXPECT_EQ(y.dtype, DType::Float32);
  ASSERT_EQ(y.shape.size(), 2u);
  EXPECT_EQ(y.shape[0], xs[0]);
  EXPECT_EQ(y.shape[1], 10);
  int64_t k = -(y.shape[0] + 1);
  ASSERT_GE(k, 0);
  ASSERT_LT(static_cast<size_t>(k), g.symbols.size());
  EXPECT_EQ(g.symbols[k], "N");
  EXPECT_EQ(g.dim_str(y.shape[0]), "N");
}

TEST(Import, UnnamedDynamicDimGetsItsOwnSymbol) {
  onnx::ModelProto m = new_model(18);
  add_input(m, "a", onnx::TensorProto::FLOAT, {std::string("N"), int64_t(3)});
  add_input(m, "b", onnx::TensorProto::FLOAT, {std::string(""), int64_t(3)});  // no name: a dynamic dim of its own
  add_node(m, "Relu", {"a"}, {"y"}, "relu");
  add_output(m, "y");
  LoadedModel lm = load(m);
  const Shape& a = value(lm.graph, "a").shape;
  const Shape& b = value(lm.graph, "b").shape;
  ASSERT_LT(a[0], 0);
  ASSERT_LT(b[0], 0);
  EXPECT_NE(a[0], b[0]);  // an unnamed dim is not the same as "N"
}

// ---------------------------------------------------------------------------------------------
// Only the gradients that are used are built.

TEST(Import, FrozenFirstLayerGetsNoGradientNodes) {
  std::string path = std::string(OTTER_TESTDATA) + "/digits/mlp.onnx";
  ASSERT_TRUE(fs::exists(path)) << path << " is missing: run the generate_testdata fixture";
  TrainConfig c;
  c.loss.kind = "cross_entropy";
  c.loss.output = "logits";
  c.optimizer.kind = "sgd";
  c.optimizer.lr = 0.1;
  c.frozen = {"fc1.weight", "fc1.bias"};
  Session s(load_model_file(path), c);
  ASSERT_EQ(s.parameters().size(), 2u);
  int gemms = 0;
  std::string gemm_names;
  for (const Node& n : s.graph().nodes) {
    if (n.op_type == "Gemm") {
      ++gemms;
      gemm_names += " " + n.name;
    }
    EXPECT_EQ(n.name.rfind("grad/fc1/", 0), std::string::npos) << "gradient node for the frozen layer: " << n.name;
    EXPECT_EQ(n.name.rfind("grad/relu1/", 0), std::string::npos) << "gradient node for the frozen layer: " << n.name;
  }
  // fc1 and fc2 forward, and d(fc2.weight); no d(relu1_out), so nothing flows into the first layer.
  EXPECT_EQ(gemms, 3) << "Gemm nodes:" << gemm_names;
}
