// Training session (see session.h).
#include "runtime/train/session.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>

#include "runtime/core/convert.h"
#include "runtime/core/denormals.h"
#include "runtime/core/half.h"
#include "runtime/exec/infer.h"
#include "runtime/passes/autodiff.h"
#include "runtime/passes/linear_gemm.h"
#include "runtime/train/ort_session.h"
#include "runtime/train/training_graph.h"

namespace otter {

void check_feed(const Graph& g, int v, const Tensor& t, std::map<int64_t, int64_t>* symbols) {
  const Value& val = g.values[v];
  OTTER_CHECK(t.dtype() == val.dtype, "input '", val.name, "' has dtype ", dtype_name(t.dtype()), "; the model expects ",
              dtype_name(val.dtype));
  OTTER_CHECK(t.shape().size() == val.shape.size(), "input '", val.name, "' has shape ", shape_str(t.shape()),
              "; the model expects rank ", val.shape.size(), " ", g.shape_str(val.shape));
  for (size_t k = 0; k < t.shape().size(); ++k) {
    int64_t want = val.shape[k], got = t.shape()[k];
    if (want >= 0) {
      OTTER_CHECK(want == got, "input '", val.name, "' has shape ", shape_str(t.shape()), "; the model expects ",
                  g.shape_str(val.shape), " (dim ", k, " must be ", want, ")");
    } else {
      auto s = symbols->find(want);
      OTTER_CHECK(s == symbols->end() || s->second == got, "input '", val.name, "' has ", g.dim_str(want), " = ", got,
                  " but another input has ", g.dim_str(want), " = ", s == symbols->end() ? 0 : s->second);
      (*symbols)[want] = got;
    }
  }
}
namespace {

std::set<int> floating_initializers(const Graph& g) {
  std::set<int> s;
  for (int v : g.initializers)
    if (is_floating(g.values[v].dtype)) s.insert(v);
  return s;
}

// Element i of a floating tensor, as a double (no copy of the whole tensor).
double float_at(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::Float32: return t.data<float>()[i];
    case DType::Float64: return t.data<double>()[i];
    case DType::Float16: return math::half_bits_to_float(static_cast<const uint16_t*>(t.raw())[i]);
    case DType::BFloat16: return math::bfloat16_bits_to_float(static_cast<const uint16_t*>(t.raw())[i]);
    default: return 0;
  }
}

// Floating initializers holding an infinity (or a NaN): constants by nature (a -inf causal mask
// that PyTorch exports as a registered buffer); training one would turn it into NaN. The first NaN
// of each, by initializer, goes to *nan_at.
std::set<int> non_finite_initializers(const Graph& g, std::map<int, int64_t>* nan_at) {
  std::set<int> s;
  for (int v : g.initializers) {
    const Tensor& t = g.values[v].data;
    if (!is_floating(t.dtype())) continue;
    if (t.dtype() == DType::Float32) {  // the usual case, scanned at memory speed first
      const uint32_t* bits = static_cast<const uint32_t*>(t.raw());
      uint32_t special = 0;  // some element has the all-ones exponent of inf/NaN
      for (int64_t i = 0, n = t.numel(); i < n; ++i) special |= (bits[i] & 0x7f800000u) == 0x7f800000u;
      if (!special) continue;
    }
    for (int64_t i = 0, n = t.numel(); i < n; ++i) {
      double x = float_at(t, i);
      if (std::isnan(x)) { (*nan_at)[v] = i; s.insert(v); break; }
      if (std::isinf(x)) s.insert(v);
    }
  }
  return s;
}

// "values {0, -10000}" when a floating tensor holds zero and one other value whose use as a
// weight is implausible (1, or a magnitude >= 1e4): the signature of a mask.
std::string mask_like_values(const Tensor& t) {
  if (!is_floating(t.dtype()) || t.numel() < 4) return "";
  std::set<double> values;
  for (int64_t i = 0, n = t.numel(); i < n; ++i) {
    values.insert(float_at(t, i));
    if (values.size() > 2) return "";
  }
  if (values.size() != 2 || !values.count(0.0)) return "";
  double other = *values.begin() == 0.0 ? *values.rbegin() : *values.begin();
  if (other != 1.0 && std::fabs(other) < 1e4) return "";
  std::ostringstream out;
  out << "values {0, " << other << "}";
  return out.str();
}

math::OptimizerParams optimizer_params(const OptimizerConfig& c) {
  math::OptimizerParams p;
  p.kind = c.kind == "sgd" ? math::OptimizerKind::SGD : c.kind == "adam" ? math::OptimizerKind::Adam : math::OptimizerKind::AdamW;
  p.momentum = c.momentum;
  p.nesterov = c.nesterov;
  p.weight_decay = *c.weight_decay;
  p.beta1 = c.beta1;
  p.beta2 = c.beta2;
  p.eps = c.eps;
  return p;
}

}  // namespace

Device resolve_device(const std::string& name) {
  if (name == "cpu") return Device::CPU;
  if (name == "auto") return device_backend(Device::CUDA) ? Device::CUDA : Device::CPU;
  OTTER_CHECK_KIND(InvalidArgument, name == "cuda" || name.rfind("cuda:", 0) == 0, "device '", name,
                   "' is not auto, cpu, cuda or cuda:N");
  KernelRegistry::instance();  // detects the GPU
  DeviceBackend* b = device_backend(Device::CUDA);
  OTTER_CHECK_KIND(Unsupported, b, "device '", name, "' is not available: ", cuda_unavailable_reason(), " (use cpu or auto)");
  OTTER_CHECK_KIND(Unsupported, name == "cuda" || name == "cuda:0", "device '", name, "': Otter uses one GPU per process, ",
                   b->describe(), "; choose another GPU with CUDA_VISIBLE_DEVICES");
  return Device::CUDA;
}

Session::~Session() = default;

