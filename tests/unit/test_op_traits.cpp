// Op traits (runtime/ops/op.h) against the kernels: walks every registered op and checks that
// what the registry says about an op (shape-only inputs, views, index inputs, precision class)
// is consistent with the kernels registered for it, so that a new op cannot be half-described.
#include <gtest/gtest.h>

#include <algorithm>

#include "kernels/common/unary_functors.h"
#include "kernels/common/unary_ops.h"
#include "kernels/registry.h"
#include "runtime/ops/op.h"
#include "runtime/passes/autocast.h"

using namespace otter;

namespace {

std::string key(const OpDef& d) { return (d.domain.empty() ? "" : d.domain + ".") + d.op_type; }

bool has_kernel(const OpDef& d, Device device, DType t) {
  return KernelRegistry::instance().find(d.domain, d.op_type, device, t) != nullptr;
}

bool has_any_kernel(const OpDef& d, Device device) {
  return !KernelRegistry::instance().dtypes(d.domain, d.op_type, device).empty();
}

#if defined(OTTER_HAVE_CUDA)
constexpr bool kCuda = true;
#else
constexpr bool kCuda = false;
#endif

Node node_of(const OpDef& d, size_t inputs) {
  Node n;
  n.domain = d.domain;
  n.op_type = d.op_type;
  n.name = "n";
  for (size_t i = 0; i < inputs; ++i) n.inputs.push_back(static_cast<int>(i));
  n.outputs = {static_cast<int>(inputs)};
  return n;
}

}  // namespace

TEST(OpTraits, EveryOpHasKernelsOnEveryBackend) {
  for (const OpDef* d : OpRegistry::instance().all()) {
    if (d->domain.empty() && d->op_type == "Constant") continue;  // folded at plan time, never run
    if (d->graph_level) {  // rewritten before planning (Gradient): no kernel anywhere
      EXPECT_FALSE(has_any_kernel(*d, Device::CPU)) << key(*d) << " is graph-level but has a kernel";
      continue;
    }
    EXPECT_TRUE(has_any_kernel(*d, Device::CPU)) << key(*d) << " has no CPU kernel";
    if (kCuda) { EXPECT_TRUE(has_any_kernel(*d, Device::CUDA)) << key(*d) << " has no CUDA kernel"; }
  }
}

TEST(OpTraits, ShapeOnlyInputsAreInternalGradientInputs) {
  int count = 0;
  for (const OpDef* d : OpRegistry::instance().all()) {
    if (!d->shape_only) continue;
    ++count;
    // Only internal gradient ops read a forward value for its shape; they are not differentiated
    // again, and their first input (dy) is always data.
    EXPECT_EQ(d->domain, "otter") << key(*d);
    // A gradient, if any, flows only to data inputs.
    if (d->gradient) {
      EXPECT_FALSE(d->differentiable_inputs.empty()) << key(*d);
      for (int i : d->differentiable_inputs) {
        EXPECT_FALSE(d->reads_only_shape(node_of(*d, 3), static_cast<size_t>(i))) << key(*d);
      }
    }
    for (size_t n : {2, 3, 4, 6}) EXPECT_FALSE(d->reads_only_shape(node_of(*d, n), 0)) << key(*d);
    bool some = false;
    for (size_t n : {2, 3, 4, 6})
      for (size_t i = 0; i < n; ++i) some = some || d->reads_only_shape(node_of(*d, n), i);
    EXPECT_TRUE(some) << key(*d) << ": a shape_only trait that marks no input";
    EXPECT_TRUE(has_kernel(*d, Device::CPU, DType::Float32)) << key(*d);
  }
  EXPECT_GE(count, 17);  // the ops the plan used to list by name
}

TEST(OpTraits, ViewsAreOneToOneAndHaveKernels) {
  int count = 0;
  for (const OpDef* d : OpRegistry::instance().all()) {
    for (const ViewTrait& v : d->views) {
      ++count;
      // The plan makes output 0 a view of input 0 only; a view that does not hold still runs.
      EXPECT_EQ(v.input, 0) << key(*d);
      EXPECT_EQ(v.output, 0) << key(*d);
      EXPECT_TRUE(has_kernel(*d, Device::CPU, DType::Float32)) << key(*d);
      EXPECT_TRUE(d->deterministic || v.when) << key(*d) << ": a random op is a view only under a predicate";
    }
  }
  EXPECT_GE(count, 8);
  // The predicate: Dropout is a view at ratio 0 only.
  const OpDef* dropout = OpRegistry::instance().find("", "Dropout");
  ASSERT_TRUE(dropout && dropout->views.size() == 1 && dropout->views[0].when);
  Tensor zero = Tensor::scalar<float>(0.0f), half = Tensor::scalar<float>(0.5f);
  Node n = node_of(*dropout, 2);
  EXPECT_TRUE(dropout->views[0].when(n, [&](size_t i) { return i == 1 ? &zero : nullptr; }));
  EXPECT_FALSE(dropout->views[0].when(n, [&](size_t i) { return i == 1 ? &half : nullptr; }));
  EXPECT_FALSE(dropout->views[0].when(n, [&](size_t) { return nullptr; }));
}

