// A session over ONNX Runtime training artifacts (see ort_session.h).
#include "runtime/train/ort_session.h"
#include "runtime/train/session.h"

#include <cmath>
#include <cstring>
#include <set>

#include "runtime/exec/infer.h"
#include "runtime/passes/autocast.h"
#include "runtime/passes/ort_grad_ops.h"

namespace otter {
namespace {

constexpr const char* kUserPrefix = "otter.user.";

}  // namespace

OrtArtifactsSession::OrtArtifactsSession(OrtArtifacts artifacts, const TrainConfig& config)
    : a_(std::move(artifacts)), config_(config) {
  OTTER_CHECK(config_.loss.kind == "none", "ONNX Runtime training artifacts bring their own loss, so loss '",
              config_.loss.kind, "' does not apply");
  OTTER_CHECK_KIND(Unsupported, config_.grad_accum == 1 && config_.clip_norm == 0 && config_.trainable.empty() &&
                                    config_.frozen.empty(),
                   "ONNX Runtime training artifacts decide what trains (their checkpoint) and how (their optimizer "
                   "model): grad_accum, clip_norm, trainable and freeze do not apply");
  OTTER_CHECK_KIND(Unsupported, config_.device == Device::CPU,
                   "ONNX Runtime training artifacts run on the CPU only (device cpu; CLI --device cpu)");
  OTTER_CHECK(config_.precision == "fp32" || config_.precision == "fp16" || config_.precision == "bf16",
              "precision must be fp32, fp16 or bf16, got '", config_.precision, "'");
  graph_ = std::move(a_.training.graph);
  for (auto& kv : a_.checkpoint.trainable) {
    OTTER_CHECK_KIND(Unsupported, kv.second.dtype() == DType::Float32, "ORT checkpoint: parameter '", kv.first, "' is ",
                     dtype_name(kv.second.dtype()), "; only float32 parameters are trained");
    values_[kv.first] = kv.second.clone();
    values_[a_.grad_buffer.at(kv.first)] = Tensor(DType::Float32, kv.second.shape());
    std::memset(values_[a_.grad_buffer.at(kv.first)].raw(), 0, kv.second.nbytes());
    m1_[kv.first] = Tensor(DType::Float32, kv.second.shape());
    m2_[kv.first] = Tensor(DType::Float32, kv.second.shape());
    std::memset(m1_[kv.first].raw(), 0, kv.second.nbytes());
    std::memset(m2_[kv.first].raw(), 0, kv.second.nbytes());
    params_.push_back({kv.first, kv.second.shape(), 0});
    roles_.push_back({kv.first, true, "trained (requires_grad in the ORT checkpoint)"});
  }
  for (auto& kv : a_.checkpoint.frozen) {
    values_[kv.first] = kv.second.clone();
    roles_.push_back({kv.first, false, "frozen (frozen_params in the ORT checkpoint)"});
  }
  lr_ = 0.001;
  if (!a_.checkpoint.groups.empty()) lr_ = a_.checkpoint.groups[0].initial_lr;
  if (config_.optimizer.lr) lr_ = *config_.optimizer.lr;
  take_checkpoint(a_.checkpoint, "ORT checkpoint '" + a_.checkpoint_path + "'");
  stats_.lr = lr_;

  // Every graph input that is not data is a variable bound to the session's tensors.
  std::set<int> variables;
  for (int v : graph_.inputs)
    if (values_.count(graph_.values[v].name)) {
      variables.insert(v);
      variables_.insert(graph_.values[v].name);
    }
  for (const std::string& p : a_.params)
    OTTER_CHECK_KIND(InvalidModel, variables_.count(p), "training_model.onnx has no input '", p, "'");
  annotate_graph(graph_, variables);
  expand_ort_grad_ops(graph_);  // ConvGrad, MaxPoolGrad -> Otter's backward nodes
  annotate_graph(graph_, variables);
  const DType low = config_.precision == "fp16" ? DType::Float16 : config_.precision == "bf16" ? DType::BFloat16 : DType::Float32;
  if (low != DType::Float32) {
    PrecisionPolicy policy;
    policy.low = low;
    policy.by_op = config_.precision_by_op;
    policy.by_node = config_.precision_by_node;
    std::set<int> params;
    for (int v : variables)
      if (graph_.values[v].dtype == DType::Float32) params.insert(v);
    std::set<int> keep(graph_.outputs.begin(), graph_.outputs.end());
    autocast(graph_, policy, params, keep);
    annotate_graph(graph_, variables);
    notes_.push_back("mixed precision over ONNX Runtime's training model: its forward and backward nodes follow the "
                     "policy; parameters, gradient buffers and AdamW moments stay FP32 (no loss scaling)");
  }
  if (a_.has_eval) {
    std::set<int> eval_vars;
    for (int v : a_.eval.graph.inputs)
      if (values_.count(a_.eval.graph.values[v].name)) eval_vars.insert(v);
    annotate_graph(a_.eval.graph, eval_vars);
  }
  stats_.last_loss = NAN;
}

void OrtArtifactsSession::take_checkpoint(const OrtCheckpoint& c, const std::string& what) {
  // Validate, then copy: parameters (and frozen ones) by name, moments and step from group 0.
  std::map<std::string, const Tensor*> params;
  for (auto& kv : c.trainable) params[kv.first] = &kv.second;
  for (auto& kv : c.frozen) params[kv.first] = &kv.second;
  for (const ParameterInfo& p : params_) {
    auto it = params.find(p.name);
    OTTER_CHECK_KIND(WrongState, it != params.end(), what, " has no parameter '", p.name, "'");
    OTTER_CHECK_KIND(WrongState, it->second->dtype() == DType::Float32 && it->second->shape() == p.shape, what, ": '",
                     p.name, "' is ", dtype_name(it->second->dtype()), " ", shape_str(it->second->shape()),
                     " but the training model's is float32 ", shape_str(p.shape));
  }
  std::map<std::string, std::pair<const Tensor*, const Tensor*>> moments;
  int64_t step = 0;
  if (!c.groups.empty()) {
    OTTER_CHECK_KIND(Unsupported, c.groups.size() == 1, what, " has ", c.groups.size(),
                     " optimizer groups; Otter supports one");
    step = c.groups[0].step;
    for (const auto& s : c.groups[0].states) {
      const Tensor *m0 = nullptr, *m1 = nullptr;
      for (auto& kv : s.momentums) {
        if (kv.first == "momentum0") m0 = &kv.second;
        else if (kv.first == "momentum1") m1 = &kv.second;
      }
      const bool sgd = a_.optimizer.op == "SGDOptimizerV2";  // one (unused) momentum per parameter
      OTTER_CHECK_KIND(InvalidModel, m0 && (m1 || sgd), what, ": the ", sgd ? "SGD" : "AdamW", " state of '", s.param,
                       "' lacks ", sgd ? "momentum0" : "momentum0/momentum1");
      moments[s.param] = {m0, m1 ? m1 : m0};
    }
    for (const ParameterInfo& p : params_) {
      auto it = moments.find(p.name);
      OTTER_CHECK_KIND(WrongState, it != moments.end(), what, " has no optimizer state for '", p.name, "'");
      OTTER_CHECK_KIND(WrongState, it->second.first->shape() == p.shape && it->second.second->shape() == p.shape &&
                                       it->second.first->dtype() == DType::Float32 &&
                                       it->second.second->dtype() == DType::Float32,
                       what, ": the moments of '", p.name, "' do not have its shape ", shape_str(p.shape));
    }
  }
  auto finite = [&](const Tensor& t, const std::string& name) {  // a NaN would poison every later step
    std::vector<double> v = t.to_double_vector();
    for (size_t i = 0; i < v.size(); ++i)
      OTTER_CHECK(std::isfinite(v[i]), what, ": '", name, "' holds a non-finite value (", v[i], ") at element ", i);
  };
  for (auto& kv : params)
    if (values_.count(kv.first)) finite(*kv.second, kv.first);
  for (auto& kv : moments) {
    finite(*kv.second.first, kv.first + " momentum0");
    finite(*kv.second.second, kv.first + " momentum1");
  }
  for (auto& kv : params)
    if (values_.count(kv.first)) values_.at(kv.first).copy_from(*kv.second);
  for (auto& kv : moments)
    if (m1_.count(kv.first)) {
      m1_.at(kv.first).copy_from(*kv.second.first);
      m2_.at(kv.first).copy_from(*kv.second.second);
    }
  stats_.step = step;
}

Plan& OrtArtifactsSession::plan_for(Graph& g, std::map<std::string, std::unique_ptr<Plan>>& cache,
                                    const std::vector<int>& targets, const std::map<std::string, Tensor>& feeds,
                                    const std::set<std::string>& optional, std::map<int, Tensor>* bound) {
  std::map<int64_t, int64_t> symbols;
  std::map<int, Shape> shapes;
  std::string key;
  std::set<std::string> known;
  for (int v : g.inputs) {
    const std::string& name = g.values[v].name;
    known.insert(name);
    if (values_.count(name) || name == a_.reset_input) continue;
    auto it = feeds.find(name);
    if (it == feeds.end() && optional.count(name)) continue;
    OTTER_CHECK(it != feeds.end(), "missing input '", name, "': expected ", dtype_name(g.values[v].dtype), " ",
                g.shape_str(g.values[v].shape));
    check_feed(g, v, it->second, &symbols);
    shapes[v] = it->second.shape();
    (*bound)[v] = it->second;
    key += "|" + shape_str(it->second.shape());
  }
  for (auto& kv : feeds)
    OTTER_CHECK(known.count(kv.first) && !values_.count(kv.first), "unknown input '", kv.first,
                "': the model has no data input of that name");
  auto found = cache.find(key);
  if (found != cache.end()) return *found->second;
  PlanOptions options;
  options.device = Device::CPU;
  for (int v : g.inputs) {
    const std::string& name = g.values[v].name;
    if (values_.count(name)) {
      options.bound[v] = values_.at(name);
      options.variables.insert(v);
    } else if (name == a_.reset_input) {
      Tensor reset(DType::Bool, {1});  // every step overwrites the buffers (module.lazy_reset_grad())
      reset.data<bool>()[0] = true;
      options.bound[v] = reset;
    }
  }
  options.targets = targets;
  auto plan = build_plan(g, shapes, options, &stats_.plan_seconds);
  Plan& ref = *plan;
  cache[key] = std::move(plan);
  return ref;
}

void OrtArtifactsSession::train_step(const std::map<std::string, Tensor>& feeds, double* loss) {
  std::map<int, Tensor> bound;
  std::vector<int> targets = {graph_.value_id(a_.loss)};
  for (auto& kv : a_.grad_out) targets.push_back(graph_.value_id(kv.second));
  for (auto& kv : a_.running_stats) targets.push_back(graph_.value_id(kv.second));
  Plan& plan = plan_for(graph_, plans_, targets, feeds, {}, &bound);
  RunOptions ro;
  ro.training = true;
  ro.seed = config_.seed;
  ro.step = static_cast<uint64_t>(stats_.step);
  plan.run(bound, ro);
  last_memory_ = plan.memory();
  const double l = plan.value(graph_.value_id(a_.loss)).to_double_vector().at(0);
  OTTER_CHECK_KIND(NonFinite, config_.nonfinite == "skip" || std::isfinite(l), "step ", stats_.step + 1, ": the loss is ",
                   l, "; the update was not applied (set nonfinite=skip to apply such steps)");
  // The accumulation outputs become the gradient buffers (ORT's in-place accumulation).
  std::map<std::string, Tensor> grads;
  for (auto& kv : a_.grad_out) grads[kv.first] = plan.value(graph_.value_id(kv.second)).clone();
  for (auto& kv : grads) values_.at(a_.grad_buffer.at(kv.first)).copy_from(kv.second);
  // BatchNormalization running statistics: ORT's BatchNormInternal writes them into its inputs
  // (the checkpoint's frozen buffers) during the step.
  std::map<std::string, Tensor> stats;
  for (auto& kv : a_.running_stats) stats[kv.first] = plan.value(graph_.value_id(kv.second)).cast(DType::Float32);
  for (auto& kv : stats) values_.at(kv.first).copy_from(kv.second);
  adamw_step();
  stats_.last_loss = l;
  if (loss) *loss = l;
}

void OrtArtifactsSession::adamw_step() {
  const OrtOptimizer& o = a_.optimizer;
  if (o.op == "SGDOptimizerV2") {  // ORT's SGDOptimizerV2: w = w + (-lr * g), in float
    const float lr = static_cast<float>(lr_);
    for (const std::string& p : a_.params) {
      float* w = values_.at(p).data<float>();
      const float* g = values_.at(a_.grad_buffer.at(p)).data<float>();
      for (int64_t i = 0, n = values_.at(p).numel(); i < n; ++i) w[i] = w[i] + (-lr * g[i]);
    }
    stats_.step++;
    return;
  }
  // ORT's AdamWOptimizer (CPU kernel), in float: step + 1 is the bias correction's power.
  const int64_t step = stats_.step + 1;
  const float lr = static_cast<float>(lr_);
  float alpha_correction = 1.f, beta_correction = 1.f, lr_corrected = lr;
  if (o.correct_bias == 1) {
    alpha_correction = 1.f - static_cast<float>(std::pow(o.alpha, step));
    beta_correction = 1.f - static_cast<float>(std::pow(o.beta, step));
    lr_corrected *= std::sqrt(beta_correction) / alpha_correction;
  }
  for (const std::string& p : a_.params) {
    float* w = values_.at(p).data<float>();
    const float* g = values_.at(a_.grad_buffer.at(p)).data<float>();
    float* m = m1_.at(p).data<float>();
    float* v = m2_.at(p).data<float>();
    const int64_t n = values_.at(p).numel();
    for (int64_t i = 0; i < n; ++i) {
      if (o.adam_mode == 0) {
        w[i] = w[i] - w[i] * lr * o.weight_decay;
        m[i] = o.alpha * m[i] + (1.f - o.alpha) * g[i];
        v[i] = o.beta * v[i] + (1.f - o.beta) * g[i] * g[i];
        const float denom = std::sqrt(v[i] / beta_correction) + o.epsilon;
        w[i] = w[i] - (lr * m[i]) / (alpha_correction * denom);
      } else {
        m[i] = o.alpha * m[i] + (1.f - o.alpha) * g[i];
        v[i] = o.beta * v[i] + (1.f - o.beta) * g[i] * g[i];
        const float denom = std::sqrt(v[i]) + o.epsilon;
        w[i] = w[i] - (lr_corrected * m[i] / denom);
        w[i] = w[i] - (lr * o.weight_decay * w[i]);
      }
    }
  }
  stats_.step++;
}

std::map<std::string, Tensor> OrtArtifactsSession::eval_step(const std::map<std::string, Tensor>& feeds, double* loss,
                                                             bool* has_loss) {
  OTTER_CHECK_KIND(NotFound, a_.has_eval, "the artifacts have no eval_model.onnx");
  Graph& g = a_.eval.graph;
  std::map<int, Tensor> bound;
  Plan& plan = plan_for(g, eval_plans_, g.outputs, feeds, {}, &bound);
  RunOptions ro;
  ro.training = false;
  plan.run(bound, ro);
  std::map<std::string, Tensor> out;
  for (int v : g.outputs) out[g.values[v].name] = plan.value(v).clone();
  if (loss) *loss = g.outputs.empty() ? NAN : plan.value(g.outputs[0]).to_double_vector().at(0);
  if (has_loss) *has_loss = !g.outputs.empty();
  return out;
}

std::vector<std::pair<std::string, ValueInfo>> OrtArtifactsSession::train_inputs() const {
  std::vector<std::pair<std::string, ValueInfo>> r;
  for (const std::string& name : a_.data_inputs) r.push_back(named_info(graph_.values[graph_.value_id(name)]));
  return r;
}

std::vector<std::pair<std::string, ValueInfo>> OrtArtifactsSession::outputs() const {
  std::vector<std::pair<std::string, ValueInfo>> r;
  const Graph& g = a_.has_eval ? a_.eval.graph : graph_;
  for (int v : g.outputs) {
    if (!a_.has_eval && v != graph_.value_id(a_.loss)) continue;
    r.push_back(named_info(g.values[v]));
  }
  return r;
}

Tensor OrtArtifactsSession::get_parameter(const std::string& name) const {
  auto it = values_.find(name);
  OTTER_CHECK_KIND(NotFound, it != values_.end() && name.find("_grad.accumulation.buffer") == std::string::npos, "'",
                   name, "' is not a parameter of the ORT checkpoint");
  return it->second.clone();
}

void OrtArtifactsSession::set_parameter(const std::string& name, const Tensor& value) {
  auto it = values_.find(name);
  OTTER_CHECK_KIND(NotFound, it != values_.end(), "'", name, "' is not a parameter of the ORT checkpoint");
  OTTER_CHECK(value.dtype() == it->second.dtype() && value.shape() == it->second.shape(), "parameter '", name, "' is ",
              dtype_name(it->second.dtype()), " ", shape_str(it->second.shape()), "; the new value is ",
              dtype_name(value.dtype()), " ", shape_str(value.shape()));
  it->second.copy_from(value);
}

void OrtArtifactsSession::set_learning_rate(double lr) {
  OTTER_CHECK(std::isfinite(lr) && lr >= 0, "learning rate must be a finite number >= 0, got ", lr);
  lr_ = lr;
  stats_.lr = lr;
}

void OrtArtifactsSession::save_checkpoint(const std::string& path, const std::map<std::string, std::string>& user) const {
  OrtCheckpoint c = a_.checkpoint;  // property bag and layout as loaded
  std::vector<std::pair<std::string, std::string>> strings;
  for (auto& kv : c.string_props)
    if (kv.first.rfind(kUserPrefix, 0) != 0) strings.push_back(kv);
  for (auto& kv : user) strings.push_back({kUserPrefix + kv.first, kv.second});
  c.string_props = strings;
  for (auto& kv : c.trainable) kv.second = values_.at(kv.first);
  for (auto& kv : c.frozen)
    if (values_.count(kv.first)) kv.second = values_.at(kv.first);
  OrtCheckpoint::Group group;
  if (!c.groups.empty()) group.name = c.groups[0].name, group.initial_lr = c.groups[0].initial_lr;
  else group.initial_lr = static_cast<float>(lr_);
  group.step = stats_.step;
  for (const std::string& p : a_.params) {
    OrtCheckpoint::ParamState s;
    s.param = p;
    if (a_.optimizer.op == "SGDOptimizerV2") s.momentums = {{"momentum0", m1_.at(p)}};
    else s.momentums = {{"momentum0", m1_.at(p)}, {"momentum1", m2_.at(p)}};
    group.states.push_back(s);
  }
  c.groups = {group};
  write_ort_checkpoint(path, c);
}

void OrtArtifactsSession::load_checkpoint(const std::string& path, std::map<std::string, std::string>* user) {
  OrtCheckpoint c = read_ort_checkpoint(path);
  take_checkpoint(c, "ORT checkpoint '" + path + "'");
  if (user) {
    user->clear();
    for (auto& kv : c.string_props)
      if (kv.first.rfind(kUserPrefix, 0) == 0) (*user)[kv.first.substr(std::strlen(kUserPrefix))] = kv.second;
  }
}

void OrtArtifactsSession::export_model(const std::string& path) const {
  OTTER_CHECK_KIND(NotFound, a_.has_eval, "export: the artifacts have no eval_model.onnx to write the parameters into");
  std::map<std::string, Tensor> params;
  for (int v : a_.eval.graph.inputs) {
    const std::string& name = a_.eval.graph.values[v].name;
    if (!values_.count(name)) continue;
    const Tensor& t = values_.at(name);
    for (double x : t.to_double_vector())
      OTTER_CHECK_KIND(NonFinite, std::isfinite(x), "export: parameter '", name, "' holds a non-finite value; nothing was written");
    params[name] = t;
  }
  export_ort_eval_model(a_.eval.model_bytes, params, path);
}

}  // namespace otter