Session::Session(LoadedModel model, TrainConfig config) : config_(std::move(config)) {
  OTTER_CHECK_KIND(Unsupported, !config_.flush_denormals || can_flush_denormals(),
                   "denormals=flush: this build cannot flush subnormal floats to zero on this CPU (x86-64 only)");
  OTTER_CHECK(config_.training_graph == "auto" || config_.training_graph == "on" || config_.training_graph == "off",
              "training_graph must be auto, on or off, got '", config_.training_graph, "'");
  // Training graphs and ORT artifacts run their own update: data parallelism is not wired for them.
  auto refuse_distributed = [&](const char* what) {
    bool join = config_.dist.mode == "mpi" || (config_.dist.mode == "auto" && launched_world_size() > 1);
    OTTER_CHECK_KIND(Unsupported, !join, what, " cannot train data-parallel yet (this process was started by an MPI "
                     "launcher or distributed=mpi): run one process, or set the option distributed=off to train "
                     "independent copies on purpose");
  };
  if (config_.training_graph != "off" && model.training_info_count > 0) {
    refuse_distributed("an ONNX training graph (training_info)");
    TrainingModel training = import_training_info(model);
    training_graph_ = std::make_unique<TrainingGraphSession>(std::move(model), std::move(training), config_);
    return;
  }
  if (config_.training_graph != "off" && is_ort_training_model(model)) {
    refuse_distributed("ONNX Runtime training artifacts");
    ort_ = std::make_unique<OrtArtifactsSession>(load_ort_artifacts(std::move(model), config_.ort_checkpoint), config_);
    return;
  }
  OTTER_CHECK(config_.ort_checkpoint.empty(), "ort_checkpoint is set but the model is not an ONNX Runtime training model");
  OTTER_CHECK(config_.training_graph != "on", "training_graph=on but the model has no training_info (no ONNX training graph)");
  model_bytes_ = std::move(model.model_bytes);
  graph_ = std::move(model.graph);
  OTTER_CHECK(config_.grad_accum >= 1, "gradient accumulation must be >= 1 micro-batch, got ", config_.grad_accum);
  OTTER_CHECK(config_.clip_norm >= 0, "clip norm must be >= 0, got ", config_.clip_norm);
  OTTER_CHECK(config_.nonfinite == "error" || config_.nonfinite == "skip", "nonfinite must be error or skip, got '",
              config_.nonfinite, "'");
  validate_schedule(config_.schedule);
  OTTER_CHECK(config_.precision == "fp32" || config_.precision == "fp16" || config_.precision == "bf16",
              "precision must be fp32, fp16 or bf16, got '", config_.precision, "'");
  low_ = config_.precision == "fp16" ? DType::Float16 : config_.precision == "bf16" ? DType::BFloat16 : DType::Float32;
  std::string scale_mode = config_.loss_scale == "auto" ? (low_ == DType::Float16 ? "dynamic" : "none") : config_.loss_scale;
  config_.loss_scale_config.mode = scale_mode;
  validate_loss_scale(config_.loss_scale_config);
  model_inputs_ = graph_.inputs;
  model_outputs_ = graph_.outputs;
  model_initializers_ = graph_.initializers;
  std::map<int, int64_t> nan_at;
  const std::set<int> nonfinite = non_finite_initializers(graph_, &nan_at);
  std::set<int> candidates = floating_initializers(graph_);
  for (int v : nonfinite) candidates.erase(v);  // constants: folded like any other
  annotate_graph(graph_, candidates);
  prepare_batchnorm();
  loss_ = add_loss(graph_, config_.loss);
  annotate_graph(graph_, candidates);
  if (fold_linear_transposes(graph_) > 0) annotate_graph(graph_, candidates);  // MatMul(X, W^T) -> Gemm

  // Trainable parameters.
  std::vector<int> params;
  std::set<std::string> frozen(config_.frozen.begin(), config_.frozen.end());
  for (const std::string& f : frozen) {
    int v = graph_.find_value(f);
    OTTER_CHECK(v >= 0 && graph_.values[v].is_initializer, "cannot freeze '", f, "': the model has no initializer of that name");
  }
  const std::vector<std::vector<int>> consumers = graph_.consumers();  // of the model and loss nodes
  {  // A NaN in a weight is damage, not a mask: refuse it unless the user froze it knowingly.
    for (auto& kv : nan_at) {
      const Value& val = graph_.values[kv.first];
      OTTER_CHECK_KIND(InvalidModel, frozen.count(val.name) || consumers[kv.first].empty(),
                       "initializer '", val.name, "' holds NaN (element ", kv.second,
                       "): the model file may be damaged; if the NaN is intended, freeze it (freeze option, CLI --freeze ",
                       val.name, ")");
    }
  }
  if (!config_.trainable.empty()) {
    for (const std::string& name : config_.trainable) {
      int v = graph_.find_value(name);
      OTTER_CHECK(v >= 0 && graph_.values[v].is_initializer, "cannot train '", name, "': the model has no initializer of that name");
      OTTER_CHECK(!frozen.count(name), "'", name, "' is listed as both trainable and frozen");
      OTTER_CHECK(!buffers_.count(v), "'", name, "' is a BatchNormalization running statistic: it is updated, not trained");
      OTTER_CHECK(!nonfinite.count(v), "cannot train '", name, "': it holds NaN or infinite values (a constant such as a -inf mask)");
      params.push_back(v);
    }
  } else {
    for (int v : graph_.initializers)
      if (is_floating(graph_.values[v].dtype) && !frozen.count(graph_.values[v].name) && !buffers_.count(v) &&
          !nonfinite.count(v))
        params.push_back(v);
  }
  for (int v : params)
    OTTER_CHECK(graph_.values[v].dtype == DType::Float32, "parameter '", graph_.values[v].name, "' is ",
                dtype_name(graph_.values[v].dtype), "; only float32 parameters can be trained (freeze it)");

  // How each initializer is used by the model (before the policy inserts casts): for the notes.
  std::map<int, std::string> elementwise_uses;  // initializer -> "Add/Mul" when read only by elementwise ops
  std::map<int, std::string> weight_uses;       // initializer -> an op that reads it as a weight
  for (int v : model_initializers_) {
    std::string ops;
    bool only = !consumers[v].empty();
    for (int n : consumers[v]) {
      const Node& node = graph_.nodes[n];
      const std::string& op = node.op_type;
      const bool mask_use = op == "Add" || op == "Sub" || op == "Mul" || op == "Where";
      only = only && node.domain.empty() && mask_use;
      if (ops.find(op) == std::string::npos) ops += (ops.empty() ? "" : "/") + op;
      // Read as a weight: an infinity there is damage, not a mask.
      if (node.domain.empty() && (op == "MatMul" || op == "Gemm" || op == "Conv" || op == "ConvTranspose" ||
                                  op == "Einsum" || op == "BatchNormalization" || op == "LayerNormalization" ||
                                  op == "Gather"))
        weight_uses[v] = op;
    }
    if (only) elementwise_uses[v] = ops;
  }

  // Mixed precision: rewrite the forward graph before autodiff (design decision: autocast first).
  PrecisionPolicy policy;
  policy.low = low_;
  policy.by_op = config_.precision_by_op;
  policy.by_node = config_.precision_by_node;
  std::set<int> keep(model_outputs_.begin(), model_outputs_.end());
  keep.insert(loss_.loss);
  autocast_ = autocast(graph_, policy, std::set<int>(params.begin(), params.end()), keep);
  annotate_graph(graph_, candidates);
  forward_node_count_ = graph_.nodes.size();
  Gradients grads = build_gradients(graph_, loss_.loss, params);
  for (int v : grads.unreachable)
    OTTER_CHECK(config_.trainable.empty(), "parameter '", graph_.values[v].name,
                "' does not reach the loss through differentiable ops, so it cannot be trained");
  seed_value_ = grads.seed;
  annotate_graph(graph_, candidates);

  size_t total = 0;
  for (int v : params) {
    if (!grads.of_param.count(v)) continue;
    params_.push_back({graph_.values[v].name, graph_.values[v].shape, total});
    param_values_.push_back(v);
    param_grads_[v] = grads.of_param[v];
    // Each parameter starts on a 64-element boundary (256 bytes in FP32): aligned vector loads and
    // cuBLASLt's preferred alignment. The padding is zero in every buffer and stays zero.
    total += (static_cast<size_t>(shape_numel(graph_.values[v].shape)) + 63) / 64 * 64;
  }
  describe_initializers(nonfinite, frozen, elementwise_uses, weight_uses);
  OTTER_CHECK(!params_.empty(), "the model has no trainable parameters on a path to the loss");
  const Device dev = config_.device;
  ops_ = step_ops(dev);
  OTTER_CHECK_KIND(Unsupported, ops_ && (dev == Device::CPU || device_backend(dev)), "no ", device_name(dev),
                   " device: ", cuda_unavailable_reason());
  if (dev != Device::CPU) device_backend(dev)->reset_peak();
  const int64_t n_total = static_cast<int64_t>(total);
  Tensor masters(DType::Float32, {n_total});
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& init = graph_.values[param_values_[i]].data;
    std::memcpy(masters.data<float>() + params_[i].offset, init.raw(), init.nbytes());
  }
  masters_ = masters.to(dev);
  // The masters are now the parameters' only copy that anything reads (plans bind them as
  // variables, export reads the masters): the import's copy goes before the buffers below are
  // allocated, so a session holds its weights once and creation reuses that memory.
  for (int v : param_values_) graph_.values[v].data = Tensor();
  grads_ = Tensor(DType::Float32, {n_total}, dev);
  if (config_.grad_accum > 1) accum_ = Tensor(DType::Float32, {n_total}, dev);
  if (low_ != DType::Float32) {
    // The CPU keeps only the copies something reads, packed; a device keeps the masters' layout
    // and refreshes it with one conversion.
    const bool packed = dev == Device::CPU;
    int64_t end[2] = {0, 0};  // elements of low_weights_ and low_wide_
    for (size_t i = 0; i < params_.size(); ++i) {
      const int v = param_values_[i];
      auto cast = autocast_.parameter_casts.find(v);
      if (cast == autocast_.parameter_casts.end()) continue;  // no reader of a low-precision copy
      LowCopy c;
      c.value = cast->second;
      c.wide = packed && low_ == DType::Float16 && config_.cpu_fp16_wide_weights &&
               cpu_reads_only_widened(graph_, cast->second);
      c.offset = packed ? static_cast<size_t>(end[c.wide]) : params_[i].offset;
      param_low_[v] = c;
      const int64_t n = (shape_numel(params_[i].shape) + 63) / 64 * 64;  // with the padding
      end[c.wide] += n;
      const int64_t src = static_cast<int64_t>(params_[i].offset), dst = static_cast<int64_t>(c.offset);
      if (!low_runs_.empty() && low_runs_.back().wide == c.wide && low_runs_.back().src + low_runs_.back().n == src &&
          low_runs_.back().dst + low_runs_.back().n == dst)
        low_runs_.back().n += n;
      else
        low_runs_.push_back({src, dst, n, c.wide});
    }
    if (!packed) {
      end[0] = n_total;
      low_runs_ = {LowCopyRun{0, 0, n_total, false}};
    }
    low_weights_ = Tensor(low_, {end[0]}, dev);
    low_wide_ = Tensor(DType::Float32, {end[1]}, dev);
    refresh_low_weights();
  }
  Tensor scaler(DType::Float32, {kLossScaleSlots});
  float* st = scaler.data<float>();
  st[kScale] = config_.loss_scale_config.mode == "none" ? 1.0f : static_cast<float>(config_.loss_scale_config.init_scale);
  st[kGrowthTracker] = 0;
  st[kFoundInf] = 0;
  st[kHysteresisLeft] = static_cast<float>(config_.loss_scale_config.hysteresis);
  scaler_state_ = scaler.to(dev);
  counters_ = Tensor(DType::Int64, {kStepCounters}, dev);
  norm_ = Tensor(DType::Float64, {1}, dev);
  const Value& seed_value = graph_.values[seed_value_];
  seed_ = Tensor(seed_value.dtype, seed_value.shape, dev);
  for (auto& kv : buffers_) kv.second = kv.second.to(dev);
  optimizer_ = std::make_unique<Optimizer>(config_.optimizer, total, dev);
  base_lr_ = *optimizer_->config().lr;
  stats_.lr = scheduled_lr(base_lr_, config_.schedule, 0);
  join_world();
}

