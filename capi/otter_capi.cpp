// The C shim: each exported function validates its pointers, calls the C++ engine inside
// `guard`, which turns every exception into a status code and a thread-local message, and only
// then writes its out-parameters. Nothing else is exported (see capi/otter.map).
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <thread>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "otter/otter.h"
#include "runtime/core/file_io.h"
#include "runtime/train/npz.h"
#include "kernels/registry.h"
#include "onnx_import/ort_artifacts.h"
#include "runtime/train/session.h"
#include "runtime/train/tensorboard.h"

using otter::Error;
using otter::ErrorKind;

struct otter_options {
  std::map<std::string, std::string> values;
};

struct otter_session {
  std::unique_ptr<otter::Session> session;
  std::string device = "cpu";
  std::string compute;  // otter_session_compute
  struct Info {
    std::string name;
    otter_dtype dtype;
    std::vector<int64_t> shape;
  };
  std::vector<Info> inputs, outputs, params;
  struct NodeInfo {
    std::string name, op_type, dtype, reason;
  };
  std::vector<NodeInfo> nodes;
  bool stepped = false;
  // Option tensorboard: scalars of every `interval`-th effective batch go to an event file.
  struct TensorBoard {
    std::unique_ptr<otter::EventWriter> writer;
    int64_t interval = 1;
    int64_t grad_accum = 1;
    int64_t micro_steps = 0;  // train_step calls since the session was created
    double seconds = 0;       // time inside train_step since the last record
    double samples = 0;       // rows (first dimension of the first input) since the last record
    int64_t batches = 0;      // effective batches since the last record
  } tb;
  // Set while a call is inside the session: a second thread gets OTTER_ERROR_BUSY instead of
  // corrupting it (sessions are not thread-safe; otter.h, "Threads").
  mutable std::atomic<bool> busy{false};
};

struct otter_tensor_list {
  std::vector<std::string> names;
  std::vector<otter::Tensor> tensors;
};

