/*
 * otter.h — Otter's only public header: a plain C99 ABI over the ONNX training runtime.
 *
 * Conventions (every function follows them):
 *  - Every call returns an otter_status. OTTER_OK is 0; on failure a message for the last failure
 *    on this thread is available from otter_last_error() until the next failing call.
 *  - Out-parameters come last and are left untouched on error.
 *  - Objects are opaque handles. Each otter_X_create has an otter_X_free that accepts NULL.
 *  - Strings are UTF-8 and NUL-terminated. Strings and arrays returned by the library stay valid
 *    as long as the object they came from, unless a function says otherwise.
 *  - Dimensions are int64_t; a symbolic (batch) dimension is reported as -1.
 *  - No C++ exception ever crosses this boundary.
 *  - Options are set by key and value string (typed setters are conveniences), so new options
 *    never change the ABI. Option keys are listed at otter_options_set.
 *  - Threads: a session is not thread-safe. Use each session from one thread at a time (different
 *    sessions may run in parallel). A call on a session that another thread is inside fails with
 *    OTTER_ERROR_BUSY and changes nothing; otter_session_free waits for a running call to end (but
 *    using a handle after it was freed is undefined, as for any C object). Options objects and tensor
 *    lists are plain data: share them between threads only read-only. otter_last_error is per thread.
 *
 * DLPack interop: an otter_tensor_view maps one-to-one onto a DLTensor (dlpack.h): data -> data,
 * {device_type, device_id} -> device (OTTER_DEVICE_CPU = kDLCPU = 1, OTTER_DEVICE_CUDA = kDLCUDA
 * = 2), ndim -> ndim, shape -> shape, strides NULL (row-major, contiguous), byte_offset 0, and
 * dtype -> {code, bits, lanes 1} per otter_dtype (FLOAT32 = {kDLFloat, 32}, BFLOAT16 =
 * {kDLBfloat, 16}, INT64 = {kDLInt, 64}, BOOL = {kDLBool, 8}, ...). Inputs are read in place (no
 * copy); outputs are views of memory owned by the returned list.
 */
#ifndef OTTER_OTTER_H
#define OTTER_OTTER_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define OTTER_API __declspec(dllexport)
#else
#define OTTER_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version of this header. A library whose otter_api_version() differs in the major part
 * (value / 1000) is incompatible. */
#define OTTER_API_VERSION 1000

typedef enum otter_status {
  OTTER_OK = 0,
  OTTER_ERROR_INVALID_ARGUMENT = 1, /* NULL pointer, bad option value, wrong shape or dtype */
  OTTER_ERROR_NOT_FOUND = 2,        /* missing file, unknown name or option key */
  OTTER_ERROR_INVALID_MODEL = 3,    /* the model does not parse or does not validate */
  OTTER_ERROR_UNSUPPORTED = 4,      /* op, dtype, opset, device or setting not supported */
  OTTER_ERROR_IO = 5,               /* a file could not be written */
  OTTER_ERROR_OUT_OF_MEMORY = 6,
  OTTER_ERROR_WRONG_STATE = 7,      /* a call that is not valid in the object's current state */
  OTTER_ERROR_INTERNAL = 8,         /* a bug in Otter: please report it with the message */
  OTTER_ERROR_NON_FINITE = 9,       /* a training step met a NaN/Inf loss or gradient (see option nonfinite) */
  OTTER_ERROR_BUSY = 10,            /* the session is in use by another thread */
  OTTER_ERROR_DISTRIBUTED = 11      /* data-parallel training: MPI/NCCL failed (a lost peer), a step failed on
                                       this rank, or the ranks disagree (model, options); see option distributed */
} otter_status;

/* Element types: the values are ONNX's TensorProto.DataType numbers. */
typedef enum otter_dtype {
  OTTER_DTYPE_UNDEFINED = 0,
  OTTER_DTYPE_FLOAT32 = 1,
  OTTER_DTYPE_UINT8 = 2,
  OTTER_DTYPE_INT8 = 3,
  OTTER_DTYPE_INT32 = 6,
  OTTER_DTYPE_INT64 = 7,
  OTTER_DTYPE_BOOL = 9,
  OTTER_DTYPE_FLOAT16 = 10,
  OTTER_DTYPE_FLOAT64 = 11,
  OTTER_DTYPE_BFLOAT16 = 16
} otter_dtype;

