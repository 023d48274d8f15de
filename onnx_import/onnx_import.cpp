// ONNX import and export (see onnx_import.h).
#include "onnx_import/onnx_import.h"
#include "onnx_import/expand_functions.h"
#include "onnx_import/proto_import.h"
#include "runtime/core/checked.h"
#include "runtime/core/file_io.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace otter {
namespace fs = std::filesystem;
namespace {

// Resolves an external-data location against the model's folder, refusing escapes.
std::string external_path(const std::string& base_dir, const std::string& location, const std::string& tensor) {
  OTTER_CHECK(!location.empty(), "initializer '", tensor, "': external data has no location");
  fs::path loc(location);
  OTTER_CHECK(!loc.is_absolute(), "initializer '", tensor, "': external data path '", location,
              "' is absolute; it must be relative to the model's folder");
  fs::path base = fs::weakly_canonical(fs::path(base_dir.empty() ? "." : base_dir));
  fs::path full = fs::weakly_canonical(base / loc);
  auto rel = full.lexically_relative(base);
  OTTER_CHECK(!rel.empty() && *rel.begin() != "..", "initializer '", tensor, "': external data path '", location,
              "' leaves the model's folder");
  return full.string();
}

}  // namespace

namespace {

// Below this size a copy costs less than the shared owner (and keeps small constants 64-byte aligned).
constexpr size_t kStealBytes = 1 << 16;

// steal_raw: p's raw_data, which the tensor may take over (the caller discards p).
Tensor tensor_from_proto_impl(const onnx::TensorProto& p, const std::string& base_dir, std::string* steal_raw) {
  const std::string& name = p.name();
  OTTER_CHECK(is_supported_dtype(p.data_type()), "tensor '", name, "' has unsupported dtype ",
              onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(p.data_type())));
  DType dtype = static_cast<DType>(p.data_type());
  Shape shape(p.dims().begin(), p.dims().end());
  for (int64_t d : shape) OTTER_CHECK(d >= 0, "tensor '", name, "' has a negative dim");
  // The size the dims claim is checked against the data present before anything is allocated: a
  // few hundred bytes of protobuf may claim 10^17 bytes (found by fuzzing).
  int64_t n = 0;
  try {
    n = shape_numel(shape);
  } catch (const Error& e) {
    OTTER_FAIL("tensor '", name, "': ", e.what());
  }
  const size_t bytes = static_cast<size_t>(n) * dtype_size(dtype);
  if (p.data_location() != onnx::TensorProto::EXTERNAL) {
    if (p.has_raw_data()) {
      OTTER_CHECK(p.raw_data().size() == bytes, "tensor '", name, "': raw_data has ", p.raw_data().size(),
                  " bytes but shape ", shape_str(shape), " of ", dtype_name(dtype), " needs ", bytes);
    } else {
      int64_t present = std::max({static_cast<int64_t>(p.float_data_size()), static_cast<int64_t>(p.double_data_size()),
                                  static_cast<int64_t>(p.int64_data_size()), static_cast<int64_t>(p.int32_data_size())});
      OTTER_CHECK(present >= n, "tensor '", name, "' has ", present, " values but shape ", shape_str(shape), " needs ", n);
    }
  } else {
    bool located = false;
    for (const auto& kv : p.external_data()) located = located || kv.key() == "location";
    OTTER_CHECK(located, "initializer '", name, "': external data has no location");
    for (const auto& kv : p.external_data())
      if (kv.key() == "location") {
        std::error_code ec;
        const std::string path = external_path(base_dir, kv.value(), name);
        const auto size = fs::file_size(path, ec);
        OTTER_CHECK_KIND(NotFound, !ec, "initializer '", name, "': cannot open external data file '", path, "' (",
                         ec.message(), ")");
        OTTER_CHECK(size >= bytes, "initializer '", name, "': its external data file '", kv.value(), "' has ", size,
                    " bytes but shape ", shape_str(shape), " needs ", bytes);
      }
  }
  if (p.data_location() != onnx::TensorProto::EXTERNAL && p.has_raw_data()) {
    OTTER_CHECK(p.raw_data().size() == bytes, "tensor '", name, "': raw_data has ", p.raw_data().size(),
                " bytes but shape ", shape_str(shape), " of ", dtype_name(dtype), " needs ", bytes);
    if (steal_raw && bytes >= kStealBytes) {  // the bytes stay where protobuf put them
      auto owner = std::make_shared<std::string>(std::move(*steal_raw));
      void* data = owner->data();
      return Tensor::view(dtype, shape, std::shared_ptr<void>(owner, data), data);
    }
    Tensor raw = Tensor::uninitialized(dtype, shape);  // every byte is copied in below
    if (bytes) std::memcpy(raw.raw(), p.raw_data().data(), bytes);
    return raw;
  }
  Tensor t(dtype, shape);
  if (p.data_location() == onnx::TensorProto::EXTERNAL) {
    std::string location;
    int64_t offset = 0, length = -1;
    for (const auto& kv : p.external_data()) {
      if (kv.key() == "location") location = kv.value();
      else if (kv.key() == "offset") offset = parse_int64(kv.value(), "initializer '" + name + "': external data offset", 0, kMaxCount);
      else if (kv.key() == "length") length = parse_int64(kv.value(), "initializer '" + name + "': external data length", 0, kMaxCount);
    }
    std::string path = external_path(base_dir, location, name);
    std::ifstream in(path, std::ios::binary);
    OTTER_CHECK_KIND(NotFound, in.good(), "initializer '", name, "': cannot open external data file '", path, "'");
    OTTER_CHECK(length < 0 || static_cast<size_t>(length) == bytes, "initializer '", name, "': external length ",
                length, " but shape ", shape_str(shape), " needs ", bytes, " bytes");
    in.seekg(offset);
    in.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(bytes));
    OTTER_CHECK(in.gcount() == static_cast<std::streamsize>(bytes), "initializer '", name,
                "': external data file '", path, "' is too short");
    return t;
  }

  auto check_count = [&](int64_t count) {
    OTTER_CHECK(count == n, "tensor '", name, "' has ", count, " values but shape ", shape_str(shape), " needs ", n);
  };
  switch (dtype) {
    case DType::Float32: check_count(p.float_data_size()); std::copy(p.float_data().begin(), p.float_data().end(), t.data<float>()); break;
    case DType::Float64: check_count(p.double_data_size()); std::copy(p.double_data().begin(), p.double_data().end(), t.data<double>()); break;
    case DType::Int64: check_count(p.int64_data_size()); std::copy(p.int64_data().begin(), p.int64_data().end(), t.data<int64_t>()); break;
    case DType::Int32: check_count(p.int32_data_size()); std::copy(p.int32_data().begin(), p.int32_data().end(), t.data<int32_t>()); break;
    case DType::Int8: check_count(p.int32_data_size()); for (int64_t i = 0; i < n; ++i) t.data<int8_t>()[i] = static_cast<int8_t>(p.int32_data(i)); break;
    case DType::Uint8: check_count(p.int32_data_size()); for (int64_t i = 0; i < n; ++i) t.data<uint8_t>()[i] = static_cast<uint8_t>(p.int32_data(i)); break;
    case DType::Bool: check_count(p.int32_data_size()); for (int64_t i = 0; i < n; ++i) t.data<bool>()[i] = p.int32_data(i) != 0; break;
    case DType::Float16: case DType::BFloat16: {
      check_count(p.int32_data_size());
      auto* q = static_cast<uint16_t*>(t.raw());
      for (int64_t i = 0; i < n; ++i) q[i] = static_cast<uint16_t>(p.int32_data(i));
      break;
    }
    default: OTTER_FAIL("tensor '", name, "': unsupported dtype");
  }
  return t;
}

}  // namespace

