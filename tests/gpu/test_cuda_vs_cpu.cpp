// GPU tests (ctest label `gpu`): every CUDA kernel against the CPU backend. For each ONNX backend
// node test whose ops all have CUDA kernels, the forward runs on the CPU and on CUDA, in the
// test's own dtype and again with its float inputs in FP16 and BF16; outputs are poisoned (NaN
// bytes) before each CUDA run so an element a kernel does not write is caught. Then the same
// graph with loss = sum(y * R) is differentiated and every input gradient compared.
// Tolerances (written beside each comparison): FP32/FP64 rtol 1e-4 + atol 1e-5 (CUDA's
// transcendental functions differ from glibc's by a few ulps); FP16 rtol 1e-2, BF16 rtol 4e-2
// (both backends compute in FP32 and round the output once, but rounding of intermediate FP16
// values that land on ties can differ by one ulp: 2^-10 and 2^-7 relative). Without a usable
// GPU every test is skipped (GTEST_SKIP), never passed.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "kernels/registry.h"
#include "onnx_import/onnx_import.h"
#include "runtime/exec/infer.h"
#include "runtime/exec/plan.h"
#include "runtime/passes/autodiff.h"
#include "tests/common/testdata.h"

using namespace otter;
namespace fs = std::filesystem;

namespace {

bool have_gpu() { return device_backend(Device::CUDA) != nullptr; }

struct Tol {
  double rtol, atol;
};
Tol tolerance(DType t) {
  if (t == DType::Float16) return {1e-2, 1e-3};
  if (t == DType::BFloat16) return {4e-2, 1e-2};
  return {1e-4, 1e-5};
}

std::string compare(const Tensor& cpu, const Tensor& cuda_out) {
  Tensor got = cuda_out.to(Device::CPU);
  if (got.shape() != cpu.shape()) return "shape " + shape_str(got.shape()) + " vs " + shape_str(cpu.shape());
  Tol tol = tolerance(cpu.dtype());
  std::vector<double> a = got.to_double_vector(), b = cpu.to_double_vector();
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(b[i]) && std::isnan(a[i])) continue;
    if (std::isinf(b[i]) && a[i] == b[i]) continue;
    if (!(std::fabs(a[i] - b[i]) <= tol.atol + tol.rtol * std::fabs(b[i])))
      return cat("element ", i, ": cuda ", a[i], " cpu ", b[i]);
  }
  return "";
}

bool cuda_kernels_for(const Graph& g) {
  const KernelRegistry& k = KernelRegistry::instance();
  for (const Node& n : g.nodes)
    if (k.dtypes(n.domain, n.op_type, Device::CUDA).empty() && n.op_type != "Constant") return false;
  return true;
}

// Runs targets of g on `device` with feeds (host tensors), returning host copies.
std::vector<Tensor> run(Graph& g, const std::map<int, Tensor>& feeds, const std::vector<int>& targets, Device device) {
  PlanOptions o;
  o.device = device;
  o.targets = targets;
  std::map<int, Shape> shapes;
  std::map<int, Tensor> runtime_feeds;
  for (auto& kv : feeds) {
    if (!is_floating(kv.second.dtype()) || kv.second.rank() == 0) o.bound[kv.first] = kv.second.to(device);
    else {
      shapes[kv.first] = kv.second.shape();
      runtime_feeds[kv.first] = kv.second;
    }
  }
  Plan plan(g, shapes, o);
  if (device != Device::CPU) plan.poison();
  RunOptions ro;
  ro.training = false;
  plan.run(runtime_feeds, ro);
  std::vector<Tensor> out;
  for (int t : targets) out.push_back(plan.value(t).to(Device::CPU));
  return out;
}

}  // namespace

TEST(CudaVsCpu, NodeTestsForwardAllDtypes) {
  if (!have_gpu()) GTEST_SKIP() << "no usable GPU: " << cuda_unavailable_reason();
  fs::path root = fs::path(otter::testing::testdata_dir()) / "node";
  ASSERT_TRUE(fs::exists(root));
  int compared = 0;
  std::vector<std::string> failures;
  for (auto& e : fs::directory_iterator(root)) {
    if (!e.is_directory()) continue;
    LoadedModel m;
    try {
      m = load_model_file((e.path() / "model.onnx").string());
    } catch (const Error&) {
      continue;
    }
    if (!cuda_kernels_for(m.graph)) continue;
    fs::path data = e.path() / "test_data_set_0";
    std::map<int, Tensor> feeds;
    for (size_t i = 0; i < m.graph.inputs.size(); ++i)
      feeds[m.graph.inputs[i]] = load_tensor_file((data / ("input_" + std::to_string(i) + ".pb")).string());
    for (DType low : {DType::Undefined, DType::Float16, DType::BFloat16}) {
      std::map<int, Tensor> f = feeds;
      if (low != DType::Undefined) {
        bool any = false;
        for (auto& kv : f)
          if (kv.second.dtype() == DType::Float32 && kv.second.rank() > 0) {
            kv.second = kv.second.cast(low);
            m.graph.values[kv.first].dtype = low;
            any = true;
          }
        if (!any) continue;
      }
      try {
        std::vector<Tensor> cpu = run(m.graph, f, m.graph.outputs, Device::CPU);
        std::vector<Tensor> gpu = run(m.graph, f, m.graph.outputs, Device::CUDA);
        for (size_t i = 0; i < cpu.size(); ++i) {
          std::string d = compare(cpu[i], gpu[i]);
          if (!d.empty()) failures.push_back(e.path().filename().string() + " (" + dtype_name(cpu[i].dtype()) + "): " + d);
        }
        ++compared;
      } catch (const Error& err) {
        if (err.kind() != ErrorKind::Unsupported)
          failures.push_back(e.path().filename().string() + ": " + err.what());
      }
      for (auto& kv : feeds) m.graph.values[kv.first].dtype = kv.second.dtype();
    }
  }
  std::printf("cuda vs cpu: %d node-test runs compared\n", compared);
  EXPECT_GT(compared, 0);
  std::string report;
  for (auto& f : failures) report += "\n  " + f;
  EXPECT_TRUE(failures.empty()) << failures.size() << " mismatches:" << report;
}

