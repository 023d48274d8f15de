// The `otter` command line: train, eval, export and inspect ONNX models. Built on the C ABI only
// (through bindings/cpp/otter.hpp). The flags and the metrics keys are a contract scripts rely
// on (docs/cli.md): add freely, never rename.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bindings/cpp/otter.hpp"
#include "runtime/core/error.h"    // valid_utf8 for messages (header only)
#include "runtime/core/file_io.h"  // atomic output files (compiled into the CLI; no engine code)
#include "tools/loss_plot.h"

using otter::cpp::HostTensor;

namespace {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Set once a training session joined a world of several ranks: a failure then ends this process
// at once with its status (no MPI_Finalize, which would wait for the other ranks), and mpirun
// ends the job.
bool g_distributed = false;
int64_t g_rank = 0;

// The number of processes an MPI launcher started (as the library reads it, runtime/dist), 1 if none.
int64_t launched_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"}) {
    const char* v = std::getenv(name);
    if (!v || !*v) continue;
    char* end = nullptr;
    long long n = std::strtoll(v, &end, 10);
    if (*end == '\0' && n >= 1 && n < (1LL << 30)) return n;
  }
  return 1;
}

// OpenMP's wait policy. libgomp's default spins a waiting thread for ~300,000 iterations before
// it sleeps: between the hundreds of parallel loops of a training step that wins a few percent on
// an idle machine, but when another process holds a core the spinning threads hold theirs too and
// a step took 12x longer (docs/benchmarks.md, "With a busy neighbour"). libgomp reads its
// settings once, when it loads (before main), so the CLI sets a short spin (GOMP_SPINCOUNT, see
// kSpinCount) and runs itself again, once, unless the user chose a policy (OMP_WAIT_POLICY or
// GOMP_SPINCOUNT set) or OTTER_WAIT_POLICY=keep. Embedders of the library choose their own.
constexpr const char* kSpinCount = "10000";

void choose_wait_policy(char** argv) {
#if defined(__linux__)
  const char* choice = std::getenv("OTTER_WAIT_POLICY");
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT") || (choice && std::string(choice) == "keep"))
    return;
  if (setenv("GOMP_SPINCOUNT", kSpinCount, 1) != 0) return;
  execv("/proc/self/exe", argv);  // returns only on failure: then run on with libgomp's default
  unsetenv("GOMP_SPINCOUNT");
#else
  (void)argv;
#endif
}

// The OpenMP wait settings this process runs with, for `otter inspect`.
std::string wait_policy_text() {
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  if (!policy && !spin) return "libgomp default";
  std::string r;
  if (policy) r += std::string("OMP_WAIT_POLICY=") + policy;
  if (spin) r += std::string(r.empty() ? "" : ", ") + "GOMP_SPINCOUNT=" + spin + (std::strcmp(spin, kSpinCount) == 0 ? " (the CLI's default)" : "");
  return r;
}

const char* kMainHelp =
    "otter — train ONNX models\n\n"
    "usage: otter <command> [options]\n\n"
    "commands:\n"
    "  train    train a model on .npz data and export the trained ONNX file\n"
    "  eval     evaluate a model (loss, accuracy) on .npz data\n"
    "  export   write a checkpoint's weights into an ONNX model\n"
    "  inspect  print a model's inputs, outputs, parameters and nodes\n\n"
    "`otter <command> --help` documents each command's flags. Version: ";

const char* kTrainHelp =
    "usage: otter train MODEL.onnx --data TRAIN.npz --out TRAINED.onnx [options]\n\n"
    "data and loss:\n"
    "  --data TRAIN.npz          arrays named like the model's inputs, plus the labels\n"
    "  --label NAME              label array / input name (default: label)\n"
    "  --loss KIND               cross_entropy | mse | l1 | bce_with_logits | none (default: none:\n"
    "                            the model's output is already the loss)\n"
    "  --loss-output NAME        output the loss reads (default: the first output)\n"
    "  --val VAL.npz             validation data, evaluated after every epoch\n"
    "  --training-graph auto|on|off  a model with ONNX training_info runs its own algorithm graph\n"
    "                            (auto, the default; docs/training-graphs.md): the .npz feeds the\n"
    "                            combined graph's inputs by name (a 0-d array at every step) and\n"
    "                            --loss-output names the reported loss; off: ignore training_info\n"
    "  --training-init auto|run|skip  its initialization graphs (auto: unless exported by Otter)\n"
    "  --ort-checkpoint PATH     ONNX Runtime artifacts (MODEL is their training_model.onnx): the\n"
    "                            checkpoint to start from (default: 'checkpoint' beside MODEL);\n"
    "                            --out then gets eval_model.onnx with the trained parameters and\n"
    "                            --checkpoint writes ORT checkpoints\n"
    "optimisation:\n"
    "  --optimizer sgd|adam|adamw (default adamw)   --lr X   --momentum X   --weight-decay X\n"
    "  --schedule constant|linear|cosine (default constant)   --warmup N (steps)\n"
    "  --epochs N | --steps N    length of training (default: 1 epoch)\n"
    "  --batch-size N            micro-batch size (default 32)\n"
    "  --grad-accum N            micro-batches per optimizer step (default 1)\n"
    "  --clip-norm X             clip gradients by global norm (default: off)\n"
    "  --freeze NAME,...         initializers never trained\n"
    "  --train-only NAME,...     train exactly these initializers (default: every floating initializer\n"
    "                            on a differentiable path to the loss, except BatchNorm statistics and\n"
    "                            initializers holding NaN/Inf such as -inf masks; see otter inspect)\n"
    "  --nonfinite error|skip    a NaN/Inf gradient stops training with an error (default) or only\n"
    "                            skips that step (never applied either way)\n"
    "  --seed N                  shuffling and dropout seed (default 0)\n"
    "precision and device:\n"
    "  --precision fp32|fp16|bf16   mixed precision with FP32 masters (default fp32)\n"
    "  --precision-op OP=CLASS,...    override the policy by op type (CLASS: lower|fp32|follow)\n"
    "  --precision-node NAME=CLASS,... override the policy by node name\n"
    "  --loss-scale dynamic|none|VALUE (default: dynamic for fp16, none otherwise)\n"
    "  --device auto|cpu|cuda[:0]\n"
    "  --cuda-graphs on|off   capture each CUDA training step as a graph (default on)\n"
    "  --denormals keep|flush flush subnormal floats to zero on the CPU threads (default keep)\n"
    "data parallelism (docs/distributed.md): `mpirun -np N otter train ...` trains on N processes;\n"
    "global batch = N x --batch-size x --grad-accum; rank 0 logs and writes every file\n"
    "  --distributed auto|mpi|off   join the MPI world (default auto: when started by mpirun)\n"
    "  --shard strided|contiguous   how each epoch's shuffled rows are split among the ranks: rank r\n"
    "                            takes rows r, r+N, ... (default; N ranks x batch B read the rows one\n"
    "                            process with batch N x B reads) or the r-th contiguous block\n"
    "  --dist-timeout SECONDS    longest wait for the other ranks in one step (default 300)\n"
    "checkpoints and output:\n"
    "  --checkpoint PATH --checkpoint-every N   save every N optimizer steps (and at the end)\n"
    "  --resume PATH             continue from a checkpoint\n"
    "  --out TRAINED.onnx        the trained model (required)\n"
    "  --metrics METRICS.json    steps, skipped_steps, final_loss, loss_scale, history, val\n"
    "  --plot LOSS.svg           SVG loss curve (train and validation, skipped steps marked)\n"
    "  --plot-scale linear|log   the loss axis of --plot (default linear)\n"
    "  --metrics-csv FILE.csv    one row per optimizer step: batch, step, loss, lr, loss_scale,\n"
    "                            skipped_steps, grad_norm, step_time_ms, rows_per_second, val_loss,\n"
    "                            val_accuracy (validation columns filled where --val ran)\n"
    "  --tensorboard DIR         write TensorBoard event files to DIR (created if missing): train/*\n"
    "                            scalars every optimizer step, val/loss and val/accuracy per epoch\n";

