// Data-parallel training under MPI (label `mpi`; run by tests/dist/run_mpi.sh under mpirun with 2
// ranks): each case builds a small MLP in memory, trains it distributed (distributed=mpi) and
// compares with a session of one process (distributed=off) inside the same rank, so no file is
// exchanged. Cases (argv[1]):
//   equivalence  2 ranks with half batches == 1 rank with the full batch to 1e-6 over 20 steps
//                (SGD+momentum and AdamW, FP32; gradient accumulation); FP16 with dynamic loss
//                scaling == 1 rank accumulating the same two halves (the same FP16 roundings), and
//                close to the full batch; the ranks' weights are bit-identical
//   overflow     FP16: an overflow in rank 1's half only makes both ranks skip that step
//   resume       checkpoint at step 5 + resume to step 12 under 2 ranks == 12 uninterrupted steps
//   mismatch     a different model or different options on one rank: an error on every rank
//   batchnorm    local batch statistics; the running statistics are rank 0's on every rank
//   timeout      a rank that stops calling collectives: the other ends within dist_timeout
//   killed       rank 1 is killed (SIGKILL) mid-run: the run ends (checked by run_mpi.sh)
// Prints "PASS <case>" on each rank that passed; exits 1 on a failure.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/train/session.h"
#include "tests/common/onnx_builder.h"

using namespace otter;
using namespace otter::testing;

namespace {

int g_rank = 0, g_world = 1;
int g_failures = 0;

#define EXPECT(cond, ...)                                                              \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "rank %d: FAILED %s:%d: %s: ", g_rank, __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                               \
      std::fprintf(stderr, "\n");                                                      \
      ++g_failures;                                                                    \
    }                                                                                  \
  } while (0)

constexpr int64_t kIn = 8, kClasses = 4;

// x[N,8] -> MatMul W1 -> Add b1 -> Relu -> MatMul W2 -> Add b2 -> logits[N,4].
LoadedModel mlp(int64_t hidden = 16) {
  onnx::ModelProto m = new_model(18);
  add_input(m, "x", onnx::TensorProto::FLOAT, {std::string("N"), kIn});
  std::vector<float> w1(static_cast<size_t>(kIn * hidden)), b1(static_cast<size_t>(hidden)),
      w2(static_cast<size_t>(hidden * kClasses)), b2(kClasses);
  for (size_t i = 0; i < w1.size(); ++i) w1[i] = 0.3f * std::sin(0.7f * static_cast<float>(i) + 0.1f);
  for (size_t i = 0; i < b1.size(); ++i) b1[i] = 0.05f * std::cos(1.3f * static_cast<float>(i));
  for (size_t i = 0; i < w2.size(); ++i) w2[i] = 0.3f * std::cos(0.9f * static_cast<float>(i) + 0.2f);
  for (size_t i = 0; i < b2.size(); ++i) b2[i] = 0.01f * static_cast<float>(i);
  add_float_init(m, "W1", {kIn, hidden}, w1);
  add_float_init(m, "b1", {hidden}, b1);
  add_float_init(m, "W2", {hidden, kClasses}, w2);
  add_float_init(m, "b2", {kClasses}, b2);
  add_node(m, "MatMul", {"x", "W1"}, {"h0"}, "fc1");
  add_node(m, "Add", {"h0", "b1"}, {"h1"}, "fc1_bias");
  add_node(m, "Relu", {"h1"}, {"h2"}, "relu");
  add_node(m, "MatMul", {"h2", "W2"}, {"z0"}, "fc2");
  add_node(m, "Add", {"z0", "b2"}, {"logits"}, "fc2_bias");
  add_output(m, "logits");
  return load(m);
}

// Rows [begin, end) of the global batch of step `step` (deterministic, the same on every rank).
std::map<std::string, Tensor> batch(int64_t step, int64_t begin, int64_t end, float poison = 0) {
  const int64_t n = end - begin;
  Tensor x(DType::Float32, {n, kIn}), y(DType::Int64, {n});
  auto hash = [](uint64_t v) {  // splitmix64: well-mixed, the same everywhere
    v += 0x9E3779B97F4A7C15ULL;
    v = (v ^ (v >> 30)) * 0xBF58476D1CE4E5B9ULL;
    v = (v ^ (v >> 27)) * 0x94D049BB133111EBULL;
    return v ^ (v >> 31);
  };
  for (int64_t r = 0; r < n; ++r) {
    const uint64_t row = static_cast<uint64_t>(step * 1000 + begin + r);
    for (int64_t j = 0; j < kIn; ++j)
      x.data<float>()[r * kIn + j] = static_cast<float>(hash(row * 64 + static_cast<uint64_t>(j)) >> 40) / 8388608.0f - 1.0f;
    y.data<int64_t>()[r] = static_cast<int64_t>(hash(row * 64 + 63) % kClasses);
  }
  if (poison != 0) x.data<float>()[0] = poison;
  return {{"x", x}, {"label", y}};
}