// Gradients: loss = sum(y0 * R) over the first output, differentiated w.r.t. every float input;
// the gradient graph runs on both backends (FP32 inputs; tolerance as the forward's).
TEST(CudaVsCpu, NodeTestsGradients) {
  if (!have_gpu()) GTEST_SKIP() << "no usable GPU: " << cuda_unavailable_reason();
  fs::path root = fs::path(otter::testing::testdata_dir()) / "node";
  int compared = 0;
  std::vector<std::string> failures;
  for (auto& e : fs::directory_iterator(root)) {
    if (!e.is_directory()) continue;
    LoadedModel m;
    try {
      m = load_model_file((e.path() / "model.onnx").string());
    } catch (const Error&) {
      continue;
    }
    Graph& g = m.graph;
    if (!cuda_kernels_for(g) || g.outputs.empty()) continue;
    bool optimizer = false;  // ONNX training ops (Adam, Adagrad, Momentum) are updates, not differentiable
    for (const Node& n : g.nodes) optimizer = optimizer || n.domain == "ai.onnx.preview.training";
    if (optimizer) continue;
    std::map<int, Tensor> feeds;
    std::vector<int> params;
    fs::path data = e.path() / "test_data_set_0";
    for (size_t i = 0; i < g.inputs.size(); ++i) {
      Tensor t = load_tensor_file((data / ("input_" + std::to_string(i) + ".pb")).string());
      feeds[g.inputs[i]] = t;
      if (t.dtype() == DType::Float32 && t.rank() > 0) params.push_back(g.inputs[i]);
    }
    if (params.empty()) continue;
    try {
      annotate_graph(g, {});
      int y = g.outputs[0];
      if (g.values[y].dtype != DType::Float32) continue;
      Tensor r = load_tensor_file((data / "output_0.pb").string()).cast(DType::Float32);  // a fixed "random" weight
      int rv = g.add_value(g.unique_name("R"), DType::Float32);
      g.values[rv].data = r;
      g.values[rv].shape = r.shape();
      g.values[rv].shape_known = true;
      Attributes keep;
      keep["keepdims"] = Attribute::of_int(0);
      int prod = g.nodes[g.add_node("Mul", {y, rv}, 1)].outputs[0];
      int loss = g.nodes[g.add_node("ReduceSum", {prod}, 1, keep)].outputs[0];
      annotate_graph(g, {});
      Gradients grads = build_gradients(g, loss, params);
      annotate_graph(g, {});
      std::vector<int> targets;
      for (int p : params)
        if (grads.of_param.count(p)) targets.push_back(grads.of_param[p]);
      if (targets.empty()) continue;
      feeds[grads.seed] = Tensor::scalar<float>(1.0f);
      std::vector<Tensor> cpu = run(g, feeds, targets, Device::CPU);
      std::vector<Tensor> gpu = run(g, feeds, targets, Device::CUDA);
      for (size_t i = 0; i < cpu.size(); ++i) {
        std::string d = compare(cpu[i], gpu[i]);
        if (!d.empty()) failures.push_back(e.path().filename().string() + " (gradient " + std::to_string(i) + "): " + d);
      }
      ++compared;
    } catch (const Error& err) {
      if (err.kind() != ErrorKind::Unsupported)
        failures.push_back(e.path().filename().string() + " (gradient): " + err.what());
    }
  }
  std::printf("cuda vs cpu: %d gradient graphs compared\n", compared);
  EXPECT_GT(compared, 0);
  std::string report;
  for (auto& f : failures) report += "\n  " + f;
  EXPECT_TRUE(failures.empty()) << failures.size() << " mismatches:" << report;
}

TEST(CudaVsCpu, OutOfMemoryIsACleanError) {
  if (!have_gpu()) GTEST_SKIP() << "no usable GPU: " << cuda_unavailable_reason();
  try {
    Tensor huge(DType::Float32, {int64_t(1) << 40}, Device::CUDA);  // 4 TiB
    FAIL() << "allocating 4 TiB succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::OutOfMemory);
    EXPECT_NE(std::string(e.what()).find("out of memory"), std::string::npos) << e.what();
  }
  Tensor small(DType::Float32, {1024}, Device::CUDA);  // and the device still works
  Tensor back = small.to(Device::CPU);
  EXPECT_EQ(back.to_double_vector()[0], 0.0);
}