std::string Session::rank_description() const {
  std::ostringstream d;
  // Numbers in their shortest form that reads back exactly (0.1, not 0.10000000000000001).
  auto num = [](double v) {
    char buf[32];
    for (int digits = 6; digits <= 17; ++digits) {
      std::snprintf(buf, sizeof buf, "%.*g", digits, v);
      if (std::strtod(buf, nullptr) == v) break;
    }
    return std::string(buf);
  };
  const OptimizerConfig& o = optimizer_->config();
  const LossScaleConfig& l = config_.loss_scale_config;
  d << "device " << device_name(config_.device) << "\n"
    << "precision " << config_.precision << "\n"
    << "loss_scale " << l.mode << " init " << num(l.init_scale) << " growth " << num(l.growth_factor) << " backoff "
    << num(l.backoff_factor) << " interval " << l.growth_interval << " hysteresis " << l.hysteresis << " min "
    << num(l.min_scale) << " max " << num(l.max_scale) << "\n"
    << "optimizer " << o.kind << " lr " << num(*o.lr) << " momentum " << num(o.momentum) << " nesterov " << o.nesterov
    << " weight_decay " << num(*o.weight_decay) << " beta1 " << num(o.beta1) << " beta2 " << num(o.beta2) << " eps "
    << num(o.eps) << "\n"
    << "schedule " << config_.schedule.kind << " warmup " << config_.schedule.warmup_steps << " total "
    << config_.schedule.total_steps << "\n"
    << "grad_accum " << config_.grad_accum << "\n"
    << "clip_norm " << num(config_.clip_norm) << "\n"
    << "nonfinite " << config_.nonfinite << "\n"
    << "batchnorm " << config_.batchnorm << "\n"
    << "loss " << config_.loss.kind << " reduction " << config_.loss.reduction << "\n";
  for (const ParameterInfo& p : params_) d << "parameter " << p.name << " " << shape_str(p.shape) << "\n";
  for (auto& kv : buffers_) d << "buffer " << graph_.values[kv.first].name << " " << shape_str(kv.second.shape()) << "\n";
  return d.str();
}