const char* kEvalHelp =
    "usage: otter eval MODEL.onnx --data TEST.npz [--label NAME] [--loss KIND] [--loss-output NAME]\n"
    "                  [--batch-size N] [--device D] [--metrics METRICS.json] [--outputs OUT.npz]\n\n"
    "  --outputs OUT.npz   also write the model's outputs for every row\n"
    "  --training-graph auto|on|off  (a model with training_info: its inference graph, no loss)\n"
    "Prints eval.loss (when the labels are present) and, for cross_entropy, eval.accuracy\n"
    "(argmax over the class axis).\n";

const char* kExportHelp =
    "usage: otter export CHECKPOINT --model MODEL.onnx --out TRAINED.onnx\n\n"
    "Writes MODEL with its trained initializers taken from CHECKPOINT; nothing else changes.\n";

const char* kInspectHelp =
    "usage: otter inspect MODEL.onnx [--precision fp32|fp16|bf16] [--loss KIND] [--loss-output NAME]\n"
    "                     [--label NAME] [--precision-op OP=CLASS,...] [--precision-node NAME=CLASS,...]\n"
    "                     [--freeze NAME,...] [--train-only NAME,...]\n\n"
    "Prints the inputs a training step needs, the outputs, the trainable parameters, the initializers\n"
    "that are not trained and why, warnings (e.g. a trained initializer that looks like a mask), and\n"
    "every node with the dtype it computes in and the reason (policy rule, override, constant range).\n";

// Parses --flag VALUE pairs; positional arguments are collected in order.
struct Args {
  std::map<std::string, std::string> flags;
  std::vector<std::string> positional;
  std::set<std::string> used;

  Args(int argc, char** argv, int first, const std::set<std::string>& known) {
    for (int i = first; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) == 0) {
        if (!known.count(a)) throw UsageError("unknown flag '" + a + "' (see --help)");
        if (i + 1 >= argc) throw UsageError("flag '" + a + "' needs a value");
        std::string v = argv[i + 1];
        if (v.rfind("--", 0) == 0 && known.count(v))
          throw UsageError("flag '" + a + "' needs a value (it is followed by the flag '" + v + "')");
        if (flags.count(a)) throw UsageError("flag '" + a + "' is given twice");
        flags[a] = argv[++i];
      } else {
        positional.push_back(a);
      }
    }
  }
  bool has(const std::string& k) const { return flags.count(k) != 0; }
  std::string get(const std::string& k, const std::string& fallback = "") const {
    auto it = flags.find(k);
    return it == flags.end() ? fallback : it->second;
  }
  // The integer value of flag k, which must lie in [lo, hi].
  int64_t integer(const std::string& k, int64_t fallback, int64_t lo = INT64_MIN, int64_t hi = INT64_MAX) const {
    if (!has(k)) return fallback;
    const std::string text = get(k);  // `end` points into it
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(text.c_str(), &end, 10);
    if (*end || text.empty()) throw UsageError(k + " expects an integer, got '" + text + "'");
    if (errno == ERANGE || v < lo || v > hi)
      throw UsageError(k + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " + text);
    return v;
  }
};

struct Dataset {
  std::map<std::string, HostTensor> arrays;
  int64_t rows = -1;
  std::set<std::string> whole;  // 0-d arrays fed as they are at every step (not batched by rows)
};

Dataset load_npz(const std::string& path) {
  otter_tensor_list* list = nullptr;
  otter::cpp::check(otter_npz_load(path.c_str(), &list));
  std::unique_ptr<otter_tensor_list, void (*)(otter_tensor_list*)> owner(list, otter_tensor_list_free);
  size_t n = 0;
  otter::cpp::check(otter_tensor_list_size(list, &n));
  Dataset d;
  for (size_t i = 0; i < n; ++i) {
    const char* name = nullptr;
    otter_tensor_view v;
    otter::cpp::check(otter_tensor_list_get(list, i, &name, &v));
    d.arrays[name] = HostTensor::from_view(v);
  }
  return d;
}

