// Element types. The enum values are ONNX's TensorProto.DataType numbers, so the importer and
// exporter convert without a table. Half-precision storage types arrive with mixed precision.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace otter {

enum class DType : int32_t {
  Undefined = 0,
  Float32 = 1,
  Uint8 = 2,
  Int8 = 3,
  Int32 = 6,
  Int64 = 7,
  Bool = 9,
  Float16 = 10,
  Float64 = 11,
  BFloat16 = 16,
};

size_t dtype_size(DType t);
const char* dtype_name(DType t);
bool is_floating(DType t);
bool is_supported_dtype(int32_t onnx_type);

template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::Float32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::Float64; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::Int32; };
template <> struct DTypeOf<int8_t> { static constexpr DType value = DType::Int8; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::Uint8; };
template <> struct DTypeOf<bool> { static constexpr DType value = DType::Bool; };

}  // namespace otter