/* Device types, numbered as DLPack's DLDeviceType. */
typedef enum otter_device_type { OTTER_DEVICE_CPU = 1, OTTER_DEVICE_CUDA = 2 } otter_device_type;

/* A non-owning view of a dense row-major tensor. This struct is frozen: it never changes size. */
typedef struct otter_tensor_view {
  void* data;             /* first element */
  int32_t dtype;          /* an otter_dtype value (int32_t keeps the layout fixed) */
  int32_t ndim;
  const int64_t* shape;   /* ndim entries; may be NULL when ndim == 0 */
  int32_t device_type;    /* otter_device_type */
  int32_t device_id;
} otter_tensor_view;

typedef struct otter_options otter_options;
typedef struct otter_session otter_session;
typedef struct otter_tensor_list otter_tensor_list;

/* ---- library ---- */

/* OTTER_API_VERSION of the library. Never fails. */
OTTER_API uint32_t otter_api_version(void);
/* The library version, "MAJOR.MINOR.PATCH". Never fails; static storage. */
OTTER_API const char* otter_version(void);
/* The message of the last failed call on this thread ("" if none). Valid until the next failing
 * call on this thread. Never fails. */
OTTER_API const char* otter_last_error(void);
/* A constant name for a status ("OTTER_OK", ...). Never fails. */
OTTER_API const char* otter_status_name(otter_status status);
/* Size in bytes of one element of `dtype`; 0 for an unknown dtype. Never fails. */
OTTER_API size_t otter_dtype_size(otter_dtype dtype);

/* ---- options ---- */

/* Creates an empty options object (every key at its default). */
OTTER_API otter_status otter_options_create(otter_options** out);
/* Frees an options object; NULL is allowed. Sessions keep their own copy, so options may be freed
 * right after otter_session_create_*. */