void Session::join_world() {
  comm_ = make_communicator(config_.dist, config_.device, rank_description());
  if (!comm_) return;
  // As PyTorch DDP: every rank starts from rank 0's weights and BatchNorm running statistics.
  comm_->broadcast(masters_.raw(), masters_.nbytes(), 0);
  for (auto& kv : buffers_) comm_->broadcast(kv.second.raw(), kv.second.nbytes(), 0);
  refresh_low_weights();
  stats_.rank = comm_->rank();
  stats_.world_size = comm_->world_size();
  if (config_.device != Device::CPU)
    capture_note_ = "distributed CUDA steps (NCCL) are launched kernel by kernel: capturing the NCCL calls in the "
                    "step's CUDA graph is not done yet (docs/distributed.md)";
}

void Session::describe_initializers(const std::set<int>& nonfinite, const std::set<std::string>& frozen,
                                    const std::map<int, std::string>& elementwise_uses,
                                    const std::map<int, std::string>& weight_uses) {
  std::set<int> trained(param_values_.begin(), param_values_.end());
  std::set<std::string> listed(config_.trainable.begin(), config_.trainable.end());
  for (int v : model_initializers_) {
    const Value& val = graph_.values[v];
    InitializerRole r{val.name, trained.count(v) != 0, "trained"};
    if (r.trained) {
      // A trained initializer read only by elementwise ops and holding mask-like values is
      // probably a buffer (PyTorch exports registered buffers as initializers).
      std::string values = mask_like_values(val.data);
      auto use = elementwise_uses.find(v);
      if (!values.empty() && use != elementwise_uses.end())
        notes_.push_back("initializer '" + val.name + "' is trained but looks like a buffer (" + values + ", used only by " +
                         use->second + "): if it is a mask or constant, freeze it (CLI: --freeze " + val.name + ")");
    } else if (!is_floating(val.dtype)) {
      r.reason = std::string("a constant (") + dtype_name(val.dtype) + ")";
    } else if (buffers_.count(v)) {
      r.reason = "BatchNormalization running statistic: updated by training, not trained";
    } else if (nonfinite.count(v)) {
      r.reason = "holds NaN or infinite values: a constant (e.g. a -inf attention mask)";
      if (weight_uses.count(v) && !frozen.count(val.name))
        notes_.push_back("initializer '" + val.name + "' holds infinite values and is read as a weight (by " +
                         weight_uses.at(v) + "): it is kept constant, not trained; the model file may be damaged");
    } else if (frozen.count(val.name)) {
      r.reason = "frozen (freeze option)";
    } else if (!config_.trainable.empty() && !listed.count(val.name)) {
      r.reason = "not in the trainable list";
    } else {
      r.reason = "does not reach the loss through differentiable inputs";
    }
    roles_.push_back(r);
  }
}

const std::vector<ParameterInfo>& Session::parameters() const {
  return training_graph_ ? training_graph_->parameters() : ort_ ? ort_->parameters() : params_;
}
double Session::learning_rate() const { return training_graph_ ? NAN : ort_ ? ort_->learning_rate() : base_lr_; }
const std::vector<InitializerRole>& Session::initializer_roles() const {
  return training_graph_ ? training_graph_->initializer_roles() : ort_ ? ort_->initializer_roles() : roles_;
}
const std::vector<std::string>& Session::notes() const {
  return training_graph_ ? training_graph_->notes() : ort_ ? ort_->notes() : notes_;
}
const Graph& Session::graph() const { return training_graph_ ? training_graph_->graph() : ort_ ? ort_->graph() : graph_; }
double Session::loss_scale() const { return training_graph_ || ort_ ? 1.0 : scaler_host()[kScale]; }
MemoryStats Session::train_memory() const {
  return training_graph_ ? training_graph_->train_memory() : ort_ ? ort_->train_memory() : last_train_memory_;
}