TrainConfig config(const std::string& optimizer, const std::string& precision, const std::string& dist, int64_t accum = 1) {
  TrainConfig c;
  c.loss.kind = "cross_entropy";
  c.optimizer.kind = optimizer;
  if (optimizer == "sgd") {
    c.optimizer.lr = 0.1;
    c.optimizer.momentum = 0.9;
  } else {
    c.optimizer.lr = 1e-2;
  }
  c.optimizer = resolve_optimizer(c.optimizer);
  c.precision = precision;
  c.grad_accum = accum;
  c.dist.mode = dist;
  c.dist.timeout_s = 60;
  return c;
}

std::vector<float> params_of(const Session& s) {
  std::vector<float> all;
  for (const ParameterInfo& p : s.parameters()) {
    Tensor t = s.get_parameter(p.name);
    all.insert(all.end(), t.data<float>(), t.data<float>() + t.numel());
  }
  return all;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

// Whether every rank holds exactly these bits (FNV-1a of the bytes, compared by max and -min).
bool same_on_every_rank(Communicator& comm, const std::vector<float>& v) {
  uint64_t h = 1469598103934665603ULL;
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < v.size() * sizeof(float); ++i) h = (h ^ p[i]) * 1099511628211ULL;
  double mine = static_cast<double>(h >> 12);  // exact in a double
  double both[2] = {mine, -mine};
  comm.host_allreduce_max(both, 2);
  return both[0] == -both[1];
}

std::shared_ptr<Communicator> test_comm() {
  DistConfig d;
  d.mode = "mpi";
  d.timeout_s = 60;
  return make_communicator(d, Device::CPU, "test harness");
}

// One distributed run of `steps` steps (global batch 16, rank r takes rows [8r, 8r+8) split into
// `accum` micro-batches) against a single process on the full batch (or, when ref_accum = 2, on
// the two halves accumulated).
void equivalence_case(Communicator& comm, const std::string& opt, const std::string& precision, int64_t accum,
                      int64_t ref_accum, double tolerance, double clip_norm = 0) {
  const int64_t global = 16, half = global / 2, steps = 20;
  TrainConfig dc = config(opt, precision, "mpi", accum), rc = config(opt, precision, "off", ref_accum);
  dc.clip_norm = rc.clip_norm = clip_norm;
  Session dist(mlp(), dc);
  Session ref(mlp(), rc);
  EXPECT(dist.world_size() == 2 && dist.rank() == g_rank, "world %d rank %d", dist.world_size(), dist.rank());
  double worst = 0;
  for (int64_t step = 0; step < steps; ++step) {
    const int64_t begin = g_rank * half, micro = half / accum;
    for (int64_t m = 0; m < accum; ++m) dist.train_step(batch(step, begin + m * micro, begin + (m + 1) * micro));
    if (ref_accum == 1) {
      ref.train_step(batch(step, 0, global));
    } else {
      ref.train_step(batch(step, 0, half));
      ref.train_step(batch(step, half, global));
    }
    worst = std::max(worst, max_diff(params_of(dist), params_of(ref)));
  }
  const std::string what = opt + " " + precision + " accum " + std::to_string(accum) +
                           (clip_norm > 0 ? " clip" : "") + " vs 1 rank" +
                           (ref_accum == 1 ? " full batch" : " accumulating the halves");
  EXPECT(worst <= tolerance, "%s: max |w_2ranks - w_1rank| over 20 steps = %.3g > %.1g", what.c_str(), worst, tolerance);
  EXPECT(dist.stats().step == ref.stats().step && dist.stats().skipped_steps == ref.stats().skipped_steps,
         "%s: steps %lld/%lld skipped %lld/%lld", what.c_str(), (long long)dist.stats().step, (long long)ref.stats().step,
         (long long)dist.stats().skipped_steps, (long long)ref.stats().skipped_steps);
  EXPECT(dist.loss_scale() == ref.loss_scale(), "%s: loss scale %g vs %g", what.c_str(), dist.loss_scale(), ref.loss_scale());
  if (clip_norm > 0)  // the global norm of the averaged gradient, as the single process computes it
    EXPECT(std::fabs(dist.stats().last_grad_norm - ref.stats().last_grad_norm) <= 1e-6 * ref.stats().last_grad_norm &&
               ref.stats().last_grad_norm > clip_norm,
           "%s: grad norm %g vs %g (clip at %g)", what.c_str(), dist.stats().last_grad_norm, ref.stats().last_grad_norm,
           clip_norm);
  EXPECT(same_on_every_rank(comm, params_of(dist)), "%s: the ranks' weights differ", what.c_str());
  if (g_rank == 0) std::printf("  %-58s max diff %.3g (tolerance %.0e)\n", what.c_str(), worst, tolerance);
}

