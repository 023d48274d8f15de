// A session over an ONNX training graph (ModelProto.training_info; docs/training-graphs.md): the
// model brings its own loss, gradients (ai.onnx.preview.training Gradient) and optimizer (Adam,
// Adagrad, Momentum or plain ops), and Otter runs it with the ONNX semantics:
//  - at creation, every initialization graph runs once, in order, and its initialization_binding
//    assigns its outputs to state variables (skipped when the file says the initialization already
//    ran: metadata otter.training_info.initialized, written by export; option training_init);
//  - a step runs, for each TrainingInfoProto in order, the combined graph (inference graph +
//    algorithm) with the caller's feeds, then its update_binding: every bound state variable
//    takes the value of its output (all outputs are read before any variable changes).
// State variables (the keys of the bindings: weights, optimizer moments, the step count) start
// from their initializers and live on the session's device; every other initializer is a
// constant. Gradient nodes become Otter's own backward nodes (runtime/passes/gradient_op.h). Under
// mixed precision the inference nodes follow the precision policy; the algorithm nodes (loss,
// Gradient, optimizer) and every state variable stay FP32. Checkpoints are model files: the
// original model with every state variable updated (export writes the same plus the metadata that
// skips a second initialization), so an exported file trains further.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "onnx_import/training_info.h"
#include "runtime/exec/plan.h"
#include "runtime/train/session.h"

namespace otter {

class TrainingGraphSession {
 public:
  TrainingGraphSession(LoadedModel model, TrainingModel training, const TrainConfig& config);

  // One step: every algorithm in order, then its update_binding. *loss (when not null) gets the
  // step's loss value (see loss_name); NaN when there is none.
  void train_step(const std::map<std::string, Tensor>& feeds, double* loss);
  // The inference graph alone, with the current state (FP32). No loss (the loss is the algorithm's).
  std::map<std::string, Tensor> eval_step(const std::map<std::string, Tensor>& feeds, double* loss, bool* has_loss);

  std::vector<std::pair<std::string, ValueInfo>> train_inputs() const;
  std::vector<std::pair<std::string, ValueInfo>> outputs() const;
  // The FP32 state variables (weights and optimizer state); get/set_state also reach the others.
  const std::vector<ParameterInfo>& parameters() const { return params_; }
  Tensor get_state(const std::string& name) const;
  void set_state(const std::string& name, const Tensor& value);
  const StepStats& stats() const { return stats_; }
  // The value reported as each step's loss ("" when none).
  const std::string& loss_name() const { return loss_name_; }

  void save_checkpoint(const std::string& path, const std::map<std::string, std::string>& user) const;
  void load_checkpoint(const std::string& path, std::map<std::string, std::string>* user);
  void export_model(const std::string& path) const;

  const std::vector<InitializerRole>& initializer_roles() const { return roles_; }
  const std::vector<std::string>& notes() const { return notes_; }
  const Graph& graph() const { return inference_; }
  MemoryStats train_memory() const { return last_memory_; }

 private:
  struct Program {  // one TrainingInfoProto's combined graph
    std::string where;
    std::unique_ptr<Graph> graph;  // plans hold a reference: a stable address
    std::map<int, std::string> state;  // value id -> state variable
    std::vector<std::pair<std::string, int>> updates;  // (state variable, value id of its new value)
    int loss = -1;
    std::map<std::string, std::unique_ptr<Plan>> plans;  // by input shapes
  };
  Plan& plan_for(Program& p, const std::map<std::string, Tensor>& feeds, std::map<int, Tensor>* bound);
  void run_initialization(TrainingInfo& info);
  void write_model(const std::string& path, const std::map<std::string, std::string>& metadata) const;

  SharedBytes model_bytes_;
  Graph inference_;
  std::vector<int> inference_outputs_;
  TrainConfig config_;
  std::vector<Program> programs_;
  std::map<std::string, Tensor> state_;  // every state variable, on the device
  std::vector<ParameterInfo> params_;
  std::unique_ptr<Plan> eval_plan_;
  std::string eval_key_;
  std::string loss_name_;
  StepStats stats_;
  MemoryStats last_memory_;
  std::vector<InitializerRole> roles_;
  std::vector<std::string> notes_;
};

}  // namespace otter