OTTER_API void otter_options_free(otter_options* options);
/* Sets `key` to `value`. Unknown keys fail with OTTER_ERROR_NOT_FOUND; values that do not parse
 * as the key's type fail with OTTER_ERROR_INVALID_ARGUMENT (semantic checks, such as a loss output
 * that the model lacks, happen at session creation). Keys:
 *   loss           none | cross_entropy | mse | l1 | bce_with_logits       (default none)
 *   loss_output    graph output the loss reads                             (default: first output)
 *   label          name of the label input Otter adds                      (default "label")
 *   reduction      mean | sum                                              (default mean)
 *   ignore_index   integer label ignored by cross_entropy                  (default: none)
 *   optimizer      sgd | adam | adamw                                      (default sgd)
 *   lr, momentum, weight_decay, beta1, beta2, eps   numbers (PyTorch defaults per optimizer)
 *   nesterov       true | false
 *   schedule       constant | linear | cosine; warmup_steps, total_steps   integers
 *   clip_norm      number, 0 = off;  grad_accum  integer >= 1;  seed  integer
 *   trainable      comma-separated initializer names (default: all floating ones reaching the loss)
 *   freeze         comma-separated initializer names never trained
 *   precision      fp32 | fp16 | bf16: mixed FP16/FP32 or BF16/FP32 (FP32 masters and optimizer state)
 *   precision_op   overrides by op type, "Softmax=follow,MatMul=fp32" (classes lower|fp32|follow)
 *   precision_node overrides by node name, "fc1=fp32,attn/softmax=fp32"
 *   loss_scale     dynamic | none | a number (static)   (default: dynamic for fp16, none otherwise)
 *   loss_scale_init (65536), loss_scale_growth_factor (2), loss_scale_backoff_factor (0.5),
 *   loss_scale_growth_interval (2000), loss_scale_hysteresis (1), loss_scale_min (1),
 *   loss_scale_max (16777216)
 *   device         auto | cpu | cuda | cuda:0   (default cpu; auto: CUDA when a usable GPU is present,
 *                  else the CPU; one GPU per process: pick another with CUDA_VISIBLE_DEVICES)
 *   cuda_graphs    on (default: a static-shape CUDA training step is captured as a CUDA graph after
 *                  one warm-up step and replayed) | off (kernels launched one by one; same results)
 *   denormals      keep (default) | flush: during train_step and eval_step the CPU threads flush
 *                  subnormal floats to zero (inputs and results), as torch.set_flush_denormal(True)
 *                  does; faster where kernels meet many subnormals, and values that would be
 *                  subnormal become 0. x86-64 only (elsewhere OTTER_ERROR_UNSUPPORTED). CUDA kernels
 *                  are not affected.
 *   batchnorm      train (default: batch statistics in train_step, running statistics updated and
 *                  exported) | frozen (the model's own training_mode and statistics)
 *   nonfinite      error (default) | skip. A NaN/Inf gradient never updates the weights: the step is
 *                  skipped (skipped_steps counts it). Without dynamic loss scaling, "error" also makes
 *                  the step fail with OTTER_ERROR_NON_FINITE (on CUDA at the first call that reads the
 *                  device: a train_step asking for its loss, a checkpoint, an export); "skip" goes on.
 *                  Under dynamic loss scaling (fp16's default) skipping is how the scale is found.
 *   tensorboard    a folder (created with its parents if missing): the session writes a TensorBoard
 *                  event file there (events.out.tfevents.*; no TensorFlow needed to write it) with,
 *                  after each effective batch, train/loss, train/learning_rate (the rate the step
 *                  used), train/loss_scale, train/skipped_steps, train/grad_norm (computed at each step
 *                  when this option is set; absent for a skipped step), train/step_time_ms and
 *                  train/samples_per_second (rows of the first input per second inside train_step).
 *                  The x axis is the number of effective batches (steps taken + skipped). A folder
 *                  that cannot be created or written fails session creation with OTTER_ERROR_IO.
 *                  Reading the statistics back is a synchronisation on CUDA (see tensorboard_interval).
 *   tensorboard_interval  integer >= 1: record every N-th effective batch   (default 1)
 *   distributed    auto (default) | mpi | off: data-parallel training across processes
 *                  (docs/distributed.md). auto joins the MPI world when the process was started by
 *                  mpirun with more than one process; mpi always joins; off trains alone. In a world
 *                  of N ranks: every rank starts from rank 0's weights, gradients are averaged once
 *                  per effective batch (global batch = N x micro-batch x grad_accum), all ranks skip
 *                  or step together, checkpoints and exports are written by rank 0 only (the other
 *                  ranks' save/export calls write nothing), and load_checkpoint reads the file on
 *                  rank 0. Every rank must create its session with the same model and options
 *                  (else OTTER_ERROR_DISTRIBUTED on every rank), and call train_step and
 *                  load_checkpoint the same number of times. CPU sessions use MPI, CUDA ones NCCL.
 *                  A build without MPI fails with OTTER_ERROR_UNSUPPORTED when asked to join.
 *   dist_timeout   seconds one collective may wait for the other ranks (default 300); then the
 *                  process prints what it waited for and exits with status 1 (mpirun then ends the
 *                  job), so no rank hangs. After an OTTER_ERROR_DISTRIBUTED the process aborts the
 *                  MPI job when it exits.
 *   training_graph auto (default: a model with ModelProto.training_info, the ONNX training format,
 *                  runs its own algorithm graph: its loss, Gradient and optimizer nodes, its
 *                  update_binding) | on (require training_info) | off (ignore it: train the inference
 *                  graph with the options above). With a training graph: inputs are the combined
 *                  graph's (inference + algorithm) inputs, parameters are its FP32 state variables,
 *                  the step's loss is loss_output (any value name; default: the Gradient node's y),
 *                  get/set_parameter reach every state variable (e.g. the int64 step count),
 *                  checkpoints are model files, export keeps training_info, the learning rate belongs
 *                  to the graph (get: NaN, set: OTTER_ERROR_UNSUPPORTED), loss/optimizer/clip_norm/
 *                  grad_accum/trainable/freeze do not apply (loss, grad_accum > 1, clip_norm,
 *                  trainable and freeze are errors), and eval_step runs the inference graph (no loss).
 *                  See docs/training-graphs.md.
 *   training_init  auto (default: run the initialization graphs once at creation, unless the file
 *                  was exported by Otter after training) | run | skip
 *   ort_checkpoint ONNX Runtime training artifacts (onnxruntime.training.artifacts, 1.19): a
 *                  training_model.onnx is detected (com.microsoft gradient ops, lazy_reset_grad) and
 *                  runs as it is with eval_model.onnx and optimizer_model.onnx from its folder and this
 *                  checkpoint (default: "checkpoint" in its folder). Inputs are its data inputs,
 *                  parameters the checkpoint's trainable ones, lr sets AdamW's learning rate (default:
 *                  the checkpoint's, else 0.001), checkpoints are written in ORT's format (ORT loads
 *                  them), export writes eval_model.onnx with the trained parameters. CPU only.
 */