void case_equivalence(Communicator& comm) {
  equivalence_case(comm, "sgd", "fp32", 1, 1, 1e-6);
  equivalence_case(comm, "adamw", "fp32", 1, 1, 1e-6);
  equivalence_case(comm, "sgd", "fp32", 2, 1, 1e-6);  // accumulation on each rank, one allreduce per step
  equivalence_case(comm, "sgd", "fp32", 1, 1, 1e-6, 0.05);  // clipping by the global norm, after the allreduce
  equivalence_case(comm, "sgd", "fp16", 1, 2, 1e-6);
  equivalence_case(comm, "adamw", "fp16", 1, 2, 1e-6);
  // Against the full batch, FP16 differs by the rounding of each half's FP16 weight gradient.
  equivalence_case(comm, "sgd", "fp16", 1, 1, 5e-4);
  equivalence_case(comm, "adamw", "fp16", 1, 1, 5e-4);
}

void case_overflow(Communicator& comm) {
  const int64_t half = 8;
  Session dist(mlp(), config("adamw", "fp16", "mpi"));
  Session ref(mlp(), config("adamw", "fp16", "off", 2));
  const double scale0 = dist.loss_scale();
  for (int64_t step = 0; step < 8; ++step) {
    const float poison = step == 3 ? 1e30f : 0.0f;  // inf in FP16: rank 1's half only
    dist.train_step(batch(step, g_rank * half, (g_rank + 1) * half, g_rank == 1 ? poison : 0.0f));
    ref.train_step(batch(step, 0, half));
    ref.train_step(batch(step, half, 2 * half, poison));
    if (step == 3) {
      EXPECT(dist.stats().last_step_skipped, "step 3 was not skipped on this rank");
      EXPECT(dist.stats().skipped_steps == 1, "skipped %lld", (long long)dist.stats().skipped_steps);
      EXPECT(dist.loss_scale() == scale0 / 2, "loss scale %g after the overflow (was %g)", dist.loss_scale(), scale0);
    }
  }
  EXPECT(dist.stats().step == 7 && dist.stats().skipped_steps == 1, "steps %lld skipped %lld",
         (long long)dist.stats().step, (long long)dist.stats().skipped_steps);
  EXPECT(max_diff(params_of(dist), params_of(ref)) <= 1e-6, "vs 1 rank: %.3g", max_diff(params_of(dist), params_of(ref)));
  EXPECT(same_on_every_rank(comm, params_of(dist)), "the ranks' weights differ");
}

