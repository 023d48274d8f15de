// Internal to onnx_import/: the pieces of the ModelProto reader that the training-graph importers
// (training_info.cpp) share with the model loader. Includes ONNX's protobuf headers, so only
// onnx_import/*.cpp include it.
#pragma once
#include <onnx/onnx_pb.h>

#include <string>

#include "runtime/ir/graph.h"

namespace otter {

// Parses a serialized ModelProto (clear errors for an empty, oversized or malformed buffer).
onnx::ModelProto parse_model(const void* data, size_t size);
// Fills g.opsets from the model's opset_import, checking the default domain's version.
void import_opsets(Graph& g, const onnx::ModelProto& model);
// Appends a GraphProto's initializers, inputs, nodes and outputs to `g` (names must not clash
// with what `g` already holds; nodes may read values `g` already has). `where` prefixes errors
// (e.g. "training_info[0].algorithm: ").
void append_graph_proto(Graph& g, const onnx::GraphProto& gp, const std::string& base_dir, const std::string& where);
// The same for a GraphProto the caller discards afterwards: initializers take over their raw_data
// buffers instead of copying them (a model's weights are then in memory once, not twice).
void append_graph_proto_consuming(Graph& g, onnx::GraphProto* gp, const std::string& base_dir, const std::string& where);
Tensor tensor_from_proto(const onnx::TensorProto& p, const std::string& base_dir);
// The same, moving raw_data out of `p` into the tensor's storage (no copy).
Tensor tensor_from_proto_consuming(onnx::TensorProto* p, const std::string& base_dir);
void fill_proto_from_tensor(const Tensor& t, onnx::TensorProto* p);

}  // namespace otter
