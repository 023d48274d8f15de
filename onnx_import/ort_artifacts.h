// ONNX Runtime on-device training artifacts (docs/training-graphs.md, "ONNX Runtime artifacts"):
// what onnxruntime.training.artifacts.generate_artifacts (onnxruntime-training 1.19) writes —
// training_model.onnx (forward, loss and ORT's own backward pass with com.microsoft gradient ops
// and gradient accumulation buffers), eval_model.onnx, optimizer_model.onnx (one
// com.microsoft AdamWOptimizer or SGDOptimizerV2 node) and `checkpoint` (a flatbuffers file,
// onnx_import/ort_checkpoint.fbs). This file reads and checks them and rewrites the com.microsoft
// ops the training model uses into Otter ops; runtime/train/ort_session.h runs them. It also reads
// and writes the checkpoint format, so that ORT can continue from an Otter checkpoint.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "onnx_import/onnx_import.h"

namespace otter {

struct OrtCheckpoint {
  int32_t version = 2;
  std::vector<std::pair<std::string, Tensor>> trainable;  // module_state.requires_grad_params, in file order
  std::vector<std::pair<std::string, Tensor>> frozen;     // module_state.frozen_params
  struct ParamState {
    std::string param;
    std::vector<std::pair<std::string, Tensor>> momentums;  // AdamW: momentum0, momentum1
  };
  struct Group {
    std::string name = "group0";
    int64_t step = 0;
    float initial_lr = 0.001f;
    std::vector<ParamState> states;
  };
  std::vector<Group> groups;  // empty when the file has no optimizer state
  std::vector<std::pair<std::string, int64_t>> int_props;
  std::vector<std::pair<std::string, float>> float_props;
  std::vector<std::pair<std::string, std::string>> string_props;
};

// Reads an ORT checkpoint file (verified flatbuffers, identifier ODTC); errors name the problem.
OrtCheckpoint read_ort_checkpoint(const std::string& path);
// Writes one (atomically, durably) that onnxruntime-training 1.19 loads.
void write_ort_checkpoint(const std::string& path, const OrtCheckpoint& checkpoint);

// optimizer_model.onnx: ORT's AdamWOptimizer (and its attributes) or SGDOptimizerV2.
struct OrtOptimizer {
  std::string op;  // "AdamWOptimizer" | "SGDOptimizerV2"
  float alpha = 0.9f, beta = 0.999f, epsilon = 1e-8f, weight_decay = 0.f;
  int64_t adam_mode = 0, correct_bias = 1;
};

struct OrtArtifacts {
  LoadedModel training;  // com.microsoft ops rewritten into Otter ops
  bool has_eval = false;
  LoadedModel eval;
  OrtOptimizer optimizer;
  OrtCheckpoint checkpoint;
  std::string checkpoint_path;
  std::vector<std::string> params;  // trainable parameters (checkpoint order)
  std::vector<std::string> frozen;  // frozen parameters that are inputs of the training model
  std::map<std::string, std::string> grad_buffer;  // parameter -> its accumulation buffer input
  std::map<std::string, std::string> grad_out;     // parameter -> its accumulation output
  std::string reset_input;                         // "lazy_reset_grad" (bool[1])
  std::string loss;                                // the training model's output 0
  std::vector<std::string> data_inputs;            // every other input (the data and labels)
  // BatchNormalization running statistics that a training step updates, as ORT's
  // BatchNormInternal does in place: (frozen parameter, the training graph's value holding its new
  // value after a step).
  std::vector<std::pair<std::string, std::string>> running_stats;
};

// Rewrites the com.microsoft ops of an ORT training graph into Otter ops (or into the graph-level
// ops of runtime/ops/ort_grad.cpp that runtime/passes/ort_grad_ops.h expands after annotation).
// `file` names the graph in errors; an op Otter does not support is an Unsupported error naming
// the node, the op and the supported list. `running_stats` (may be null) receives the
// BatchNormInternal running statistics as in OrtArtifacts::running_stats, for those whose input is
// a graph input.
void rewrite_ort_ops(Graph& g, const std::string& file,
                     std::vector<std::pair<std::string, std::string>>* running_stats = nullptr);

// Whether a model is an ORT training model (it imports com.microsoft and has an input
// lazy_reset_grad or an InPlaceAccumulatorV2 node).
bool is_ort_training_model(const LoadedModel& model);

// Loads the artifacts around training_model.onnx (already loaded): eval_model.onnx and
// optimizer_model.onnx from its folder, the checkpoint from `checkpoint_path` (empty: "checkpoint"
// in that folder). An op Otter does not support is an Unsupported error naming it.
OrtArtifacts load_ort_artifacts(LoadedModel training, const std::string& checkpoint_path);

// Whether a file starts like an ORT checkpoint (flatbuffers identifier ODTC).
bool is_ort_checkpoint_file(const std::string& path);

// Writes eval_model.onnx with the parameters as initializers (an inference file for any runtime).
void export_ort_eval_model(const SharedBytes& eval_bytes, const std::map<std::string, Tensor>& params,
                           const std::string& path);

}  // namespace otter
