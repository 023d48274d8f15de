// Tensor storage and conversions.
#include "runtime/core/tensor.h"

#include "runtime/core/convert.h"

#include <algorithm>
#include <cstdlib>
#if defined(_OPENMP)
#include <omp.h>
#endif
#include <sstream>

#include "runtime/core/checked.h"
#include "runtime/core/half.h"

namespace otter {

int64_t shape_numel(const Shape& shape) { return shape_numel(shape, 0, shape.size()); }

int64_t shape_numel(const Shape& shape, size_t begin, size_t end) {
  int64_t n = 1;
  bool symbolic = false, empty = false;
  for (size_t k = begin; k < end; ++k) {
    symbolic = symbolic || shape[k] < 0;
    empty = empty || shape[k] == 0;
  }
  if (symbolic) return -1;  // IR-level shapes: unknown until run; a negative marker, never a size
  if (empty) return 0;
  // Shapes come from users (views, .npy headers, ONNX dims): a product that overflows is an error.
  for (size_t k = begin; k < end; ++k) {
    if (__builtin_mul_overflow(n, shape[k], &n) || n > kMaxCount)
      OTTER_FAIL("shape ", shape_str(shape), " has too many elements (the product of its dims overflows 2^60)");
  }
  return n;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out << ", ";
    if (shape[i] < 0) out << "?"; else out << shape[i];
  }
  out << "]";
  return out.str();
}

std::vector<int64_t> shape_strides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i)
    strides[i] = strides[i + 1] * shape[i + 1];
  return strides;
}

namespace {

// memset, split over the OpenMP threads for large blocks: zeroing a fresh block is mostly the
// kernel's page faults, which run in parallel (a GPT-2-sized session zeroes ~2 GB of flat buffers).
void zero_fill(void* p, size_t n) {
#if defined(_OPENMP)
  constexpr size_t kParallel = size_t(64) << 20;
  if (n >= kParallel && !omp_in_parallel() && omp_get_max_threads() > 1) {
#pragma omp parallel
    {
      const size_t threads = static_cast<size_t>(omp_get_num_threads()), t = static_cast<size_t>(omp_get_thread_num());
      const size_t chunk = (n / threads + 4095) / 4096 * 4096;
      const size_t b = std::min(n, t * chunk), e = std::min(n, b + chunk);
      if (b < e) std::memset(static_cast<char*>(p) + b, 0, e - b);
    }
    return;
  }
#endif
  std::memset(p, 0, n);
}

}  // namespace

Tensor::Tensor(DType dtype, Shape shape, Device device) : dtype_(dtype), device_(device), shape_(std::move(shape)) {
  for (int64_t d : shape_) OTTER_CHECK(d >= 0, "tensor shape ", shape_str(shape_), " has a negative dim");
  size_t bytes = nbytes();
  if (device != Device::CPU) {
    DeviceBackend* b = device_backend(device);
    OTTER_CHECK_KIND(Unsupported, b, "no ", device_name(device), " device: ", cuda_unavailable_reason());
    size_t alloc = std::max<size_t>(bytes, 1);
    void* p = b->allocate(alloc);
    b->fill_zero(p, alloc);
    owner_ = std::shared_ptr<void>(p, [b](void* q) { b->release(q); });
    data_ = p;
    return;
  }
  allocate_host(true);
}

// 64-byte aligned, at least one byte so that data_ is never null for an empty tensor; the bytes
// past nbytes() (the alignment padding) are always zero, the data only when `zero`.
void Tensor::allocate_host(bool zero) {
  const size_t bytes = nbytes(), alloc = ((bytes + 63) / 64) * 64 + 64;
  void* p = std::aligned_alloc(64, alloc);
  OTTER_CHECK_KIND(OutOfMemory, p != nullptr, "out of host memory allocating ", bytes, " bytes");
  if (zero) zero_fill(p, alloc);
  else std::memset(static_cast<char*>(p) + bytes, 0, alloc - bytes);
  owner_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  data_ = p;
}

Tensor Tensor::uninitialized(DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.device_ = Device::CPU;
  t.shape_ = std::move(shape);
  for (int64_t d : t.shape_) OTTER_CHECK(d >= 0, "tensor shape ", shape_str(t.shape_), " has a negative dim");
  t.allocate_host(false);
  return t;
}

Tensor Tensor::view(DType dtype, Shape shape, std::shared_ptr<void> owner, void* data, Device device) {
  Tensor t;
  t.dtype_ = dtype;
  t.device_ = device;
  t.shape_ = std::move(shape);
  t.owner_ = std::move(owner);
  t.data_ = data;
  return t;
}

Tensor Tensor::clone() const {
  if (!defined()) return Tensor();
  Tensor t(dtype_, shape_, device_);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device device) const {
  if (!defined() || device == device_) return *this;
  Tensor t(dtype_, shape_, device);
  t.copy_from(*this);
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  OTTER_CHECK(src.dtype_ == dtype_ && src.numel() == numel(), "copy of a ", dtype_name(src.dtype_), " ",
              shape_str(src.shape_), " tensor into a ", dtype_name(dtype_), " ", shape_str(shape_), " one");
  size_t bytes = nbytes();
  if (!bytes) return;
  if (device_ == Device::CPU && src.device_ == Device::CPU) {
    std::memcpy(data_, src.data_, bytes);
    return;
  }
  Device dev = device_ != Device::CPU ? device_ : src.device_;
  DeviceBackend* b = device_backend(dev);
  OTTER_CHECK_KIND(Unsupported, b, "no ", device_name(dev), " device: ", cuda_unavailable_reason());
  b->copy(data_, device_, src.data_, src.device_, bytes);
}