TEST(OpTraits, IndexInputsHaveAHostCheck) {
  int count = 0;
  for (const OpDef* d : OpRegistry::instance().all()) {
    for (const IndexInput& index : d->index_inputs) {
      ++count;
      EXPECT_NE(index.input, index.data) << key(*d);
      for (int diff : d->differentiable_inputs) { EXPECT_NE(diff, index.input) << key(*d) << ": indices are not differentiable"; }
      EXPECT_TRUE(has_any_kernel(*d, Device::CPU)) << key(*d);
      if (kCuda) { EXPECT_TRUE(has_any_kernel(*d, Device::CUDA)) << key(*d); }
      // The host check (used by device sessions before uploading the feed) accepts in-range values
      // and names the node for out-of-range ones.
      size_t inputs = static_cast<size_t>(std::max(index.input, index.data)) + 1;
      Node n = node_of(*d, inputs);
      Shape data = {3, 3, 3};
      EXPECT_TRUE(check_index_values(n, index, data, Tensor::from_vector(std::vector<int64_t>{0, 1, 2}, {3}))) << key(*d);
      EXPECT_THROW(check_index_values(n, index, data, Tensor::from_vector(std::vector<int64_t>{0, 3, 1}, {3})), Error)
          << key(*d);
      EXPECT_THROW(check_index_values(n, index, data, Tensor::from_vector(std::vector<int64_t>{-4}, {1})), Error)
          << key(*d);
      if (index.labels) {
        EXPECT_THROW(check_index_values(n, index, data, Tensor::from_vector(std::vector<int64_t>{-1}, {1})), Error);
        n.attrs["ignore_index"] = Attribute::of_int(-1);
        EXPECT_TRUE(check_index_values(n, index, data, Tensor::from_vector(std::vector<int64_t>{-1, 2}, {2})));
      } else {
        EXPECT_TRUE(check_index_values(n, index, data, Tensor::from_vector(std::vector<int64_t>{-3, -1}, {2})));
      }
    }
  }
  EXPECT_EQ(count, 4);  // Gather, GatherElements, SoftmaxCrossEntropyLoss, NegativeLogLikelihoodLoss
}

TEST(OpTraits, PrecisionClassesMatchKernels) {
  int lower = 0, fp32 = 0;
  for (const OpDef* d : OpRegistry::instance().all()) {
    if (d->precision == PrecisionClass::Follow) continue;
    EXPECT_TRUE(d->domain.empty()) << key(*d) << ": the policy runs before autodiff, on ONNX ops only";
    EXPECT_EQ(default_precision_class(d->op_type), d->precision) << key(*d);
    EXPECT_TRUE(has_kernel(*d, Device::CPU, DType::Float32)) << key(*d);
    if (d->precision == PrecisionClass::Lower) {
      ++lower;
      // Lower ops run in FP16/BF16: natively on CUDA, widened on the CPU (FP32 kernel).
      if (kCuda) {
        EXPECT_TRUE(has_kernel(*d, Device::CUDA, DType::Float16)) << key(*d);
        EXPECT_TRUE(has_kernel(*d, Device::CUDA, DType::BFloat16)) << key(*d);
      }
    } else {
      ++fp32;
    }
  }
  EXPECT_EQ(lower, 5);   // MatMul, Gemm, Conv, ConvTranspose, Einsum
  EXPECT_EQ(fp32, 22);   // the table of shared/references.md
  EXPECT_EQ(default_precision_class("NoSuchOp"), PrecisionClass::Follow);
  EXPECT_EQ(default_precision_class("Add"), PrecisionClass::Follow);
}

TEST(OpTraits, UnaryOpListHasEverything) {
  // Every op of the one list (kernels/common/unary_ops.h) is registered, with FP32/FP64 kernels on
  // the CPU and FP32/FP64/FP16/BF16 on CUDA; every differentiable one has a UnaryGrad formula on
  // both backends (one visit_grad_functor) and kernels for UnaryGrad.
  int formulas = 0;
  for (const unary_ops::Entry& e : unary_ops::kAll) {
    const OpDef* d = OpRegistry::instance().find("", e.name);
    ASSERT_TRUE(d) << e.name;
    EXPECT_TRUE(d->gradient) << e.name;
    for (DType t : {DType::Float32, DType::Float64}) EXPECT_TRUE(has_kernel(*d, Device::CPU, t)) << e.name;
    if (kCuda) {
      for (DType t : {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16}) {
        EXPECT_TRUE(has_kernel(*d, Device::CUDA, t)) << e.name;
      }
    }
    Node grad;
    grad.domain = "otter";
    grad.op_type = "UnaryGrad";
    grad.attrs["op"] = Attribute::of_string(e.name);
    bool visited = false;
    if (e.grad == unary_ops::Grad::Formula) {
      ++formulas;
      math::visit_grad_functor(grad, [&](auto) { visited = true; });
      EXPECT_TRUE(visited) << e.name;
    } else {
      EXPECT_THROW(math::visit_grad_functor(grad, [&](auto) {}), Error) << e.name;
    }
  }
  EXPECT_EQ(formulas, unary_ops::kFormulaCount);
  const OpDef* unary_grad = OpRegistry::instance().find("otter", "UnaryGrad");
  ASSERT_TRUE(unary_grad);
  EXPECT_TRUE(has_kernel(*unary_grad, Device::CPU, DType::Float32));
  if (kCuda) {
    EXPECT_TRUE(has_kernel(*unary_grad, Device::CUDA, DType::Float16));
  }
  // Every registered op that computes a UnaryGrad (a float unary op with a formula) is in the list.
  for (const OpDef* d : OpRegistry::instance().all()) {
    Node probe;
    probe.domain = "otter";
    probe.op_type = "UnaryGrad";
    probe.attrs["op"] = Attribute::of_string(d->op_type);
    bool known = false;
    try {
      math::visit_grad_functor(probe, [&](auto) { known = true; });
    } catch (const Error&) {
    }
    if (!known) continue;
    bool listed = false;
    for (const unary_ops::Entry& e : unary_ops::kAll) listed = listed || d->op_type == e.name;
    EXPECT_TRUE(listed) << d->op_type;
  }
}