// Checks that the arrays feed the session's inputs (label optional) and have one row count.
std::vector<std::string> feed_names(const otter::cpp::Session& s, Dataset& d, const std::string& path,
                                    const std::string& label, bool need_label) {
  std::vector<std::string> names;
  for (const auto& in : s.inputs()) {
    bool is_label = in.name == label;
    if (!d.arrays.count(in.name)) {
      if (is_label && !need_label) continue;
      std::string have;
      for (auto& kv : d.arrays) have += (have.empty() ? "" : ", ") + kv.first;
      throw UsageError("'" + path + "' has no array '" + in.name + "'" + (is_label ? " (the labels; see --label)" : "") +
                       " (it has: " + have + ")");
    }
    const HostTensor& t = d.arrays[in.name];
    if (t.shape.empty() && in.shape.empty()) {  // a 0-d input (a training graph's learning rate): fed at every step
      d.whole.insert(in.name);
      names.push_back(in.name);
      continue;
    }
    if (t.shape.empty()) throw UsageError("array '" + in.name + "' in '" + path + "' is a scalar; expected a batch");
    if (d.rows >= 0 && t.shape[0] != d.rows)
      throw UsageError("arrays in '" + path + "' have different row counts (" + std::to_string(d.rows) + " and " +
                       std::to_string(t.shape[0]) + " in '" + in.name + "')");
    d.rows = t.shape[0];
    names.push_back(in.name);
  }
  return names;
}

HostTensor gather_rows(const HostTensor& t, const std::vector<int64_t>& idx, size_t begin, size_t end) {
  HostTensor r;
  r.dtype = t.dtype;
  r.shape = t.shape;
  r.shape[0] = static_cast<int64_t>(end - begin);
  size_t row = t.bytes.size() / static_cast<size_t>(t.shape[0]);
  r.bytes.resize(row * (end - begin));
  for (size_t i = begin; i < end; ++i)
    std::memcpy(r.bytes.data() + (i - begin) * row, t.bytes.data() + static_cast<size_t>(idx[i]) * row, row);
  return r;
}

struct EvalResult {
  double loss = NAN;
  double accuracy = NAN;
  int64_t rows = 0;
};

EvalResult evaluate(otter::cpp::Session& s, Dataset& d, const std::vector<std::string>& names, const std::string& label,
                    const std::string& loss_kind, int64_t batch, std::map<std::string, HostTensor>* all_outputs = nullptr) {
  EvalResult r;
  std::vector<int64_t> idx(static_cast<size_t>(d.rows));
  std::iota(idx.begin(), idx.end(), 0);
  double loss_sum = 0;
  int64_t correct = 0, counted = 0;
  bool have_loss = false;
  std::string output = s.outputs().at(0).name;
  for (int64_t b = 0; b < d.rows; b += batch) {
    size_t e = static_cast<size_t>(std::min(d.rows, b + batch));
    std::map<std::string, HostTensor> rows;
    std::map<std::string, const HostTensor*> feeds;
    for (auto& n : names) {
      rows[n] = d.whole.count(n) ? d.arrays[n] : gather_rows(d.arrays[n], idx, static_cast<size_t>(b), e);
      feeds[n] = &rows[n];
    }
    double loss = 0;
    bool has_loss = false;
    auto out = s.eval_step(feeds, &loss, &has_loss);
    int64_t m = static_cast<int64_t>(e) - b;
    if (all_outputs)
      for (auto& kv : out) {  // concatenate the batches along dim 0
        HostTensor& acc = (*all_outputs)[kv.first];
        if (acc.bytes.empty()) { acc = kv.second; continue; }
        acc.shape[0] += kv.second.shape[0];
        acc.bytes.insert(acc.bytes.end(), kv.second.bytes.begin(), kv.second.bytes.end());
      }
    if (has_loss) {
      have_loss = true;
      loss_sum += loss * m;
    }
    if (loss_kind == "cross_entropy" && rows.count(label)) {
      const HostTensor& logits = out[output];
      const HostTensor& y = rows[label];
      if (logits.dtype == OTTER_DTYPE_FLOAT32 && logits.shape.size() >= 2 && y.dtype == OTTER_DTYPE_INT64) {
        int64_t c = logits.shape[1], inner = logits.numel() / (logits.shape[0] * c);
        const float* p = logits.data<float>();
        const int64_t* t = y.data<int64_t>();
        for (int64_t i = 0; i < logits.shape[0]; ++i)
          for (int64_t k = 0; k < inner; ++k) {
            int64_t best = 0;
            for (int64_t j = 1; j < c; ++j)
              if (p[(i * c + j) * inner + k] > p[(i * c + best) * inner + k]) best = j;
            correct += best == t[i * inner + k];
            ++counted;
          }
      }
    }
  }
  r.rows = d.rows;
  if (have_loss) r.loss = loss_sum / static_cast<double>(d.rows);
  if (counted) r.accuracy = static_cast<double>(correct) / static_cast<double>(counted);
  return r;
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void write_text(const std::string& path, const std::string& text) {
  otter::write_file_atomic(path, text.data(), text.size(), "output");
}

// Refuses outputs that would replace one of the inputs or another output (each pair: flag, path).
void check_outputs(const std::vector<std::pair<std::string, std::string>>& inputs,
                   const std::vector<std::pair<std::string, std::string>>& outputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    for (auto& in : inputs)
      if (otter::same_file(outputs[i].second, in.second))
        throw UsageError(outputs[i].first + " '" + outputs[i].second + "' is the same file as the input " + in.first +
                         ": refusing to overwrite an input");
    for (size_t j = 0; j < i; ++j)
      if (otter::same_file(outputs[i].second, outputs[j].second))
        throw UsageError(outputs[i].first + " and " + outputs[j].first + " name the same file '" + outputs[i].second + "'");
  }
}