Tensor Tensor::reshaped(Shape shape) const {
  OTTER_CHECK(shape_numel(shape) == numel(), "cannot reshape ", shape_str(shape_), " to ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

namespace {
template <typename Out>
void convert_to(const Tensor& t, Out* out) {
  OTTER_CHECK(t.device() == Device::CPU, "reading a ", device_name(t.device()), " tensor on the host: copy it first");
  int64_t n = t.numel();
  switch (t.dtype()) {
    case DType::Float32: { auto p = static_cast<const float*>(t.raw()); for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(p[i]); break; }
    case DType::Float64: { auto p = static_cast<const double*>(t.raw()); for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(p[i]); break; }
    case DType::Int64: { auto p = static_cast<const int64_t*>(t.raw()); for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(p[i]); break; }
    case DType::Int32: { auto p = static_cast<const int32_t*>(t.raw()); for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(p[i]); break; }
    case DType::Int8: { auto p = static_cast<const int8_t*>(t.raw()); for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(p[i]); break; }
    case DType::Uint8: { auto p = static_cast<const uint8_t*>(t.raw()); for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(p[i]); break; }
    case DType::Bool: { auto p = static_cast<const bool*>(t.raw()); for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(p[i]); break; }
    case DType::Float16: { auto p = static_cast<const uint16_t*>(t.raw()); for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(math::half_bits_to_float(p[i])); break; }
    case DType::BFloat16: { auto p = static_cast<const uint16_t*>(t.raw()); for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(math::bfloat16_bits_to_float(p[i])); break; }
    default: OTTER_FAIL("cannot convert a tensor of ", dtype_name(t.dtype()));
  }
}
}  // namespace

std::vector<int64_t> Tensor::to_int64_vector() const {
  std::vector<int64_t> v(static_cast<size_t>(numel()));
  convert_to(*this, v.data());
  return v;
}

std::vector<double> Tensor::to_double_vector() const {
  std::vector<double> v(static_cast<size_t>(numel()));
  convert_to(*this, v.data());
  return v;
}

namespace {
// The mixed-precision conversions, vectorised and threaded (convert.h; the same bits as the
// element loops of Tensor::cast). False when (from, to) is not one of them.
bool fast_convert(const Tensor& from, Tensor& to) {
  if (from.device() != Device::CPU || to.device() != Device::CPU) return false;
  const void* s = from.raw();
  void* d = to.raw();
  int64_t n = from.numel();
  DType a = from.dtype(), b = to.dtype();
  if (b == DType::Float32 && a == DType::Float16) half_to_float_n(static_cast<const uint16_t*>(s), static_cast<float*>(d), n);
  else if (b == DType::Float32 && a == DType::BFloat16) bfloat16_to_float_n(static_cast<const uint16_t*>(s), static_cast<float*>(d), n);
  else if (b == DType::Float16 && a == DType::Float32) float_to_half_n(static_cast<const float*>(s), static_cast<uint16_t*>(d), n);
  else if (b == DType::BFloat16 && a == DType::Float32) float_to_bfloat16_n(static_cast<const float*>(s), static_cast<uint16_t*>(d), n);
  else return false;
  return true;
}
}  // namespace

void Tensor::cast_into(Tensor& out) const {
  OTTER_CHECK(out.numel() == numel(), "cast_into: ", numel(), " elements into a tensor of ", out.numel());
  if (out.dtype() == dtype_ && device_ == Device::CPU && out.device() == Device::CPU) {
    if (out.raw() != data_) std::memcpy(out.raw(), data_, nbytes());
    return;
  }
  if (fast_convert(*this, out)) return;
  Tensor t = cast(out.dtype());
  out.copy_from(t);
}

Tensor Tensor::cast(DType to) const {
  Tensor t(to, shape_);
  if (fast_convert(*this, t)) return t;
  switch (to) {
    case DType::Float32: convert_to(*this, t.data<float>()); break;
    case DType::Float64: convert_to(*this, t.data<double>()); break;
    case DType::Int64: convert_to(*this, t.data<int64_t>()); break;
    case DType::Int32: convert_to(*this, t.data<int32_t>()); break;
    case DType::Int8: convert_to(*this, t.data<int8_t>()); break;
    case DType::Uint8: convert_to(*this, t.data<uint8_t>()); break;
    case DType::Bool: {
      std::vector<double> v = to_double_vector();
      bool* p = t.data<bool>();
      for (size_t i = 0; i < v.size(); ++i) p[i] = v[i] != 0.0;
      break;
    }
    case DType::Float16: case DType::BFloat16: {
      // Through float32 (exact for every source but float64, which rounds twice at most in
      // the last bit of a half; ONNX leaves double -> half rounding unspecified).
      Tensor f = dtype_ == DType::Float32 ? *this : cast(DType::Float32);
      const float* src = f.data<float>();
      uint16_t* dst = static_cast<uint16_t*>(t.raw());
      int64_t n = numel();
      if (to == DType::Float16) for (int64_t i = 0; i < n; ++i) dst[i] = math::float_to_half_bits(src[i]);
      else for (int64_t i = 0; i < n; ++i) dst[i] = math::float_to_bfloat16_bits(src[i]);
      break;
    }
    default: OTTER_FAIL("cast to ", dtype_name(to), " is not supported yet");
  }
  return t;
}

}  // namespace otter
