// A training session: the model's forward graph, its loss, its backward pass and everything a
// training loop needs, on one device (the CPU or CUDA).
//
// At creation: add_loss -> annotate (shape inference, validation) -> choose trainable parameters
// (by default every floating initializer on a differentiable path to the loss; include/exclude
// lists) -> autodiff. FP32 masters live in one flat buffer and their gradients in another; the
// execution plans bind each parameter and each parameter gradient to its slice, so kernels read
// and write the flat buffers directly. Plans are cached per (mode, input shapes).
//
// train_step runs forward+backward for one micro-batch; every `grad_accum` micro-batches it
// clips and applies the optimizer. A failed step (bad input, label out of range) throws before
// anything is changed, and the session stays usable.
//
// Every flat-buffer pass (accumulate, unscale + finite check, loss-scale update, clip, optimizer,
// low-precision refresh, BatchNorm statistics) goes through the device's StepOps
// (kernels/step_ops.h), which keep the scaler state and the step counters in device memory: on
// CUDA a step needs no host synchronisation unless the caller asks for its loss, and a static-shape
// step is captured into a CUDA graph and replayed (TrainConfig::cuda_graphs). Statistics are read
// back from the device when asked for.
#pragma once
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "onnx_import/onnx_import.h"
#include "kernels/step_ops.h"
#include "runtime/dist/communicator.h"
#include "runtime/exec/plan.h"
#include "runtime/passes/add_loss.h"
#include "runtime/passes/autocast.h"
#include "runtime/train/loss_scaler.h"
#include "runtime/train/optimizer.h"