namespace {

thread_local std::string last_error;

otter_status status_of(ErrorKind k) {
  switch (k) {
    case ErrorKind::InvalidArgument: return OTTER_ERROR_INVALID_ARGUMENT;
    case ErrorKind::NotFound: return OTTER_ERROR_NOT_FOUND;
    case ErrorKind::InvalidModel: return OTTER_ERROR_INVALID_MODEL;
    case ErrorKind::Unsupported: return OTTER_ERROR_UNSUPPORTED;
    case ErrorKind::Io: return OTTER_ERROR_IO;
    case ErrorKind::OutOfMemory: return OTTER_ERROR_OUT_OF_MEMORY;
    case ErrorKind::WrongState: return OTTER_ERROR_WRONG_STATE;
    case ErrorKind::Internal: return OTTER_ERROR_INTERNAL;
    case ErrorKind::NonFinite: return OTTER_ERROR_NON_FINITE;
    case ErrorKind::Busy: return OTTER_ERROR_BUSY;
    case ErrorKind::Distributed: return OTTER_ERROR_DISTRIBUTED;
  }
  return OTTER_ERROR_INTERNAL;
}

otter_status fail(otter_status s, const std::string& message) {
  last_error = otter::valid_utf8(message);
  return s;
}

template <class Fn>
otter_status guard(const char* function, Fn fn) {
  try {
    fn();
    return OTTER_OK;
  } catch (const Error& e) {
    return fail(status_of(e.kind()), std::string(function) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    return fail(OTTER_ERROR_OUT_OF_MEMORY, std::string(function) + ": out of memory");
  } catch (const std::exception& e) {
    return fail(OTTER_ERROR_INTERNAL, std::string(function) + ": internal error: " + e.what());
  } catch (...) {
    return fail(OTTER_ERROR_INTERNAL, std::string(function) + ": internal error (unknown exception)");
  }
}

// Marks a session in use for the scope of one call; throws Busy if another thread is inside it.
class SessionUse {
 public:
  explicit SessionUse(const otter_session* s) : s_(s) {
    if (s_->busy.exchange(true, std::memory_order_acquire))
      throw Error("the session is busy: another thread is inside a call on it (a session is not thread-safe: use it "
                  "from one thread at a time, or one session per thread)", ErrorKind::Busy);
  }
  ~SessionUse() { s_->busy.store(false, std::memory_order_release); }
  SessionUse(const SessionUse&) = delete;
  SessionUse& operator=(const SessionUse&) = delete;

 private:
  const otter_session* s_;
};

#define OTTER_REQUIRE(ptr) \
  if (!(ptr)) return fail(OTTER_ERROR_INVALID_ARGUMENT, std::string(__func__) + ": '" #ptr "' is NULL")

// ---- options ----

enum class OptType { String, Number, Integer, Bool, Names };
struct OptSpec {
  OptType type;
  std::vector<std::string> choices;  // for enumerated strings
};

const std::map<std::string, OptSpec>& option_specs() {
  static const std::map<std::string, OptSpec> specs = {
      {"loss", {OptType::String, {"none", "cross_entropy", "mse", "l1", "bce_with_logits"}}},
      {"loss_output", {OptType::String, {}}},
      {"label", {OptType::String, {}}},
      {"reduction", {OptType::String, {"mean", "sum"}}},
      {"ignore_index", {OptType::Integer, {}}},
      {"optimizer", {OptType::String, {"sgd", "adam", "adamw"}}},
      {"lr", {OptType::Number, {}}},
      {"momentum", {OptType::Number, {}}},
      {"weight_decay", {OptType::Number, {}}},
      {"beta1", {OptType::Number, {}}},
      {"beta2", {OptType::Number, {}}},
      {"eps", {OptType::Number, {}}},
      {"nesterov", {OptType::Bool, {}}},
      {"schedule", {OptType::String, {"constant", "linear", "cosine"}}},
      {"warmup_steps", {OptType::Integer, {}}},
      {"total_steps", {OptType::Integer, {}}},
      {"clip_norm", {OptType::Number, {}}},
      {"grad_accum", {OptType::Integer, {}}},
      {"seed", {OptType::Integer, {}}},
      {"trainable", {OptType::Names, {}}},
      {"freeze", {OptType::Names, {}}},
      {"precision", {OptType::String, {"fp32", "fp16", "bf16"}}},
      {"loss_scale", {OptType::String, {}}},
      {"loss_scale_init", {OptType::Number, {}}},
      {"loss_scale_growth_factor", {OptType::Number, {}}},
      {"loss_scale_backoff_factor", {OptType::Number, {}}},
      {"loss_scale_growth_interval", {OptType::Integer, {}}},
      {"loss_scale_hysteresis", {OptType::Integer, {}}},
      {"loss_scale_min", {OptType::Number, {}}},
      {"loss_scale_max", {OptType::Number, {}}},
      {"precision_op", {OptType::Names, {}}},
      {"precision_node", {OptType::Names, {}}},
      {"device", {OptType::String, {}}},
      {"cuda_graphs", {OptType::String, {"on", "off"}}},
      {"denormals", {OptType::String, {"keep", "flush"}}},
      {"batchnorm", {OptType::String, {"train", "frozen"}}},
      {"nonfinite", {OptType::String, {"error", "skip"}}},
      {"tensorboard", {OptType::String, {}}},
      {"tensorboard_interval", {OptType::Integer, {}}},
      {"distributed", {OptType::String, {"auto", "mpi", "off"}}},
      {"dist_timeout", {OptType::Number, {}}},
      {"training_graph", {OptType::String, {"auto", "on", "off"}}},
      {"training_init", {OptType::String, {"auto", "run", "skip"}}},
      {"ort_checkpoint", {OptType::String, {}}},
  };
  return specs;
}

bool parse_double(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (*end != '\0' || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

bool parse_int(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (*end != '\0' || errno == ERANGE) return false;
  *out = v;
  return true;
}

std::vector<std::string> split_names(const std::string& s) {
  std::vector<std::string> r;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) r.push_back(item);
  return r;
}

void validate_option(const std::string& key, const std::string& value) {
  auto it = option_specs().find(key);
  if (it == option_specs().end()) throw Error("unknown option key '" + key + "'", ErrorKind::NotFound);
  const OptSpec& spec = it->second;
  double d;
  int64_t i;
  switch (spec.type) {
    case OptType::String:
      if (!spec.choices.empty()) {
        bool ok = false;
        std::string list;
        for (auto& c : spec.choices) {
          ok = ok || c == value;
          list += (list.empty() ? "" : ", ") + c;
        }
        OTTER_CHECK(ok, "option '", key, "': '", value, "' is not one of ", list);
      }
      if (key == "loss_scale")
        OTTER_CHECK(value == "dynamic" || value == "none" || (parse_double(value, &d) && d > 0), "option 'loss_scale': '",
                    value, "' is not dynamic, none or a positive number");
      if (key == "tensorboard") OTTER_CHECK(!value.empty(), "option 'tensorboard': the folder is an empty string");
      if (key == "device")
        OTTER_CHECK(value == "auto" || value == "cpu" || value == "cuda" || value.rfind("cuda:", 0) == 0,
                    "option 'device': '", value, "' is not auto, cpu, cuda or cuda:N");
      break;
    case OptType::Number:
      OTTER_CHECK(parse_double(value, &d), "option '", key, "': '", value, "' is not a finite number");
      if (key == "dist_timeout") OTTER_CHECK(d > 0, "option 'dist_timeout': must be > 0 seconds, got ", value);
      break;
    case OptType::Integer:
      OTTER_CHECK(parse_int(value, &i), "option '", key, "': '", value, "' is not an integer (or is out of range)");
      if (key == "grad_accum" || key == "tensorboard_interval")
        OTTER_CHECK(i >= 1, "option '", key, "': must be >= 1, got ", i);
      if (key == "warmup_steps" || key == "total_steps") OTTER_CHECK(i >= 0, "option '", key, "': must be >= 0, got ", i);
      break;
    case OptType::Bool:
      OTTER_CHECK(value == "true" || value == "false" || value == "1" || value == "0", "option '", key, "': '", value,
                  "' is not true or false");
      break;
    case OptType::Names:
      if (key == "precision_op" || key == "precision_node")
        for (const std::string& item : split_names(value)) {
          size_t eq = item.find('=');
          OTTER_CHECK(eq != std::string::npos && eq > 0, "option '", key, "': '", item, "' is not NAME=lower|fp32|follow");
          otter::parse_precision_class(item.substr(eq + 1));
        }
      break;
  }
}

otter::TrainConfig config_from(const otter_options* options, std::string* device) {
  otter::TrainConfig c;
  *device = "cpu";
  if (!options) return c;
  const auto& v = options->values;
  auto get = [&](const char* k) -> const std::string* {
    auto it = v.find(k);
    return it == v.end() ? nullptr : &it->second;
  };
  auto num = [&](const char* k, double* dst) {
    if (auto s = get(k)) parse_double(*s, dst);
  };
  auto opt_num = [&](const char* k, std::optional<double>* dst) {
    double d = 0;
    if (auto s = get(k); s && parse_double(*s, &d)) *dst = d;
  };
  auto integer = [&](const char* k, int64_t* dst) {
    if (auto s = get(k)) parse_int(*s, dst);
  };
  if (auto s = get("loss")) c.loss.kind = *s;
  if (auto s = get("loss_output")) c.loss.output = *s;
  if (auto s = get("label")) c.loss.label = *s;
  if (auto s = get("reduction")) c.loss.reduction = *s;
  if (auto s = get("ignore_index")) {
    int64_t i = 0;
    parse_int(*s, &i);
    c.loss.ignore_index = i;
  }
  if (auto s = get("optimizer")) c.optimizer.kind = *s;
  opt_num("lr", &c.optimizer.lr);
  num("momentum", &c.optimizer.momentum);
  opt_num("weight_decay", &c.optimizer.weight_decay);
  num("beta1", &c.optimizer.beta1);
  num("beta2", &c.optimizer.beta2);
  num("eps", &c.optimizer.eps);
  if (auto s = get("nesterov")) c.optimizer.nesterov = *s == "true" || *s == "1";
  if (auto s = get("schedule")) c.schedule.kind = *s;
  integer("warmup_steps", &c.schedule.warmup_steps);
  integer("total_steps", &c.schedule.total_steps);
  num("clip_norm", &c.clip_norm);
  integer("grad_accum", &c.grad_accum);
  if (auto s = get("seed")) {
    int64_t i = 0;
    parse_int(*s, &i);
    c.seed = static_cast<uint64_t>(i);
  }
  if (auto s = get("trainable")) c.trainable = split_names(*s);
  if (auto s = get("freeze")) c.frozen = split_names(*s);
  if (auto s = get("precision")) c.precision = *s;
  if (auto s = get("batchnorm")) c.batchnorm = *s;
  if (auto s = get("nonfinite")) c.nonfinite = *s;
  if (auto s = get("training_graph")) c.training_graph = *s;
  if (auto s = get("training_init")) c.training_init = *s;
  if (auto s = get("ort_checkpoint")) c.ort_checkpoint = *s;
  if (auto s = get("loss_scale")) {
    double d = 0;
    if (*s == "dynamic" || *s == "none") c.loss_scale = *s;
    else if (parse_double(*s, &d)) {
      c.loss_scale = "static";
      c.loss_scale_config.init_scale = d;
    }
  }
  num("loss_scale_init", &c.loss_scale_config.init_scale);
  num("loss_scale_growth_factor", &c.loss_scale_config.growth_factor);
  num("loss_scale_backoff_factor", &c.loss_scale_config.backoff_factor);
  integer("loss_scale_growth_interval", &c.loss_scale_config.growth_interval);
  integer("loss_scale_hysteresis", &c.loss_scale_config.hysteresis);
  num("loss_scale_min", &c.loss_scale_config.min_scale);
  num("loss_scale_max", &c.loss_scale_config.max_scale);
  auto overrides = [&](const char* k, std::map<std::string, otter::PrecisionClass>* dst) {
    if (auto s = get(k))
      for (const std::string& item : split_names(*s)) {
        size_t eq = item.find('=');
        (*dst)[item.substr(0, eq)] = otter::parse_precision_class(item.substr(eq + 1));
      }
  };
  overrides("precision_op", &c.precision_by_op);
  overrides("precision_node", &c.precision_by_node);
  if (auto s = get("device")) c.device = otter::resolve_device(*s);
  *device = c.device == otter::Device::CPU ? "cpu" : "cuda:0";
  if (auto s = get("cuda_graphs")) c.cuda_graphs = *s == "on";
  if (auto s = get("denormals")) c.flush_denormals = *s == "flush";
  c.track_grad_norm = get("tensorboard") != nullptr;  // logged as train/grad_norm
  if (auto s = get("distributed")) c.dist.mode = *s;
  num("dist_timeout", &c.dist.timeout_s);
  return c;
}

otter_dtype to_c(otter::DType t) { return static_cast<otter_dtype>(static_cast<int32_t>(t)); }

void describe(otter_session* s) {
  auto fill = [](const std::vector<std::pair<std::string, otter::ValueInfo>>& src, std::vector<otter_session::Info>& dst) {
    for (auto& p : src) {
      std::vector<int64_t> shape = p.second.shape;
      for (auto& d : shape) d = d < 0 ? -1 : d;
      dst.push_back({p.first, to_c(p.second.dtype), shape});
    }
  };
  fill(s->session->train_inputs(), s->inputs);
  fill(s->session->outputs(), s->outputs);
  for (auto& p : s->session->parameters()) s->params.push_back({p.name, OTTER_DTYPE_FLOAT32, p.shape});
  const otter::Graph& g = s->session->graph();
  for (int n : s->session->forward_nodes()) {
    const otter::Node& node = g.nodes[n];
    int out = node.outputs.empty() ? -1 : node.outputs[0];
    std::string dtype = out >= 0 ? otter::dtype_name(g.values[out].dtype) : "none";
    std::string reason = "not touched by the precision policy";
    if (const otter::PrecisionDecision* d = s->session->precision_of(n)) {
      dtype = otter::dtype_name(d->dtype);
      reason = d->reason;
    } else if (node.name.rfind("autocast/", 0) == 0) {
      reason = "cast inserted by the precision policy";
    }
    s->nodes.push_back({node.name, node.domain.empty() ? node.op_type : node.domain + "." + node.op_type, dtype, reason});
  }
}

otter::Tensor tensor_from_view(const otter_tensor_view& v, const std::string& what) {
  OTTER_CHECK(v.ndim >= 0 && v.ndim <= 16, what, ": ndim ", v.ndim, " is out of range");
  OTTER_CHECK(v.ndim == 0 || v.shape, what, ": shape is NULL");
  OTTER_CHECK(otter::is_supported_dtype(v.dtype), what, ": unknown dtype ", v.dtype);
  OTTER_CHECK_KIND(Unsupported, v.device_type == OTTER_DEVICE_CPU, what, ": only CPU tensors are accepted by this build");
  otter::Shape shape(v.shape, v.shape + v.ndim);
  for (int64_t d : shape) OTTER_CHECK(d >= 0, what, ": negative dimension ", d);
  size_t bytes = 0;
  try {  // the byte count of a user's shape is overflow-checked (a wrapped count would pass the NULL check)
    bytes = static_cast<size_t>(otter::shape_numel(shape)) * otter::dtype_size(static_cast<otter::DType>(v.dtype));
  } catch (const Error& e) {
    OTTER_FAIL(what, ": ", e.what());
  }
  otter::Tensor t = otter::Tensor::view(static_cast<otter::DType>(v.dtype), shape, nullptr, v.data);
  OTTER_CHECK(v.data || bytes == 0, what, ": data is NULL");
  return t;
}

std::map<std::string, otter::Tensor> feeds_from(size_t n, const char* const* names, const otter_tensor_view* inputs) {
  OTTER_CHECK(n == 0 || (names && inputs), "names or inputs is NULL");
  std::map<std::string, otter::Tensor> feeds;
  for (size_t i = 0; i < n; ++i) {
    OTTER_CHECK(names[i], "names[", i, "] is NULL");
    OTTER_CHECK(!feeds.count(names[i]), "input '", names[i], "' is given twice");
    feeds[names[i]] = tensor_from_view(inputs[i], std::string("input '") + names[i] + "'");
  }
  return feeds;
}

// INVALID_ARGUMENT for an index past the end of a list of `count` entries.
otter_status out_of_range(const char* function, size_t index, size_t count) {
  return fail(OTTER_ERROR_INVALID_ARGUMENT, std::string(function) + ": index " + std::to_string(index) +
                                                " is out of range (count " + std::to_string(count) + ")");
}

otter_status info_at(const std::vector<otter_session::Info>& list, size_t index, const char** name, otter_dtype* dtype,
                     int32_t* ndim, const int64_t** shape) {
  if (index >= list.size())
    return fail(OTTER_ERROR_INVALID_ARGUMENT, "index " + std::to_string(index) + " is out of range (count " +
                                                  std::to_string(list.size()) + ")");
  const auto& i = list[index];
  if (name) *name = i.name.c_str();
  if (dtype) *dtype = i.dtype;
  if (ndim) *ndim = static_cast<int32_t>(i.shape.size());
  if (shape) *shape = i.shape.data();
  return OTTER_OK;
}

}  // namespace

extern "C" {

uint32_t otter_api_version(void) { return OTTER_API_VERSION; }
const char* otter_version(void) { return OTTER_VERSION_STRING; }
const char* otter_last_error(void) { return last_error.c_str(); }

const char* otter_status_name(otter_status status) {
  // C callers may pass any int: read it as one (a load of an out-of-range enum is undefined).
  int s = 0;
  std::memcpy(&s, &status, sizeof s);
  switch (s) {
    case OTTER_OK: return "OTTER_OK";
    case OTTER_ERROR_INVALID_ARGUMENT: return "OTTER_ERROR_INVALID_ARGUMENT";
    case OTTER_ERROR_NOT_FOUND: return "OTTER_ERROR_NOT_FOUND";
    case OTTER_ERROR_INVALID_MODEL: return "OTTER_ERROR_INVALID_MODEL";
    case OTTER_ERROR_UNSUPPORTED: return "OTTER_ERROR_UNSUPPORTED";
    case OTTER_ERROR_IO: return "OTTER_ERROR_IO";
    case OTTER_ERROR_OUT_OF_MEMORY: return "OTTER_ERROR_OUT_OF_MEMORY";
    case OTTER_ERROR_WRONG_STATE: return "OTTER_ERROR_WRONG_STATE";
    case OTTER_ERROR_INTERNAL: return "OTTER_ERROR_INTERNAL";
    case OTTER_ERROR_NON_FINITE: return "OTTER_ERROR_NON_FINITE";
    case OTTER_ERROR_BUSY: return "OTTER_ERROR_BUSY";
    case OTTER_ERROR_DISTRIBUTED: return "OTTER_ERROR_DISTRIBUTED";
  }
  return "OTTER_STATUS_UNKNOWN";
}

size_t otter_dtype_size(otter_dtype dtype) {
  int32_t code = 0;
  std::memcpy(&code, &dtype, sizeof code);  // any int from C (see otter_status_name)
  return otter::is_supported_dtype(code) ? otter::dtype_size(static_cast<otter::DType>(code)) : 0;
}

otter_status otter_options_create(otter_options** out) {
  OTTER_REQUIRE(out);
  return guard(__func__, [&] { *out = new otter_options(); });
}

void otter_options_free(otter_options* options) { delete options; }

otter_status otter_options_set(otter_options* options, const char* key, const char* value) {
  OTTER_REQUIRE(options);
  OTTER_REQUIRE(key);
  OTTER_REQUIRE(value);
  return guard(__func__, [&] {
    validate_option(key, value);
    options->values[key] = value;
  });
}

otter_status otter_options_set_double(otter_options* options, const char* key, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  return otter_options_set(options, key, buf);
}

otter_status otter_options_set_int(otter_options* options, const char* key, int64_t value) {
  return otter_options_set(options, key, std::to_string(value).c_str());
}

otter_status otter_options_get(const otter_options* options, const char* key, const char** out_value) {
  OTTER_REQUIRE(options);
  OTTER_REQUIRE(key);
  OTTER_REQUIRE(out_value);
  auto it = options->values.find(key);
  if (it == options->values.end()) {
    if (!option_specs().count(key)) return fail(OTTER_ERROR_NOT_FOUND, std::string("unknown option key '") + key + "'");
    return fail(OTTER_ERROR_NOT_FOUND, std::string("option '") + key + "' is not set (its default applies)");
  }
  *out_value = it->second.c_str();
  return OTTER_OK;
}

static otter_status create_session(otter::LoadedModel (*load)(const void*, size_t, const char*), const void* data,
                                   size_t size, const char* base, const otter_options* options, otter_session** out,
                                   const char* function) {
  return guard(function, [&] {
    std::string device;
    otter::TrainConfig config = config_from(options, &device);
    OTTER_CHECK(!options || options->values.count("tensorboard") || !options->values.count("tensorboard_interval"),
                "option 'tensorboard_interval' needs the option 'tensorboard' (a folder)");
    auto s = std::make_unique<otter_session>();
    s->session = std::make_unique<otter::Session>(load(data, size, base), config);
    s->device = device;
    s->compute = otter::describe_compute(s->session->device());
    describe(s.get());
    if (options) {
      auto tb = options->values.find("tensorboard");  // created once the model is known to load
      if (tb != options->values.end()) {
        s->tb.writer = std::make_unique<otter::EventWriter>(tb->second);
        auto every = options->values.find("tensorboard_interval");
        if (every != options->values.end()) parse_int(every->second, &s->tb.interval);
        s->tb.grad_accum = config.grad_accum;
      }
    }
    *out = s.release();
  });
}

otter_status otter_session_create_from_file(const char* model_path, const otter_options* options, otter_session** out) {
  OTTER_REQUIRE(model_path);
  OTTER_REQUIRE(out);
  return create_session([](const void* p, size_t, const char*) { return otter::load_model_file(static_cast<const char*>(p)); },
                        model_path, 0, nullptr, options, out, __func__);
}

otter_status otter_session_create_from_buffer(const void* model_data, size_t model_size, const char* base_dir,
                                              const otter_options* options, otter_session** out) {
  OTTER_REQUIRE(model_data);
  OTTER_REQUIRE(out);
  return create_session([](const void* p, size_t n, const char* base) { return otter::load_model_buffer(p, n, base ? base : "."); },
                        model_data, model_size, base_dir, options, out, __func__);
}

void otter_session_free(otter_session* session) {
  if (!session) return;
  while (session->busy.exchange(true, std::memory_order_acquire)) std::this_thread::yield();  // wait for a running call
  delete session;
}

otter_status otter_session_device(const otter_session* s, const char** out) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(out);
  *out = s->device.c_str();
  return OTTER_OK;
}

otter_status otter_session_compute(const otter_session* s, const char** out) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(out);
  *out = s->compute.c_str();
  return OTTER_OK;
}

otter_status otter_session_input_count(const otter_session* s, size_t* out) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(out);
  *out = s->inputs.size();
  return OTTER_OK;
}
otter_status otter_session_input_info(const otter_session* s, size_t i, const char** name, otter_dtype* dtype,
                                      int32_t* ndim, const int64_t** shape) {
  OTTER_REQUIRE(s);
  return info_at(s->inputs, i, name, dtype, ndim, shape);
}
otter_status otter_session_output_count(const otter_session* s, size_t* out) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(out);
  *out = s->outputs.size();
  return OTTER_OK;
}
otter_status otter_session_output_info(const otter_session* s, size_t i, const char** name, otter_dtype* dtype,
                                       int32_t* ndim, const int64_t** shape) {
  OTTER_REQUIRE(s);
  return info_at(s->outputs, i, name, dtype, ndim, shape);
}
otter_status otter_session_parameter_count(const otter_session* s, size_t* out) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(out);
  *out = s->params.size();
  return OTTER_OK;
}
otter_status otter_session_parameter_info(const otter_session* s, size_t i, const char** name, otter_dtype* dtype,
                                          int32_t* ndim, const int64_t** shape) {
  OTTER_REQUIRE(s);
  return info_at(s->params, i, name, dtype, ndim, shape);
}