Tensor tensor_from_proto(const onnx::TensorProto& p, const std::string& base_dir) {
  return tensor_from_proto_impl(p, base_dir, nullptr);
}

Tensor tensor_from_proto_consuming(onnx::TensorProto* p, const std::string& base_dir) {
  return tensor_from_proto_impl(*p, base_dir, p->has_raw_data() ? p->mutable_raw_data() : nullptr);
}

void fill_proto_from_tensor(const Tensor& t, onnx::TensorProto* p) {
  p->clear_float_data(); p->clear_double_data(); p->clear_int32_data(); p->clear_int64_data();
  p->clear_external_data();
  p->set_data_location(onnx::TensorProto::DEFAULT);
  p->set_raw_data(std::string(static_cast<const char*>(t.raw()), t.nbytes()));
}

namespace {

Attribute attribute_from_proto(const onnx::AttributeProto& a, const std::string& node, const std::string& base_dir) {
  Attribute r;
  switch (a.type()) {
    case onnx::AttributeProto::FLOAT: r.kind = Attribute::Kind::Float; r.f = a.f(); break;
    case onnx::AttributeProto::INT: r.kind = Attribute::Kind::Int; r.i = a.i(); break;
    case onnx::AttributeProto::STRING: r.kind = Attribute::Kind::String; r.s = a.s(); break;
    case onnx::AttributeProto::TENSOR: r.kind = Attribute::Kind::Tensor; r.t = tensor_from_proto(a.t(), base_dir); break;
    case onnx::AttributeProto::FLOATS: r.kind = Attribute::Kind::Floats; r.floats.assign(a.floats().begin(), a.floats().end()); break;
    case onnx::AttributeProto::INTS: r.kind = Attribute::Kind::Ints; r.ints.assign(a.ints().begin(), a.ints().end()); break;
    case onnx::AttributeProto::STRINGS: r.kind = Attribute::Kind::Strings; r.strings.assign(a.strings().begin(), a.strings().end()); break;
    default:
      OTTER_FAIL_KIND(Unsupported, "node '", node, "': attribute '", a.name(), "' has unsupported type ",
                 onnx::AttributeProto_AttributeType_Name(a.type()), " (subgraphs and sparse tensors are not supported)");
  }
  return r;
}

// Older opsets kept `axes` as an attribute on these reductions; opset 18 made it an input.
bool reduction_axes_moved_at_18(const std::string& op) {
  static const std::set<std::string> ops = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                                            "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"};
  return ops.count(op) != 0;
}