const ParameterInfo& Session::param(const std::string& name) const {
  for (const ParameterInfo& p : params_)
    if (p.name == name) return p;
  OTTER_FAIL("'", name, "' is not a trainable parameter of this session");
}

Tensor Session::get_parameter(const std::string& name) const {
  if (training_graph_) return training_graph_->get_state(name);
  if (ort_) return ort_->get_parameter(name);
  const ParameterInfo& p = param(name);
  Tensor t(DType::Float32, p.shape);
  t.copy_from(Tensor::view(DType::Float32, p.shape, nullptr, const_cast<float*>(masters_.data<float>()) + p.offset, masters_.device()));
  return t;
}

void Session::set_parameter(const std::string& name, const Tensor& value) {
  if (training_graph_) return training_graph_->set_state(name, value);
  if (ort_) return ort_->set_parameter(name, value);
  const ParameterInfo& p = param(name);
  OTTER_CHECK(value.dtype() == DType::Float32 && value.shape() == p.shape, "parameter '", name, "' is float32 ",
              shape_str(p.shape), "; the new value is ", dtype_name(value.dtype()), " ", shape_str(value.shape()));
  Tensor::view(DType::Float32, p.shape, nullptr, masters_.data<float>() + p.offset, masters_.device()).copy_from(value);
  refresh_low_weights();
}

void Session::refresh_low_weights() {
  if (low_ == DType::Float32) return;
  // Round to nearest even, straight into the flat copies (after an update, the optimizer step
  // does it: optimizer_step_and_refresh).
  ops_->refresh_low(masters_.data<float>(), low_copies());
}

LowCopies Session::low_copies() const {
  LowCopies c;
  c.dtype = low_;
  c.low = low_weights_.defined() ? const_cast<void*>(low_weights_.raw()) : nullptr;
  c.wide = low_wide_.defined() && low_wide_.numel() ? const_cast<float*>(low_wide_.data<float>()) : nullptr;
  c.runs = low_runs_.data();
  c.count = low_runs_.size();
  return c;
}

void Session::forget_graphs() {
  for (auto& kv : device_steps_) {
    kv.second.graph[0].reset();
    kv.second.graph[1].reset();
  }
}

size_t Session::device_peak_bytes() const {
  if (config_.device == Device::CPU || training_graph_ || ort_) return 0;
  DeviceBackend* b = device_backend(config_.device);
  b->synchronize();
  return b->peak_bytes();
}

std::vector<float> Session::scaler_host() const {
  Tensor t = scaler_state_.to(Device::CPU);
  return std::vector<float>(t.data<float>(), t.data<float>() + kLossScaleSlots);
}

std::vector<int64_t> Session::counters_host() const {
  Tensor t = counters_.to(Device::CPU);
  return std::vector<int64_t>(t.data<int64_t>(), t.data<int64_t>() + kStepCounters);
}

const StepStats& Session::stats() const {
  if (training_graph_) return training_graph_->stats();
  if (ort_) return ort_->stats();
  std::vector<int64_t> c = counters_host();
  stats_.step = c[kStepsTaken];
  stats_.skipped_steps = c[kStepsSkipped];
  stats_.lr = scheduled_lr(base_lr_, config_.schedule, stats_.step);
  stats_.rank = rank();
  stats_.world_size = world_size();
  std::vector<float> scaler = scaler_host();
  stats_.last_step_skipped = scaler[kFoundInf] != 0.0f;
  if (config_.clip_norm > 0 || config_.track_grad_norm) stats_.last_grad_norm = norm_.to(Device::CPU).data<double>()[0];
  if (last_train_plan_) stats_.last_loss = last_train_plan_->value(loss_.loss).to(Device::CPU).to_double_vector().at(0);
  return stats_;
}

const PrecisionDecision* Session::precision_of(int node) const {
  auto it = autocast_.decisions.find(node);
  return it == autocast_.decisions.end() ? nullptr : &it->second;
}

void Session::set_learning_rate(double lr) {
  OTTER_CHECK_KIND(Unsupported, !training_graph_, "the model's training graph sets its own learning rate (an input or "
                   "initializer of its algorithm graph): change it there");
  if (ort_) return ort_->set_learning_rate(lr);
  OTTER_CHECK(std::isfinite(lr) && lr >= 0, "learning rate must be a finite number >= 0, got ", lr);
  base_lr_ = lr;
  forget_graphs();  // the learning rate is an argument of the captured optimizer kernels
  stats();
}

std::vector<std::pair<std::string, ValueInfo>> Session::train_inputs() const {
  if (training_graph_) return training_graph_->train_inputs();
  if (ort_) return ort_->train_inputs();
  std::vector<std::pair<std::string, ValueInfo>> r;
  std::vector<int> ids = model_inputs_;
  if (loss_.label >= 0) ids.push_back(loss_.label);
  for (int v : ids) r.push_back(named_info(graph_.values[v]));
  return r;
}

std::vector<std::pair<std::string, ValueInfo>> Session::outputs() const {
  if (training_graph_) return training_graph_->outputs();
  if (ort_) return ort_->outputs();
  std::vector<std::pair<std::string, ValueInfo>> r;
  for (int v : model_outputs_) r.push_back(named_info(graph_.values[v]));
  return r;
}