otter_status otter_session_node_count(const otter_session* s, size_t* out) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(out);
  *out = s->nodes.size();
  return OTTER_OK;
}

otter_status otter_session_node_info(const otter_session* s, size_t index, const char** name, const char** op_type,
                                     const char** dtype) {
  OTTER_REQUIRE(s);
  if (index >= s->nodes.size())
    return out_of_range("otter_session_node_info", index, s->nodes.size());
  if (name) *name = s->nodes[index].name.c_str();
  if (op_type) *op_type = s->nodes[index].op_type.c_str();
  if (dtype) *dtype = s->nodes[index].dtype.c_str();
  return OTTER_OK;
}

otter_status otter_session_node_precision(const otter_session* s, size_t index, const char** out_reason) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(out_reason);
  if (index >= s->nodes.size())
    return out_of_range("otter_session_node_precision", index, s->nodes.size());
  *out_reason = s->nodes[index].reason.c_str();
  return OTTER_OK;
}

otter_status otter_checkpoint_export(const char* checkpoint_path, const char* model_path, const char* out_path) {
  OTTER_REQUIRE(checkpoint_path);
  OTTER_REQUIRE(model_path);
  OTTER_REQUIRE(out_path);
  return guard(__func__, [&] {
    OTTER_CHECK(!otter::same_file(out_path, checkpoint_path), "the output '", out_path, "' is the checkpoint itself");
    OTTER_CHECK(!otter::same_file(out_path, model_path), "the output '", out_path,
                "' is the input model itself (write the trained model to another file)");
    if (otter::is_ort_checkpoint_file(checkpoint_path)) {
      // An ONNX Runtime checkpoint (ORT artifacts): its parameters into MODEL's initializers, or
      // into an eval_model.onnx whose parameters are inputs.
      otter::OrtCheckpoint c = otter::read_ort_checkpoint(checkpoint_path);
      otter::LoadedModel model = otter::load_model_file(model_path);
      std::map<std::string, otter::Tensor> ort_params;
      bool as_inputs = false;
      for (auto* group : {&c.trainable, &c.frozen})
        for (auto& kv : *group) {
          int v = model.graph.find_value(kv.first);
          if (v < 0) continue;
          as_inputs = as_inputs || !model.graph.values[v].is_initializer;
          ort_params[kv.first] = kv.second;
        }
      OTTER_CHECK(!ort_params.empty(), "no parameter of the ORT checkpoint '", checkpoint_path, "' is in '", model_path, "'");
      if (as_inputs) otter::export_ort_eval_model(model.model_bytes, ort_params, out_path);
      else otter::export_model(model.model_bytes, ort_params, out_path);
      return;
    }
    auto params = otter::read_checkpoint_parameters(checkpoint_path);
    otter::LoadedModel model = otter::load_model_file(model_path);
    for (auto& kv : otter::read_checkpoint_buffers(checkpoint_path)) {  // running statistics, model dtype
      int v = model.graph.find_value(kv.first);
      OTTER_CHECK(v >= 0, "checkpoint buffer '", kv.first, "' is not an initializer of the model");
      params[kv.first] = kv.second.cast(model.graph.values[v].dtype);
    }
    otter::export_model(model.model_bytes, params, out_path);
  });
}

