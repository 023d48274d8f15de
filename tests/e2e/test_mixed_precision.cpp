// Mixed precision on the CPU (FP16/BF16 storage, FP32 compute): conversions against NumPy and
// ml_dtypes, the autocast policy on small graphs (dtype of every node, exact number of Casts),
// the loss-scaler state machine, a skipped step leaving every piece of state untouched, overflow
// and underflow end to end, and the digits MLP in fp16 and bf16 against fp32.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/common/batches.h"
#include "runtime/core/half.h"
#include "runtime/train/loss_scaler.h"
#include "runtime/train/npz.h"
#include "runtime/train/session.h"
#include "tests/common/onnx_builder.h"

using namespace otter;
using otter::testing::rows;
using namespace otter::testing;

namespace {

std::string digits() { return std::string(OTTER_TESTDATA) + "/digits"; }

bool half_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu); }
bool bf16_is_nan(uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x7fu); }

TrainConfig mlp_config(const std::string& precision) {
  TrainConfig c;
  c.loss.kind = "cross_entropy";
  c.loss.output = "logits";
  c.optimizer.kind = "adamw";
  c.optimizer.lr = 3e-3;
  c.precision = precision;
  return c;
}

std::vector<float> params_of(const Session& s) {
  std::vector<float> r;
  for (auto& p : s.parameters()) {
    Tensor t = s.get_parameter(p.name);
    r.insert(r.end(), t.data<float>(), t.data<float>() + t.numel());
  }
  return r;
}

// Forward nodes as (op, compute dtype) and the number of Casts the policy added.
struct PolicyView {
  std::map<std::string, std::string> dtype_of;  // node name -> compute dtype
  std::map<std::string, std::string> reason_of;
  int casts = 0;
};

PolicyView policy_view(const Session& s) {
  PolicyView v;
  const Graph& g = s.graph();
  for (int n : s.forward_nodes()) {
    const Node& node = g.nodes[n];
    if (node.name.rfind("autocast/", 0) == 0) { v.casts++; continue; }
    const PrecisionDecision* d = s.precision_of(n);
    v.dtype_of[node.name] = d ? dtype_name(d->dtype) : "untouched";
    v.reason_of[node.name] = d ? d->reason : "";
  }
  return v;
}

}  // namespace

TEST(HalfConversion, MatchesNumPyAndMlDtypes) {
  auto cases = read_npz(std::string(OTTER_TESTDATA) + "/half_cases.npz");
  const Tensor& f32 = cases.at("f32");
  const int32_t* f16 = cases.at("f16_bits").data<int32_t>();
  const int32_t* bf16 = cases.at("bf16_bits").data<int32_t>();
  const float* x = f32.data<float>();
  int64_t bad16 = 0, badbf = 0;
  for (int64_t i = 0; i < f32.numel(); ++i) {
    uint16_t h = math::float_to_half_bits(x[i]), b = math::float_to_bfloat16_bits(x[i]);
    uint16_t want_h = static_cast<uint16_t>(f16[i]), want_b = static_cast<uint16_t>(bf16[i]);
    if (!(h == want_h || (half_is_nan(h) && half_is_nan(want_h)))) {
      if (bad16++ < 5) ADD_FAILURE() << "fp16 of " << x[i] << ": got 0x" << std::hex << h << " want 0x" << want_h;
    }
    if (!(b == want_b || (bf16_is_nan(b) && bf16_is_nan(want_b)))) {
      if (badbf++ < 5) ADD_FAILURE() << "bf16 of " << x[i] << ": got 0x" << std::hex << b << " want 0x" << want_b;
    }
  }
  EXPECT_EQ(bad16, 0);
  EXPECT_EQ(badbf, 0);
  // Widening: all 65536 patterns, exact (NaNs stay NaN).
  const int32_t* all = cases.at("all16").data<int32_t>();
  const float* h2f = cases.at("half_to_f32").data<float>();
  const float* b2f = cases.at("bf16_to_f32").data<float>();
  for (int i = 0; i < 65536; ++i) {
    float h = math::half_bits_to_float(static_cast<uint16_t>(all[i]));
    float b = math::bfloat16_bits_to_float(static_cast<uint16_t>(all[i]));
    ASSERT_TRUE((std::isnan(h) && std::isnan(h2f[i])) || std::memcmp(&h, &h2f[i], 4) == 0) << i;
    ASSERT_TRUE((std::isnan(b) && std::isnan(b2f[i])) || std::memcmp(&b, &b2f[i], 4) == 0) << i;
  }
  // The tensor path uses the same conversion.
  Tensor t = f32.cast(DType::Float16);
  const uint16_t* tb = static_cast<const uint16_t*>(t.raw());
  for (int64_t i = 0; i < f32.numel(); ++i)
    ASSERT_TRUE(tb[i] == static_cast<uint16_t>(f16[i]) || (half_is_nan(tb[i]) && half_is_nan(static_cast<uint16_t>(f16[i]))));
}

