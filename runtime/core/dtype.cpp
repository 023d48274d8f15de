// Element type properties.
#include "runtime/core/dtype.h"

namespace otter {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32: case DType::Int32: return 4;
    case DType::Float64: case DType::Int64: return 8;
    case DType::Float16: case DType::BFloat16: return 2;
    case DType::Uint8: case DType::Int8: case DType::Bool: return 1;
    case DType::Undefined: return 0;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Int64: return "int64";
    case DType::Int32: return "int32";
    case DType::Int8: return "int8";
    case DType::Uint8: return "uint8";
    case DType::Bool: return "bool";
    case DType::Undefined: return "undefined";
  }
  return "unknown";
}

bool is_floating(DType t) {
  return t == DType::Float32 || t == DType::Float64 || t == DType::Float16 || t == DType::BFloat16;
}

bool is_supported_dtype(int32_t onnx_type) {
  switch (static_cast<DType>(onnx_type)) {
    case DType::Float32: case DType::Float64: case DType::Float16: case DType::BFloat16:
    case DType::Int64: case DType::Int32: case DType::Int8: case DType::Uint8: case DType::Bool:
      return true;
    default:
      return false;
  }
}

}  // namespace otter