otter_status otter_session_train_step(otter_session* s, size_t n, const char* const* names,
                                      const otter_tensor_view* inputs, double* out_loss) {
  OTTER_REQUIRE(s);
  return guard(__func__, [&] {
    SessionUse use(s);
    auto feeds = feeds_from(n, names, inputs);
    if (!s->tb.writer) {
      s->session->train_step(feeds, out_loss);
      s->stepped = true;
      return;
    }
    // With a TensorBoard log: time the step, and after every interval-th effective batch read the
    // statistics back (a synchronisation on CUDA) and append them.
    auto& tb = s->tb;
    bool ends_batch = (tb.micro_steps + 1) % tb.grad_accum == 0;
    bool record = ends_batch && (tb.batches + 1) % tb.interval == 0;
    double lr = record ? s->session->stats().lr : 0;  // the rate this step uses
    auto t0 = std::chrono::steady_clock::now();
    s->session->train_step(feeds, out_loss);
    s->stepped = true;
    tb.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    tb.micro_steps += 1;
    for (size_t i = 0; i < n; ++i)  // the batch: the first dimension of the caller's first input
      if (inputs[i].ndim >= 1) {
        tb.samples += static_cast<double>(inputs[i].shape[0]);
        break;
      }
    if (!ends_batch) return;
    tb.batches += 1;
    if (!record) return;
    const otter::StepStats& st = s->session->stats();
    std::vector<std::pair<std::string, double>> scalars = {
        {"train/loss", st.last_loss},
        {"train/learning_rate", lr},
        {"train/loss_scale", s->session->loss_scale()},
        {"train/skipped_steps", double(st.skipped_steps)},
        {"train/step_time_ms", tb.seconds / double(tb.batches) * 1e3},
        {"train/samples_per_second", tb.seconds > 0 ? tb.samples / tb.seconds : 0.0}};
    if (!st.last_step_skipped) scalars.push_back({"train/grad_norm", st.last_grad_norm});
    tb.seconds = tb.samples = 0;
    tb.batches = 0;
    try {
      tb.writer->add_scalars(st.step + st.skipped_steps, scalars);
    } catch (const Error& e) {
      tb.writer.reset();
      throw Error(std::string("the step was applied, but the TensorBoard log failed (logging stops): ") + e.what(),
                  ErrorKind::Io);
    }
  });
}

