// ONNX Runtime training artifacts: checkpoint reader/writer, artifact loading and the rewrite of
// ORT's com.microsoft gradient ops into Otter ops (see ort_artifacts.h).
#include "onnx_import/ort_artifacts.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "onnx_import/ort_checkpoint_generated.h"  // flatc output of onnx_import/ort_checkpoint.fbs (build tree)
#include "onnx_import/proto_import.h"
#include "runtime/core/checked.h"
#include "runtime/core/file_io.h"

namespace otter {
namespace fs = std::filesystem;
namespace {

constexpr const char* kMs = "com.microsoft";

Tensor tensor_from_fbs(const ortfbs::Tensor* t, const std::string& what) {
  OTTER_CHECK_KIND(InvalidModel, t && t->name(), what, ": a tensor has no name");
  const std::string name = t->name()->str();
  OTTER_CHECK_KIND(Unsupported, t->external_data_offset() < 0, what, ": tensor '", name,
                   "' keeps its data in an external file, which Otter does not read");
  OTTER_CHECK_KIND(InvalidModel, is_supported_dtype(t->data_type()), what, ": tensor '", name, "' has unsupported dtype ",
                   t->data_type());
  const DType dtype = static_cast<DType>(t->data_type());
  Shape shape;
  if (t->dims())
    for (int64_t d : *t->dims()) {
      OTTER_CHECK_KIND(InvalidModel, d >= 0, what, ": tensor '", name, "' has a negative dim");
      shape.push_back(d);
    }
  int64_t n = 0;
  try {
    n = shape_numel(shape);
  } catch (const Error& e) {
    OTTER_FAIL_KIND(InvalidModel, what, ": tensor '", name, "': ", e.what());
  }
  const size_t bytes = static_cast<size_t>(n) * dtype_size(dtype);
  const size_t have = t->raw_data() ? t->raw_data()->size() : 0;
  OTTER_CHECK_KIND(InvalidModel, have == bytes, what, ": tensor '", name, "' has ", have, " bytes of data but shape ",
                   shape_str(shape), " of ", dtype_name(dtype), " needs ", bytes);
  Tensor out(dtype, shape);
  if (bytes) std::memcpy(out.raw(), t->raw_data()->data(), bytes);
  return out;
}

flatbuffers::Offset<ortfbs::Tensor> tensor_to_fbs(flatbuffers::FlatBufferBuilder& b, const std::string& name,
                                                   const Tensor& t) {
  Tensor host = t.to(Device::CPU);
  std::vector<int64_t> dims(host.shape().begin(), host.shape().end());
  auto n = b.CreateString(name);
  auto d = b.CreateVector(dims);
  auto raw = b.CreateVector(static_cast<const uint8_t*>(host.raw()), host.nbytes());
  ortfbs::TensorBuilder tb(b);
  tb.add_name(n);
  tb.add_dims(d);
  tb.add_data_type(static_cast<int32_t>(host.dtype()));
  tb.add_raw_data(raw);
  return tb.Finish();
}

std::vector<std::pair<std::string, Tensor>> tensors_from_fbs(
    const flatbuffers::Vector<flatbuffers::Offset<ortfbs::Tensor>>* v, const std::string& what) {
  std::vector<std::pair<std::string, Tensor>> r;
  if (!v) return r;
  for (const ortfbs::Tensor* t : *v) {
    Tensor x = tensor_from_fbs(t, what);
    r.push_back({t->name()->str(), x});
  }
  return r;
}

// The com.microsoft ops of a training model, rewritten into Otter ops with the same meaning.
void rewrite_ms_ops(Graph& g, const std::string& file) {
  const size_t count = g.nodes.size();
  for (size_t i = 0; i < count; ++i) {
    // ORT writes MaxPoolGrad without a domain; it is ORT's op (runtime/ops/ort_grad.cpp).
    if (g.nodes[i].domain.empty() && g.nodes[i].op_type == "MaxPoolGrad") g.nodes[i].domain = kMs;
    if (g.nodes[i].domain != kMs) continue;
    const std::string op = g.nodes[i].op_type;
    const std::string where = file + ": node '" + g.nodes[i].name + "' (com.microsoft " + op + ")";
    if (op == "SoftmaxCrossEntropyLossGrad") {
      // (dY, log_prob, label, weight?) -> dX, attributes reduction and ignore_index: Otter's own.
      OTTER_CHECK_KIND(Unsupported, g.nodes[i].inputs.size() <= 4, where, ": an ignore_index input is not supported");
      g.nodes[i].domain = "otter";
    } else if (op == "ReluGrad" || op == "SigmoidGrad" || op == "TanhGrad") {
      // (dY, X) for Relu, (dY, Y) for Sigmoid/Tanh -> otter.UnaryGrad(dy, x, y): Relu's formula
      // reads x (X > 0 exactly when Relu(X) > 0), Sigmoid's and Tanh's read y.
      Node& n = g.nodes[i];
      OTTER_CHECK(n.inputs.size() == 2, where, ": expects 2 inputs, has ", n.inputs.size());
      const int v = n.inputs[1];
      n.inputs = {n.inputs[0], v, v};
      n.attrs.clear();
      n.attrs["op"] = Attribute::of_string(op.substr(0, op.size() - 4));
      n.op_type = "UnaryGrad";
      n.domain = "otter";
    } else if (op == "InPlaceAccumulatorV2") {
      // (buffer, value, overwrite?) -> buffer + value, or value when overwrite is true.
      Node& n = g.nodes[i];
      OTTER_CHECK(n.inputs.size() >= 2 && n.inputs[0] >= 0 && n.inputs[1] >= 0, where, ": needs a buffer and a value");
      const int buffer = n.inputs[0], value = n.inputs[1], flag = n.input(2);
      const std::string name = n.name;
      int sum = g.nodes[g.add_node("Add", {buffer, value}, 1, {}, "", g.unique_name(name + "/Add"))].outputs[0];
      Node& m = g.nodes[i];
      m.attrs.clear();
      m.domain = "";
      if (flag >= 0) {
        m.op_type = "Where";
        m.inputs = {flag, value, sum};
      } else {
        m.op_type = "Identity";
        m.inputs = {sum};
      }
      m.outputs.resize(1);
    } else if (op == "ConvGrad" || op == "MaxPoolGrad") {
      // Graph-level: Otter's Conv/MaxPool gradient builders replace them (runtime/passes/ort_grad_ops.h).
    } else {
      OTTER_FAIL_KIND(Unsupported, where, ": this ONNX Runtime training op is not supported by Otter (supported: "
                      "SoftmaxCrossEntropyLossGrad, ReluGrad, SigmoidGrad, TanhGrad, ConvGrad, MaxPoolGrad, "
                      "InPlaceAccumulatorV2)");
    }
  }
  for (const Node& n : g.nodes)
    OTTER_CHECK_KIND(Unsupported, n.domain.empty() || n.domain == "otter" || n.domain == kMs, file, ": node '", n.name,
                     "' (", n.domain, " ", n.op_type, ") is in a domain Otter does not support");
}

OrtOptimizer read_optimizer(const std::string& path) {
  std::string bytes = read_file(path, "optimizer model", (uint64_t(1) << 31) - 1);
  onnx::ModelProto m = parse_model(bytes.data(), bytes.size());
  const auto& g = m.graph();
  OTTER_CHECK_KIND(InvalidModel, g.node_size() == 1, path, ": expected one optimizer node, found ", g.node_size());
  const auto& n = g.node(0);
  OTTER_CHECK_KIND(Unsupported, n.domain() == kMs && (n.op_type() == "AdamWOptimizer" || n.op_type() == "SGDOptimizerV2"),
                   path, ": optimizer op '", n.domain(), " ", n.op_type(),
                   "' is not supported by Otter (supported: com.microsoft AdamWOptimizer, SGDOptimizerV2)");
  OrtOptimizer o;
  o.op = n.op_type();
  for (const auto& a : n.attribute()) {
    if (a.name() == "alpha") o.alpha = a.f();
    else if (a.name() == "beta") o.beta = a.f();
    else if (a.name() == "epsilon") o.epsilon = a.f();
    else if (a.name() == "weight_decay") o.weight_decay = a.f();
    else if (a.name() == "adam_mode") o.adam_mode = a.i();
    else if (a.name() == "correct_bias") o.correct_bias = a.i();
  }
  OTTER_CHECK_KIND(Unsupported, o.adam_mode == 0 || o.adam_mode == 1, path, ": AdamWOptimizer adam_mode ", o.adam_mode,
                   " (0: PyTorch, 1: Hugging Face) is not known");
  OTTER_CHECK_KIND(Unsupported, o.correct_bias == 0 || o.correct_bias == 1, path, ": correct_bias must be 0 or 1");
  return o;
}

}  // namespace

OrtCheckpoint read_ort_checkpoint(const std::string& path) {
  const std::string what = "ORT checkpoint '" + path + "'";
  std::string bytes = read_file(path, "ORT checkpoint");
  OTTER_CHECK_KIND(InvalidModel, bytes.size() >= 8 && ortfbs::CheckpointBufferHasIdentifier(bytes.data()), what,
                   " is not an ONNX Runtime training checkpoint (no ODTC identifier)");
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  OTTER_CHECK_KIND(InvalidModel, ortfbs::VerifyCheckpointBuffer(verifier), what, " is damaged (flatbuffers verification failed)");
  const ortfbs::Checkpoint* c = ortfbs::GetCheckpoint(bytes.data());
  OrtCheckpoint out;
  out.version = c->version();
  OTTER_CHECK_KIND(Unsupported, out.version >= 1 && out.version <= 2, what, " has version ", out.version,
                   "; Otter reads versions 1 and 2 (onnxruntime-training 1.19)");
  if (const ortfbs::ModuleState* ms = c->module_state()) {
    OTTER_CHECK_KIND(Unsupported, !ms->is_nominal_state(), what, " is a nominal checkpoint (no parameter data)");
    OTTER_CHECK_KIND(Unsupported, !ms->has_external_data(), what, " keeps its data in an external file");
    out.trainable = tensors_from_fbs(ms->requires_grad_params(), what);
    out.frozen = tensors_from_fbs(ms->frozen_params(), what);
  }
  if (c->optimizer_groups())
    for (const ortfbs::OptimizerGroup* g : *c->optimizer_groups()) {
      OrtCheckpoint::Group group;
      group.name = g->group_name() ? g->group_name()->str() : "";
      group.step = g->step();
      group.initial_lr = g->initial_learning_rate();
      OTTER_CHECK_KIND(InvalidModel, group.step >= 0, what, ": optimizer group '", group.name, "' has step ", group.step);
      if (g->optimizer_states())
        for (const ortfbs::ParameterOptimizerState* s : *g->optimizer_states()) {
          OTTER_CHECK_KIND(InvalidModel, s->param_name(), what, ": an optimizer state has no parameter name");
          group.states.push_back({s->param_name()->str(), tensors_from_fbs(s->momentums(), what)});
        }
      out.groups.push_back(std::move(group));
    }
  if (const ortfbs::PropertyBag* p = c->property_bag()) {
    if (p->ints())
      for (const auto* e : *p->ints()) out.int_props.push_back({e->name() ? e->name()->str() : "", e->value()});
    if (p->floats())
      for (const auto* e : *p->floats()) out.float_props.push_back({e->name() ? e->name()->str() : "", e->value()});
    if (p->strings())
      for (const auto* e : *p->strings())
        out.string_props.push_back({e->name() ? e->name()->str() : "", e->value() ? e->value()->str() : ""});
  }
  return out;
}

void write_ort_checkpoint(const std::string& path, const OrtCheckpoint& c) {
  flatbuffers::FlatBufferBuilder b(1 << 16);
  auto tensors = [&](const std::vector<std::pair<std::string, Tensor>>& v) {
    std::vector<flatbuffers::Offset<ortfbs::Tensor>> r;
    for (auto& kv : v) r.push_back(tensor_to_fbs(b, kv.first, kv.second));
    return b.CreateVector(r);
  };
  auto trainable = tensors(c.trainable);
  auto frozen = tensors(c.frozen);
  auto module = ortfbs::CreateModuleState(b, trainable, frozen, false, false);
  std::vector<flatbuffers::Offset<ortfbs::OptimizerGroup>> groups;
  for (const auto& g : c.groups) {
    std::vector<flatbuffers::Offset<ortfbs::ParameterOptimizerState>> states;
    for (const auto& s : g.states) {
      auto name = b.CreateString(s.param);
      auto moms = tensors(s.momentums);
      states.push_back(ortfbs::CreateParameterOptimizerState(b, name, moms));
    }
    auto name = b.CreateString(g.name);
    auto st = b.CreateVector(states);
    groups.push_back(ortfbs::CreateOptimizerGroup(b, name, g.step, g.initial_lr, st));
  }
  flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<ortfbs::OptimizerGroup>>> group_vec;
  if (!groups.empty()) group_vec = b.CreateVector(groups);
  flatbuffers::Offset<ortfbs::PropertyBag> bag;
  if (!c.int_props.empty() || !c.float_props.empty() || !c.string_props.empty()) {
    std::vector<flatbuffers::Offset<ortfbs::IntProperty>> ints;
    for (auto& kv : c.int_props) ints.push_back(ortfbs::CreateIntPropertyDirect(b, kv.first.c_str(), kv.second));
    std::vector<flatbuffers::Offset<ortfbs::FloatProperty>> floats;
    for (auto& kv : c.float_props) floats.push_back(ortfbs::CreateFloatPropertyDirect(b, kv.first.c_str(), kv.second));
    std::vector<flatbuffers::Offset<ortfbs::StringProperty>> strings;
    for (auto& kv : c.string_props)
      strings.push_back(ortfbs::CreateStringPropertyDirect(b, kv.first.c_str(), kv.second.c_str()));
    bag = ortfbs::CreatePropertyBagDirect(b, &ints, &floats, &strings);
  }
  auto root = ortfbs::CreateCheckpoint(b, c.version, module, group_vec, bag);
  ortfbs::FinishCheckpointBuffer(b, root);
  write_file_atomic(path, b.GetBufferPointer(), b.GetSize(), "ORT checkpoint");
}

bool is_ort_checkpoint_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[8] = {};
  in.read(head, sizeof head);
  return in.gcount() == 8 && ortfbs::CheckpointBufferHasIdentifier(head);
}

