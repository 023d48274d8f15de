// ModelProto <-> IR. Loading parses the protobuf (ONNX's own schema from libonnx), reads
// initializers in every storage form (raw_data, typed fields, external data files beside the
// model, refusing paths that leave the model's folder), normalises older opset forms to the
// newest one (attribute-to-input moves) and checks the structure (opsets, names, dtypes, cycles).
// Op-level validation (unknown op, shapes, dtypes) happens in shape inference (runtime/exec).
// Export writes new values into named initializers of the original file and nothing else.
#pragma once
#include <map>
#include <string>

#include "runtime/core/file_io.h"
#include "runtime/ir/graph.h"

namespace otter {

// The opsets of the default domain this version accepts.
constexpr int64_t kMinOpset = 13;
constexpr int64_t kMaxOpset = 28;

struct LoadedModel {
  Graph graph;
  // The original serialized ModelProto, for export: the model file mapped (file_io.h), or a copy
  // of the caller's buffer.
  SharedBytes model_bytes;
  std::string base_dir;     // the folder external data is resolved against
  // ModelProto.training_info entries (ONNX training graphs: onnx_import/training_info.h); the
  // graph above is the inference graph alone.
  size_t training_info_count = 0;
};

LoadedModel load_model_file(const std::string& path);
LoadedModel load_model_buffer(const void* data, size_t size, const std::string& base_dir = "");

// A serialized TensorProto file (the ONNX backend tests' input_N.pb format).
Tensor load_tensor_file(const std::string& path, std::string* name = nullptr);

// Writes `original_bytes` (checked unchanged first: SharedBytes::check_unchanged) with the listed initializers' data replaced (same dtype and shape
// required) to `path`, through a temporary file and a rename. Initializers are looked up in the
// graph and in every training_info algorithm graph; `metadata` entries are set in
// ModelProto.metadata_props (replacing an entry of the same key).
void export_model(const SharedBytes& original_bytes, const std::map<std::string, Tensor>& replacements,
                  const std::string& path, const std::map<std::string, std::string>& metadata = {});

}  // namespace otter