otter_status otter_session_log_scalar(otter_session* s, const char* tag, double value) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(tag);
  return guard(__func__, [&] {
    SessionUse use(s);
    OTTER_CHECK_KIND(WrongState, s->tb.writer, "the session writes no TensorBoard log (set the option 'tensorboard')");
    OTTER_CHECK(tag[0] != '\0', "the tag is empty");
    const otter::StepStats& st = s->session->stats();
    s->tb.writer->add_scalar(st.step + st.skipped_steps, otter::valid_utf8(tag), value);
  });
}

otter_status otter_session_eval_step(otter_session* s, size_t n, const char* const* names,
                                     const otter_tensor_view* inputs, otter_tensor_list** out_outputs,
                                     double* out_loss, int* out_has_loss) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(out_outputs);
  return guard(__func__, [&] {
    SessionUse use(s);
    double loss = 0;
    auto feeds = feeds_from(n, names, inputs);
    bool want_loss = out_loss != nullptr;
    bool has_loss = false;
    auto outputs = s->session->eval_step(feeds, want_loss ? &loss : nullptr, &has_loss);
    auto list = std::make_unique<otter_tensor_list>();
    for (auto& o : s->outputs) {
      list->names.push_back(o.name);
      list->tensors.push_back(outputs.at(o.name));
    }
    *out_outputs = list.release();
    if (out_loss && has_loss) *out_loss = loss;
    if (out_has_loss) *out_has_loss = has_loss ? 1 : 0;
  });
}