OTTER_API otter_status otter_options_set(otter_options* options, const char* key, const char* value);
OTTER_API otter_status otter_options_set_double(otter_options* options, const char* key, double value);
OTTER_API otter_status otter_options_set_int(otter_options* options, const char* key, int64_t value);
/* The current value of `key` as a string (valid until the key is set again or the options freed). */
OTTER_API otter_status otter_options_get(const otter_options* options, const char* key, const char** out_value);

/* ---- sessions ---- */

/* Loads an ONNX model, appends the loss, builds the backward pass and allocates the parameters
 * and optimizer state. `options` may be NULL (all defaults). */
OTTER_API otter_status otter_session_create_from_file(const char* model_path, const otter_options* options,
                                                      otter_session** out);
/* The same from a serialized ModelProto in memory; external data is resolved against `base_dir`
 * (NULL: the current directory). The buffer is copied. */
OTTER_API otter_status otter_session_create_from_buffer(const void* model_data, size_t model_size,
                                                        const char* base_dir, const otter_options* options,
                                                        otter_session** out);
OTTER_API void otter_session_free(otter_session* session);

/* The device the session runs on: "cpu" or "cuda:N". */
OTTER_API otter_status otter_session_device(const otter_session* session, const char** out_device);
/* One line saying what computes on the session's device in this build and on this machine, e.g.
 * "cpu (avx512_bf16): fp32 gemm and conv oneDNN; fp64 gemm OpenBLAS; bf16 gemm and conv oneDNN (native
 * bf16 dot products, fp32 accumulation); fp16: storage only (fp32 compute, ...), conversions avx512f". For
 * people and logs; its wording may change between versions. Valid until the session is freed. */
OTTER_API otter_status otter_session_compute(const otter_session* session, const char** out_text);

/* Inputs a training step needs (model inputs plus the label), model outputs, and trainable
 * parameters: count, then per index the name, dtype, rank and shape (-1 for symbolic dims). */
OTTER_API otter_status otter_session_input_count(const otter_session* session, size_t* out_count);
OTTER_API otter_status otter_session_input_info(const otter_session* session, size_t index, const char** out_name,
                                                otter_dtype* out_dtype, int32_t* out_ndim, const int64_t** out_shape);
OTTER_API otter_status otter_session_output_count(const otter_session* session, size_t* out_count);
OTTER_API otter_status otter_session_output_info(const otter_session* session, size_t index, const char** out_name,
                                                 otter_dtype* out_dtype, int32_t* out_ndim, const int64_t** out_shape);
OTTER_API otter_status otter_session_parameter_count(const otter_session* session, size_t* out_count);
OTTER_API otter_status otter_session_parameter_info(const otter_session* session, size_t index, const char** out_name,
                                                    otter_dtype* out_dtype, int32_t* out_ndim,
                                                    const int64_t** out_shape);

/* One training micro-batch: forward, backward, and (every grad_accum calls) the optimizer step.
 * `names[i]` names the input `inputs[i]`; every input of otter_session_input_* must be given.
 * Writes the micro-batch loss to *out_loss (may be NULL). On error nothing in the session
 * changes. */
