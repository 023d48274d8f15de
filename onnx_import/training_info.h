// ONNX training graphs (ModelProto.training_info, IR version >= 7; docs/training-graphs.md):
// each TrainingInfoProto becomes an initialization graph (run once, its outputs bound to state
// variables by initialization_binding) and a combined graph (the inference graph followed by the
// algorithm graph: inputs, initializers, outputs and nodes concatenated, so algorithm nodes read
// inference values) whose outputs update the state variables after every step (update_binding).
// The import checks the structure and every binding by name; running it is runtime/train's job
// (training_graph.h).
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "onnx_import/onnx_import.h"

namespace otter {

// ModelProto.metadata_props key that Otter's export sets: the initialization graphs already ran
// (their results are in the exported state variables), so a new session does not run them again.
constexpr const char* kTrainingInitializedKey = "otter.training_info.initialized";

struct TrainingInfo {
  std::string where;  // "training_info[i]", for messages
  Graph initialization;  // no inputs: its own initializers and nodes
  std::vector<std::pair<std::string, std::string>> initialization_binding;  // (state variable, initialization output)
  Graph combined;                 // inference graph + algorithm graph
  size_t inference_nodes = 0;     // combined.nodes[0, inference_nodes) come from the inference graph
  std::vector<std::pair<std::string, std::string>> update_binding;  // (state variable, combined output)
};

struct TrainingModel {
  std::vector<TrainingInfo> infos;
  bool initialized = false;  // metadata kTrainingInitializedKey is "true"
};

// Reads and checks model.model_bytes' training_info (an error names the entry and the problem:
// IR version < 7, an initialization graph with inputs, a binding to a name that is not an
// initializer or not an output, a variable bound twice). Empty when the model has none.
TrainingModel import_training_info(const LoadedModel& model);

// Every initializer of a model file (its graph's and its training_info algorithm graphs'), by name,
// and its metadata_props: what a training-graph checkpoint (a model file) holds.
std::map<std::string, Tensor> read_model_state(const std::string& path, std::map<std::string, std::string>* metadata);

}  // namespace otter
