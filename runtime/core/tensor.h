// A dense, row-major tensor in host memory: dtype, shape and a shared byte buffer. A tensor can
// own its memory or be a view into a larger buffer (the execution arena, the flat parameter
// buffers), which keeps the owner alive. Shapes are int64 dims; a negative dim appears only in
// IR-level (symbolic) shapes, never in a tensor.
#pragma once
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/device.h"
#include "runtime/core/dtype.h"
#include "runtime/core/error.h"

namespace otter {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
// The product of dims [begin, end) (1 for an empty range): outer/inner sizes around an axis.
int64_t shape_numel(const Shape& shape, size_t begin, size_t end);
std::string shape_str(const Shape& shape);
// Row-major strides in elements.
std::vector<int64_t> shape_strides(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  // A new zero-filled tensor that owns its memory (on the host, or on a device).
  Tensor(DType dtype, Shape shape, Device device = Device::CPU);
  // A new host tensor whose bytes are not zeroed: for a caller that writes every byte before
  // anything reads it (a model's raw initializer data, copied in at once).
  static Tensor uninitialized(DType dtype, Shape shape);
  // A view of `data` kept alive by `owner`.
  static Tensor view(DType dtype, Shape shape, std::shared_ptr<void> owner, void* data, Device device = Device::CPU);
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, Shape shape) {
    Tensor t(DTypeOf<T>::value, std::move(shape));
    OTTER_CHECK(static_cast<size_t>(t.numel()) == values.size(), "from_vector: ", values.size(),
                " values for shape ", shape_str(t.shape()));
    if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * sizeof(T));
    return t;
  }
  template <typename T>
  static Tensor scalar(T value) { return from_vector<T>({value}, {}); }

  bool defined() const { return dtype_ != DType::Undefined; }
  Device device() const { return device_; }
  // A copy on `device` (this tensor itself if it is already there).
  Tensor to(Device device) const;
  // Copies `src` (same dtype and element count, any device) into this tensor's memory.
  void copy_from(const Tensor& src);
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  void* raw() { return data_; }
  const void* raw() const { return data_; }
  template <typename T>
  T* data() {
    OTTER_CHECK(DTypeOf<T>::value == dtype_, "tensor of ", dtype_name(dtype_), " read as ",
                dtype_name(DTypeOf<T>::value));
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* data() const { return const_cast<Tensor*>(this)->data<T>(); }

  // A deep copy that owns its memory, on the same device.
  Tensor clone() const;
  // Same bytes, another shape with the same element count (shares memory).
  Tensor reshaped(Shape shape) const;
  // The conversions below read host memory: they fail for a device tensor (use to(CPU) first).
  // Values as int64 (integer tensors of any width); for shape-like inputs.
  std::vector<int64_t> to_int64_vector() const;
  // Values converted to double; for tests and constants.
  std::vector<double> to_double_vector() const;
  // A copy converted to another dtype (numeric types only).
  Tensor cast(DType to) const;
  // Writes this tensor converted to out's dtype into out's memory (same element count; host
  // tensors): cast without the allocation, vectorised between FP32 and FP16/BF16.
  void cast_into(Tensor& out) const;

 private:
  void allocate_host(bool zero);  // a host block for nbytes() (see tensor.cpp)
  DType dtype_ = DType::Undefined;
  Device device_ = Device::CPU;
  Shape shape_;
  std::shared_ptr<void> owner_;
  void* data_ = nullptr;
};

}  // namespace otter