OTTER_API otter_status otter_session_train_step(otter_session* session, size_t num_inputs, const char* const* names,
                                                const otter_tensor_view* inputs, double* out_loss);
/* Forward pass in evaluation mode (Dropout off). The label may be omitted; when it is given and
 * out_loss is not NULL, the loss is computed too (*out_has_loss = 1). *out_outputs receives the
 * model outputs (free with otter_tensor_list_free). out_loss and out_has_loss may be NULL. */
OTTER_API otter_status otter_session_eval_step(otter_session* session, size_t num_inputs, const char* const* names,
                                               const otter_tensor_view* inputs, otter_tensor_list** out_outputs,
                                               double* out_loss, int* out_has_loss);

OTTER_API otter_status otter_session_get_learning_rate(const otter_session* session, double* out_lr);
OTTER_API otter_status otter_session_set_learning_rate(otter_session* session, double lr);

/* Copies parameter `name` (its FP32 master) into `buffer` of `buffer_bytes` bytes, which must be
 * exactly the parameter's size. */
OTTER_API otter_status otter_session_get_parameter(const otter_session* session, const char* name, void* buffer,
                                                   size_t buffer_bytes);
/* Replaces parameter `name`; `value` must have its dtype and shape. */
OTTER_API otter_status otter_session_set_parameter(otter_session* session, const char* name,
                                                   const otter_tensor_view* value);

/* Statistics by key: step (optimizer steps taken), micro_step, last_loss (OTTER_ERROR_WRONG_STATE
 * before the first step), learning_rate (for the next step), grad_norm (the global gradient
 * norm before clipping at the last step; computed only when clip_norm or tensorboard is set, else
 * 0), loss_scale (1 without loss scaling), skipped_steps (steps skipped for non-finite
 * gradients), arena_bytes and intermediate_bytes (planned activation memory of the last training
 * plan and the sum of its intermediates), captured_steps (CUDA: micro-steps replayed as a CUDA
 * graph), plan_seconds (wall time spent building execution plans so far: Otter plans at the
 * first step of each input shape, so this is the planning part of that step), device_peak_bytes (CUDA: peak bytes in use in the device memory pool since the session
 * was created; 0 on the CPU), rank and world_size (data parallelism: this process's rank and the
 * number of ranks; 0 and 1 when training alone). Reading a statistic of a CUDA session waits for the GPU. Unknown
 * keys: OTTER_ERROR_NOT_FOUND. */
OTTER_API otter_status otter_session_get_stat(const otter_session* session, const char* key, double* out_value);

/* Appends the scalar `value` under `tag` (e.g. "val/accuracy") to the session's TensorBoard event
 * file (option tensorboard) at the current x position (effective batches so far).
 * OTTER_ERROR_WRONG_STATE when the session writes no TensorBoard log; OTTER_ERROR_IO when the file
 * cannot be written. A train_step whose TensorBoard record cannot be written fails with
 * OTTER_ERROR_IO although the step itself was applied (the only exception to "on error nothing
 * changes"); logging then stops. */
OTTER_API otter_status otter_session_log_scalar(otter_session* session, const char* tag, double value);

/* Writes a checkpoint (parameters, optimizer state, step, schedule position, seed, the metadata of
 * otter_session_set_metadata, a CRC-32 of the file) atomically and durably: a new file in PATH's
 * folder, fsync'ed, renamed over PATH (a symlink is written through; /dev/null-like devices are
 * written in place). */
OTTER_API otter_status otter_session_save_checkpoint(const otter_session* session, const char* path);
/* Restores a checkpoint written by a session of the same model and options. A checkpoint that
 * does not match, is damaged (checksum) or holds non-finite values changes nothing. */
OTTER_API otter_status otter_session_load_checkpoint(otter_session* session, const char* path);
/* Writes the original model with its trained initializers replaced by the FP32 values; every
 * other part of the file is unchanged. Atomic and durable like checkpoints; refused
 * (OTTER_ERROR_NON_FINITE, nothing written) when a parameter holds NaN or Inf. */
OTTER_API otter_status otter_session_export(const otter_session* session, const char* path);

