// The intermediate representation: a graph of values and nodes in the ONNX sense.
//
// Values and nodes live in vectors and refer to each other by index, so passes can append to the
// graph without invalidating references. A value has a dtype and a shape whose negative dims are
// symbolic (symbol k is dim -(k+1), named in Graph::symbols, e.g. the batch dim "N"). Initializers
// and Constant outputs carry their data in Value::data. Node inputs use -1 for an omitted
// optional input. Internal ops use the domain "otter"; ONNX's default domain is "".
#pragma once
#include <map>
#include <string>
#include <vector>

#include "runtime/core/tensor.h"

namespace otter {

struct Attribute {
  enum class Kind { Float, Int, String, Tensor, Floats, Ints, Strings };
  Kind kind = Kind::Int;
  double f = 0;
  int64_t i = 0;
  std::string s;
  otter::Tensor t;
  std::vector<double> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;

  static Attribute of_int(int64_t v) { Attribute a; a.kind = Kind::Int; a.i = v; return a; }
  static Attribute of_float(double v) { Attribute a; a.kind = Kind::Float; a.f = v; return a; }
  static Attribute of_ints(std::vector<int64_t> v) { Attribute a; a.kind = Kind::Ints; a.ints = std::move(v); return a; }
  static Attribute of_string(std::string v) { Attribute a; a.kind = Kind::String; a.s = std::move(v); return a; }
  static Attribute of_tensor(otter::Tensor v) { Attribute a; a.kind = Kind::Tensor; a.t = std::move(v); return a; }
};

using Attributes = std::map<std::string, Attribute>;

struct Node {
  std::string op_type;
  std::string domain;  // "" for ai.onnx, "otter" for internal ops
  std::string name;
  std::vector<int> inputs;   // value ids, -1 for an omitted optional input
  std::vector<int> outputs;  // value ids, -1 for an omitted optional output
  Attributes attrs;

  bool has_attr(const std::string& key) const { return attrs.count(key) != 0; }
  int64_t attr_int(const std::string& key, int64_t fallback) const;
  double attr_float(const std::string& key, double fallback) const;
  std::string attr_string(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> attr_ints(const std::string& key, const std::vector<int64_t>& fallback = {}) const;
  const Tensor* attr_tensor(const std::string& key) const;
  int input(size_t i) const { return i < inputs.size() ? inputs[i] : -1; }
  // "Gemm 'fc1'" — for error messages.
  std::string describe() const;
};

struct Value {
  std::string name;
  DType dtype = DType::Undefined;
  Shape shape;
  bool shape_known = false;  // rank and dims (possibly symbolic) are known
  int producer = -1;         // node id, -1 for graph inputs and initializers
  bool is_initializer = false;
  Tensor data;  // initializer or constant data; undefined otherwise
};

class Graph {
 public:
  std::vector<Value> values;
  std::vector<Node> nodes;
  std::vector<int> inputs;        // graph inputs that are not initializers
  std::vector<int> outputs;
  std::vector<int> initializers;
  std::vector<std::string> symbols;  // names of symbolic dims
  std::map<std::string, int64_t> opsets;  // domain -> version

  int add_value(const std::string& name, DType dtype = DType::Undefined);
  int find_value(const std::string& name) const;  // -1 if absent
  int value_id(const std::string& name) const;    // throws if absent
  // Appends a node; creates its outputs as new values named from `name`. Returns the node id.
  int add_node(const std::string& op_type, const std::vector<int>& inputs, int num_outputs,
               Attributes attrs = {}, const std::string& domain = "", const std::string& name = "");
  // A name not yet used by any value or node, starting with `prefix`.
  std::string unique_name(const std::string& prefix);
  int symbol(const std::string& name);  // the symbolic dim for `name`, created if new
  std::string dim_str(int64_t dim) const;
  std::string shape_str(const Shape& shape) const;

  // Node ids in a topological order; throws naming a node on a cycle.
  std::vector<int> topo_order() const;
  // consumers[v] = node ids that read value v.
  std::vector<std::vector<int>> consumers() const;
  int64_t opset(const std::string& domain = "") const;

 private:
  std::map<std::string, int> value_by_name_;
  std::map<std::string, int> name_counter_;
};

}  // namespace otter
