// A session over ONNX Runtime on-device training artifacts (onnx_import/ort_artifacts.h;
// docs/training-graphs.md): training_model.onnx runs as it is (its forward, loss and ORT's own
// backward pass, com.microsoft ops rewritten into Otter ops) with the parameters, gradient
// accumulation buffers and lazy_reset_grad bound; each step is ORT's `module(x, y);
// optimizer.step(); module.lazy_reset_grad()`: the gradients overwrite the buffers, then the
// optimizer model's AdamWOptimizer (its attributes, ORT's float arithmetic, step + 1 as the bias
// correction's power) or SGDOptimizerV2 updates parameters (and moments). Checkpoints are ORT checkpoints (ORT loads
// them and continues); export writes eval_model.onnx with the trained parameters. CPU only; mixed
// precision lowers the training model's nodes like any graph (parameters, gradients, moments FP32).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "onnx_import/ort_artifacts.h"
#include "runtime/exec/plan.h"
#include "runtime/train/session.h"

namespace otter {

class OrtArtifactsSession {
 public:
  OrtArtifactsSession(OrtArtifacts artifacts, const TrainConfig& config);

  void train_step(const std::map<std::string, Tensor>& feeds, double* loss);
  // eval_model.onnx (its loss when its labels are given; the outputs are its outputs).
  std::map<std::string, Tensor> eval_step(const std::map<std::string, Tensor>& feeds, double* loss, bool* has_loss);
  std::vector<std::pair<std::string, ValueInfo>> train_inputs() const;
  std::vector<std::pair<std::string, ValueInfo>> outputs() const;
  const std::vector<ParameterInfo>& parameters() const { return params_; }
  Tensor get_parameter(const std::string& name) const;
  void set_parameter(const std::string& name, const Tensor& value);
  const StepStats& stats() const { return stats_; }
  double learning_rate() const { return lr_; }
  void set_learning_rate(double lr);
  // The caller's metadata travels in the checkpoint's property bag as strings "otter.user.<key>".
  void save_checkpoint(const std::string& path, const std::map<std::string, std::string>& user) const;
  void load_checkpoint(const std::string& path, std::map<std::string, std::string>* user);
  void export_model(const std::string& path) const;
  const std::vector<InitializerRole>& initializer_roles() const { return roles_; }
  const std::vector<std::string>& notes() const { return notes_; }
  const Graph& graph() const { return graph_; }
  MemoryStats train_memory() const { return last_memory_; }

 private:
  void adamw_step();  // or SGDOptimizerV2's update
  void take_checkpoint(const OrtCheckpoint& c, const std::string& what);
  Plan& plan_for(Graph& g, std::map<std::string, std::unique_ptr<Plan>>& cache, const std::vector<int>& targets,
                 const std::map<std::string, Tensor>& feeds, const std::set<std::string>& optional,
                 std::map<int, Tensor>* bound);

  OrtArtifacts a_;
  TrainConfig config_;
  Graph graph_;  // the training model (rewritten, annotated, under the precision policy)
  std::map<std::string, Tensor> values_;  // parameters, frozen parameters, gradient buffers
  std::map<std::string, Tensor> m1_, m2_;  // AdamW moments
  std::vector<ParameterInfo> params_;
  std::map<std::string, std::unique_ptr<Plan>> plans_, eval_plans_;
  std::set<std::string> variables_;
  double lr_ = 0.001;
  StepStats stats_;
  MemoryStats last_memory_;
  std::vector<InitializerRole> roles_;
  std::vector<std::string> notes_;
};

}  // namespace otter