otter_status otter_session_get_learning_rate(const otter_session* s, double* out) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(out);
  return guard(__func__, [&] {
    SessionUse use(s);
    *out = s->session->learning_rate();
  });
}

otter_status otter_session_set_learning_rate(otter_session* s, double lr) {
  OTTER_REQUIRE(s);
  return guard(__func__, [&] {
    SessionUse use(s);
    s->session->set_learning_rate(lr);
  });
}

otter_status otter_session_get_parameter(const otter_session* s, const char* name, void* buffer, size_t bytes) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(name);
  OTTER_REQUIRE(buffer);
  return guard(__func__, [&] {
    SessionUse use(s);
    otter::Tensor t;
    try {
      t = s->session->get_parameter(name);
    } catch (const Error& e) {
      throw Error(e.what(), ErrorKind::NotFound);
    }
    OTTER_CHECK(bytes == t.nbytes(), "parameter '", name, "' has ", t.nbytes(), " bytes (", otter::dtype_name(t.dtype()), " ",
                otter::shape_str(t.shape()),
                "); the buffer has ", bytes);
    std::memcpy(buffer, t.raw(), bytes);
  });
}

otter_status otter_session_set_parameter(otter_session* s, const char* name, const otter_tensor_view* value) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(name);
  OTTER_REQUIRE(value);
  return guard(__func__, [&] {
    SessionUse use(s);
    bool known = false;
    for (auto& p : s->params) known = known || p.name == name;
    if (!known) throw Error(std::string("'") + name + "' is not a trainable parameter of this session", ErrorKind::NotFound);
    s->session->set_parameter(name, tensor_from_view(*value, std::string("parameter '") + name + "'"));
  });
}