namespace otter {

// Checks a feed against graph input v's declared dtype and dims (an error naming the input and the
// expected shape), recording the sizes of its symbolic dims in `symbols` so that every input
// agrees on them. Shared by Session and the sessions of training graphs and ORT artifacts.
void check_feed(const Graph& g, int v, const Tensor& t, std::map<int64_t, int64_t>* symbols);

// A graph value as the session interfaces list it: its name, dtype and (possibly symbolic) shape.
inline std::pair<std::string, ValueInfo> named_info(const Value& v) {
  ValueInfo vi;
  vi.dtype = v.dtype;
  vi.shape = v.shape;
  return {v.name, vi};
}

struct TrainConfig {
  LossSpec loss;
  std::vector<std::string> trainable;  // if non-empty: exactly these initializers
  std::vector<std::string> frozen;     // initializers never trained
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  std::string precision = "fp32";  // fp32 | fp16 | bf16 (mixed, FP32 masters and optimizer state)
  std::map<std::string, PrecisionClass> precision_by_op, precision_by_node;  // policy overrides
  std::string loss_scale = "auto";  // auto (dynamic for fp16, none otherwise) | none | static | dynamic
  LossScaleConfig loss_scale_config;  // its mode is set from loss_scale
  double clip_norm = 0;  // 0: no clipping
  // Compute the global gradient norm at each step even without clipping (StepStats::last_grad_norm;
  // the C shim sets it when a TensorBoard log is written).
  bool track_grad_norm = false;
  // A non-finite (NaN/Inf) gradient in an effective batch always skips the update (weights, moments,
  // step count and BatchNorm statistics stay). Without dynamic loss scaling (where skipping is how
  // the scale is found) "error" also makes the step fail with ErrorKind::NonFinite, reported at the
  // first host read-back (the CPU: at once; CUDA: the next train_step asking for its loss, a
  // checkpoint, an export, or check_non_finite); "skip" only counts it in skipped_steps.
  std::string nonfinite = "error";
  int64_t grad_accum = 1;
  uint64_t seed = 0;
  // BatchNormalization during train_step: "train" uses batch statistics and updates the running
  // statistics (whatever the exported training_mode; eval_step always uses the running ones);
  // "frozen" keeps the model's training_mode and statistics as they are.
  std::string batchnorm = "train";
  Device device = Device::CPU;
  // CUDA: capture each static-shape training step as a CUDA graph (after one uncaptured warm-up
  // step per plan) and replay it; off: launch every kernel each step. Results are the same bits.
  bool cuda_graphs = true;
  // FP16 mixed precision on the CPU, which computes in FP32 (design decision 7): keep the per-step
  // FP16 copy of a weight that only FP32-compute kernels read (GEMMs, convolutions) as FP32
  // values rounded to FP16, read as they are instead of widened at each use. The same numbers;
  // false keeps every copy in FP16 (the tests compare the two bit for bit).
  bool cpu_fp16_wide_weights = true;
  // Subnormal floats are flushed to zero (inputs and results) on the CPU threads during train_step
  // and eval_step (runtime/core/denormals.h; the "denormals=flush" option). Faster where kernels
  // meet many subnormals; values that would be subnormal become 0. Off by default.
  bool flush_denormals = false;
  // Data-parallel training (docs/distributed.md): join the MPI world (auto: when started by mpirun
  // with more than one process). Every rank starts from rank 0's weights; gradients are averaged
  // once per effective batch; checkpoints and exports are written by rank 0.
  DistConfig dist;
  // ONNX training graphs (ModelProto.training_info; runtime/train/training_graph.h): "auto" runs a
  // model that has training_info as its own training algorithm, "on" requires it, "off" ignores it
  // (the inference graph trains with the options above).
  std::string training_graph = "auto";
  // Its initialization graphs: "auto" runs them unless the file was exported by Otter after
  // training (metadata otter.training_info.initialized); "run" always; "skip" never.
  std::string training_init = "auto";
  // ONNX Runtime training artifacts (runtime/train/ort_session.h): a training_model.onnx written by
  // onnxruntime.training.artifacts runs as it is, with this checkpoint (empty: "checkpoint" in the
  // model's folder).
  std::string ort_checkpoint;
};

// "cpu", "cuda", "cuda:0" or "auto" (CUDA when a usable GPU is present, else the CPU) -> a device;
// a clear error for an unavailable or unknown device.
Device resolve_device(const std::string& name);

struct StepStats {
  int64_t step = 0;        // optimizer steps taken
  int64_t micro_step = 0;  // micro-batches since the last optimizer step
  double last_loss = 0;
  double last_grad_norm = 0;
  double lr = 0;
  int64_t skipped_steps = 0;  // optimizer steps skipped for non-finite gradients
  bool last_step_skipped = false;
  int64_t captured_steps = 0;  // CUDA: micro-steps run as a replayed CUDA graph
  double plan_seconds = 0;     // wall time spent building execution plans (one per input shape and kind)
  int rank = 0;                // data-parallel rank of this process (0 when alone)
  int world_size = 1;          // number of data-parallel processes
};

// Why an initializer of the model is or is not trained (otter inspect, otter_session_initializer_info).
struct InitializerRole {
  std::string name;
  bool trained = false;
  std::string reason;  // "trained", "frozen (freeze option)", "holds non-finite values: a constant ...", ...
};

struct ParameterInfo {
  std::string name;
  Shape shape;
  size_t offset;  // in elements, in the flat buffers
};

// The FP32 parameters ("param/<name>") stored in a checkpoint file.
std::map<std::string, Tensor> read_checkpoint_parameters(const std::string& path);
// Also the buffers ("buffer/<name>": BatchNormalization running statistics), keyed by name.
std::map<std::string, Tensor> read_checkpoint_buffers(const std::string& path);

class TrainingGraphSession;  // runtime/train/training_graph.h
class OrtArtifactsSession;   // runtime/train/ort_session.h

class Session {
 public:
  Session(LoadedModel model, TrainConfig config);
  ~Session();
  // Whether the session runs the model's own training graph (training_info) rather than Otter's
  // loss, backward pass and optimizer. Then parameters are the FP32 state variables, checkpoints
  // are model files and the learning rate belongs to the algorithm graph.
  bool runs_training_graph() const { return training_graph_ != nullptr; }
  // Whether the session runs ONNX Runtime training artifacts (training_model.onnx + checkpoint).
  bool runs_ort_artifacts() const { return ort_ != nullptr; }

  // One micro-batch: returns its loss. Feeds are keyed by input name (model inputs + labels).
  double train_step(const std::map<std::string, Tensor>& feeds);
  // The same; the loss is copied to *loss only when loss is not null (on CUDA the step then
  // returns without waiting for the device).
  void train_step(const std::map<std::string, Tensor>& feeds, double* loss);
  // Forward only (Dropout off). Returns the model's outputs; fills *loss when the feeds include
  // the labels and loss is not null.
  std::map<std::string, Tensor> eval_step(const std::map<std::string, Tensor>& feeds, double* loss = nullptr,
                                         bool* has_loss = nullptr);