TEST(Autocast, MlpPolicyDtypesAndCasts) {
  for (const char* p : {"fp16", "bf16"}) {
    Session s(load_model_file(digits() + "/mlp.onnx"), mlp_config(p));
    PolicyView v = policy_view(s);
    std::string low = std::string(p) == "fp16" ? "float16" : "bfloat16";
    EXPECT_EQ(v.dtype_of["fc1"], low);
    EXPECT_EQ(v.dtype_of["relu1"], low);
    EXPECT_EQ(v.dtype_of["fc2"], low);
    EXPECT_EQ(v.dtype_of["loss/cross_entropy_0"], "float32");
    // x and four parameters down, logits back up (shared by the loss and the graph output).
    EXPECT_EQ(v.casts, 6) << p;
    EXPECT_EQ(v.reason_of["fc1"], "rule: lower");
  }
  Session fp32(load_model_file(digits() + "/mlp.onnx"), mlp_config("fp32"));
  EXPECT_EQ(policy_view(fp32).casts, 0);
}

TEST(Autocast, OverridesByOpTypeAndNodeName) {
  TrainConfig c = mlp_config("fp16");
  c.precision_by_node["relu1"] = PrecisionClass::Fp32;
  Session by_node(load_model_file(digits() + "/mlp.onnx"), c);
  PolicyView v = policy_view(by_node);
  EXPECT_EQ(v.dtype_of["relu1"], "float32");
  EXPECT_EQ(v.reason_of["relu1"], "override (node name): fp32");
  EXPECT_EQ(v.casts, 8);  // + fc1's output up for relu1, relu1's output down for fc2
  TrainConfig d = mlp_config("fp16");
  d.precision_by_op["Gemm"] = PrecisionClass::Fp32;
  Session by_op(load_model_file(digits() + "/mlp.onnx"), d);
  PolicyView w = policy_view(by_op);
  EXPECT_EQ(w.dtype_of["fc1"], "float32");
  EXPECT_EQ(w.dtype_of["relu1"], "float32");  // follows its FP32 input
  EXPECT_EQ(w.casts, 0);
  TrainConfig e = mlp_config("fp16");
  e.precision_by_node["nope"] = PrecisionClass::Fp32;
  EXPECT_THROW(Session(load_model_file(digits() + "/mlp.onnx"), e), Error);
}

TEST(Autocast, ConstantOutOfFp16RangeStaysFp32) {
  // y = Softmax(MatMul(x, W) + mask), mask = -1e9 in two columns: the Add must stay FP32.
  onnx::ModelProto m = new_model(18);
  add_input(m, "x", onnx::TensorProto::FLOAT, {std::string("N"), int64_t(3)});
  add_float_init(m, "W", {3, 4}, {0.1f, -0.2f, 0.3f, 0.4f, 0.5f, -0.6f, 0.7f, 0.8f, -0.9f, 1.0f, 1.1f, 1.2f});
  add_float_init(m, "mask", {4}, {0.f, 0.f, -1e9f, -1e9f});
  add_node(m, "MatMul", {"x", "W"}, {"h"}, "mm");
  add_node(m, "Add", {"h", "mask"}, {"masked"}, "add_mask");
  add_node(m, "Softmax", {"masked"}, {"y"}, "softmax");
  add_output(m, "y");
  TrainConfig c;
  c.loss.kind = "mse";
  c.precision = "fp16";
  c.frozen = {"mask"};
  Session s(load(m), c);
  PolicyView v = policy_view(s);
  EXPECT_EQ(v.dtype_of["mm"], "float16");
  EXPECT_EQ(v.dtype_of["add_mask"], "float32");
  EXPECT_NE(v.reason_of["add_mask"].find("out of float16 range"), std::string::npos) << v.reason_of["add_mask"];
  EXPECT_EQ(v.dtype_of["softmax"], "float32");
  EXPECT_EQ(v.casts, 3);  // x and W down, h up
  // In bf16 the constant fits: the Add follows its BF16 input.
  c.precision = "bf16";
  Session b(load(m), c);
  EXPECT_EQ(policy_view(b).dtype_of["add_mask"], "bfloat16");
  // It trains, and the masked columns get (almost) no probability.
  Tensor x(DType::Float32, {2, 3});
  for (int i = 0; i < 6; ++i) x.data<float>()[i] = 0.1f * i;
  Tensor label(DType::Float32, {2, 4});
  double before = s.train_step({{"x", x}, {"label", label}});
  for (int i = 0; i < 20; ++i) s.train_step({{"x", x}, {"label", label}});
  double loss = 0;
  auto out = s.eval_step({{"x", x}, {"label", label}}, &loss);
  EXPECT_LT(loss, before);
  EXPECT_LT(out["y"].data<float>()[2], 1e-6f);
}

