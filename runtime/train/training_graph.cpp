// A session over an ONNX training graph (see training_graph.h).
#include "runtime/train/training_graph.h"
#include "runtime/train/session.h"

#include <cmath>
#include <set>

#include "runtime/core/checked.h"
#include "runtime/exec/infer.h"
#include "runtime/passes/autocast.h"
#include "runtime/passes/gradient_op.h"

namespace otter {
namespace {

constexpr const char* kStepsKey = "otter.training_info.steps";
constexpr const char* kUserPrefix = "otter.user.";

bool scalar_like(const Value& v) {
  if (!is_floating(v.dtype) || !v.shape_known) return false;
  for (int64_t d : v.shape)
    if (d != 1) return false;
  return true;
}

void check_finite(const Tensor& host, const std::string& what) {
  if (!is_floating(host.dtype())) return;
  std::vector<double> v = host.to_double_vector();
  for (size_t i = 0; i < v.size(); ++i)
    OTTER_CHECK_KIND(NonFinite, std::isfinite(v[i]), what, " holds a non-finite value (", v[i], ") at element ", i,
                     "; nothing was written");
}

}  // namespace

TrainingGraphSession::TrainingGraphSession(LoadedModel model, TrainingModel training, const TrainConfig& config)
    : model_bytes_(std::move(model.model_bytes)), inference_(std::move(model.graph)), config_(config) {
  OTTER_CHECK(config_.loss.kind == "none", "the model has training_info: its algorithm graph defines the loss, so loss '",
              config_.loss.kind, "' does not apply (use training_graph=off to train the inference graph with Otter's loss)");
  OTTER_CHECK_KIND(Unsupported, config_.grad_accum == 1 && config_.clip_norm == 0 && config_.trainable.empty() &&
                                    config_.frozen.empty(),
                   "the model has training_info: its algorithm graph decides what trains and how, so grad_accum, "
                   "clip_norm, trainable and freeze do not apply (use training_graph=off to ignore training_info)");
  OTTER_CHECK(config_.precision == "fp32" || config_.precision == "fp16" || config_.precision == "bf16",
              "precision must be fp32, fp16 or bf16, got '", config_.precision, "'");
  OTTER_CHECK(config_.training_init == "auto" || config_.training_init == "run" || config_.training_init == "skip",
              "training_init must be auto, run or skip, got '", config_.training_init, "'");
  OTTER_CHECK(config_.nonfinite == "error" || config_.nonfinite == "skip", "nonfinite must be error or skip, got '",
              config_.nonfinite, "'");
  const DType low = config_.precision == "fp16" ? DType::Float16 : config_.precision == "bf16" ? DType::BFloat16 : DType::Float32;
  inference_outputs_ = inference_.outputs;

  // State variables: every binding key, starting from its initializer.
  std::map<std::string, std::string> owner;  // state variable -> "training_info[i].update_binding"
  for (TrainingInfo& info : training.infos) {
    for (auto& b : info.initialization_binding) owner.emplace(b.first, info.where + ".initialization_binding");
    for (auto& b : info.update_binding) owner[b.first] = info.where + ".update_binding";
  }
  for (TrainingInfo& info : training.infos) {
    for (auto& kv : owner) {
      int v = info.combined.find_value(kv.first);
      if (v >= 0 && info.combined.values[v].is_initializer && !state_.count(kv.first))
        state_[kv.first] = info.combined.values[v].data.clone();
    }
  }

  // The combined graphs: annotate, precision policy, Gradient -> backward nodes.
  for (TrainingInfo& info : training.infos) {
    Program p;
    p.where = info.where;
    p.graph = std::make_unique<Graph>(std::move(info.combined));
    Graph& g = *p.graph;
    std::set<int> variables;
    for (int v : g.initializers)
      if (state_.count(g.values[v].name)) {
        variables.insert(v);
        p.state[v] = g.values[v].name;
      }
    annotate_graph(g, variables);
    // The loss reported by train_step.
    if (loss_name_.empty()) {
      int loss = -1;
      if (!config_.loss.output.empty()) {
        loss = g.find_value(config_.loss.output);
      } else {
        for (const Node& n : g.nodes)
          if (loss < 0 && n.domain == "ai.onnx.preview.training" && n.op_type == "Gradient") {
            int y = g.find_value(n.attr_string("y", ""));
            if (y >= 0 && scalar_like(g.values[y])) loss = y;
          }
        std::set<std::string> updated;
        for (auto& b : info.update_binding) updated.insert(b.second);
        for (int o : g.outputs)
          if (loss < 0 && scalar_like(g.values[o]) && !updated.count(g.values[o].name)) loss = o;
      }
      if (loss >= 0) {
        OTTER_CHECK(is_floating(g.values[loss].dtype), "loss_output '", g.values[loss].name, "' is ",
                    dtype_name(g.values[loss].dtype), "; the loss must be floating");
        p.loss = loss;
        loss_name_ = g.values[loss].name;
      }
    }
    if (low != DType::Float32) {
      PrecisionPolicy policy;
      policy.low = low;
      policy.by_op = config_.precision_by_op;
      policy.by_node = config_.precision_by_node;
      std::set<int> params, keep(g.outputs.begin(), g.outputs.end());
      if (p.loss >= 0) keep.insert(p.loss);
      for (size_t n = 0; n < g.nodes.size(); ++n) {
        const Node& node = g.nodes[n];
        if (n < info.inference_nodes) {
          for (int in : node.inputs)
            if (in >= 0 && variables.count(in) && g.values[in].dtype == DType::Float32) params.insert(in);
          continue;
        }
        policy.fp32_nodes.insert(static_cast<int>(n));
        for (int in : node.inputs)  // inference values the algorithm reads keep their dtype
          if (in >= 0) keep.insert(in);
        if (node.domain == "ai.onnx.preview.training" && node.op_type == "Gradient") {
          int y = g.find_value(node.attr_string("y", ""));
          if (y >= 0) keep.insert(y);
        }
      }
      autocast(g, policy, params, keep);
      annotate_graph(g, variables);
    }
    if (has_gradient_ops(g)) {
      expand_gradient_ops(g);
      annotate_graph(g, variables);
    }
    for (auto& b : info.update_binding) {
      int out = g.value_id(b.second);
      const Tensor& s = state_.at(b.first);
      const Value& val = g.values[out];
      OTTER_CHECK_KIND(InvalidModel, val.dtype == s.dtype(), info.where, ".update_binding: '", b.first, "' is ",
                       dtype_name(s.dtype()), " but its new value '", b.second, "' is ", dtype_name(val.dtype));
      bool same = val.shape.size() == s.shape().size();
      for (size_t k = 0; same && k < val.shape.size(); ++k) same = val.shape[k] < 0 || val.shape[k] == s.shape()[k];
      OTTER_CHECK_KIND(InvalidModel, same, info.where, ".update_binding: '", b.first, "' has shape ", shape_str(s.shape()),
                       " but its new value '", b.second, "' has ", g.shape_str(val.shape));
      p.updates.push_back({b.first, out});
    }
    programs_.push_back(std::move(p));
  }
  OTTER_CHECK(config_.loss.output.empty() || !loss_name_.empty(), "loss_output '", config_.loss.output,
              "' is not a value of the training graph");

  // Initialization graphs, once, in order.
  const bool init = config_.training_init == "run" || (config_.training_init == "auto" && !training.initialized);
  if (init)
    for (TrainingInfo& info : training.infos) run_initialization(info);
  if (!init && training.initialized)
    notes_.push_back("the initialization graphs did not run: this file was exported after training (metadata " +
                     std::string(kTrainingInitializedKey) + "); set training_init=run to run them again");

  const Device dev = config_.device;
  for (auto& kv : state_) kv.second = kv.second.to(dev);
  for (auto& kv : state_)
    if (kv.second.dtype() == DType::Float32) params_.push_back({kv.first, kv.second.shape(), 0});
  std::set<int> inference_state;
  for (int v : inference_.initializers)
    if (state_.count(inference_.values[v].name)) inference_state.insert(v);
  annotate_graph(inference_, inference_state);

  // Roles: which initializers are state variables.
  for (const Program& p : programs_)
    for (int v : p.graph->initializers) {
      const std::string& name = p.graph->values[v].name;
      bool seen = false;
      for (const InitializerRole& r : roles_) seen = seen || r.name == name;
      if (seen) continue;
      auto o = owner.find(name);
      if (o == owner.end()) {
        roles_.push_back({name, false, "a constant of the training graph (no binding)"});
      } else if (state_.at(name).dtype() != DType::Float32) {  // e.g. the int64 step count
        roles_.push_back({name, false, "a state variable (" + o->second + ") of dtype " +
                                           dtype_name(state_.at(name).dtype()) + ": updated by the algorithm, not a "
                                           "float32 parameter (get/set_parameter reach it)"});
      } else {
        roles_.push_back({name, true, "state variable (" + o->second + ")"});
      }
    }
  if (loss_name_.empty())
    notes_.push_back("no loss to report: name one with loss_output (any value of the training graph); steps report NaN");
  stats_.last_loss = NAN;
}

void TrainingGraphSession::run_initialization(TrainingInfo& info) {
  if (info.initialization_binding.empty()) return;
  Graph& g = info.initialization;
  annotate_graph(g, {});
  PlanOptions options;
  options.device = Device::CPU;
  for (auto& b : info.initialization_binding) options.targets.push_back(g.value_id(b.second));
  Plan plan(g, {}, options);
  RunOptions ro;
  ro.training = true;
  ro.seed = config_.seed;
  plan.run({}, ro);
  std::map<std::string, Tensor> values;
  for (auto& b : info.initialization_binding) {
    Tensor v = plan.value(g.value_id(b.second)).to(Device::CPU).clone();
    const Tensor& s = state_.at(b.first);
    OTTER_CHECK_KIND(InvalidModel, v.dtype() == s.dtype() && v.shape() == s.shape(), info.where,
                     ".initialization_binding: '", b.first, "' is ", dtype_name(s.dtype()), " ", shape_str(s.shape()),
                     " but '", b.second, "' is ", dtype_name(v.dtype()), " ", shape_str(v.shape()));
    values[b.first] = v;
  }
  for (auto& kv : values) state_[kv.first] = kv.second;
}

Plan& TrainingGraphSession::plan_for(Program& p, const std::map<std::string, Tensor>& feeds, std::map<int, Tensor>* bound) {
  const Graph& g = *p.graph;
  std::map<int64_t, int64_t> symbols;
  std::map<int, Shape> shapes;
  std::string key;
  for (int v : g.inputs) {
    const Value& val = g.values[v];
    auto it = feeds.find(val.name);
    OTTER_CHECK(it != feeds.end(), "missing input '", val.name, "' of the training graph (", p.where, "): expected ",
                dtype_name(val.dtype), " ", g.shape_str(val.shape));
    check_feed(g, v, it->second, &symbols);
    shapes[v] = it->second.shape();
    (*bound)[v] = it->second;
    key += "|" + shape_str(it->second.shape());
  }
  auto found = p.plans.find(key);
  if (found != p.plans.end()) return *found->second;
  PlanOptions options;
  options.device = config_.device;
  for (auto& kv : p.state) {
    options.bound[kv.first] = state_.at(kv.second);
    options.variables.insert(kv.first);
  }
  options.targets = g.outputs;
  for (auto& u : p.updates) options.targets.push_back(u.second);
  if (p.loss >= 0) options.targets.push_back(p.loss);
  auto plan = build_plan(*p.graph, shapes, options, &stats_.plan_seconds);
  Plan& ref = *plan;
  p.plans[key] = std::move(plan);
  return ref;
}

void TrainingGraphSession::train_step(const std::map<std::string, Tensor>& feeds, double* loss) {
  std::set<std::string> known;
  for (const Program& p : programs_)
    for (int v : p.graph->inputs) known.insert(p.graph->values[v].name);
  for (auto& kv : feeds)
    OTTER_CHECK(known.count(kv.first), "unknown input '", kv.first, "': the training graph has no input of that name");
  double step_loss = NAN;
  for (Program& p : programs_) {
    std::map<int, Tensor> bound;
    Plan& plan = plan_for(p, feeds, &bound);
    RunOptions ro;
    ro.training = true;
    ro.seed = config_.seed;
    ro.step = static_cast<uint64_t>(stats_.step);
    plan.run(bound, ro);
    last_memory_ = plan.memory();
    if (p.loss >= 0) {
      std::vector<double> l = plan.value(p.loss).to(Device::CPU).to_double_vector();
      step_loss = l.empty() ? NAN : l[0];
      OTTER_CHECK_KIND(NonFinite, config_.nonfinite == "skip" || std::isfinite(step_loss), "step ", stats_.step + 1,
                       ": the loss '", loss_name_, "' is ", step_loss,
                       "; the update was not applied (state unchanged). Set nonfinite=skip to apply such steps anyway");
    }
    // Every new value is read before any variable changes (a binding may read another's variable).
    std::vector<std::pair<std::string, Tensor>> updates;
    for (auto& u : p.updates) {
      const Tensor& v = plan.value(u.second);
      const Tensor& s = state_.at(u.first);
      OTTER_CHECK(v.shape() == s.shape(), p.where, ".update_binding: '", u.first, "' has shape ", shape_str(s.shape()),
                  " but its new value '", p.graph->values[u.second].name, "' has ", shape_str(v.shape()));
      updates.push_back({u.first, v.clone()});
    }
    for (auto& u : updates) state_.at(u.first).copy_from(u.second);
  }
  stats_.step++;
  stats_.last_loss = step_loss;
  if (loss) *loss = step_loss;
}

std::map<std::string, Tensor> TrainingGraphSession::eval_step(const std::map<std::string, Tensor>& feeds, double* loss,
                                                              bool* has_loss) {
  std::map<int64_t, int64_t> symbols;
  std::map<int, Shape> shapes;
  std::map<int, Tensor> bound;
  std::string key;
  std::set<std::string> known;
  for (int v : inference_.inputs) {
    const Value& val = inference_.values[v];
    known.insert(val.name);
    auto it = feeds.find(val.name);
    OTTER_CHECK(it != feeds.end(), "missing input '", val.name, "': expected ", dtype_name(val.dtype), " ",
                inference_.shape_str(val.shape));
    check_feed(inference_, v, it->second, &symbols);
    shapes[v] = it->second.shape();
    bound[v] = it->second;
    key += "|" + shape_str(it->second.shape());
  }
  for (const auto& in : train_inputs()) known.insert(in.first);  // labels of the algorithm may be given
  for (auto& kv : feeds)
    OTTER_CHECK(known.count(kv.first), "unknown input '", kv.first, "': the model has no input of that name");
  if (!eval_plan_ || key != eval_key_) {
    PlanOptions options;
    options.device = config_.device;
    for (int v : inference_.initializers)
      if (state_.count(inference_.values[v].name)) {
        options.bound[v] = state_.at(inference_.values[v].name);
        options.variables.insert(v);
      }
    options.targets = inference_outputs_;
    eval_plan_ = build_plan(inference_, shapes, options, &stats_.plan_seconds);
    eval_key_ = key;
  }
  RunOptions ro;
  ro.training = false;
  eval_plan_->run(bound, ro);
  std::map<std::string, Tensor> out;
  for (int v : inference_outputs_) out[inference_.values[v].name] = eval_plan_->value(v).to(Device::CPU).clone();
  if (loss) *loss = NAN;
  if (has_loss) *has_loss = false;
  return out;
}

std::vector<std::pair<std::string, ValueInfo>> TrainingGraphSession::train_inputs() const {
  std::vector<std::pair<std::string, ValueInfo>> r;
  std::set<std::string> seen;
  for (const Program& p : programs_)
    for (int v : p.graph->inputs) {
      const Value& val = p.graph->values[v];
      if (seen.insert(val.name).second) r.push_back(named_info(val));
    }
  return r;
}

std::vector<std::pair<std::string, ValueInfo>> TrainingGraphSession::outputs() const {
  std::vector<std::pair<std::string, ValueInfo>> r;
  for (int v : inference_outputs_) r.push_back(named_info(inference_.values[v]));
  return r;
}

Tensor TrainingGraphSession::get_state(const std::string& name) const {
  auto it = state_.find(name);
  OTTER_CHECK_KIND(NotFound, it != state_.end(), "'", name,
                   "' is not a state variable of the training graph (a key of an update or initialization binding)");
  return it->second.to(Device::CPU).clone();
}

void TrainingGraphSession::set_state(const std::string& name, const Tensor& value) {
  auto it = state_.find(name);
  OTTER_CHECK_KIND(NotFound, it != state_.end(), "'", name,
                   "' is not a state variable of the training graph (a key of an update or initialization binding)");
  OTTER_CHECK(value.dtype() == it->second.dtype() && value.shape() == it->second.shape(), "state variable '", name, "' is ",
              dtype_name(it->second.dtype()), " ", shape_str(it->second.shape()), "; the new value is ",
              dtype_name(value.dtype()), " ", shape_str(value.shape()));
  it->second.copy_from(value);
}

void TrainingGraphSession::write_model(const std::string& path, const std::map<std::string, std::string>& metadata) const {
  std::map<std::string, Tensor> replacements;
  for (auto& kv : state_) {
    Tensor t = kv.second.to(Device::CPU);
    check_finite(t, "export: state variable '" + kv.first + "'");
    replacements[kv.first] = t;
  }
  std::map<std::string, std::string> meta = metadata;
  meta[kTrainingInitializedKey] = "true";
  meta[kStepsKey] = std::to_string(stats_.step);
  otter::export_model(model_bytes_, replacements, path, meta);
}

void TrainingGraphSession::export_model(const std::string& path) const { write_model(path, {}); }

void TrainingGraphSession::save_checkpoint(const std::string& path, const std::map<std::string, std::string>& user) const {
  std::map<std::string, std::string> meta;
  for (auto& kv : user) meta[kUserPrefix + kv.first] = kv.second;
  write_model(path, meta);
}

void TrainingGraphSession::load_checkpoint(const std::string& path, std::map<std::string, std::string>* user) {
  std::map<std::string, std::string> meta;
  std::map<std::string, Tensor> values = read_model_state(path, &meta);
  const std::string what = "checkpoint '" + path + "'";
  // Validate everything, then change the session.
  for (auto& kv : state_) {
    auto it = values.find(kv.first);
    OTTER_CHECK_KIND(WrongState, it != values.end(), what, " has no initializer '", kv.first,
                     "' (a state variable of this training graph): it was written for another model");
    OTTER_CHECK_KIND(WrongState, it->second.dtype() == kv.second.dtype() && it->second.shape() == kv.second.shape(), what,
                     ": '", kv.first, "' is ", dtype_name(it->second.dtype()), " ", shape_str(it->second.shape()),
                     " but the session's is ", dtype_name(kv.second.dtype()), " ", shape_str(kv.second.shape()));
    std::vector<double> v = it->second.to_double_vector();
    for (size_t i = 0; i < v.size(); ++i)
      OTTER_CHECK(std::isfinite(v[i]), what, ": '", kv.first, "' holds a non-finite value (", v[i], ") at element ", i);
  }
  int64_t steps = 0;
  if (meta.count(kStepsKey)) steps = parse_int64(meta[kStepsKey], what + ": metadata '" + kStepsKey + "'", 0);
  for (auto& kv : state_) kv.second.copy_from(values.at(kv.first));
  if (user) {
    user->clear();
    for (auto& kv : meta)
      if (kv.first.rfind(kUserPrefix, 0) == 0) (*user)[kv.first.substr(std::string(kUserPrefix).size())] = kv.second;
  }
  stats_.step = steps;
}

}  // namespace otter