void import_value_info(Graph& g, int id, const onnx::ValueInfoProto& info) {
  Value& v = g.values[id];
  if (!info.type().has_tensor_type()) OTTER_FAIL("graph input '", info.name(), "' is not a tensor (sequences, maps and optionals are not supported)");
  const auto& tt = info.type().tensor_type();
  OTTER_CHECK(is_supported_dtype(tt.elem_type()), "graph input '", info.name(), "' has unsupported dtype ",
              onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(tt.elem_type())));
  v.dtype = static_cast<DType>(tt.elem_type());
  if (!tt.has_shape()) OTTER_FAIL("graph input '", info.name(), "' has no shape; give it a rank (dims may be symbolic)");
  Shape s;
  for (int k = 0; k < tt.shape().dim_size(); ++k) {
    const auto& d = tt.shape().dim(k);
    if (d.has_dim_value()) {
      OTTER_CHECK(d.dim_value() >= 0, "graph input '", info.name(), "' has a negative dimension ", d.dim_value(), " at axis ", k);
      s.push_back(d.dim_value());
    }
    else if (d.has_dim_param() && !d.dim_param().empty()) s.push_back(g.symbol(d.dim_param()));
    else s.push_back(g.symbol(info.name() + ":" + std::to_string(k)));
  }
  v.shape = s;
  v.shape_known = true;
}