  const std::vector<ParameterInfo>& parameters() const;
  Tensor get_parameter(const std::string& name) const;
  void set_parameter(const std::string& name, const Tensor& value);
  // Read back from the device (a synchronisation on CUDA).
  const StepStats& stats() const;
  Device device() const { return config_.device; }
  // Why steps are not captured as CUDA graphs (empty when they are, or on the CPU).
  const std::string& graph_capture_note() const { return capture_note_; }
  double learning_rate() const;  // NaN for a training graph (its algorithm owns the rate)
  void set_learning_rate(double lr);

  // Checkpoint: masters, optimizer moments, step, schedule position, RNG seed (safetensors
  // layout; see docs/checkpoint.md). Written to a temporary file and renamed. Distributed: only
  // rank 0 writes (the state is the same on every rank); other ranks return without writing.
  void save_checkpoint(const std::string& path) const;
  // Distributed: collective; rank 0 reads the file and every rank loads its bytes.
  void load_checkpoint(const std::string& path);
  // The original model with its trainable initializers replaced by the FP32 masters. Refuses
  // (nothing written) when a parameter holds a non-finite value. Distributed: rank 0 writes.
  void export_model(const std::string& path) const;
  // Data parallelism: this process's rank and the number of processes (0 and 1 when alone).
  int rank() const { return comm_ ? comm_->rank() : 0; }
  int world_size() const { return comm_ ? comm_->world_size() : 1; }
  // Every initializer of the model, in model order, with whether it is trained and why (not).
  const std::vector<InitializerRole>& initializer_roles() const;
  // Warnings about the choice of parameters (e.g. a trained initializer that looks like a mask).
  const std::vector<std::string>& notes() const;
  // The caller's own checkpoint entries (saved as "user.<key>" metadata, restored by
  // load_checkpoint, which replaces them all): the CLI keeps its data order here.
  void set_user_metadata(const std::string& key, const std::string& value);
  const std::map<std::string, std::string>& user_metadata() const { return user_metadata_; }
  // Throws ErrorKind::NonFinite if, under nonfinite=error, a step was skipped for a non-finite
  // gradient since the last report (a host read-back of the step counters on CUDA).
  void check_non_finite() const;

  // Names, dtypes and (symbolic) shapes of the inputs a train step needs and the model outputs.
  std::vector<std::pair<std::string, ValueInfo>> train_inputs() const;
  std::vector<std::pair<std::string, ValueInfo>> outputs() const;
  const Graph& graph() const;
  // The forward graph's node ids (model and loss nodes, no backward), in topological order.
  std::vector<int> forward_nodes() const;
  // The precision decision of a forward node (absent for nodes the policy did not touch).
  const PrecisionDecision* precision_of(int node) const;
  double loss_scale() const;
  const LossScaleConfig& loss_scale_config() const { return config_.loss_scale_config; }
  // Elements of the per-step low-precision weight copy kept as FP16/BF16 and kept wide (FP32
  // values rounded to FP16; TrainConfig::cpu_fp16_wide_weights), padding included.
  std::pair<int64_t, int64_t> low_copy_elements() const {
    return {low_weights_.defined() ? low_weights_.numel() : 0, low_wide_.defined() ? low_wide_.numel() : 0};
  }
  // CUDA: the device memory pool's peak bytes in use since the session was created (0 on the CPU).
  size_t device_peak_bytes() const;
  // Memory of the most recently used training plan.
  MemoryStats train_memory() const;

 private:
  Plan& plan_for(bool training, bool with_loss, const std::map<std::string, Tensor>& feeds,
                 std::map<int, Tensor>* bound_feeds);
  const ParameterInfo& param(const std::string& name) const;