bool is_ort_training_model(const LoadedModel& model) {
  if (!model.graph.opsets.count(kMs)) return false;
  for (int v : model.graph.inputs)
    if (model.graph.values[v].name == "lazy_reset_grad") return true;
  for (const Node& n : model.graph.nodes)
    if (n.domain == kMs && n.op_type == "InPlaceAccumulatorV2") return true;
  return false;
}

OrtArtifacts load_ort_artifacts(LoadedModel training, const std::string& checkpoint_path) {
  OrtArtifacts a;
  const fs::path dir = training.base_dir.empty() ? fs::path(".") : fs::path(training.base_dir);
  const std::string training_file = "training_model.onnx";
  a.checkpoint_path = checkpoint_path.empty() ? (dir / "checkpoint").string() : checkpoint_path;
  OTTER_CHECK_KIND(NotFound, fs::exists(a.checkpoint_path), "ONNX Runtime training model: its checkpoint '",
                   a.checkpoint_path, "' does not exist (option ort_checkpoint names another)");
  a.checkpoint = read_ort_checkpoint(a.checkpoint_path);
  const fs::path optimizer = dir / "optimizer_model.onnx";
  OTTER_CHECK_KIND(NotFound, fs::exists(optimizer), "ONNX Runtime training model: '", optimizer.string(),
                   "' does not exist (the artifacts' optimizer model is needed to train)");
  a.optimizer = read_optimizer(optimizer.string());
  const fs::path eval = dir / "eval_model.onnx";
  if (fs::exists(eval)) {
    a.eval = load_model_file(eval.string());
    a.has_eval = true;
  }
  rewrite_ms_ops(training.graph, training_file);
  Graph& g = training.graph;
  std::set<std::string> trainable, frozen;
  for (auto& kv : a.checkpoint.trainable) trainable.insert(kv.first);
  for (auto& kv : a.checkpoint.frozen) frozen.insert(kv.first);
  std::set<std::string> inputs;
  for (int v : g.inputs) inputs.insert(g.values[v].name);
  std::set<std::string> outputs;
  for (int v : g.outputs) outputs.insert(g.values[v].name);
  OTTER_CHECK_KIND(InvalidModel, !g.outputs.empty(), training_file, " has no outputs (its first output is the loss)");
  a.loss = g.values[g.outputs[0]].name;
  for (auto& kv : a.checkpoint.trainable) {
    const std::string& p = kv.first;
    OTTER_CHECK_KIND(InvalidModel, inputs.count(p), training_file, ": the checkpoint's trainable parameter '", p,
                     "' is not an input of the training model (artifacts of another model?)");
    const std::string buffer = p + "_grad.accumulation.buffer", out = p + "_grad.accumulation.out";
    OTTER_CHECK_KIND(InvalidModel, inputs.count(buffer) && outputs.count(out), training_file, ": parameter '", p,
                     "' has no gradient accumulation buffer ('", buffer, "' input, '", out, "' output)");
    a.params.push_back(p);
    a.grad_buffer[p] = buffer;
    a.grad_out[p] = out;
  }
  for (int v : g.inputs) {
    const std::string& name = g.values[v].name;
    if (trainable.count(name) || name.find("_grad.accumulation.buffer") != std::string::npos) continue;
    if (frozen.count(name)) {
      a.frozen.push_back(name);
    } else if (name == "lazy_reset_grad") {
      a.reset_input = name;
    } else {
      a.data_inputs.push_back(name);
    }
  }
  a.training = std::move(training);
  return a;
}