TEST(LossScaler, StateMachine) {
  LossScaleConfig c;
  c.mode = "dynamic";
  c.init_scale = 8;
  c.growth_interval = 3;
  float st[kLossScaleSlots] = {8, 0, 0, 1};
  for (int i = 0; i < 2; ++i) update_loss_scale(c, st);
  EXPECT_EQ(st[kScale], 8);
  EXPECT_EQ(st[kGrowthTracker], 2);
  update_loss_scale(c, st);  // third clean step: grow
  EXPECT_EQ(st[kScale], 16);
  EXPECT_EQ(st[kGrowthTracker], 0);
  // Backoff on inf and on NaN, found by the fused unscale pass.
  std::vector<float> g = {32.f, 64.f, INFINITY};
  update_loss_scale(c, st);
  unscale_and_check(g.data(), g.size(), st);
  EXPECT_EQ(st[kFoundInf], 1);
  EXPECT_EQ(g[0], 2.f);  // unscaled by 1/16
  update_loss_scale(c, st);
  EXPECT_EQ(st[kScale], 8);
  EXPECT_EQ(st[kGrowthTracker], 0);  // the clean step before was forgotten
  std::vector<float> n = {1.f, NAN};
  unscale_and_check(n.data(), n.size(), st);
  EXPECT_EQ(st[kFoundInf], 1);
  update_loss_scale(c, st);
  EXPECT_EQ(st[kScale], 4);
  std::vector<float> ok = {1.f, -2.f};
  unscale_and_check(ok.data(), ok.size(), st);
  EXPECT_EQ(st[kFoundInf], 0);
  // Hysteresis 2: the first overflow is tolerated, the second backs off.
  LossScaleConfig h = c;
  h.hysteresis = 2;
  float hs[kLossScaleSlots] = {64, 0, 1, 2};
  update_loss_scale(h, hs);
  EXPECT_EQ(hs[kScale], 64);
  EXPECT_EQ(hs[kHysteresisLeft], 1);
  update_loss_scale(h, hs);
  EXPECT_EQ(hs[kScale], 32);
  // Bounds.
  LossScaleConfig b = c;
  b.min_scale = 2;
  b.max_scale = 16;
  float lo[kLossScaleSlots] = {2, 0, 1, 1};
  update_loss_scale(b, lo);
  EXPECT_EQ(lo[kScale], 2);
  float hi[kLossScaleSlots] = {16, 2, 0, 1};
  update_loss_scale(b, hi);
  EXPECT_EQ(hi[kScale], 16);
  // Static and none never change the scale.
  LossScaleConfig s = c;
  s.mode = "static";
  float ss[kLossScaleSlots] = {128, 0, 1, 1};
  update_loss_scale(s, ss);
  EXPECT_EQ(ss[kScale], 128);
  LossScaleConfig bad = c;
  bad.backoff_factor = 1.5;
  EXPECT_THROW(validate_loss_scale(bad), Error);
}

