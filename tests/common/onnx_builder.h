// Helpers for tests that build ONNX models in C++ with ONNX's own protobuf classes.
#pragma once
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <variant>
#include <vector>

#include "onnx_import/onnx_import.h"

namespace otter::testing {
namespace fs = std::filesystem;

using Dim = std::variant<int64_t, std::string>;

// A fresh, empty folder under the system temp dir (per process: test runs may overlap).
inline fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("otter_import_test_" + std::to_string(getpid()) + "_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

inline onnx::ModelProto new_model(int64_t opset) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("otter_test_import");
  auto* op = m.add_opset_import();
  op->set_domain("");
  op->set_version(opset);
  m.mutable_graph()->set_name("test");
  return m;
}

inline void set_type(onnx::ValueInfoProto* vi, const std::string& name, int32_t elem_type, const std::vector<Dim>& dims) {
  vi->set_name(name);
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem_type);
  auto* shape = tt->mutable_shape();
  for (const Dim& d : dims) {
    auto* dim = shape->add_dim();
    if (std::holds_alternative<int64_t>(d)) dim->set_dim_value(std::get<int64_t>(d));
    else dim->set_dim_param(std::get<std::string>(d));
  }
}

inline void add_input(onnx::ModelProto& m, const std::string& name, int32_t elem_type, const std::vector<Dim>& dims) {
  set_type(m.mutable_graph()->add_input(), name, elem_type, dims);
}

inline void add_output(onnx::ModelProto& m, const std::string& name, int32_t elem_type = onnx::TensorProto::FLOAT) {
  auto* vi = m.mutable_graph()->add_output();
  vi->set_name(name);
  vi->mutable_type()->mutable_tensor_type()->set_elem_type(elem_type);
}

inline onnx::NodeProto* add_node(onnx::ModelProto& m, const std::string& op, const std::vector<std::string>& inputs,
                          const std::vector<std::string>& outputs, const std::string& name) {
  auto* n = m.mutable_graph()->add_node();
  n->set_op_type(op);
  n->set_name(name);
  for (auto& i : inputs) n->add_input(i);
  for (auto& o : outputs) n->add_output(o);
  return n;
}

inline void attr_int(onnx::NodeProto* n, const std::string& name, int64_t v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

inline void attr_ints(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

inline onnx::TensorProto* add_init(onnx::ModelProto& m, const std::string& name, int32_t dtype, const std::vector<int64_t>& dims) {
  auto* t = m.mutable_graph()->add_initializer();
  t->set_name(name);
  t->set_data_type(dtype);
  for (int64_t d : dims) t->add_dims(d);
  return t;
}

template <typename T>
inline std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

inline void add_float_init(onnx::ModelProto& m, const std::string& name, const std::vector<int64_t>& dims,
                    const std::vector<float>& values) {
  add_init(m, name, onnx::TensorProto::FLOAT, dims)->set_raw_data(bytes_of(values));
}

inline void add_int64_init(onnx::ModelProto& m, const std::string& name, const std::vector<int64_t>& values) {
  add_init(m, name, onnx::TensorProto::INT64, {static_cast<int64_t>(values.size())})->set_raw_data(bytes_of(values));
}

inline std::string serialize(const onnx::ModelProto& m) {
  std::string s;
  EXPECT_TRUE(m.SerializeToString(&s));
  return s;
}

inline LoadedModel load(const onnx::ModelProto& m, const std::string& base_dir = "") {
  std::string s = serialize(m);
  return load_model_buffer(s.data(), s.size(), base_dir);
}

}  // namespace otter::testing