// consumed: gp itself when the caller discards it (its initializers' raw_data is taken over).
void append_graph(Graph& g, const onnx::GraphProto& gp, onnx::GraphProto* consumed, const std::string& base_dir,
                  const std::string& where) {
  const int64_t opset = g.opsets.count("") ? g.opsets.at("") : 0;
  for (int i = 0; i < gp.initializer_size(); ++i) {
    const onnx::TensorProto& init = gp.initializer(i);
    OTTER_CHECK(!init.name().empty(), where, "an initializer has no name");
    OTTER_CHECK(g.find_value(init.name()) < 0, where, "initializer '", init.name(), "' is defined twice");
    int id = g.add_value(init.name());
    Value& v = g.values[id];
    v.data = consumed ? tensor_from_proto_consuming(consumed->mutable_initializer(i), base_dir) : tensor_from_proto(init, base_dir);
    v.dtype = v.data.dtype();
    v.shape = v.data.shape();
    v.shape_known = true;
    v.is_initializer = true;
    g.initializers.push_back(id);
  }
  OTTER_CHECK(gp.sparse_initializer_size() == 0, where, "sparse initializers are not supported");
  std::set<std::string> input_names;
  for (const auto& in : gp.input()) {
    OTTER_CHECK(!in.name().empty(), where, "a graph input has no name");
    OTTER_CHECK(input_names.insert(in.name()).second, where, "graph input '", in.name(), "' is listed twice");
    int existing = g.find_value(in.name());
    if (existing >= 0) {
      // An initializer that is also listed as an input (IR < 4 style); anything else is a clash.
      OTTER_CHECK(g.values[existing].is_initializer, where, "graph input '", in.name(), "' is already defined");
      continue;
    }
    int id = g.add_value(in.name());
    import_value_info(g, id, in);
    g.inputs.push_back(id);
  }
  // Pass 1: every node's outputs, so that inputs can be resolved whatever the node order (ONNX
  // requires sorted nodes, but some tools write them unsorted; cycles are found by topo_order).
  const int first_node = static_cast<int>(g.nodes.size());
  std::vector<std::vector<int>> node_outputs;
  for (int k = 0; k < gp.node_size(); ++k) {
    const auto& np = gp.node(k);
    std::vector<int> outs;
    for (const auto& o : np.output()) {
      if (o.empty()) { outs.push_back(-1); continue; }
      OTTER_CHECK(g.find_value(o) < 0, where, "node '", np.name(), "' (", np.op_type(), "): output '", o, "' is already defined");
      int id = g.add_value(o);
      g.values[id].producer = first_node + k;
      outs.push_back(id);
    }
    node_outputs.push_back(outs);
  }
  for (int k = 0; k < gp.node_size(); ++k) {
    const auto& np = gp.node(k);
    std::string domain = np.domain() == "ai.onnx" ? "" : np.domain();
    std::string at = where + "node '" + np.name() + "' (" + np.op_type() + ")";
    OTTER_CHECK(domain.empty() || g.opsets.count(domain), at, ": its domain '", domain, "' is not imported by the model");
    OTTER_CHECK(!domain.empty() || g.opsets.count(""), at, ": the model imports no opset of the default ONNX domain");
    Node n;
    n.op_type = np.op_type();
    n.domain = domain;
    n.name = np.name().empty() ? g.unique_name("node/" + np.op_type()) : np.name();
    for (const auto& a : np.attribute()) n.attrs[a.name()] = attribute_from_proto(a, n.name, base_dir);
    for (const auto& in : np.input()) {
      if (in.empty()) { n.inputs.push_back(-1); continue; }
      int id = g.find_value(in);
      OTTER_CHECK(id >= 0, where, "node '", n.name, "' (", n.op_type, ", opset ", opset, "): input '", in,
                  "' is not a graph input, an initializer or any node's output (missing input)");
      n.inputs.push_back(id);
    }
    // Opset adapters: move attributes that later opsets made inputs.
    if (domain.empty() && opset < 18 && reduction_axes_moved_at_18(n.op_type) && n.has_attr("axes")) {
      std::vector<int64_t> axes = n.attrs["axes"].ints;
      n.attrs.erase("axes");
      int c = g.add_value(g.unique_name(n.name + ":axes"), DType::Int64);
      g.values[c].data = Tensor::from_vector(axes, {static_cast<int64_t>(axes.size())});
      g.values[c].shape = {static_cast<int64_t>(axes.size())};
      g.values[c].shape_known = true;
      n.inputs.resize(1);
      n.inputs.push_back(c);
    }
    n.outputs = node_outputs[k];
    g.nodes.push_back(std::move(n));
  }
  for (const auto& o : gp.output()) {
    int id = g.find_value(o.name());
    OTTER_CHECK(id >= 0, where, "graph output '", o.name(), "' is not produced by any node");
    g.outputs.push_back(id);
  }
}

}  // namespace