/* Every initializer of the model, in model order: its name, whether the session trains it
 * (*out_trained 1 or 0) and why (not): "trained", "frozen (freeze option)", "not in the trainable
 * list", "a constant (int64)", "BatchNormalization running statistic: ...", "holds NaN or infinite
 * values: a constant (e.g. a -inf attention mask)", "does not reach the loss through differentiable
 * inputs". By default every floating initializer that reaches the loss through differentiable
 * inputs is trained, except BatchNorm statistics and initializers holding NaN/Inf. */
OTTER_API otter_status otter_session_initializer_count(const otter_session* session, size_t* out_count);
OTTER_API otter_status otter_session_initializer_info(const otter_session* session, size_t index, const char** out_name,
                                                      int* out_trained, const char** out_reason);
/* Warnings about the session's set-up, one sentence each: e.g. a trained initializer that looks
 * like a buffer (only 0 and one other value such as 1 or -10000, read only by Add/Mul/Where). */
OTTER_API otter_status otter_session_note_count(const otter_session* session, size_t* out_count);
OTTER_API otter_status otter_session_note(const otter_session* session, size_t index, const char** out_text);

/* The caller's own key/value strings, stored in checkpoints (otter_session_save_checkpoint) and
 * restored by otter_session_load_checkpoint (which replaces them all): e.g. a data loader's epoch
 * and position, so that a resumed run reads the same batches. Keys are non-empty; keys and values
 * may not hold '"', '\\' or control characters. get: OTTER_ERROR_NOT_FOUND for a key never set;
 * the string stays valid until the key is set again or a checkpoint is loaded. */
OTTER_API otter_status otter_session_set_metadata(otter_session* session, const char* key, const char* value);
OTTER_API otter_status otter_session_get_metadata(const otter_session* session, const char* key, const char** out_value);

/* The forward graph's nodes (the model's and the appended loss), in topological order: name, op
 * type and the dtype its outputs are computed in ("float32", ...). */
OTTER_API otter_status otter_session_node_count(const otter_session* session, size_t* out_count);
OTTER_API otter_status otter_session_node_info(const otter_session* session, size_t index, const char** out_name,
                                               const char** out_op_type, const char** out_compute_dtype);

/* Why node `index` computes in its dtype under the precision policy: "rule: lower", "rule: fp32",
 * "rule: follow (widest input float16)", "override (op type): fp32", "constant 'c' out of float16
 * range: stays float32", "cast inserted by the precision policy", ... */
OTTER_API otter_status otter_session_node_precision(const otter_session* session, size_t index,
                                                    const char** out_reason);

/* Writes MODEL with its initializers replaced by the parameters stored in CHECKPOINT (written by
 * otter_session_save_checkpoint, or an ONNX Runtime training checkpoint: its parameters go into
 * MODEL's initializers, or into an eval_model.onnx whose parameters are inputs, which become
 * initializers), without creating a session. OUT may not name CHECKPOINT or
 * MODEL (OTTER_ERROR_INVALID_ARGUMENT: an output never replaces an input). */
OTTER_API otter_status otter_checkpoint_export(const char* checkpoint_path, const char* model_path,
                                               const char* out_path);

/* ---- tensor lists (outputs) ---- */

OTTER_API otter_status otter_tensor_list_size(const otter_tensor_list* list, size_t* out_size);
/* Entry `index`: its name and a view of its data (owned by the list). */
OTTER_API otter_status otter_tensor_list_get(const otter_tensor_list* list, size_t index, const char** out_name,
                                             otter_tensor_view* out_view);
OTTER_API void otter_tensor_list_free(otter_tensor_list* list);

/* ---- NumPy files ---- */

/* Reads every array of a NumPy .npz file (stored or deflated members) into a new list, entries
 * named by their array names, in name order. */
OTTER_API otter_status otter_npz_load(const char* path, otter_tensor_list** out_list);
/* Writes `num` CPU tensors to a NumPy .npz file (atomically: PATH.tmp, then renamed). */
OTTER_API otter_status otter_npz_save(const char* path, size_t num, const char* const* names,
                                      const otter_tensor_view* tensors);

#ifdef __cplusplus
}
#endif
#endif /* OTTER_OTTER_H */