// The flags among `names` that are given, as (flag, path) pairs.
std::vector<std::pair<std::string, std::string>> paths_of(const Args& a, const std::vector<std::string>& names) {
  std::vector<std::pair<std::string, std::string>> r;
  for (auto& n : names)
    if (a.has(n)) r.push_back({n, a.get(n)});
  return r;
}

void set_common(otter::cpp::Options& o, const Args& a, bool training) {
  auto pass = [&](const char* flag, const char* key) {
    if (a.has(flag)) o.set(key, a.get(flag));
  };
  pass("--loss", "loss");
  pass("--loss-output", "loss_output");
  pass("--label", "label");
  pass("--precision", "precision");
  pass("--precision-op", "precision_op");
  pass("--precision-node", "precision_node");
  o.set("device", a.get("--device", "auto"));  // CUDA when a usable GPU is present, else the CPU
  pass("--cuda-graphs", "cuda_graphs");
  pass("--denormals", "denormals");
  pass("--freeze", "freeze");
  pass("--train-only", "trainable");
  pass("--training-graph", "training_graph");
  if (!training) {
    o.set("distributed", "off");  // eval and inspect run alone in each process
    return;
  }
  o.set("distributed", a.get("--distributed", "auto"));
  pass("--dist-timeout", "dist_timeout");
  pass("--training-init", "training_init");
  pass("--ort-checkpoint", "ort_checkpoint");
  o.set("optimizer", a.get("--optimizer", "adamw"));
  pass("--lr", "lr");
  pass("--momentum", "momentum");
  pass("--weight-decay", "weight_decay");
  pass("--schedule", "schedule");
  pass("--warmup", "warmup_steps");
  pass("--grad-accum", "grad_accum");
  pass("--clip-norm", "clip_norm");
  pass("--loss-scale", "loss_scale");
  pass("--seed", "seed");
  pass("--nonfinite", "nonfinite");
}