otter_status otter_session_get_stat(const otter_session* s, const char* key, double* out) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(key);
  OTTER_REQUIRE(out);
  // Each statistic: how to read it from the session and its stats (read back from the device).
  using Reader = double (*)(const otter::Session&, const otter::StepStats&);
  static const std::map<std::string, Reader> readers = {
      {"step", [](const otter::Session&, const otter::StepStats& st) { return double(st.step); }},
      {"micro_step", [](const otter::Session&, const otter::StepStats& st) { return double(st.micro_step); }},
      {"last_loss", [](const otter::Session&, const otter::StepStats& st) { return st.last_loss; }},
      {"learning_rate", [](const otter::Session&, const otter::StepStats& st) { return st.lr; }},
      {"grad_norm", [](const otter::Session&, const otter::StepStats& st) { return st.last_grad_norm; }},
      {"loss_scale", [](const otter::Session& ss, const otter::StepStats&) { return ss.loss_scale(); }},
      {"skipped_steps", [](const otter::Session&, const otter::StepStats& st) { return double(st.skipped_steps); }},
      {"arena_bytes", [](const otter::Session& ss, const otter::StepStats&) { return double(ss.train_memory().arena_bytes); }},
      {"intermediate_bytes",
       [](const otter::Session& ss, const otter::StepStats&) { return double(ss.train_memory().intermediate_bytes); }},
      {"captured_steps", [](const otter::Session&, const otter::StepStats& st) { return double(st.captured_steps); }},
      {"plan_seconds", [](const otter::Session&, const otter::StepStats& st) { return st.plan_seconds; }},
      {"device_peak_bytes", [](const otter::Session& ss, const otter::StepStats&) { return double(ss.device_peak_bytes()); }},
      {"rank", [](const otter::Session& ss, const otter::StepStats&) { return double(ss.rank()); }},
      {"world_size", [](const otter::Session& ss, const otter::StepStats&) { return double(ss.world_size()); }},
  };
  auto it = readers.find(key);
  if (it == readers.end()) return fail(OTTER_ERROR_NOT_FOUND, std::string("otter_session_get_stat: unknown statistic '") + key + "'");
  if (it->first == "last_loss" && !s->stepped)
    return fail(OTTER_ERROR_WRONG_STATE, "otter_session_get_stat: 'last_loss' is not available before the first train_step");
  return guard(__func__, [&] {
    SessionUse use(s);
    *out = it->second(*s->session, s->session->stats());
  });
}

