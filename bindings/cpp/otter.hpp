// otter.hpp — a header-only C++17 RAII wrapper over the C ABI (capi/include/otter/otter.h).
// Handles are owned by move-only classes; every failing status becomes an otter::cpp::Error
// carrying the status and the C message. Uses nothing but the C API.
#pragma once
#include <otter/otter.h>

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace otter::cpp {

class Error : public std::runtime_error {
 public:
  Error(otter_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  otter_status status() const { return status_; }

 private:
  otter_status status_;
};

inline void check(otter_status s) {
  if (s != OTTER_OK) throw Error(s, otter_last_error());
}

// A tensor the caller owns (or borrows) on the host: dtype, shape and bytes.
struct HostTensor {
  otter_dtype dtype = OTTER_DTYPE_FLOAT32;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  template <class T>
  T* data() { return reinterpret_cast<T*>(bytes.data()); }
  template <class T>
  const T* data() const { return reinterpret_cast<const T*>(bytes.data()); }
  otter_tensor_view view() const {
    return otter_tensor_view{const_cast<unsigned char*>(bytes.data()), dtype, static_cast<int32_t>(shape.size()),
                             shape.data(), OTTER_DEVICE_CPU, 0};
  }
  static HostTensor from_view(const otter_tensor_view& v) {
    HostTensor t;
    t.dtype = static_cast<otter_dtype>(v.dtype);
    t.shape.assign(v.shape, v.shape + v.ndim);
    size_t n = static_cast<size_t>(t.numel()) * otter_dtype_size(t.dtype);
    t.bytes.assign(static_cast<const unsigned char*>(v.data), static_cast<const unsigned char*>(v.data) + n);
    return t;
  }
};

struct TensorInfo {
  std::string name;
  otter_dtype dtype;
  std::vector<int64_t> shape;  // -1: symbolic
};

class Options {
 public:
  Options() { check(otter_options_create(&handle_)); }
  Options(const Options&) = delete;
  Options& operator=(const Options&) = delete;
  ~Options() { otter_options_free(handle_); }
  Options& set(const std::string& key, const std::string& value) {
    check(otter_options_set(handle_, key.c_str(), value.c_str()));
    return *this;
  }
  const otter_options* get() const { return handle_; }

 private:
  otter_options* handle_ = nullptr;
};

class Session {
 public:
  Session(const std::string& model_path, const Options& options) {
    check(otter_session_create_from_file(model_path.c_str(), options.get(), &handle_));
  }
  Session(const void* data, size_t size, const std::string& base_dir, const Options& options) {
    check(otter_session_create_from_buffer(data, size, base_dir.c_str(), options.get(), &handle_));
  }
  Session(Session&& o) noexcept : handle_(o.handle_) { o.handle_ = nullptr; }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session() { otter_session_free(handle_); }

  std::string device() const {
    const char* d = nullptr;
    check(otter_session_device(handle_, &d));
    return d;
  }
  // What computes on the device (otter_session_compute), for logs.
  std::string compute() const {
    const char* d = nullptr;
    check(otter_session_compute(handle_, &d));
    return d;
  }
  std::vector<TensorInfo> inputs() const { return infos(otter_session_input_count, otter_session_input_info); }
  std::vector<TensorInfo> outputs() const { return infos(otter_session_output_count, otter_session_output_info); }
  std::vector<TensorInfo> parameters() const { return infos(otter_session_parameter_count, otter_session_parameter_info); }

  // Appends a scalar to the session's TensorBoard log (option "tensorboard").
  void log_scalar(const std::string& tag, double value) { check(otter_session_log_scalar(handle_, tag.c_str(), value)); }
  // Feeds are borrowed for the call (no copy).
  double train_step(const std::map<std::string, const HostTensor*>& feeds) {
    std::vector<const char*> names;
    std::vector<otter_tensor_view> views;
    for (auto& kv : feeds) {
      names.push_back(kv.first.c_str());
      views.push_back(kv.second->view());
    }
    double loss = 0;
    check(otter_session_train_step(handle_, names.size(), names.data(), views.data(), &loss));
    return loss;
  }

  // Returns the outputs (copied); *loss is set when the labels were fed and loss is not null.
  std::map<std::string, HostTensor> eval_step(const std::map<std::string, const HostTensor*>& feeds, double* loss = nullptr,
                                              bool* has_loss = nullptr) {
    std::vector<const char*> names;
    std::vector<otter_tensor_view> views;
    for (auto& kv : feeds) {
      names.push_back(kv.first.c_str());
      views.push_back(kv.second->view());
    }
    otter_tensor_list* list = nullptr;
    int got_loss = 0;
    check(otter_session_eval_step(handle_, names.size(), names.data(), views.data(), &list, loss, &got_loss));
    std::unique_ptr<otter_tensor_list, void (*)(otter_tensor_list*)> owner(list, otter_tensor_list_free);
    size_t n = 0;
    check(otter_tensor_list_size(list, &n));
    std::map<std::string, HostTensor> out;
    for (size_t i = 0; i < n; ++i) {
      const char* name = nullptr;
      otter_tensor_view v;
      check(otter_tensor_list_get(list, i, &name, &v));
      out[name] = HostTensor::from_view(v);
    }
    if (has_loss) *has_loss = got_loss != 0;
    return out;
  }

  double learning_rate() const {
    double lr = 0;
    check(otter_session_get_learning_rate(handle_, &lr));
    return lr;
  }
  void set_learning_rate(double lr) { check(otter_session_set_learning_rate(handle_, lr)); }
  double stat(const std::string& key) const {
    double v = 0;
    check(otter_session_get_stat(handle_, key.c_str(), &v));
    return v;
  }
  HostTensor parameter(const std::string& name) const {
    for (const TensorInfo& p : parameters())
      if (p.name == name) {
        HostTensor t;
        t.dtype = p.dtype;
        t.shape = p.shape;
        t.bytes.resize(static_cast<size_t>(t.numel()) * otter_dtype_size(p.dtype));
        check(otter_session_get_parameter(handle_, name.c_str(), t.bytes.data(), t.bytes.size()));
        return t;
      }
    throw Error(OTTER_ERROR_NOT_FOUND, "'" + name + "' is not a trainable parameter of this session");
  }
  void set_parameter(const std::string& name, const HostTensor& value) {
    otter_tensor_view v = value.view();
    check(otter_session_set_parameter(handle_, name.c_str(), &v));
  }
  void save_checkpoint(const std::string& path) const { check(otter_session_save_checkpoint(handle_, path.c_str())); }
  void load_checkpoint(const std::string& path) { check(otter_session_load_checkpoint(handle_, path.c_str())); }
  void export_model(const std::string& path) const { check(otter_session_export(handle_, path.c_str())); }
  struct InitializerRole {
    std::string name;
    bool trained;
    std::string reason;
  };
  // Every initializer of the model: trained or not, and why.
  std::vector<InitializerRole> initializer_roles() const {
    size_t n = 0;
    check(otter_session_initializer_count(handle_, &n));
    std::vector<InitializerRole> r;
    for (size_t i = 0; i < n; ++i) {
      const char *name = nullptr, *reason = nullptr;
      int trained = 0;
      check(otter_session_initializer_info(handle_, i, &name, &trained, &reason));
      r.push_back({name, trained != 0, reason});
    }
    return r;
  }
  // Warnings about the session's set-up.
  std::vector<std::string> notes() const {
    size_t n = 0;
    check(otter_session_note_count(handle_, &n));
    std::vector<std::string> r;
    for (size_t i = 0; i < n; ++i) {
      const char* text = nullptr;
      check(otter_session_note(handle_, i, &text));
      r.push_back(text);
    }
    return r;
  }
  // Key/value strings saved in checkpoints and restored by load_checkpoint.
  void set_metadata(const std::string& key, const std::string& value) {
    check(otter_session_set_metadata(handle_, key.c_str(), value.c_str()));
  }
  // The value of `key`, or `fallback` when it was never set (nor loaded from a checkpoint).
  std::string metadata(const std::string& key, const std::string& fallback = "") const {
    const char* v = nullptr;
    otter_status s = otter_session_get_metadata(handle_, key.c_str(), &v);
    if (s == OTTER_ERROR_NOT_FOUND) return fallback;
    check(s);
    return v;
  }
  otter_session* handle() const { return handle_; }

 private:
  template <class Count, class Info>
  std::vector<TensorInfo> infos(Count count, Info info) const {
    size_t n = 0;
    check(count(handle_, &n));
    std::vector<TensorInfo> r;
    for (size_t i = 0; i < n; ++i) {
      const char* name = nullptr;
      otter_dtype dtype;
      int32_t ndim = 0;
      const int64_t* shape = nullptr;
      check(info(handle_, i, &name, &dtype, &ndim, &shape));
      r.push_back({name, dtype, std::vector<int64_t>(shape, shape + ndim)});
    }
    return r;
  }
  otter_session* handle_ = nullptr;
};

}  // namespace otter::cpp