void case_resume(Communicator& comm, const std::string& dir) {
  const int64_t half = 8;
  // Each rank names its own path: rank 0 writes its file, rank 1 writes nothing; loading reads
  // rank 0's path on rank 0 (rank 1's path is never opened).
  const std::string path = dir + "/dist_resume_rank" + std::to_string(g_rank) + ".ckpt";
  if (g_rank == 0) {
    std::remove((dir + "/dist_resume_rank0.ckpt").c_str());
    std::remove((dir + "/dist_resume_rank1.ckpt").c_str());
  }
  comm.barrier();
  auto run = [&](Session& s, int64_t from, int64_t to) {
    for (int64_t step = from; step < to; ++step) s.train_step(batch(step, g_rank * half, (g_rank + 1) * half));
  };
  for (const std::string precision : {"fp32", "fp16"}) {
    Session whole(mlp(), config("adamw", precision, "mpi"));
    run(whole, 0, 12);
    Session first(mlp(), config("adamw", precision, "mpi"));
    run(first, 0, 5);
    first.save_checkpoint(path);  // rank 0 writes; the others write nothing
    comm.barrier();
    EXPECT(access((dir + "/dist_resume_rank0.ckpt").c_str(), F_OK) == 0, "rank 0 wrote no checkpoint");
    EXPECT(access((dir + "/dist_resume_rank1.ckpt").c_str(), F_OK) != 0, "rank 1 wrote a checkpoint");
    Session second(mlp(), config("adamw", precision, "mpi"));
    second.load_checkpoint(path);
    EXPECT(second.stats().step == 5, "resumed at step %lld", (long long)second.stats().step);
    run(second, 5, 12);
    const double d = max_diff(params_of(whole), params_of(second));
    EXPECT(d == 0, "%s: resumed run differs from the uninterrupted one by %.3g", precision.c_str(), d);
    EXPECT(whole.loss_scale() == second.loss_scale(), "loss scale %g vs %g", whole.loss_scale(), second.loss_scale());
    EXPECT(same_on_every_rank(comm, params_of(second)), "the ranks' weights differ after resume");
    comm.barrier();
  }
  {  // Mid-accumulation the partial sums are each rank's own: refused on every rank.
    Session acc(mlp(), config("adamw", "fp32", "mpi", 2));
    acc.train_step(batch(0, g_rank * half, g_rank * half + 4));
    try {
      acc.save_checkpoint(path);
      EXPECT(false, "a checkpoint was saved mid-accumulation");
    } catch (const Error& e) {
      EXPECT(std::strstr(e.what(), "between optimizer steps only"), "message: %s", e.what());
    }
    acc.train_step(batch(0, g_rank * half + 4, g_rank * half + 8));
    acc.save_checkpoint(path);  // at the step boundary: fine
  }
  // A checkpoint missing on rank 0: the same error on every rank.
  Session s(mlp(), config("adamw", "fp32", "mpi"));
  try {
    s.load_checkpoint(dir + "/no_such.ckpt");
    EXPECT(false, "loading a missing checkpoint succeeded");
  } catch (const Error& e) {
    EXPECT(std::strstr(e.what(), "no_such.ckpt") && std::strstr(e.what(), "rank 0"), "message: %s", e.what());
  }
  s.train_step(batch(0, g_rank * half, (g_rank + 1) * half));  // the world still works
}

void expect_refused(const std::function<void()>& create, const char* what, const char* on_rank1) {
  try {
    create();
    EXPECT(false, "%s: the session was created", what);
  } catch (const Error& e) {
    EXPECT(e.kind() == ErrorKind::Distributed, "%s: kind %d: %s", what, static_cast<int>(e.kind()), e.what());
    EXPECT(std::strstr(e.what(), "rank(s) 1 differ from rank 0"), "%s: message: %s", what, e.what());
    if (g_rank == 1) EXPECT(std::strstr(e.what(), on_rank1), "%s: message lacks '%s': %s", what, on_rank1, e.what());
    if (g_rank == 0) std::printf("  %s refused: %s\n", what, e.what());
  }
}

void case_mismatch(Communicator& comm) {
  expect_refused([] { Session s(mlp(g_rank == 1 ? 17 : 16), config("sgd", "fp32", "mpi")); }, "a different model",
                 "rank 1 has 'parameter W1 [8, 17]' where rank 0 has 'parameter W1 [8, 16]'");
  expect_refused([] { Session s(mlp(), config(g_rank == 1 ? "adamw" : "sgd", "fp32", "mpi")); }, "another optimizer",
                 "rank 1 has 'optimizer adamw");
  expect_refused([] { Session s(mlp(), config("sgd", g_rank == 1 ? "fp16" : "fp32", "mpi")); }, "another precision",
                 "rank 1 has 'precision fp16'");
  // The world is still usable after an agreed refusal.
  Session s(mlp(), config("sgd", "fp32", "mpi"));
  s.train_step(batch(0, g_rank * 8, g_rank * 8 + 8));
  EXPECT(same_on_every_rank(comm, params_of(s)), "the ranks' weights differ");
}

// x -> MatMul -> BatchNormalization (batch statistics while training) -> Relu -> MatMul.
LoadedModel bn_model() {
  onnx::ModelProto m = new_model(18);
  add_input(m, "x", onnx::TensorProto::FLOAT, {std::string("N"), kIn});
  std::vector<float> w1(kIn * 6), w2(6 * kClasses);
  for (size_t i = 0; i < w1.size(); ++i) w1[i] = 0.4f * std::sin(0.5f * static_cast<float>(i) + 0.3f);
  for (size_t i = 0; i < w2.size(); ++i) w2[i] = 0.4f * std::cos(0.8f * static_cast<float>(i));
  add_float_init(m, "W1", {kIn, 6}, w1);
  add_float_init(m, "gamma", {6}, std::vector<float>(6, 1.0f));
  add_float_init(m, "beta", {6}, std::vector<float>(6, 0.0f));
  add_float_init(m, "mean", {6}, std::vector<float>(6, 0.0f));
  add_float_init(m, "var", {6}, std::vector<float>(6, 1.0f));
  add_float_init(m, "W2", {6, kClasses}, w2);
  add_node(m, "MatMul", {"x", "W1"}, {"h0"}, "fc1");
  add_node(m, "BatchNormalization", {"h0", "gamma", "beta", "mean", "var"}, {"h1"}, "bn");
  add_node(m, "Relu", {"h1"}, {"h2"}, "relu");
  add_node(m, "MatMul", {"h2", "W2"}, {"logits"}, "fc2");
  add_output(m, "logits");
  return load(m);
}