void append_graph_proto(Graph& g, const onnx::GraphProto& gp, const std::string& base_dir, const std::string& where) {
  append_graph(g, gp, nullptr, base_dir, where);
}

void append_graph_proto_consuming(Graph& g, onnx::GraphProto* gp, const std::string& base_dir, const std::string& where) {
  append_graph(g, *gp, gp, base_dir, where);
}

void import_opsets(Graph& g, const onnx::ModelProto& model) {
  for (const auto& op : model.opset_import()) {
    std::string domain = op.domain() == "ai.onnx" ? "" : op.domain();
    g.opsets[domain] = op.version();
  }
  // A training model (it imports ai.onnx.preview.training) may consist of training ops only, with
  // no default-domain opset (the ONNX optimizer node tests): then each default-domain node is an
  // error of its own.
  const bool training = g.opsets.count("ai.onnx.preview.training") != 0;
  OTTER_CHECK(g.opsets.count("") || training, "the model imports no opset of the default ONNX domain");
  if (!g.opsets.count("")) return;
  int64_t opset = g.opsets[""];
  if (training && opset < kMinOpset && opset >= 7) {
    // A training model of an older opset is accepted when every default-domain node of every graph
    // is an op whose definition did not change up to opset 13 except for added types (the ONNX
    // training model tests use opset 12 Add/Mul); it is then read as opset 13.
    static const std::set<std::string> unchanged = {"Add", "Sub", "Mul", "Div", "MatMul", "Relu", "Sigmoid", "Tanh",
                                                    "Exp", "Log", "Neg", "Abs", "Sqrt", "Identity"};
    std::string changed;
    auto scan = [&](const onnx::GraphProto& gp) {
      for (const auto& n : gp.node())
        if ((n.domain().empty() || n.domain() == "ai.onnx") && !unchanged.count(n.op_type()) && changed.empty())
          changed = n.op_type();
    };
    scan(model.graph());
    for (const auto& ti : model.training_info()) {
      scan(ti.initialization());
      scan(ti.algorithm());
    }
    OTTER_CHECK_KIND(Unsupported, changed.empty(), "the model uses ONNX opset ", opset, "; Otter supports opsets ",
                     kMinOpset, " to ", kMaxOpset, " (", changed, " changed since opset ", opset,
                     "; convert older models with onnx.version_converter)");
    g.opsets[""] = kMinOpset;
    return;
  }
  OTTER_CHECK_KIND(Unsupported, opset >= kMinOpset && opset <= kMaxOpset, "the model uses ONNX opset ", opset,
                   "; Otter supports opsets ", kMinOpset, " to ", kMaxOpset,
                   " (convert older models with onnx.version_converter)");
}

onnx::ModelProto parse_model(const void* data, size_t size) {
  OTTER_CHECK(data != nullptr && size > 0, "the model buffer is empty");
  onnx::ModelProto model;
  OTTER_CHECK(size < (size_t(1) << 31), "the model is ", size, " bytes; models over 2 GiB must keep weights in external data");
  OTTER_CHECK_KIND(InvalidModel, model.ParseFromArray(data, static_cast<int>(size)),
              "the data is not a valid ONNX model (protobuf parsing failed: truncated or not an ONNX file)");
  OTTER_CHECK(model.has_graph(), "the ONNX model has no graph");
  return model;
}