  std::unique_ptr<TrainingGraphSession> training_graph_;
  std::unique_ptr<OrtArtifactsSession> ort_;
  SharedBytes model_bytes_;
  Graph graph_;
  TrainConfig config_;
  LossInfo loss_;
  size_t forward_node_count_ = 0;
  std::vector<int> model_inputs_;  // graph inputs before the loss and seed were added
  std::vector<int> model_outputs_;
  std::vector<ParameterInfo> params_;
  std::vector<int> param_values_;
  std::map<int, int> param_grads_;
  int seed_value_ = -1;
  Tensor masters_, grads_, accum_;
  DType low_ = DType::Float32;           // FP16/BF16 under mixed precision
  // The per-step low-precision copy of the parameters the policy casts (refreshed after each
  // update): in low_weights_, or, for an FP16 parameter whose every reader computes in FP32 on the
  // CPU (GEMMs, convolutions), in low_wide_ as FP32 values rounded to FP16, which those kernels
  // read as they are instead of widening the copy at each use (TrainConfig::cpu_fp16_wide_weights).
  Tensor low_weights_, low_wide_;
  struct LowCopy {
    int value = -1;  // the policy cast's output value, which the copy binds
    bool wide = false;
    size_t offset = 0;  // in low_wide_ when wide, else in low_weights_
  };
  std::map<int, LowCopy> param_low_;  // parameter value -> its low-precision copy
  std::vector<LowCopyRun> low_runs_;  // consecutive parameters refreshed by one conversion
  LowCopies low_copies() const;
  AutocastResult autocast_;
  Tensor scaler_state_;                  // LossScaleSlot values
  // Non-trainable state the graph updates (BatchNormalization running statistics): the buffer
  // initializers with their current values, and (new value produced by a step, buffer) pairs.
  std::map<int, Tensor> buffers_;
  std::vector<std::pair<int, int>> buffer_updates_;
  void prepare_batchnorm();
  void refresh_low_weights();
  std::vector<float> scaler_host() const;
  std::vector<int64_t> counters_host() const;
  // The ops of one training micro-step after the feeds are in place (captured on CUDA).
  void enqueue_step(Plan& plan, const std::map<int, Tensor>& bound, bool last_micro_step,
                    const CheckedInputs* checked_inputs);
  // Checks, on the host, the feeds that Gather/GatherElements read as indices and losses read as
  // labels; returns those (node, input) uses (their device kernels skip their synchronising check).
  CheckedInputs check_index_feeds(const Plan& plan, const std::map<int, Tensor>& feeds) const;
  // Drops the captured graphs (after a change to a value they hold as a kernel argument).
  void forget_graphs();
  StepOps* ops_ = nullptr;
  Tensor counters_;  // int64[kStepCounters] on the session's device (kernels/step_ops.h)
  Tensor norm_;      // double[1]: the last global gradient norm (when clipping)
  Tensor seed_;      // the backward pass's seed, written by StepOps::begin_micro_step
  // CUDA: per training plan, device buffers the feeds are uploaded into (fixed addresses, so a
  // captured graph reads them) and the captured graphs (one for a micro-step that ends an
  // effective batch, one for the others).
  struct DeviceStep {
    std::map<int, Tensor> feeds;
    int warm_steps[2] = {0, 0};  // uncaptured steps run, per graph
    std::shared_ptr<void> graph[2];
    bool capture_failed = false;
  };
  std::map<const Plan*, DeviceStep> device_steps_;
  std::string capture_note_;
  const Plan* last_train_plan_ = nullptr;
  std::unique_ptr<Optimizer> optimizer_;
  double base_lr_ = 0;
  mutable StepStats stats_;
  std::map<std::string, std::unique_ptr<Plan>> plans_;
  MemoryStats last_train_memory_;
  std::map<std::string, std::string> user_metadata_;
  std::vector<InitializerRole> roles_;
  std::vector<int> model_initializers_;  // the model's own initializers (before the loss was added)
  std::vector<std::string> notes_;
  void describe_initializers(const std::set<int>& nonfinite, const std::set<std::string>& frozen,
                             const std::map<int, std::string>& elementwise_uses,
                             const std::map<int, std::string>& weight_uses);
  mutable int64_t reported_skips_ = 0;  // skipped steps already reported (or expected: loss scaling)
  // Data parallelism (runtime/dist): null when training alone.
  std::shared_ptr<Communicator> comm_;
  std::string dist_failure_;  // set when a step failed on this rank only: the ranks are out of step
  // One line per fact every rank must share (device, parameters, buffers, training options).
  std::string rank_description() const;
  // Joins the world (make_communicator), then every rank takes rank 0's weights and statistics.
  void join_world();
  void run_train_step(const std::map<std::string, Tensor>& feeds, double* loss);
};

}  // namespace otter