void case_batchnorm(Communicator& comm) {
  // Each rank normalises its own half with its batch statistics (so the weights still agree: the
  // gradients are averaged); the running statistics (used by eval_step, written by export) are
  // rank 0's everywhere.
  Session s(bn_model(), config("sgd", "fp32", "mpi"));
  Session alone(bn_model(), config("sgd", "fp32", "off"));
  for (int64_t step = 0; step < 5; ++step) {
    s.train_step(batch(step, g_rank * 8, g_rank * 8 + 8));
    alone.train_step(batch(step, g_rank * 8, g_rank * 8 + 8));
  }
  const Tensor x = batch(99, 0, 8).at("x");
  const Tensor y = s.eval_step({{"x", x}}).at("logits"), y_alone = alone.eval_step({{"x", x}}).at("logits");
  std::vector<float> v(y.data<float>(), y.data<float>() + y.numel());
  std::vector<float> v_alone(y_alone.data<float>(), y_alone.data<float>() + y_alone.numel());
  EXPECT(same_on_every_rank(comm, v), "eval outputs (running statistics) differ between the ranks");
  EXPECT(!same_on_every_rank(comm, v_alone), "the check is void: the ranks' own statistics would agree too");
  EXPECT(same_on_every_rank(comm, params_of(s)), "the ranks' weights differ");
}

void case_timeout(Communicator&) {
  TrainConfig c = config("sgd", "fp32", "mpi");
  c.dist.timeout_s = 3;
  Session s(mlp(), c);
  if (g_rank == 1) {  // stops taking part (as a hung or stalled peer would)
    std::this_thread::sleep_for(std::chrono::seconds(60));
    return;
  }
  // Rank 0's watchdog ends this process after 3 s (checked by run_mpi.sh: the message, the time).
  std::fprintf(stderr, "rank 0: stepping without rank 1\n");
  s.train_step(batch(0, 0, 8));
  EXPECT(false, "the step completed without rank 1");
}

void case_killed(Communicator&) {
  TrainConfig c = config("sgd", "fp32", "mpi");
  c.dist.timeout_s = 20;
  Session s(mlp(), c);
  for (int64_t step = 0; step < 1000000; ++step) {
    if (g_rank == 1 && step == 3) {
      std::fflush(stdout);
      raise(SIGKILL);
    }
    s.train_step(batch(step, g_rank * 8, g_rank * 8 + 8));
  }
  EXPECT(false, "training went on without rank 1");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: test_mpi equivalence|overflow|resume DIR|mismatch|timeout|killed\n");
    return 2;
  }
  const std::string name = argv[1];
  try {
    std::shared_ptr<Communicator> comm = test_comm();
    if (!comm) {
      std::fprintf(stderr, "test_mpi: not started by mpirun\n");
      return 2;
    }
    g_rank = comm->rank();
    g_world = comm->world_size();
    if (g_world != 2) {
      std::fprintf(stderr, "test_mpi: needs exactly 2 ranks, got %d\n", g_world);
      return 2;
    }
    if (name == "equivalence") case_equivalence(*comm);
    else if (name == "overflow") case_overflow(*comm);
    else if (name == "resume") case_resume(*comm, argc > 2 ? argv[2] : ".");
    else if (name == "mismatch") case_mismatch(*comm);
    else if (name == "batchnorm") case_batchnorm(*comm);
    else if (name == "timeout") case_timeout(*comm);
    else if (name == "killed") case_killed(*comm);
    else {
      std::fprintf(stderr, "test_mpi: unknown case '%s'\n", name.c_str());
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: FAILED with an exception: %s\n", g_rank, e.what());
    return 1;
  }
  if (g_failures) return 1;
  std::printf("PASS %s (rank %d)\n", name.c_str(), g_rank);
  return 0;
}