namespace {

// The model in `bytes`, which the result keeps (for export) without copying them.
LoadedModel load_model_owned(SharedBytes bytes, const std::string& base_dir) {
  onnx::ModelProto model = parse_model(bytes.data(), bytes.size());
  LoadedModel out;
  out.model_bytes = std::move(bytes);
  out.base_dir = base_dir;
  out.training_info_count = static_cast<size_t>(model.training_info_size());
  Graph& g = out.graph;
  import_opsets(g, model);
  append_graph_proto_consuming(g, model.mutable_graph(), base_dir, "");  // the model is discarded below
  expand_functions(g);  // Attention -> primitive ops (onnx_import/expand_functions.h)
  g.topo_order();  // throws on a cycle
  return out;
}

}  // namespace

LoadedModel load_model_buffer(const void* data, size_t size, const std::string& base_dir) {
  return load_model_owned(SharedBytes(std::string(static_cast<const char*>(data), size)), base_dir);
}

LoadedModel load_model_file(const std::string& path) {
  // Protobuf cannot parse 2 GiB or more: larger models keep their weights in external data.
  SharedBytes bytes = SharedBytes::map_file(path, "model", (uint64_t(1) << 31) - 1);
  OTTER_CHECK_KIND(InvalidModel, !bytes.empty(), "model '", path, "' is empty");
  fs::path p(path);
  try {
    return load_model_owned(std::move(bytes), p.has_parent_path() ? p.parent_path().string() : ".");
  } catch (const Error& e) {
    throw Error(cat("loading '", path, "': ", e.what()), e.kind() == ErrorKind::InvalidArgument ? ErrorKind::InvalidModel : e.kind());
  }
}

Tensor load_tensor_file(const std::string& path, std::string* name) {
  std::string bytes = read_file(path, "tensor file", (uint64_t(1) << 31) - 1);
  onnx::TensorProto p;
  OTTER_CHECK(p.ParseFromString(bytes), "'", path, "' is not a serialized TensorProto");
  if (name) *name = p.name();
  return tensor_from_proto(p, fs::path(path).parent_path().string());
}

void export_model(const SharedBytes& original_bytes, const std::map<std::string, Tensor>& replacements,
                  const std::string& path, const std::map<std::string, std::string>& metadata) {
  original_bytes.check_unchanged("export");
  onnx::ModelProto model;
  OTTER_CHECK(original_bytes.size() < (size_t(1) << 31) &&
                  model.ParseFromArray(original_bytes.data(), static_cast<int>(original_bytes.size())),
              "export: the original model bytes do not parse");
  std::set<std::string> done;
  auto replace_in = [&](onnx::GraphProto* graph) {
    for (auto& init : *graph->mutable_initializer()) {
      auto it = replacements.find(init.name());
      if (it == replacements.end()) continue;
      const Tensor& t = it->second;
      OTTER_CHECK(static_cast<int32_t>(t.dtype()) == init.data_type(), "export: initializer '", init.name(),
                  "' is ", init.data_type(), " in the model but the new value is ", dtype_name(t.dtype()));
      Shape dims(init.dims().begin(), init.dims().end());
      OTTER_CHECK(dims == t.shape(), "export: initializer '", init.name(), "' has shape ", shape_str(dims),
                  " but the new value has ", shape_str(t.shape()));
      fill_proto_from_tensor(t, &init);
      done.insert(init.name());
    }
  };
  replace_in(model.mutable_graph());
  for (auto& ti : *model.mutable_training_info())
    if (ti.has_algorithm()) replace_in(ti.mutable_algorithm());
  for (auto& kv : replacements)
    OTTER_CHECK(done.count(kv.first), "export: the model has no initializer named '", kv.first, "'");
  for (auto& kv : metadata) {
    onnx::StringStringEntryProto* entry = nullptr;
    for (auto& e : *model.mutable_metadata_props())
      if (e.key() == kv.first) entry = &e;
    if (!entry) entry = model.add_metadata_props();
    entry->set_key(kv.first);
    entry->set_value(kv.second);
  }
  std::string bytes;
  OTTER_CHECK(model.SerializeToString(&bytes), "export: serialization failed");
  write_file_atomic(path, bytes.data(), bytes.size(), "exported model");
}

}  // namespace otter