Plan& Session::plan_for(bool training, bool with_loss, const std::map<std::string, Tensor>& feeds,
                        std::map<int, Tensor>* bound_feeds) {
  std::vector<int> needed = model_inputs_;
  if (with_loss && loss_.label >= 0) needed.push_back(loss_.label);
  std::set<std::string> known;
  std::map<int64_t, int64_t> symbol_sizes;  // symbolic dim -> size seen in this batch
  std::map<int, Shape> shapes;
  std::string key = training ? "train" : (with_loss ? "eval+loss" : "eval");
  for (int v : needed) {
    const Value& val = graph_.values[v];
    known.insert(val.name);
    auto it = feeds.find(val.name);
    if (it == feeds.end()) {
      bool is_label = v == loss_.label;
      OTTER_FAIL("missing input '", val.name, "'", is_label ? " (the labels for the " + config_.loss.kind + " loss)" : "",
                 ": expected ", dtype_name(val.dtype), " ", graph_.shape_str(val.shape));
    }
    const Tensor& t = it->second;
    check_feed(graph_, v, t, &symbol_sizes);
    shapes[v] = t.shape();
    (*bound_feeds)[v] = t;
    key += "|" + shape_str(t.shape());
  }
  for (auto& kv : feeds)
    OTTER_CHECK(known.count(kv.first) || (!with_loss && kv.first == config_.loss.label), "unknown input '", kv.first,
                "': the model has no input of that name");
  if (training) shapes[seed_value_] = graph_.values[seed_value_].shape;
  auto found = plans_.find(key);
  if (found != plans_.end()) return *found->second;

  PlanOptions options;
  options.device = config_.device;
  for (size_t i = 0; i < params_.size(); ++i) {
    int v = param_values_[i];
    const Device dev = config_.device;
    options.bound[v] = Tensor::view(DType::Float32, params_[i].shape, nullptr, masters_.data<float>() + params_[i].offset, dev);
    options.variables.insert(v);
    auto low = param_low_.find(v);
    if (low != param_low_.end()) {  // the policy's cast of this parameter reads the flat low copy
      const LowCopy& c = low->second;
      if (c.wide) {
        options.bound[c.value] = Tensor::view(low_, params_[i].shape, nullptr, nullptr, dev);  // its type
        options.bound_wide[c.value] =
            Tensor::view(DType::Float32, params_[i].shape, nullptr, low_wide_.data<float>() + c.offset, dev);
      } else {
        options.bound[c.value] =
            Tensor::view(low_, params_[i].shape, nullptr, static_cast<uint16_t*>(low_weights_.raw()) + c.offset, dev);
      }
      options.variables.insert(c.value);
      options.precomputed.insert(c.value);
    }
    if (training)
      options.bound[param_grads_[v]] =
          Tensor::view(DType::Float32, params_[i].shape, nullptr, grads_.data<float>() + params_[i].offset, dev);
  }
  for (auto& kv : buffers_) {  // running statistics: read from the session's buffers
    options.bound[kv.first] = kv.second;
    options.variables.insert(kv.first);
  }
  if (training) {
    for (auto& u : buffer_updates_) options.targets.push_back(u.first);
    options.targets.push_back(loss_.loss);
    for (auto& kv : param_grads_) options.targets.push_back(kv.second);
  } else {
    options.targets = model_outputs_;
    if (with_loss) options.targets.push_back(loss_.loss);
  }
  auto plan = build_plan(graph_, shapes, options, &stats_.plan_seconds);
  Plan& ref = *plan;
  plans_[key] = std::move(plan);
  return ref;
}

double Session::train_step(const std::map<std::string, Tensor>& feeds) {
  double loss = 0;
  train_step(feeds, &loss);
  return loss;
}

void Session::train_step(const std::map<std::string, Tensor>& feeds, double* loss) {
  // A batch of no samples has no loss (a mean over nothing) and would put NaN into BatchNorm's
  // running statistics: refused before anything runs.
  for (const auto& kv : feeds)
    OTTER_CHECK_KIND(InvalidArgument, kv.second.numel() > 0, "train_step: input '", kv.first, "' is empty (",
                     shape_str(kv.second.shape()), "): a training step needs at least one sample");
  DenormalsFlushed flushed(config_.flush_denormals);
  if (training_graph_) return training_graph_->train_step(feeds, loss);
  if (ort_) return ort_->train_step(feeds, loss);
  if (!comm_) return run_train_step(feeds, loss);
  OTTER_CHECK_KIND(Distributed, dist_failure_.empty(), "rank ", comm_->rank(), " of ", comm_->world_size(),
                   ": a train_step failed on this rank (", dist_failure_,
                   "), so the ranks are out of step and this distributed run cannot continue: end every process and "
                   "restart from the last checkpoint");
  try {
    run_train_step(feeds, loss);
  } catch (const Error& e) {
    // Every rank reduces the same non-finite flag: that error is shared. Any other failure is this
    // rank's alone while the others wait in (or will enter) the gradient allreduce.
    if (e.kind() == ErrorKind::NonFinite) throw;
    dist_failure_ = e.what();
    comm_->mark_broken(dist_failure_);
    if (e.kind() == ErrorKind::Distributed) throw;
    throw Error(std::string(e.what()) + " (rank " + std::to_string(comm_->rank()) + " of " +
                    std::to_string(comm_->world_size()) +
                    ": the other ranks cannot go on without this step; this distributed run ends)",
                e.kind());
  } catch (...) {  // out of memory, ...: this rank's alone too
    dist_failure_ = "an exception other than otter::Error";
    comm_->mark_broken(dist_failure_);
    throw;
  }
}