TEST(LossScaler, SkippedStepChangesNothing) {
  // FP32 with a dynamic scale: powers of two scale and unscale exactly, so a run with a skipped
  // step must equal, bit for bit, a run without it.
  auto train = read_npz(digits() + "/train.npz");
  auto batch = [&](int i) {
    return std::map<std::string, Tensor>{{"x", rows(train["x"], i * 32, i * 32 + 32)},
                                         {"label", rows(train["y"], i * 32, i * 32 + 32)}};
  };
  TrainConfig c = mlp_config("fp32");
  c.loss_scale = "dynamic";
  c.schedule.kind = "linear";
  c.schedule.warmup_steps = 2;
  c.schedule.total_steps = 10;
  Session a(load_model_file(digits() + "/mlp.onnx"), c), b(load_model_file(digits() + "/mlp.onnx"), c);
  for (int i = 0; i < 3; ++i) {
    a.train_step(batch(i));
    b.train_step(batch(i));
  }
  std::vector<float> before = params_of(a);
  double lr_before = a.stats().lr;
  auto poisoned = batch(3);
  poisoned["x"] = poisoned["x"].clone();
  poisoned["x"].data<float>()[5] = INFINITY;
  a.train_step(poisoned);
  EXPECT_EQ(a.stats().skipped_steps, 1);
  EXPECT_TRUE(a.stats().last_step_skipped);
  EXPECT_EQ(a.stats().step, 3);
  EXPECT_EQ(a.stats().lr, lr_before);
  EXPECT_EQ(a.loss_scale(), 32768.0);
  EXPECT_EQ(params_of(a), before);
  for (int i = 3; i < 6; ++i) {
    a.train_step(batch(i));
    b.train_step(batch(i));
  }
  EXPECT_EQ(params_of(a), params_of(b));  // moments, step count and schedule were untouched
  EXPECT_EQ(a.stats().step, b.stats().step);
}

TEST(MixedPrecision, OverflowSkipsBacksOffAndConverges) {
  // Inputs scaled by 256: at the initial scale 2^16 the FP16 gradients overflow.
  auto train = read_npz(digits() + "/train.npz");
  auto test = read_npz(digits() + "/test.npz");
  Tensor x = train["x"].clone();
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] *= 256.f;
  TrainConfig c = mlp_config("fp16");
  c.optimizer.lr = 1e-3;
  Session s(load_model_file(digits() + "/mlp.onnx"), c);
  int64_t n = x.shape()[0];
  for (int e = 0; e < 10; ++e)
    for (int64_t b = 0; b + 32 <= n; b += 32) s.train_step({{"x", rows(x, b, b + 32)}, {"label", rows(train["y"], b, b + 32)}});
  EXPECT_GT(s.stats().skipped_steps, 0);
  EXPECT_LT(s.loss_scale(), 65536.0);
  Tensor tx = test["x"].clone();
  for (int64_t i = 0; i < tx.numel(); ++i) tx.data<float>()[i] *= 256.f;
  double loss = 0;
  s.eval_step({{"x", tx}, {"label", test["y"]}}, &loss);
  std::printf("overflow case: %lld skipped steps, final scale %g, test loss %.4f\n",
              static_cast<long long>(s.stats().skipped_steps), s.loss_scale(), loss);
  EXPECT_LT(loss, 0.5);
}

namespace {

// loss = 1e-6 * mean((x W - t)^2): tiny gradients that underflow FP16 without loss scaling.
LoadedModel underflow_model() {
  onnx::ModelProto m = new_model(18);
  add_input(m, "x", onnx::TensorProto::FLOAT, {int64_t(32), int64_t(8)});
  add_input(m, "t", onnx::TensorProto::FLOAT, {int64_t(32), int64_t(4)});
  std::vector<float> w(32);
  for (int i = 0; i < 32; ++i) w[i] = 0.05f * static_cast<float>((i * 7) % 11) - 0.25f;
  add_float_init(m, "W", {8, 4}, w);
  add_float_init(m, "tiny", {}, {1e-6f});
  add_node(m, "MatMul", {"x", "W"}, {"y"}, "mm");
  add_node(m, "Sub", {"y", "t"}, {"d"}, "sub");
  add_node(m, "Mul", {"d", "d"}, {"d2"}, "sq");
  auto* r = add_node(m, "ReduceMean", {"d2"}, {"mse"}, "mean");
  attr_int(r, "keepdims", 0);
  add_node(m, "Mul", {"mse", "tiny"}, {"loss"}, "scale_down");
  add_output(m, "loss");
  return load(m);
}

}  // namespace

