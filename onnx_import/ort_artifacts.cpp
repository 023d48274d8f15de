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

// Helpers of rewrite_ort_ops: one new node with one output (its value id), and a node turned into
// another op in place (its outputs kept).
int emit(Graph& g, const std::string& op, const std::vector<int>& inputs, const std::string& base,
         Attributes attrs = {}, const std::string& domain = "") {
  int n = g.add_node(op, inputs, 1, std::move(attrs), domain, g.unique_name(base + "/" + op));
  return g.nodes[static_cast<size_t>(n)].outputs[0];
}

void become(Graph& g, size_t i, const std::string& op, const std::vector<int>& inputs, Attributes attrs,
            const std::string& domain) {
  Node& n = g.nodes[i];
  n.op_type = op;
  n.domain = domain;
  n.inputs = inputs;
  n.attrs = std::move(attrs);
}

constexpr const char* kSupportedMsOps =
    "SoftmaxCrossEntropyLossGrad, ReluGrad, SigmoidGrad, TanhGrad, GeluGrad, FastGeluGrad, ConvGrad, MaxPoolGrad, "
    "BatchNormInternal, BatchNormalizationGrad, LayerNormalizationGrad, SoftmaxGrad, SoftmaxGrad_13, LogSoftmaxGrad, "
    "LogSoftmaxGrad_13, GatherGrad, FusedMatMul, Scale, DivGrad, DropoutGrad, InPlaceAccumulatorV2";

}  // namespace