void Session::run_train_step(const std::map<std::string, Tensor>& feeds, double* loss) {
  std::map<int, Tensor> bound;
  Plan& plan = plan_for(true, true, feeds, &bound);
  bound[seed_value_] = seed_;
  const bool last_micro_step = stats_.micro_step + 1 == config_.grad_accum;
  DeviceBackend* backend = config_.device == Device::CPU ? nullptr : device_backend(config_.device);
  if (!backend) {
    enqueue_step(plan, bound, last_micro_step, nullptr);
  } else {
    // Feeds go to fixed device buffers (a captured graph reads them there), staged without a sync;
    // index and label feeds are checked here, where a bad one is reported before anything changes.
    const CheckedInputs checked = check_index_feeds(plan, bound);
    DeviceStep& ds = device_steps_[&plan];
    for (auto& kv : bound) {
      if (kv.first == seed_value_) continue;
      Tensor& dst = ds.feeds[kv.first];
      if (!dst.defined()) dst = Tensor(kv.second.dtype(), kv.second.shape(), config_.device);
      if (kv.second.device() == Device::CPU) backend->upload_async(dst.raw(), kv.second.raw(), kv.second.nbytes());
      else dst.copy_from(kv.second);  // device to device, stream-ordered
      kv.second = dst;
    }
    const int phase = last_micro_step ? 1 : 0;  // one graph per phase, each after its own warm-up step
    std::shared_ptr<void>& graph = ds.graph[phase];
    if (!config_.cuda_graphs || comm_ || ds.capture_failed || ds.warm_steps[phase] < 1) {
      enqueue_step(plan, bound, last_micro_step, &checked);  // also creates library handles, workspaces
      ds.warm_steps[phase]++;
    } else {
      if (!graph) {
        // Capture; whatever is thrown, the capture is ended (the stream must not stay capturing).
        std::exception_ptr thrown;
        std::string why;
        backend->begin_capture();
        try {
          enqueue_step(plan, bound, last_micro_step, &checked);
        } catch (const Error& e) {
          why = e.what();
        } catch (...) {
          thrown = std::current_exception();
        }
        std::string end_why;
        graph = backend->end_capture(&end_why);
        if (thrown) std::rethrow_exception(thrown);
        if (!why.empty() || !graph) {
          graph.reset();
          // Nothing ran: launch the step kernel by kernel. Only when that succeeds was the failure
          // the capture's (an input error throws again here and changes nothing).
          enqueue_step(plan, bound, last_micro_step, &checked);
          ds.capture_failed = true;
          capture_note_ = "this training step cannot be captured as a CUDA graph (" + (why.empty() ? end_why : why) +
                          "); its kernels are launched one by one";
        }
      }
      if (graph) {
        backend->launch_graph(graph.get());
        stats_.captured_steps++;
      }
    }
  }
  last_train_plan_ = &plan;
  last_train_memory_ = plan.memory();
  stats_.micro_step = last_micro_step ? 0 : stats_.micro_step + 1;
  if (loss) {
    *loss = plan.value(loss_.loss).to(Device::CPU).to_double_vector().at(0);
    stats_.last_loss = *loss;
  }
  // The CPU reads the flag for free; CUDA only where it synchronises anyway (the loss was read).
  if (last_micro_step && (!backend || loss)) check_non_finite();
}

void Session::check_non_finite() const {
  if (training_graph_ || ort_) return;  // their steps fail at once on a non-finite loss
  if (config_.nonfinite != "error" || config_.loss_scale_config.mode == "dynamic") return;
  const std::vector<int64_t> counters = counters_host();  // one read-back (a sync on CUDA)
  const int64_t skipped = counters[kStepsSkipped];
  if (skipped <= reported_skips_) return;
  reported_skips_ = skipped;
  const int64_t step = counters[kStepsTaken];
  std::string loss;
  if (last_train_plan_) {
    double l = last_train_plan_->value(loss_.loss).to(Device::CPU).to_double_vector().at(0);
    loss = " (loss " + std::to_string(l) + ")";
  }
  OTTER_FAIL_KIND(NonFinite, "optimizer step ", step + 1, ": the gradient holds NaN or Inf", loss,
                  "; the update was skipped and the weights are unchanged. Likely causes: NaN/Inf in the input data, "
                  "a learning rate so high that training diverged, or a loss undefined for these labels. "
                  "Set nonfinite=skip (CLI: --nonfinite skip) to skip such steps and go on");
}

void Session::set_user_metadata(const std::string& key, const std::string& value) {
  OTTER_CHECK(!key.empty(), "metadata key is empty");
  for (char c : key + value)
    OTTER_CHECK(c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20, "metadata '", key,
                "': keys and values may not hold quotes, backslashes or control characters");
  user_metadata_[key] = value;
}

CheckedInputs Session::check_index_feeds(const Plan& plan, const std::map<int, Tensor>& feeds) const {
  // Inputs the registry marks as indices or labels (OpDef::index_inputs): Gather, GatherElements,
  // the losses, and any op that declares them.
  CheckedInputs checked;
  const OpRegistry& ops = OpRegistry::instance();
  for (size_t node = 0; node < graph_.nodes.size(); ++node) {
    const Node& n = graph_.nodes[node];
    const OpDef* def = ops.find(n.domain, n.op_type);
    if (!def) continue;
    for (const IndexInput& index : def->index_inputs) {
      auto it = feeds.find(n.input(static_cast<size_t>(index.input)));
      if (it == feeds.end() || it->second.device() != Device::CPU ||
          (it->second.dtype() != DType::Int64 && it->second.dtype() != DType::Int32)) continue;
      if (check_index_values(n, index, plan.info(n.input(static_cast<size_t>(index.data))).shape, it->second))
        checked.insert({static_cast<int>(node), index.input});
    }
  }
  return checked;
}