TEST(MixedPrecision, UnderflowStallsWithoutScalingAndMatchesFp32WithDynamicScaling) {
  Tensor x(DType::Float32, {32, 8}), t(DType::Float32, {32, 4});
  for (int i = 0; i < 256; ++i) x.data<float>()[i] = std::sin(0.37f * i);
  // Targets a linear map can fit: t = x W_true.
  for (int r = 0; r < 32; ++r)
    for (int k = 0; k < 4; ++k) {
      float acc = 0;
      for (int j = 0; j < 8; ++j) acc += x.data<float>()[r * 8 + j] * std::cos(0.7f * static_cast<float>(j * 4 + k));
      t.data<float>()[r * 4 + k] = acc;
    }
  auto run = [&](const std::string& precision, const std::string& scaling, std::vector<float>* params) {
    TrainConfig c;
    c.loss.kind = "none";
    c.loss.output = "loss";
    c.optimizer.kind = "adam";
    c.optimizer.lr = 1e-2;
    c.precision = precision;
    c.loss_scale = scaling;
    c.frozen = {"tiny"};
    Session s(underflow_model(), c);
    std::vector<float> initial = params_of(s);
    double loss = 0;
    for (int i = 0; i < 300; ++i) loss = s.train_step({{"x", x}, {"t", t}});
    if (params) *params = params_of(s);
    if (precision == "fp16" && scaling == "none") {
      EXPECT_EQ(params_of(s), initial) << "gradients should underflow to zero";
    }
    return loss;
  };
  double fp32 = run("fp32", "none", nullptr);
  double stalled = run("fp16", "none", nullptr);
  double scaled = run("fp16", "dynamic", nullptr);
  std::printf("underflow case: final loss fp32 %.4g, fp16 unscaled %.4g, fp16 dynamic %.4g\n", fp32, stalled, scaled);
  // Unscaled FP16 never moves (its loss is the initial loss); FP32 and dynamically scaled FP16 both
  // fit the linear target, down by four orders of magnitude or more (FP16 weights floor the
  // latter well above FP32's, so "matches" means converges alike, not equal bits).
  EXPECT_LT(fp32, 1e-4 * stalled);
  EXPECT_LT(scaled, 1e-4 * stalled);
}

TEST(MixedPrecision, DigitsFp16AndBf16MatchFp32AccuracyAndUseLessMemory) {
  auto train = read_npz(digits() + "/train.npz");
  auto test = read_npz(digits() + "/test.npz");
  std::map<std::string, double> acc;
  std::map<std::string, size_t> arena;
  for (const char* p : {"fp32", "fp16", "bf16"}) {
    Session s(load_model_file(digits() + "/mlp.onnx"), mlp_config(p));
    int64_t n = train["x"].shape()[0];
    for (int e = 0; e < 15; ++e)
      for (int64_t b = 0; b < n; b += 32)
        s.train_step({{"x", rows(train["x"], b, std::min(n, b + 32))}, {"label", rows(train["y"], b, std::min(n, b + 32))}});
    auto out = s.eval_step({{"x", test["x"]}});
    const float* l = out["logits"].data<float>();
    const int64_t* y = test["y"].data<int64_t>();
    int64_t m = out["logits"].shape()[0], correct = 0;
    for (int64_t i = 0; i < m; ++i) {
      int64_t best = 0;
      for (int64_t k = 1; k < 10; ++k) if (l[i * 10 + k] > l[i * 10 + best]) best = k;
      correct += best == y[i];
    }
    acc[p] = static_cast<double>(correct) / m;
    // Export writes the FP32 masters bit for bit, and no policy Cast reaches the file.
    std::string path = (std::filesystem::temp_directory_path() / (std::string("otter_mp_") + p + ".onnx")).string();
    s.export_model(path);
    LoadedModel exported = load_model_file(path);
    for (auto& prm : s.parameters()) {
      const Tensor& w = exported.graph.values[exported.graph.value_id(prm.name)].data;
      Tensor master = s.get_parameter(prm.name);
      EXPECT_EQ(w.dtype(), DType::Float32);
      EXPECT_EQ(0, std::memcmp(w.raw(), master.raw(), w.nbytes())) << p << " " << prm.name;
    }
    for (const Node& node : exported.graph.nodes) EXPECT_NE(node.op_type, "Cast") << p;
    arena[p] = s.train_memory().arena_bytes;
    std::printf("digits %s: accuracy %.4f, planned activation memory %zu bytes (sum of intermediates %zu), loss scale %g\n", p,
                acc[p], arena[p], s.train_memory().intermediate_bytes, s.loss_scale());
  }
  EXPECT_GE(acc["fp16"], acc["fp32"] - 0.01);
  EXPECT_GE(acc["bf16"], acc["fp32"] - 0.01);
  EXPECT_GE(acc["fp32"], 0.95);
}