otter_status otter_session_initializer_count(const otter_session* s, size_t* out) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(out);
  *out = s->session->initializer_roles().size();
  return OTTER_OK;
}

otter_status otter_session_initializer_info(const otter_session* s, size_t index, const char** name, int* trained,
                                            const char** reason) {
  OTTER_REQUIRE(s);
  const auto& roles = s->session->initializer_roles();
  if (index >= roles.size())
    return out_of_range("otter_session_initializer_info", index, roles.size());
  if (name) *name = roles[index].name.c_str();
  if (trained) *trained = roles[index].trained ? 1 : 0;
  if (reason) *reason = roles[index].reason.c_str();
  return OTTER_OK;
}

otter_status otter_session_note_count(const otter_session* s, size_t* out) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(out);
  *out = s->session->notes().size();
  return OTTER_OK;
}

otter_status otter_session_note(const otter_session* s, size_t index, const char** out_text) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(out_text);
  const auto& notes = s->session->notes();
  if (index >= notes.size())
    return out_of_range("otter_session_note", index, notes.size());
  *out_text = notes[index].c_str();
  return OTTER_OK;
}

otter_status otter_session_set_metadata(otter_session* s, const char* key, const char* value) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(key);
  OTTER_REQUIRE(value);
  return guard(__func__, [&] {
    SessionUse use(s);
    s->session->set_user_metadata(key, value);
  });
}

otter_status otter_session_get_metadata(const otter_session* s, const char* key, const char** out_value) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(key);
  OTTER_REQUIRE(out_value);
  return guard(__func__, [&] {
    SessionUse use(s);
    const auto& m = s->session->user_metadata();
    auto it = m.find(key);
    if (it == m.end()) throw Error(std::string("no metadata '") + key + "' (set it, or load a checkpoint that has it)", ErrorKind::NotFound);
    *out_value = it->second.c_str();
  });
}

otter_status otter_session_save_checkpoint(const otter_session* s, const char* path) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(path);
  return guard(__func__, [&] {
    SessionUse use(s);
    s->session->save_checkpoint(path);
  });
}

otter_status otter_session_load_checkpoint(otter_session* s, const char* path) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(path);
  return guard(__func__, [&] {
    SessionUse use(s);
    s->session->load_checkpoint(path);
  });
}

otter_status otter_session_export(const otter_session* s, const char* path) {
  OTTER_REQUIRE(s);
  OTTER_REQUIRE(path);
  return guard(__func__, [&] {
    SessionUse use(s);
    s->session->export_model(path);
  });
}

otter_status otter_tensor_list_size(const otter_tensor_list* list, size_t* out) {
  OTTER_REQUIRE(list);
  OTTER_REQUIRE(out);
  *out = list->tensors.size();
  return OTTER_OK;
}

otter_status otter_tensor_list_get(const otter_tensor_list* list, size_t index, const char** out_name,
                                   otter_tensor_view* out_view) {
  OTTER_REQUIRE(list);
  OTTER_REQUIRE(out_view);
  if (index >= list->tensors.size())
    return out_of_range("otter_tensor_list_get", index, list->tensors.size());
  const otter::Tensor& t = list->tensors[index];
  if (out_name) *out_name = list->names[index].c_str();
  out_view->data = const_cast<void*>(t.raw());
  out_view->dtype = to_c(t.dtype());
  out_view->ndim = static_cast<int32_t>(t.rank());
  out_view->shape = t.shape().data();
  out_view->device_type = OTTER_DEVICE_CPU;
  out_view->device_id = 0;
  return OTTER_OK;
}

void otter_tensor_list_free(otter_tensor_list* list) { delete list; }

otter_status otter_npz_load(const char* path, otter_tensor_list** out_list) {
  OTTER_REQUIRE(path);
  OTTER_REQUIRE(out_list);
  return guard(__func__, [&] {
    auto arrays = otter::read_npz(path);
    auto list = std::make_unique<otter_tensor_list>();
    for (auto& kv : arrays) {
      list->names.push_back(kv.first);
      list->tensors.push_back(kv.second);
    }
    *out_list = list.release();
  });
}

otter_status otter_npz_save(const char* path, size_t num, const char* const* names, const otter_tensor_view* tensors) {
  OTTER_REQUIRE(path);
  return guard(__func__, [&] { otter::write_npz(path, feeds_from(num, names, tensors)); });
}

}  // extern "C"