void Session::enqueue_step(Plan& plan, const std::map<int, Tensor>& bound, bool last_micro_step,
                           const CheckedInputs* checked_inputs) {
  int64_t* counters = counters_.data<int64_t>();
  float* scaler = scaler_state_.data<float>();
  ops_->begin_micro_step(counters, scaler, seed_.raw(), seed_.dtype(), config_.grad_accum);
  RunOptions ro;
  ro.training = true;
  // Each rank draws its own Dropout masks (rank 0 the masks of a single process).
  ro.seed = comm_ && comm_->rank() > 0 ? config_.seed ^ (0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(comm_->rank()))
                                        : config_.seed;
  ro.checked_inputs = checked_inputs;
  if (config_.device == Device::CPU) ro.step = static_cast<uint64_t>(counters[kRngStep]);
  else ro.step_on_device = counters + kRngStep;
  plan.run(bound, ro);
  const int64_t n = grads_.numel();
  float* g = grads_.data<float>();
  if (config_.grad_accum > 1) {
    ops_->accumulate(accum_.data<float>(), g, n, counters);
    g = accum_.data<float>();
  }
  // New running statistics: applied unless the step is skipped for non-finite gradients.
  auto commit_buffers = [&](const float* skip_if_inf) {
    for (auto& u : buffer_updates_) {
      const Tensor& src = plan.value(u.first);
      Tensor& dst = buffers_.at(u.second);
      ops_->commit(dst.data<float>(), src.raw(), src.dtype(), dst.numel(), skip_if_inf);
    }
  };
  if (!last_micro_step) {
    commit_buffers(nullptr);
    ops_->end_micro_step(counters);
    return;
  }
  // Data parallelism: the gradient of the effective batch is averaged over the ranks, once (after
  // accumulation), before unscaling, the finite check and clipping (the global norm).
  if (comm_) comm_->allreduce_mean(g, n);
  // Unscale and check once per effective batch; a non-finite gradient skips the step and changes
  // nothing but the scaler (weights, moments, step count and schedule position stay). Without
  // loss scaling: the same finite check in FP32 (skip, never apply NaN).
  const LossScaleConfig& lsc = config_.loss_scale_config;
  ops_->unscale_and_check(g, n, scaler, lsc.mode != "none");
  // Every rank skips or steps together: the found-inf flag is reduced (max) where it lives.
  if (comm_) comm_->allreduce_max(scaler + kFoundInf, 1);
  if (lsc.mode != "none") ops_->update_loss_scale(loss_scale_params(lsc), scaler);
  commit_buffers(scaler);
  // BatchNorm normalises with each rank's local batch statistics; the running statistics are
  // rank 0's on every rank after each effective batch (as DDP's broadcast_buffers).
  if (comm_)
    for (auto& kv : buffers_) comm_->broadcast(kv.second.raw(), kv.second.nbytes(), 0);
  if (config_.clip_norm > 0) ops_->clip_grad_norm(g, n, config_.clip_norm, scaler, norm_.data<double>());
  else if (config_.track_grad_norm)  // the norm only: an infinite bound never scales
    ops_->clip_grad_norm(g, n, std::numeric_limits<double>::infinity(), scaler, norm_.data<double>());
  Optimizer::Moments m = optimizer_->moments();
  ops_->optimizer_step_and_refresh(optimizer_params(optimizer_->config()), schedule_params(config_.schedule), base_lr_,
                                   masters_.data<float>(), g, m.first, m.second, n, scaler, counters, low_copies());
}

std::map<std::string, Tensor> Session::eval_step(const std::map<std::string, Tensor>& feeds, double* loss, bool* has_loss) {
  DenormalsFlushed flushed(config_.flush_denormals);
  if (training_graph_) return training_graph_->eval_step(feeds, loss, has_loss);
  if (ort_) return ort_->eval_step(feeds, loss, has_loss);
  bool with_loss = loss != nullptr && (loss_.label < 0 || feeds.count(graph_.values[loss_.label].name));
  std::map<int, Tensor> bound;
  Plan& plan = plan_for(false, with_loss, feeds, &bound);
  RunOptions ro;
  ro.training = false;
  plan.run(bound, ro);
  std::map<std::string, Tensor> out;
  for (int v : model_outputs_) out[graph_.values[v].name] = plan.value(v).to(Device::CPU).clone();
  if (with_loss) *loss = plan.value(loss_.loss).to(Device::CPU).to_double_vector().at(0);
  if (has_loss) *has_loss = with_loss;
  return out;
}

std::vector<int> Session::forward_nodes() const {
  if (training_graph_) return training_graph_->graph().topo_order();
  if (ort_) return ort_->graph().topo_order();
  std::vector<int> r;
  for (int n : graph_.topo_order())
    if (static_cast<size_t>(n) < forward_node_count_) r.push_back(n);
  return r;
}

void Session::prepare_batchnorm() {
  OTTER_CHECK(config_.batchnorm == "train" || config_.batchnorm == "frozen", "batchnorm must be train or frozen, got '",
              config_.batchnorm, "'");
  for (size_t n = 0; n < graph_.nodes.size(); ++n) {
    Node& node = graph_.nodes[n];
    if (!node.domain.empty() || node.op_type != "BatchNormalization") continue;
    if (config_.batchnorm == "train") node.attrs["training_mode"] = Attribute::of_int(1);
    if (node.attr_int("training_mode", 0) == 0) continue;
    for (size_t k = 3; k <= 4; ++k) {
      int stat = node.input(k);
      OTTER_CHECK(stat >= 0 && graph_.values[stat].is_initializer, node.describe(), ": its running ",
                  k == 3 ? "mean" : "variance", " must be an initializer to be updated by training");
      if (!buffers_.count(stat)) buffers_[stat] = graph_.values[stat].data.cast(DType::Float32);
      node.outputs.resize(3, -1);
      int& out = graph_.nodes[n].outputs[k - 2];
      if (out < 0) {
        out = graph_.add_value(graph_.unique_name(node.name + (k == 3 ? ":running_mean" : ":running_var")));
        graph_.values[out].producer = static_cast<int>(n);
      }
      buffer_updates_.push_back({graph_.nodes[n].outputs[k - 2], stat});
    }
  }
  if (!buffers_.empty()) {
    std::set<int> all;
    for (auto& kv : buffers_) all.insert(kv.first);
    for (int v : graph_.initializers)
      if (is_floating(graph_.values[v].dtype)) all.insert(v);
    annotate_graph(graph_, all);
  }
}

void Session::export_model(const std::string& path) const {
  if (training_graph_) return training_graph_->export_model(path);
  if (ort_) return ort_->export_model(path);
  check_non_finite();
  if (comm_ && comm_->rank() != 0) return;  // every rank holds the same weights: rank 0 writes
  std::map<std::string, Tensor> replacements;
  for (const ParameterInfo& p : params_) {
    Tensor t = get_parameter(p.name);
    const float* v = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i)
      OTTER_CHECK_KIND(NonFinite, std::isfinite(v[i]), "export: parameter '", p.name, "' holds a non-finite value (", v[i],
                       ") at element ", i, "; nothing was written");
    replacements[p.name] = t;
  }
  for (auto& kv : buffers_) {  // running statistics, in the model's own dtype
    const Value& v = graph_.values[kv.first];
    replacements[v.name] = kv.second.to(Device::CPU).cast(v.dtype);
  }
  otter::export_model(model_bytes_, replacements, path);
}

}  // namespace otter