int cmd_train(int argc, char** argv) {
  Args a(argc, argv, 2, {"--data", "--label", "--loss", "--loss-output", "--optimizer", "--lr", "--momentum",
                         "--weight-decay", "--schedule", "--warmup", "--epochs", "--steps", "--batch-size",
                         "--grad-accum", "--clip-norm", "--precision", "--loss-scale", "--device", "--cuda-graphs", "--denormals", "--seed",
                         "--freeze", "--val", "--checkpoint", "--checkpoint-every", "--resume", "--out", "--metrics",
                         "--plot", "--precision-op", "--precision-node", "--nonfinite", "--train-only",
                         "--tensorboard", "--metrics-csv", "--plot-scale", "--distributed", "--shard", "--dist-timeout",
                         "--training-graph", "--training-init", "--ort-checkpoint"});
  if (a.positional.size() != 1) throw UsageError("train needs exactly one MODEL.onnx (see otter train --help)");
  if (!a.has("--data")) throw UsageError("train needs --data TRAIN.npz");
  if (!a.has("--out")) throw UsageError("train needs --out TRAINED.onnx");
  if (a.has("--epochs") && a.has("--steps")) throw UsageError("give --epochs or --steps, not both");
  if (a.has("--checkpoint-every") && !a.has("--checkpoint")) throw UsageError("--checkpoint-every needs --checkpoint PATH");
  const std::string model = a.positional[0], label = a.get("--label", "label"), loss_kind = a.get("--loss", "none");
  const int64_t kMax = int64_t(1) << 40;  // far beyond any real run; keeps the step arithmetic exact
  int64_t batch = a.integer("--batch-size", 32, 1, INT64_MAX);
  const int64_t accum = a.integer("--grad-accum", 1, 1, kMax);
  const int64_t every = a.integer("--checkpoint-every", 0, 1, kMax);
  const int64_t epochs = a.integer("--epochs", 1, 1, kMax);
  const int64_t steps = a.integer("--steps", 0, 1, kMax);
  // Outputs never replace inputs (--checkpoint may equal --resume: a run that continues its own checkpoint).
  std::vector<std::pair<std::string, std::string>> inputs = paths_of(a, {"--data", "--val"});
  inputs.insert(inputs.begin(), {"MODEL", model});
  check_outputs(inputs, paths_of(a, {"--out", "--checkpoint", "--metrics", "--plot", "--metrics-csv"}));
  check_outputs(paths_of(a, {"--resume"}), paths_of(a, {"--out", "--metrics", "--plot", "--metrics-csv"}));
  const std::string plot_scale = a.get("--plot-scale", "linear");
  if (plot_scale != "linear" && plot_scale != "log")
    throw UsageError("--plot-scale expects linear or log, got '" + plot_scale + "'");
  if (a.has("--plot-scale") && !a.has("--plot")) throw UsageError("--plot-scale needs --plot LOSS.svg");
  if (a.has("--tensorboard") && a.get("--tensorboard").empty()) throw UsageError("--tensorboard needs a folder");
  const std::string distributed = a.get("--distributed", "auto"), shard_mode = a.get("--shard", "strided");
  if (distributed != "auto" && distributed != "mpi" && distributed != "off")
    throw UsageError("--distributed must be auto, mpi or off, got '" + distributed + "'");
  if (shard_mode != "strided" && shard_mode != "contiguous")
    throw UsageError("--shard must be strided or contiguous, got '" + shard_mode + "'");
  // The world the session will join (the steps per epoch depend on it); checked once it exists.
  const int64_t world = distributed == "off" ? 1 : launched_world_size();
  Dataset train = load_npz(a.get("--data"));
  Dataset val;
  if (a.has("--val")) val = load_npz(a.get("--val"));

  // The number of optimizer steps is needed up front by the linear and cosine schedules.
  otter::cpp::Options probe_options;
  set_common(probe_options, a, true);
  int64_t rows = -1;
  for (auto& kv : train.arrays) rows = std::max(rows, kv.second.shape.empty() ? -1 : kv.second.shape[0]);
  if (rows <= 0) throw UsageError("'" + a.get("--data") + "' has no rows to train on");
  if (rows < world)
    throw UsageError("'" + a.get("--data") + "' has " + std::to_string(rows) + " rows, fewer than the " +
                     std::to_string(world) + " ranks");
  const int64_t all_rows = rows;
  rows /= world;  // each rank's shard: equal sizes, so every rank takes the same number of steps
  batch = std::min(batch, rows);  // a batch larger than the data is the whole data
  const int64_t micro_per_epoch = rows / batch + (rows % batch != 0);
  const int64_t total_micro = a.has("--steps") ? steps * accum : epochs * micro_per_epoch;
  const int64_t total_steps = total_micro / accum;
  if (total_micro / micro_per_epoch > kMax) throw UsageError("--epochs x batches per epoch is too large");
  if (total_steps < 1) throw UsageError("nothing to train: fewer micro-batches than --grad-accum");
  probe_options.set("total_steps", std::to_string(total_steps));
  if (a.has("--tensorboard")) probe_options.set("tensorboard", a.get("--tensorboard"));
  otter::cpp::Session s(model, probe_options);
  const int64_t rank = static_cast<int64_t>(s.stat("rank"));
  if (static_cast<int64_t>(s.stat("world_size")) != world)
    throw otter::cpp::Error(OTTER_ERROR_DISTRIBUTED, "the session joined a world of " +
                            std::to_string(static_cast<int64_t>(s.stat("world_size"))) + " ranks but the launcher's environment "
                            "(OMPI_COMM_WORLD_SIZE, PMI_SIZE or MV2_COMM_WORLD_SIZE) says " + std::to_string(world) +
                            ": launch with mpirun (docs/distributed.md)");
  g_distributed = world > 1;
  g_rank = rank;
  const bool lead = rank == 0;  // rank 0 logs and writes the metrics and the plot
  if (lead && world > 1)
    std::fprintf(stderr, "otter: data parallel: %lld ranks, global batch %lld x %lld x %lld rows, %s shards of %lld rows%s\n",
                 static_cast<long long>(world), static_cast<long long>(world), static_cast<long long>(accum),
                 static_cast<long long>(batch), shard_mode.c_str(), static_cast<long long>(rows),
                 all_rows % world ? (" (" + std::to_string(all_rows % world) + " rows of each epoch's order left out)").c_str() : "");
  std::vector<std::string> names = feed_names(s, train, a.get("--data"), label, true);
  std::vector<std::string> val_names;
  if (a.has("--val")) val_names = feed_names(s, val, a.get("--val"), label, false);
  const uint64_t shuffle_seed = static_cast<uint64_t>(a.integer("--seed", 0));
  // The data layout a checkpoint's position refers to (kept in its metadata).
  std::string layout = std::to_string(rows) + " rows, batch " + std::to_string(batch) + ", grad_accum " +
                       std::to_string(accum) + ", seed " + std::to_string(shuffle_seed);
  if (world > 1) layout += ", " + std::to_string(world) + " ranks, " + shard_mode + " shards";
  int64_t micro = 0;
  if (a.has("--resume")) {
    s.load_checkpoint(a.get("--resume"));
    micro = static_cast<int64_t>(s.stat("step")) * accum;
    // The data order is part of the checkpoint: a resumed run reads the batches the uninterrupted
    // one would have read. A checkpoint of another data layout resumes, with a warning.
    std::string written = s.metadata("cli.data", "");
    const std::string& now = layout;
    if (!written.empty() && written != now && lead)
      std::fprintf(stderr, "otter: warning: the checkpoint was written for %s; this run uses %s, so the data order differs\n",
                   written.c_str(), now.c_str());
    const std::string at = s.metadata("cli.micro_batch", "");
    if (written == now && !at.empty()) {
      char* end = nullptr;
      long long m = std::strtoll(at.c_str(), &end, 10);
      if (*end || m < 0) throw UsageError("checkpoint '" + a.get("--resume") + "': bad cli.micro_batch '" + at + "'");
      micro = m;
    }
  }
  s.set_metadata("cli.data", layout);
  auto save_checkpoint = [&] {  // with the data position, so that a resume reads the same batches
    s.set_metadata("cli.micro_batch", std::to_string(micro));
    s.save_checkpoint(a.get("--checkpoint"));
  };
  const int64_t start_step = static_cast<int64_t>(s.stat("step")), start_skipped = static_cast<int64_t>(s.stat("skipped_steps"));
  if (lead) {
    for (const std::string& note : s.notes()) std::fprintf(stderr, "otter: warning: %s\n", note.c_str());
    std::fprintf(stderr, "otter: training %s on %s (%zu parameters tensors, %lld steps of %lld x %lld rows%s)\n",
                 model.c_str(), s.device().c_str(), s.parameters().size(), static_cast<long long>(total_steps),
                 static_cast<long long>(accum), static_cast<long long>(batch), world > 1 ? " per rank" : "");
  }

  // Each epoch's order is the previous one shuffled again (seed --seed): replayed up to the epoch
  // a resumed run starts in.
  std::mt19937_64 rng(shuffle_seed);
  std::vector<int64_t> order(static_cast<size_t>(train.rows));
  std::iota(order.begin(), order.end(), 0);
  for (int64_t e = 0; micro < total_micro && e < micro / micro_per_epoch + (micro % micro_per_epoch != 0); ++e)
    std::shuffle(order.begin(), order.end(), rng);
  // This rank's rows of the epoch's order (every row when alone): strided, rank r takes positions
  // r, r+N, ...; contiguous, the r-th block of `rows`.
  std::vector<int64_t> shard(static_cast<size_t>(rows));
  auto cut_shard = [&] {
    for (int64_t p = 0; p < rows; ++p)
      shard[static_cast<size_t>(p)] = order[static_cast<size_t>(shard_mode == "strided" ? p * world + rank : rank * rows + p)];
  };
  cut_shard();
  std::vector<std::pair<int64_t, double>> val_curve;
  otter::cli::LossPlot plot;
  plot.log_y = plot_scale == "log";
  plot.x_label = "step (optimizer steps taken + skipped)";
  // --metrics-csv: one row per effective batch; the validation columns are added where --val ran.
  struct CsvRow {
    int64_t batch, step, skipped;
    double loss, lr, scale, grad_norm, ms, rows_per_s, val_loss = NAN, val_accuracy = NAN;
  };
  std::vector<CsvRow> csv;
  const bool have_norm = a.has("--clip-norm") || a.has("--tensorboard");
  double batch_seconds = 0;
  int64_t batch_rows = 0;
  std::ostringstream history;
  bool tty = lead && isatty(fileno(stderr));
  auto start = std::chrono::steady_clock::now();
  int64_t rows_done = 0;
  double last_loss = NAN, epoch_loss = 0;
  int64_t epoch_count = 0;
  std::vector<EvalResult> val_results;
  while (micro < total_micro) {
    if (micro % micro_per_epoch == 0) {
      std::shuffle(order.begin(), order.end(), rng);
      cut_shard();
    }
    int64_t pos = (micro % micro_per_epoch) * batch;
    size_t end = static_cast<size_t>(std::min(rows, pos + batch));
    std::map<std::string, HostTensor> rows_now;
    std::map<std::string, const HostTensor*> feeds;
    for (auto& n : names) {
      rows_now[n] = train.whole.count(n) ? train.arrays[n] : gather_rows(train.arrays[n], shard, static_cast<size_t>(pos), end);
      feeds[n] = &rows_now[n];
    }
    double lr = s.stat("learning_rate");
    auto step_start = std::chrono::steady_clock::now();
    last_loss = s.train_step(feeds);
    batch_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
    batch_rows += static_cast<int64_t>(end) - pos;
    rows_done += static_cast<int64_t>(end) - pos;
    epoch_loss += last_loss;
    ++epoch_count;
    ++micro;
    if (micro % accum == 0) {
      int64_t step = static_cast<int64_t>(s.stat("step"));
      int64_t skipped_now = static_cast<int64_t>(s.stat("skipped_steps"));
      double scale = s.stat("loss_scale");
      const int64_t x = step + skipped_now;  // effective batches: the x of the plot, TensorBoard and the CSV
      if (!csv.empty() ? skipped_now > csv.back().skipped : skipped_now > start_skipped) plot.skipped.push_back(double(x));
      else plot.train.push_back({double(x), last_loss});
      csv.push_back({x, step, skipped_now, last_loss, lr, scale, have_norm ? s.stat("grad_norm") : NAN,
                     batch_seconds * 1e3, batch_rows / std::max(batch_seconds, 1e-9)});
      batch_seconds = 0;
      batch_rows = 0;
      history << (history.tellp() > 0 ? ",\n    " : "    ") << "{\"step\": " << step << ", \"loss\": " << json_number(last_loss)
              << ", \"lr\": " << json_number(lr) << ", \"loss_scale\": " << json_number(scale) << "}";
      if (every > 0 && step % every == 0) save_checkpoint();
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (tty) {
        double frac = static_cast<double>(micro) / static_cast<double>(total_micro);
        int filled = static_cast<int>(frac * 30);
        double eta = frac > 0 ? secs / frac - secs : 0;
        std::fprintf(stderr, "\r[%s%s] %3.0f%% step %lld/%lld loss %.4f  %.0f rows/s  ETA %.0fs ", std::string(filled, '#').c_str(),
                     std::string(30 - filled, '.').c_str(), 100 * frac, static_cast<long long>(step),
                     static_cast<long long>(total_steps), last_loss,
                     static_cast<double>(rows_done * world) / std::max(secs, 1e-9), eta);
      }
    }
    bool epoch_end = micro % micro_per_epoch == 0 || micro == total_micro;
    if (epoch_end) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::string line = "epoch " + std::to_string((micro - 1) / micro_per_epoch + 1) + "  step " +
                         std::to_string(static_cast<int64_t>(s.stat("step"))) + "  loss " + json_number(epoch_loss / epoch_count);
      // Every rank evaluates (the same weights, the same result; rank 0 prints it): a rank-0-only
      // evaluation would keep the other ranks waiting in the next step, against --dist-timeout.
      if (a.has("--val")) {
        EvalResult v = evaluate(s, val, val_names, label, loss_kind, batch);
        val_results.push_back(v);
        val_curve.push_back({static_cast<int64_t>(s.stat("step")), v.loss});
        const int64_t x = static_cast<int64_t>(s.stat("step") + s.stat("skipped_steps"));
        plot.val.push_back({double(x), v.loss});
        if (!csv.empty()) {
          csv.back().val_loss = v.loss;
          csv.back().val_accuracy = v.accuracy;
        }
        if (a.has("--tensorboard")) {
          if (std::isfinite(v.loss)) s.log_scalar("val/loss", v.loss);
          if (std::isfinite(v.accuracy)) s.log_scalar("val/accuracy", v.accuracy);
        }
        line += "  val_loss " + json_number(v.loss);
        if (std::isfinite(v.accuracy)) line += "  val_accuracy " + json_number(v.accuracy);
      }
      if (a.get("--precision", "fp32") != "fp32" || a.has("--loss-scale"))
        line += "  loss_scale " + json_number(s.stat("loss_scale")) + "  skipped " +
                std::to_string(static_cast<int64_t>(s.stat("skipped_steps")));
      const double rate = rows_done / std::max(secs, 1e-9);
      line += "  " + json_number(rate * static_cast<double>(world)) + " rows/s";
      if (world > 1) line += " (" + std::to_string(world) + " ranks x " + json_number(rate) + " rows/s)";
      if (tty) std::fprintf(stderr, "\n");
      if (lead) std::fprintf(stderr, "%s\n", line.c_str());
      epoch_loss = 0;
      epoch_count = 0;
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t taken = static_cast<int64_t>(s.stat("step")) - start_step;
  const int64_t skipped = static_cast<int64_t>(s.stat("skipped_steps")) - start_skipped;
  if (taken == 0 && skipped > 0)
    throw otter::cpp::Error(OTTER_ERROR_NON_FINITE, "every one of the " + std::to_string(skipped) +
                            " optimizer steps was skipped for a non-finite gradient: nothing was trained and nothing "
                            "was written (check the data for NaN/Inf, lower --lr or --loss-scale)");
  if (a.has("--checkpoint")) save_checkpoint();  // rank 0 writes (the other ranks' calls write nothing)
  s.export_model(a.get("--out"));               // likewise
  if (!lead) return 0;
  std::fprintf(stderr, "otter: wrote %s (%lld steps, final loss %s, %.2f s)\n", a.get("--out").c_str(),
               static_cast<long long>(s.stat("step")), json_number(last_loss).c_str(), secs);
  const double rate = rows_done / std::max(secs, 1e-9);
  if (a.has("--metrics")) {
    std::ostringstream m;
    m << "{\n  \"steps\": " << static_cast<int64_t>(s.stat("step")) << ",\n  \"skipped_steps\": "
      << static_cast<int64_t>(s.stat("skipped_steps")) << ",\n  \"final_loss\": " << json_number(last_loss)
      << ",\n  \"loss_scale\": " << json_number(s.stat("loss_scale")) << ",\n  \"device\": \"" << s.device()
      << "\",\n  \"compute\": \"" << s.compute() << "\",\n  \"seconds\": " << json_number(secs) << ",\n  \"rows_per_second\": " << json_number(rate * static_cast<double>(world))
      << ",\n  \"world_size\": " << world << ",\n  \"rows_per_second_per_rank\": " << json_number(rate)
      << ",\n  \"activation_arena_bytes\": " << json_number(s.stat("arena_bytes"))
      << ",\n  \"activation_sum_bytes\": " << json_number(s.stat("intermediate_bytes"))
      << ",\n  \"history\": [\n" << history.str() << "\n  ]";
    if (!val_results.empty()) {
      m << ",\n  \"val\": [";
      for (size_t i = 0; i < val_results.size(); ++i)
        m << (i ? ", " : "") << "{\"step\": " << val_curve[i].first << ", \"loss\": " << json_number(val_results[i].loss)
          << ", \"accuracy\": " << json_number(val_results[i].accuracy) << "}";
      m << "]";
    }
    m << "\n}\n";
    write_text(a.get("--metrics"), m.str());
  }
  if (a.has("--metrics-csv")) {
    auto cell = [](double v) { return std::isfinite(v) ? json_number(v) : std::string(); };
    std::ostringstream c;
    c << "batch,step,loss,lr,loss_scale,skipped_steps,grad_norm,step_time_ms,rows_per_second,val_loss,val_accuracy\n";
    for (const CsvRow& r : csv)
      c << r.batch << "," << r.step << "," << cell(r.loss) << "," << cell(r.lr) << "," << cell(r.scale) << "," << r.skipped
        << "," << cell(r.grad_norm) << "," << cell(r.ms) << "," << cell(r.rows_per_s) << "," << cell(r.val_loss) << ","
        << cell(r.val_accuracy) << "\n";
    write_text(a.get("--metrics-csv"), c.str());
  }
  if (a.has("--plot")) write_text(a.get("--plot"), otter::cli::render_loss_svg(plot));
  return 0;
}

int cmd_eval(int argc, char** argv) {
  Args a(argc, argv, 2, {"--data", "--label", "--loss", "--loss-output", "--device", "--metrics", "--batch-size", "--precision",
                         "--outputs", "--training-graph"});
  if (a.positional.size() != 1) throw UsageError("eval needs exactly one MODEL.onnx (see otter eval --help)");
  if (!a.has("--data")) throw UsageError("eval needs --data TEST.npz");
  const int64_t batch = a.integer("--batch-size", 256, 1, INT64_MAX);
  std::vector<std::pair<std::string, std::string>> inputs = paths_of(a, {"--data"});
  inputs.insert(inputs.begin(), {"MODEL", a.positional[0]});
  check_outputs(inputs, paths_of(a, {"--metrics", "--outputs"}));
  otter::cpp::Options o;
  set_common(o, a, false);
  otter::cpp::Session s(a.positional[0], o);
  Dataset d = load_npz(a.get("--data"));
  std::string label = a.get("--label", "label"), loss_kind = a.get("--loss", "none");
  auto names = feed_names(s, d, a.get("--data"), label, false);
  std::map<std::string, HostTensor> outputs;
  EvalResult r = evaluate(s, d, names, label, loss_kind, std::min<int64_t>(batch, std::max<int64_t>(d.rows, 1)),
                          a.has("--outputs") ? &outputs : nullptr);
  if (a.has("--outputs")) {
    std::vector<const char*> out_names;
    std::vector<otter_tensor_view> views;
    for (auto& kv : outputs) {
      out_names.push_back(kv.first.c_str());
      views.push_back(kv.second.view());
    }
    otter::cpp::check(otter_npz_save(a.get("--outputs").c_str(), views.size(), out_names.data(), views.data()));
  }
  std::printf("eval.loss %s\n", json_number(r.loss).c_str());
  if (std::isfinite(r.accuracy)) std::printf("eval.accuracy %s\n", json_number(r.accuracy).c_str());
  if (a.has("--metrics")) {
    std::ostringstream m;
    m << "{\n  \"eval\": {\"loss\": " << json_number(r.loss);
    if (std::isfinite(r.accuracy)) m << ", \"accuracy\": " << json_number(r.accuracy);
    m << ", \"rows\": " << r.rows << "}\n}\n";
    write_text(a.get("--metrics"), m.str());
  }
  return 0;
}

int cmd_export(int argc, char** argv) {
  Args a(argc, argv, 2, {"--model", "--out"});
  if (a.positional.size() != 1) throw UsageError("export needs exactly one CHECKPOINT (see otter export --help)");
  if (!a.has("--model") || !a.has("--out")) throw UsageError("export needs --model MODEL.onnx and --out TRAINED.onnx");
  check_outputs({{"CHECKPOINT", a.positional[0]}, {"--model", a.get("--model")}}, {{"--out", a.get("--out")}});
  otter::cpp::check(otter_checkpoint_export(a.positional[0].c_str(), a.get("--model").c_str(), a.get("--out").c_str()));
  std::fprintf(stderr, "otter: wrote %s\n", a.get("--out").c_str());
  return 0;
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + (s[i] < 0 ? std::string("?") : std::to_string(s[i]));
  return r + "]";
}

const char* dtype_text(otter_dtype t) {
  switch (t) {
    case OTTER_DTYPE_FLOAT32: return "float32";
    case OTTER_DTYPE_FLOAT64: return "float64";
    case OTTER_DTYPE_FLOAT16: return "float16";
    case OTTER_DTYPE_BFLOAT16: return "bfloat16";
    case OTTER_DTYPE_INT64: return "int64";
    case OTTER_DTYPE_INT32: return "int32";
    case OTTER_DTYPE_INT8: return "int8";
    case OTTER_DTYPE_UINT8: return "uint8";
    case OTTER_DTYPE_BOOL: return "bool";
    default: return "undefined";
  }
}

int cmd_inspect(int argc, char** argv) {
  Args a(argc, argv, 2, {"--precision", "--loss", "--loss-output", "--label", "--device", "--precision-op",
                         "--precision-node", "--freeze", "--train-only"});
  if (a.positional.size() != 1) throw UsageError("inspect needs exactly one MODEL.onnx (see otter inspect --help)");
  otter::cpp::Options o;
  set_common(o, a, false);
  otter::cpp::Session s(a.positional[0], o);
  std::printf("model %s (device %s)\ncompute: %s\nthread wait: %s\ninputs (a training step feeds all of them):\n",
              a.positional[0].c_str(), s.device().c_str(), s.compute().c_str(), wait_policy_text().c_str());
  for (auto& i : s.inputs()) std::printf("  %-24s %-8s %s\n", i.name.c_str(), dtype_text(i.dtype), shape_text(i.shape).c_str());
  std::printf("outputs:\n");
  for (auto& i : s.outputs()) std::printf("  %-24s %-8s %s\n", i.name.c_str(), dtype_text(i.dtype), shape_text(i.shape).c_str());
  std::printf("trainable parameters:\n");
  int64_t total = 0;
  for (auto& p : s.parameters()) {
    int64_t n = 1;
    for (int64_t d : p.shape) n *= d;
    total += n;
    std::printf("  %-24s %-8s %s\n", p.name.c_str(), dtype_text(p.dtype), shape_text(p.shape).c_str());
  }
  std::printf("  total %lld values\n", static_cast<long long>(total));
  std::printf("initializers not trained (and why):\n");
  for (auto& r : s.initializer_roles())
    if (!r.trained) std::printf("  %-24s %s\n", r.name.c_str(), r.reason.c_str());
  for (const std::string& note : s.notes()) std::printf("warning: %s\n", note.c_str());
  std::printf("nodes (name, op, compute dtype, reason):\n");
  size_t n = 0;
  otter::cpp::check(otter_session_node_count(s.handle(), &n));
  for (size_t i = 0; i < n; ++i) {
    const char *name, *op, *dtype;
    const char* reason = "";
    otter::cpp::check(otter_session_node_info(s.handle(), i, &name, &op, &dtype));
    otter::cpp::check(otter_session_node_precision(s.handle(), i, &reason));
    std::printf("  %-36s %-24s %-9s %s\n", name, op, dtype, reason);
  }
  return 0;
}

// Prints the error (with the rank in a distributed run) and returns the status; a distributed run
// ends here with _Exit (see g_distributed).
int fail(const std::string& cmd, const std::string& what, int status) {
  std::string where = otter::valid_utf8(cmd);
  if (g_distributed) where += " (rank " + std::to_string(g_rank) + ")";
  std::fprintf(stderr, "otter %s: %s\n", where.c_str(), otter::valid_utf8(what).c_str());
  if (g_distributed) {
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(status);
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  choose_wait_policy(argv);
  std::string cmd = argc > 1 ? argv[1] : "";
  auto wants_help = [&] {
    for (int i = 2; i < argc; ++i)
      if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) return true;
    return false;
  };
  try {
    if (cmd.empty() || cmd == "--help" || cmd == "-h" || cmd == "help") {
      std::printf("%s%s\n", kMainHelp, otter_version());
      return cmd.empty() ? 2 : 0;
    }
    if (cmd == "--version") { std::printf("otter %s\n", otter_version()); return 0; }
    if (cmd == "train") { if (wants_help()) { std::printf("%s", kTrainHelp); return 0; } return cmd_train(argc, argv); }
    if (cmd == "eval") { if (wants_help()) { std::printf("%s", kEvalHelp); return 0; } return cmd_eval(argc, argv); }
    if (cmd == "export") { if (wants_help()) { std::printf("%s", kExportHelp); return 0; } return cmd_export(argc, argv); }
    if (cmd == "inspect") { if (wants_help()) { std::printf("%s", kInspectHelp); return 0; } return cmd_inspect(argc, argv); }
    std::fprintf(stderr, "otter: unknown command '%s' (try otter --help)\n", otter::valid_utf8(cmd).c_str());
    return 2;
  } catch (const UsageError& e) {
    return fail(cmd, e.what(), 2);
  } catch (const otter::cpp::Error& e) {
    return fail(cmd, e.what(), 1);
  } catch (const std::exception& e) {
    return fail(cmd, e.what(), 1);
  }
}