void export_ort_eval_model(const std::string& eval_bytes, const std::map<std::string, Tensor>& params,
                           const std::string& path) {
  onnx::ModelProto m = parse_model(eval_bytes.data(), eval_bytes.size());
  onnx::GraphProto* g = m.mutable_graph();
  std::set<std::string> done;
  google::protobuf::RepeatedPtrField<onnx::ValueInfoProto> kept;
  for (const auto& in : g->input()) {
    auto it = params.find(in.name());
    if (it == params.end()) {
      *kept.Add() = in;
      continue;
    }
    onnx::TensorProto* t = g->add_initializer();
    t->set_name(in.name());
    t->set_data_type(static_cast<int32_t>(it->second.dtype()));
    for (int64_t d : it->second.shape()) t->add_dims(d);
    fill_proto_from_tensor(it->second.to(Device::CPU), t);
    done.insert(in.name());
  }
  g->mutable_input()->Swap(&kept);
  for (auto& kv : params)
    OTTER_CHECK(done.count(kv.first), "export: eval_model.onnx has no input '", kv.first, "'");
  std::string bytes;
  OTTER_CHECK(m.SerializeToString(&bytes), "export: serialization failed");
  write_file_atomic(path, bytes.data(), bytes.size(), "exported model");
}

}  // namespace otter