// The com.microsoft ops of a training model, rewritten into Otter ops with the same meaning (each
// checked against ORT's own CPU kernel: tests/ort_artifacts/ms_ops, OrtArtifacts.MsOpsMatchOrtKernels).
void rewrite_ort_ops(Graph& g, const std::string& file, std::vector<std::pair<std::string, std::string>>* running_stats) {
  const size_t count = g.nodes.size();
  std::set<int> graph_inputs(g.inputs.begin(), g.inputs.end());
  for (size_t i = 0; i < count; ++i) {
    // ORT writes MaxPoolGrad without a domain; it is ORT's op (runtime/ops/ort_grad.cpp).
    if (g.nodes[i].domain.empty() && g.nodes[i].op_type == "MaxPoolGrad") g.nodes[i].domain = kMs;
    if (g.nodes[i].domain != kMs) continue;
    const Node n = g.nodes[i];  // a copy: the graph grows below
    const std::string& op = n.op_type;
    const std::string where = file + ": node '" + n.name + "' (com.microsoft " + op + ")";
    auto expect_inputs = [&](size_t lo, size_t hi) {
      size_t have = 0;
      for (size_t k = 0; k < n.inputs.size(); ++k)
        if (n.inputs[k] >= 0) have = k + 1;
      OTTER_CHECK_KIND(InvalidModel, have >= lo && n.inputs.size() <= hi, where, ": expects ", lo,
                       lo == hi ? std::string() : " to " + std::to_string(hi), " inputs, has ", n.inputs.size());
      for (size_t k = 0; k < lo; ++k)
        OTTER_CHECK_KIND(InvalidModel, n.inputs[k] >= 0, where, ": input ", k, " is required");
    };
    if (op == "SoftmaxCrossEntropyLossGrad") {
      // (dY, log_prob, label, weight?) -> dX, attributes reduction and ignore_index: Otter's own.
      OTTER_CHECK_KIND(Unsupported, n.inputs.size() <= 4, where, ": an ignore_index input is not supported");
      g.nodes[i].domain = "otter";
    } else if (op == "ReluGrad" || op == "SigmoidGrad" || op == "TanhGrad" || op == "GeluGrad" || op == "FastGeluGrad") {
      // (dY, X) for Relu and Gelu, (dY, Y) for Sigmoid/Tanh -> otter.UnaryGrad(dy, x, y): Relu's
      // formula reads x (X > 0 exactly when Relu(X) > 0), Gelu's x, Sigmoid's and Tanh's y. ORT's
      // GeluGrad is the exact (erf) GELU's derivative, also for an opset-20 Gelu with
      // approximate = "tanh"; FastGeluGrad is the tanh approximation's.
      expect_inputs(2, 2);
      const int v = n.inputs[1];
      Attributes a;
      const bool gelu = op == "GeluGrad" || op == "FastGeluGrad";
      a["op"] = Attribute::of_string(gelu ? "Gelu" : op.substr(0, op.size() - 4));
      if (op == "FastGeluGrad") a["approximate"] = Attribute::of_string("tanh");
      become(g, i, "UnaryGrad", {n.inputs[0], v, v}, a, "otter");
    } else if (op == "SoftmaxGrad_13" || op == "LogSoftmaxGrad_13") {
      // (dY, Y) -> dX over one axis (default -1): Otter's own SoftmaxGrad / LogSoftmaxGrad.
      expect_inputs(2, 2);
      Attributes a;
      a["axis"] = Attribute::of_int(n.attr_int("axis", -1));
      become(g, i, op == "SoftmaxGrad_13" ? "SoftmaxGrad" : "LogSoftmaxGrad", {n.inputs[0], n.inputs[1]}, a, "otter");
    } else if (op == "SoftmaxGrad" || op == "LogSoftmaxGrad") {
      // Opset-1..12 semantics: the softmax ran over the dims from `axis` (default 1) on, flattened.
      // Flatten both to 2-D at axis, Otter's grad over axis 1, reshape back to dY's shape.
      expect_inputs(2, 2);
      Attributes flat;
      flat["axis"] = Attribute::of_int(n.attr_int("axis", 1));
      int dy = emit(g, "Flatten", {n.inputs[0]}, n.name, flat);
      int y = emit(g, "Flatten", {n.inputs[1]}, n.name, flat);
      Attributes a;
      a["axis"] = Attribute::of_int(1);
      int dx = emit(g, op, {dy, y}, n.name, a, "otter");
      int shape = emit(g, "Shape", {n.inputs[0]}, n.name);
      become(g, i, "Reshape", {dx, shape}, {}, "");
    } else if (op == "Scale") {
      // (input, scale; scale_down) -> input * scale, or input / scale; scale is a scalar of any
      // numeric type (ReduceMean's gradient divides by an int64 count): cast to the input's type.
      expect_inputs(2, 2);
      int s = emit(g, "CastLike", {n.inputs[1], n.inputs[0]}, n.name);
      become(g, i, n.attr_int("scale_down", 0) ? "Div" : "Mul", {n.inputs[0], s}, {}, "");
    } else if (op == "GatherGrad") {
      // (shape, indices, dY; axis) -> dX of `shape`, dY scattered and summed: otter.GatherGrad
      // (dY, indices, like), which reads `like` only for its shape: the tensor whose Shape it is
      // (what ORT emits), else zeros of that shape.
      expect_inputs(3, 3);
      int like = -1;
      const int shape = n.inputs[0];
      const int p = g.values[shape].producer;
      if (p >= 0 && g.nodes[p].domain.empty() && g.nodes[p].op_type == "Shape" && !g.nodes[p].has_attr("end") &&
          g.nodes[p].attr_int("start", 0) == 0)
        like = g.nodes[p].inputs.at(0);
      else
        like = emit(g, "ConstantOfShape", {shape}, n.name);
      Attributes a;
      a["axis"] = Attribute::of_int(n.attr_int("axis", 0));
      become(g, i, "GatherGrad", {n.inputs[2], n.inputs[1], like}, a, "otter");
    } else if (op == "LayerNormalizationGrad") {
      // (dY, X, scale, mean, inv_std_dev; axis, epsilon) -> dX, dscale, dbias?: Otter's own, which
      // recomputes mean and 1/std from X (the same statistics); its 4th input (read only for
      // dbias's shape and dtype) is the scale, whose shape the bias has.
      expect_inputs(3, 5);
      Attributes a;
      a["axis"] = Attribute::of_int(n.attr_int("axis", -1));
      a["epsilon"] = Attribute::of_float(n.attr_float("epsilon", 1e-5));
      std::vector<int> in = {n.inputs[0], n.inputs[1], n.inputs[2]};
      const bool dbias = n.outputs.size() > 2 && n.outputs[2] >= 0;
      if (dbias) in.push_back(n.inputs[2]);
      become(g, i, "LayerNormalizationGrad", in, a, "otter");
      if (!dbias) g.nodes[i].outputs.resize(std::min<size_t>(g.nodes[i].outputs.size(), 2));
    } else if (op == "BatchNormInternal") {
      // (X, scale, B, mean, var; epsilon, momentum, training_mode) -> Y, running_mean, running_var,
      // saved_mean, saved_inv_std: BatchNormalization in its training form with batch statistics
      // (biased variance) and running = input * momentum + batch * (1 - momentum), as ORT's CPU
      // kernel. The opset-9 five-output form gives saved_mean and the batch variance;
      // saved_inv_std = 1 / sqrt(var + epsilon) follows. ORT writes the running statistics into
      // its inputs (the checkpoint's frozen buffers); the session does the same after each step.
      expect_inputs(5, 5);
      OTTER_CHECK_KIND(Unsupported, n.attr_int("training_mode", 1) == 1, where,
                       ": training_mode 0 is not supported (ORT's training graphs use 1)");
      const double eps = n.attr_float("epsilon", 1e-5);
      Attributes a;
      a["epsilon"] = Attribute::of_float(eps);
      a["momentum"] = Attribute::of_float(n.attr_float("momentum", 0.9));
      std::vector<int> outs = n.outputs;
      outs.resize(5, -1);
      for (int k = 1; k < 3; ++k) {  // running statistics: always computed, so the session can read them
        if (outs[k] < 0) {
          outs[k] = g.add_value(g.unique_name(n.name + (k == 1 ? "/running_mean" : "/running_var")));
          g.values[outs[k]].producer = static_cast<int>(i);
        }
        const int in = n.inputs[static_cast<size_t>(2 + k)];
        if (running_stats && graph_inputs.count(in)) running_stats->push_back({g.values[in].name, g.values[outs[k]].name});
      }
      const int inv_std = outs[4];
      int var = -1;
      if (outs[3] >= 0 || inv_std >= 0) {  // the training form needs both outputs
        if (outs[3] < 0) {
          outs[3] = g.add_value(g.unique_name(n.name + "/saved_mean"));
          g.values[outs[3]].producer = static_cast<int>(i);
        }
        var = g.add_value(g.unique_name(n.name + "/saved_var"));
        g.values[var].producer = static_cast<int>(i);
        outs[4] = var;
      } else {
        a["training_mode"] = Attribute::of_int(1);
        outs.resize(3);
      }
      become(g, i, "BatchNormalization", n.inputs, a, "");
      g.nodes[i].outputs = outs;
      if (inv_std >= 0) {
        Tensor e(DType::Float32, {});
        e.data<float>()[0] = static_cast<float>(eps);
        int eps_v = g.add_value(g.unique_name(n.name + "/epsilon"));
        g.values[eps_v].data = e;
        g.values[eps_v].dtype = DType::Float32;
        g.values[eps_v].shape_known = true;
        g.values[eps_v].is_initializer = true;
        g.initializers.push_back(eps_v);
        int cast = emit(g, "CastLike", {eps_v, var}, n.name);
        int sq = emit(g, "Sqrt", {emit(g, "Add", {var, cast}, n.name)}, n.name);
        int r = g.add_node("Reciprocal", {sq}, 1, {}, "", g.unique_name(n.name + "/Reciprocal"));
        int tmp = g.nodes[r].outputs[0];
        g.nodes[r].outputs[0] = inv_std;
        g.values[inv_std].producer = r;
        g.values[tmp].producer = -1;
      }
    } else if (op == "BatchNormalizationGrad") {
      // (dY, X, scale, saved_mean, saved_inv_std; epsilon) -> dX, dscale, dB with batch
      // statistics: Otter's own (training form), which recomputes them from X; inputs 3 and 4 are
      // read only for their [C] shape, and the scale stands for B (dB's shape and dtype).
      expect_inputs(5, 5);
      Attributes a;
      a["epsilon"] = Attribute::of_float(n.attr_float("epsilon", 1e-5));
      a["training_mode"] = Attribute::of_int(1);
      become(g, i, "BatchNormalizationGrad", {n.inputs[0], n.inputs[1], n.inputs[2], n.inputs[3], n.inputs[4], n.inputs[2]},
             a, "otter");
    } else if (op == "DropoutGrad") {
      // (dY, mask, ratio?, training_mode?) -> dY * mask / (1 - ratio) (ratio default 0.5):
      // otter.DropoutGrad. ORT's CPU kernel reads training_mode only for its type: with false it
      // still scales (checked against it, ms_ops/dropout_grad_eval), and so does Otter.
      expect_inputs(2, 4);
      const int ratio = n.input(2);
      std::vector<int> in = {n.inputs[0], n.inputs[1]};
      if (ratio >= 0) in.push_back(ratio);
      become(g, i, "DropoutGrad", in, {}, "otter");
    } else if (op == "DivGrad") {
      // (dY, A, B) -> dA = dY / B, dB = -dY * A / B^2, each summed to its input's shape.
      expect_inputs(3, 3);
      const int dy = n.inputs[0], a = n.inputs[1], b = n.inputs[2];
      const int da = n.outputs.size() > 0 ? n.outputs[0] : -1, db = n.outputs.size() > 1 ? n.outputs[1] : -1;
      auto db_value = [&] {
        int q = emit(g, "Div", {emit(g, "Mul", {dy, a}, n.name), b}, n.name);
        return emit(g, "Neg", {emit(g, "Div", {q, b}, n.name)}, n.name);
      };
      if (da >= 0 && db >= 0) {
        int s = g.add_node("SumToShapeOf", {db_value(), b}, 1, {}, "otter", g.unique_name(n.name + "/SumToShapeOf"));
        int tmp = g.nodes[s].outputs[0];
        g.nodes[s].outputs[0] = db;
        g.values[db].producer = s;
        g.values[tmp].producer = -1;
      }
      if (da >= 0) {
        become(g, i, "SumToShapeOf", {emit(g, "Div", {dy, b}, n.name), a}, {}, "otter");
        g.nodes[i].outputs = {da};
      } else {
        OTTER_CHECK_KIND(InvalidModel, db >= 0, where, ": has no output");
        become(g, i, "SumToShapeOf", {db_value(), b}, {}, "otter");
        g.nodes[i].outputs = {db};
      }
    } else if (op == "InPlaceAccumulatorV2") {
      // (buffer, value, overwrite?) -> buffer + value, or value when overwrite is true.
      OTTER_CHECK(n.inputs.size() >= 2 && n.inputs[0] >= 0 && n.inputs[1] >= 0, where, ": needs a buffer and a value");
      const int buffer = n.inputs[0], value = n.inputs[1], flag = n.input(2);
      int sum = emit(g, "Add", {buffer, value}, n.name);
      if (flag >= 0) become(g, i, "Where", {flag, value, sum}, {}, "");
      else become(g, i, "Identity", {sum}, {}, "");
      g.nodes[i].outputs.resize(1);
    } else if (op == "ConvGrad" || op == "MaxPoolGrad" || op == "FusedMatMul") {
      // Graph-level: expanded after annotation (runtime/passes/ort_grad_ops.h).
    } else {
      OTTER_FAIL_KIND(Unsupported, where, ": this ONNX Runtime training op is not supported by Otter (supported: ",
                      kSupportedMsOps, ")");
    }
  }
  for (const Node& n : g.nodes)
    OTTER_CHECK_KIND(Unsupported, n.domain.empty() || n.domain == "otter" || n.domain == kMs, file, ": node '", n.name,
                     "' (", n.domain, " ", n.op_type, ") is in a domain Otter does not support");
}

namespace {

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
  rewrite_ort_ops(training.graph, training_file, &a.running_stats);
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
  std::vector<std::pair<std::string, std::string>> stats;  // only the checkpoint's buffers are state
  for (auto& kv : a.running_stats)
    if (frozen.count(kv.first) || trainable.count(kv.first)) stats.push_back(kv);
  a.running_stats = stats;
  a.training = std::move(training);
  return a;
}

void export_ort_eval_model(const SharedBytes& eval_bytes, const std::map<std::string, Tensor>& params,
                           const std::string& path) {
  eval_bytes.check_unchanged("export");
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
