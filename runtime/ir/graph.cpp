// Graph construction, naming and ordering.
#include "runtime/ir/graph.h"

#include <functional>

namespace otter {

int64_t Node::attr_int(const std::string& key, int64_t fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  OTTER_CHECK(it->second.kind == Attribute::Kind::Int, describe(), ": attribute '", key, "' must be an int");
  return it->second.i;
}

double Node::attr_float(const std::string& key, double fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  if (it->second.kind == Attribute::Kind::Int) return static_cast<double>(it->second.i);
  OTTER_CHECK(it->second.kind == Attribute::Kind::Float, describe(), ": attribute '", key, "' must be a float");
  return it->second.f;
}

std::string Node::attr_string(const std::string& key, const std::string& fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  OTTER_CHECK(it->second.kind == Attribute::Kind::String, describe(), ": attribute '", key, "' must be a string");
  return it->second.s;
}

std::vector<int64_t> Node::attr_ints(const std::string& key, const std::vector<int64_t>& fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  OTTER_CHECK(it->second.kind == Attribute::Kind::Ints, describe(), ": attribute '", key, "' must be a list of ints");
  return it->second.ints;
}

const Tensor* Node::attr_tensor(const std::string& key) const {
  auto it = attrs.find(key);
  if (it == attrs.end() || it->second.kind != Attribute::Kind::Tensor) return nullptr;
  return &it->second.t;
}

std::string Node::describe() const {
  std::string d = domain.empty() ? op_type : domain + "." + op_type;
  return d + " node '" + name + "'";
}

int Graph::add_value(const std::string& name, DType dtype) {
  OTTER_CHECK(!name.empty(), "a value needs a name");
  OTTER_CHECK(value_by_name_.count(name) == 0, "value '", name, "' is defined twice");
  Value v;
  v.name = name;
  v.dtype = dtype;
  values.push_back(std::move(v));
  int id = static_cast<int>(values.size()) - 1;
  value_by_name_[name] = id;
  return id;
}

int Graph::find_value(const std::string& name) const {
  auto it = value_by_name_.find(name);
  return it == value_by_name_.end() ? -1 : it->second;
}

int Graph::value_id(const std::string& name) const {
  int id = find_value(name);
  OTTER_CHECK(id >= 0, "the graph has no value named '", name, "'");
  return id;
}

std::string Graph::unique_name(const std::string& prefix) {
  int& counter = name_counter_[prefix];
  for (;;) {
    std::string candidate = prefix + "_" + std::to_string(counter++);
    if (value_by_name_.count(candidate) == 0) return candidate;
  }
}

int Graph::add_node(const std::string& op_type, const std::vector<int>& node_inputs, int num_outputs,
                    Attributes attrs, const std::string& domain, const std::string& name) {
  Node n;
  n.op_type = op_type;
  n.domain = domain;
  n.name = name.empty() ? unique_name("otter/" + op_type) : name;
  n.inputs = node_inputs;
  n.attrs = std::move(attrs);
  int id = static_cast<int>(nodes.size());
  for (int i = 0; i < num_outputs; ++i) {
    int v = add_value(unique_name(n.name + ":" + std::to_string(i)));
    values[v].producer = id;
    n.outputs.push_back(v);
  }
  nodes.push_back(std::move(n));
  return id;
}

int Graph::symbol(const std::string& name) {
  for (size_t i = 0; i < symbols.size(); ++i)
    if (symbols[i] == name) return -static_cast<int>(i) - 1;
  symbols.push_back(name);
  return -static_cast<int>(symbols.size());
}

std::string Graph::dim_str(int64_t dim) const {
  if (dim >= 0) return std::to_string(dim);
  size_t k = static_cast<size_t>(-dim - 1);
  return k < symbols.size() ? symbols[k] : "?";
}

std::string Graph::shape_str(const Shape& shape) const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + dim_str(shape[i]);
  return s + "]";
}

std::vector<int> Graph::topo_order() const {
  // Kahn's algorithm, stable in node order.
  std::vector<int> pending(nodes.size(), 0);
  std::vector<std::vector<int>> users(nodes.size());
  for (size_t n = 0; n < nodes.size(); ++n) {
    for (int v : nodes[n].inputs) {
      if (v < 0 || values[v].producer < 0) continue;
      pending[n]++;
      users[values[v].producer].push_back(static_cast<int>(n));
    }
  }
  std::vector<int> order, ready;
  for (size_t n = 0; n < nodes.size(); ++n)
    if (pending[n] == 0) ready.push_back(static_cast<int>(n));
  size_t head = 0;
  while (head < ready.size()) {
    int n = ready[head++];
    order.push_back(n);
    for (int u : users[n])
      if (--pending[u] == 0) ready.push_back(u);
  }
  if (order.size() != nodes.size()) {
    for (size_t n = 0; n < nodes.size(); ++n)
      if (pending[n] > 0) OTTER_FAIL("the graph has a cycle through ", nodes[n].describe());
  }
  return order;
}

std::vector<std::vector<int>> Graph::consumers() const {
  std::vector<std::vector<int>> result(values.size());
  for (size_t n = 0; n < nodes.size(); ++n)
    for (int v : nodes[n].inputs)
      if (v >= 0) result[v].push_back(static_cast<int>(n));
  return result;
}

int64_t Graph::opset(const std::string& domain) const {
  auto it = opsets.find(domain);
  return it == opsets.end() ? 0 : it->second;
}

}  // namespace otter
