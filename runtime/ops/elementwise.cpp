// Elementwise ops: unary math and activations, Cast, Clip, broadcasting binary arithmetic and
// comparisons, PRelu, the variadic Max/Min/Sum/Mean, Where, Dropout; and the internal ops their
// gradients use (otter.UnaryGrad, otter.ClipGrad, otter.PReluGrad, otter.MinMaxGrad,
// otter.DropoutGrad, otter.SumToShapeOf). Broadcast gradients reduce back to each input's shape.
// Piecewise-constant ops (Floor, Ceil, Round, Sign) have a zero gradient: nothing flows back.
// Variadic Max/Min give the gradient to the input holding the extreme; where several inputs tie,
// each of them gets dy divided by the number of tied inputs (PyTorch's rule for two inputs).
#include "kernels/common/unary_ops.h"
#include "runtime/ops/op.h"

namespace otter {
namespace {

const std::initializer_list<DType> kFloat = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};
const std::initializer_list<DType> kNumeric = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16,
                                               DType::Int64,   DType::Int32,   DType::Int8,    DType::Uint8};

void infer_float_unary(InferContext& ctx) {
  ctx.expect_dtype(0, kFloat);
  infer_same_as_input0(ctx);
}

// dx = UnaryGrad[op](dy, x, y): the formula is math::<op>::grad (kernels/common); the node
// carries the forward node's attributes (alpha, beta, gamma, approximate).
GradFn unary_grad(const std::string& op) {
  return [op](GradContext& g) {
    Attributes a = g.node().attrs;
    a["op"] = Attribute::of_string(op);
    g.set_dx(0, g.emit("UnaryGrad", {g.dy(), g.x(0), g.y(0)}, a, "otter"));
  };
}

// Max, Min, Sum, Mean: one or more inputs of one dtype, broadcast together.
InferFn infer_variadic(std::initializer_list<DType> allowed) {
  return [allowed](InferContext& c) {
    if (c.num_inputs() == 0 || !c.has_input(0)) c.fail("needs at least one input");
    c.expect_dtype(0, allowed);
    for (size_t i = 1; i < c.num_inputs(); ++i) c.expect_same_dtype(0, i);
    std::vector<Shape> shapes;
    for (size_t i = 0; i < c.num_inputs(); ++i) shapes.push_back(c.shape(i));
    c.set_output(0, c.dtype(0), broadcast_shapes(c, shapes));
  };
}

void min_max_grad(GradContext& g) {
  size_t n = g.node().inputs.size();  // (emit appends nodes: hold no reference to the node)
  std::vector<int> inputs = {g.dy(), g.y(0)};
  for (size_t i = 0; i < n; ++i) inputs.push_back(g.x(i));
  for (size_t i = 0; i < n; ++i) {
    if (!g.wants(i)) continue;
    Attributes a;
    a["index"] = Attribute::of_int(static_cast<int64_t>(i));
    g.set_dx(i, g.emit("MinMaxGrad", inputs, a, "otter"));  // already shaped like input i
  }
}

void sum_mean_grad(GradContext& g, bool mean) {
  size_t n = g.node().inputs.size();
  int d = g.dy();
  if (mean && n > 1) d = g.emit("Mul", {d, g.constant_scalar(1.0 / static_cast<double>(n), g.value(g.y(0)).dtype)});
  for (size_t i = 0; i < n; ++i)
    if (g.wants(i)) g.set_dx(i, g.sum_to_shape_of(d, g.x(i)));
}

// PRelu: slope is unidirectionally broadcastable to X; the output has X's shape.
void infer_prelu(InferContext& c) {
  c.expect_dtype(0, kNumeric);
  c.expect_same_dtype(0, 1);
  const Shape &x = c.shape(0), &s = c.shape(1);
  if (s.size() > x.size())
    c.fail(cat("slope of shape ", c.dims(s), " has a higher rank than X of shape ", c.dims(x)));
  size_t off = x.size() - s.size();
  for (size_t k = 0; k < s.size(); ++k) {
    int64_t sd = s[k], xd = x[k + off];
    if (sd != 1 && sd >= 0 && xd >= 0 && sd != xd)
      c.fail(cat("slope of shape ", c.dims(s), " is not unidirectionally broadcastable to X of shape ", c.dims(x)));
  }
  infer_same_as_input0(c);
}

void infer_broadcast(InferContext& ctx, DType out_dtype) {
  std::vector<Shape> shapes;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) shapes.push_back(ctx.shape(i));
  ctx.set_output(0, out_dtype, broadcast_shapes(ctx, shapes));
}

void infer_arith(InferContext& ctx) {
  ctx.expect_same_dtype(0, 1);
  infer_broadcast(ctx, ctx.dtype(0));
}

void infer_compare(InferContext& ctx) {
  ctx.expect_same_dtype(0, 1);
  infer_broadcast(ctx, DType::Bool);
}

void infer_logical(InferContext& ctx) {
  ctx.expect_dtype(0, {DType::Bool});
  ctx.expect_dtype(1, {DType::Bool});
  infer_broadcast(ctx, DType::Bool);
}

OpDef def(const std::string& op, InferFn infer, GradFn grad = {}, std::vector<int> diff = {}) {
  OpDef d;
  d.op_type = op;
  d.infer = std::move(infer);
  d.gradient = std::move(grad);
  d.differentiable_inputs = std::move(diff);
  return d;
}

}  // namespace

void register_elementwise_ops(OpRegistry& r) {
  // The unary ops of kernels/common/unary_ops.h. Floor, Ceil and Round are piecewise constant:
  // their gradient is zero, so nothing flows back.
#define OTTER_UNARY_GRAD_Formula(op) unary_grad(#op)
#define OTTER_UNARY_GRAD_Zero(op) [](GradContext&) {}
#define OTTER_UNARY_DEF(op, grad) r.add(def(#op, infer_float_unary, OTTER_UNARY_GRAD_##grad(op)));
  OTTER_UNARY_OPS(OTTER_UNARY_DEF)
#undef OTTER_UNARY_DEF
#undef OTTER_UNARY_GRAD_Zero
#undef OTTER_UNARY_GRAD_Formula
  {
    OpDef& gelu = r.at("", "Gelu");
    gelu.infer = [](InferContext& c) {
      std::string approximate = c.node.attr_string("approximate", "none");
      if (approximate != "none" && approximate != "tanh")
        c.fail(cat("approximate must be \"none\" or \"tanh\", not \"", approximate, "\""));
      infer_float_unary(c);
    };
    gelu.since_version = 20;
  }
  r.add(def("Neg", [](InferContext& c) { c.expect_dtype(0, {DType::Float32, DType::Float64, DType::Float16,
                                                            DType::BFloat16, DType::Int64, DType::Int32, DType::Int8});
                                         infer_same_as_input0(c); },
            [](GradContext& g) { g.set_dx(0, g.emit("Neg", {g.dy()})); }));
  r.add(def("Sign", [](InferContext& c) { c.expect_dtype(0, kNumeric); infer_same_as_input0(c); },
            [](GradContext&) {}));
  r.add(def("Identity", infer_same_as_input0, [](GradContext& g) { g.set_dx(0, g.dy()); }));
  r.add(def("Not", [](InferContext& c) { c.expect_dtype(0, {DType::Bool}); infer_same_as_input0(c); }));

  r.add(def("Cast", [](InferContext& c) {
    int64_t to = c.node.attr_int("to", 0);
    if (!is_supported_dtype(static_cast<int32_t>(to))) c.fail(cat("unsupported target dtype ", to));
    c.set_output(0, static_cast<DType>(to), c.shape(0));
  }, [](GradContext& g) {
    DType from = g.value(g.x(0)).dtype;
    if (!is_floating(from)) return;
    Attributes a;
    a["to"] = Attribute::of_int(static_cast<int64_t>(from));
    g.set_dx(0, g.emit("Cast", {g.dy()}, a));
  }, {0}));

  // CastLike(x, like): Cast to like's dtype (like is read for its dtype only).
  r.add(def("CastLike", [](InferContext& c) { c.set_output(0, c.dtype(1), c.shape(0)); },
            [](GradContext& g) {
              DType from = g.value(g.x(0)).dtype;
              if (!is_floating(from)) return;
              Attributes a;
              a["to"] = Attribute::of_int(static_cast<int64_t>(from));
              g.set_dx(0, g.emit("Cast", {g.dy()}, a));
            }, {0}));

  r.add(def("Clip", [](InferContext& c) {
    for (size_t i = 1; i < 3; ++i)
      if (c.has_input(i)) {
        c.expect_same_dtype(0, i);
        if (!c.shape(i).empty()) c.fail(cat("input ", i, " (min/max) must be a scalar"));
      }
    infer_same_as_input0(c);
  }, [](GradContext& g) {
    g.set_dx(0, g.emit("ClipGrad", {g.dy(), g.x(0), g.x(1), g.x(2)}, {}, "otter"));
  }, {0}));

  r.add(def("Add", infer_arith, [](GradContext& g) {
    g.set_dx(0, g.sum_to_shape_of(g.dy(), g.x(0)));
    g.set_dx(1, g.sum_to_shape_of(g.dy(), g.x(1)));
  }));
  r.add(def("Sub", infer_arith, [](GradContext& g) {
    g.set_dx(0, g.sum_to_shape_of(g.dy(), g.x(0)));
    if (g.wants(1)) g.set_dx(1, g.sum_to_shape_of(g.emit("Neg", {g.dy()}), g.x(1)));
  }));
  r.add(def("Mul", infer_arith, [](GradContext& g) {
    if (g.wants(0)) g.set_dx(0, g.sum_to_shape_of(g.emit("Mul", {g.dy(), g.x(1)}), g.x(0)));
    if (g.wants(1)) g.set_dx(1, g.sum_to_shape_of(g.emit("Mul", {g.dy(), g.x(0)}), g.x(1)));
  }));
  r.add(def("Div", infer_arith, [](GradContext& g) {
    // y = a / b: da = dy / b; db = -dy * y / b
    if (g.wants(0)) g.set_dx(0, g.sum_to_shape_of(g.emit("Div", {g.dy(), g.x(1)}), g.x(0)));
    if (g.wants(1)) {
      int t = g.emit("Div", {g.emit("Mul", {g.dy(), g.y(0)}), g.x(1)});
      g.set_dx(1, g.sum_to_shape_of(g.emit("Neg", {t}), g.x(1)));
    }
  }));
  // Mod: a - b * floor(a / b) (or trunc, fmod=1) is piecewise a + constant in a: da = dy. b's
  // gradient (-dy * floor(a / b)) is not built: Mod appears in index arithmetic, not in weights' paths.
  r.add(def("Mod", infer_arith, [](GradContext& g) { g.set_dx(0, g.sum_to_shape_of(g.dy(), g.x(0))); }, {0}));
  r.add(def("Pow", [](InferContext& c) {
    // Pow allows a different exponent type; the base's type is the output's.
    infer_broadcast(c, c.dtype(0));
  }, [](GradContext& g) {
    // y = a^b: da = dy * b * a^(b-1); db = dy * y * log(a)
    DType t = g.value(g.x(0)).dtype;
    int b = g.x(1);
    if (g.value(b).dtype != t) {
      Attributes a;
      a["to"] = Attribute::of_int(static_cast<int64_t>(t));
      b = g.emit("Cast", {b}, a);
    }
    if (g.wants(0)) {
      int bm1 = g.emit("Sub", {b, g.constant_scalar(1.0, t)});
      int d = g.emit("Mul", {g.dy(), g.emit("Mul", {b, g.emit("Pow", {g.x(0), bm1})})});
      g.set_dx(0, g.sum_to_shape_of(d, g.x(0)));
    }
    if (g.wants(1) && is_floating(g.value(g.x(1)).dtype)) {
      int d = g.emit("Mul", {g.emit("Mul", {g.dy(), g.y(0)}), g.emit("Log", {g.x(0)})});
      g.set_dx(1, g.sum_to_shape_of(d, g.x(1)));
    }
  }));
  r.add(def("PRelu", infer_prelu, [](GradContext& g) {
    for (size_t wrt : {size_t(0), size_t(1)}) {
      if (!g.wants(wrt)) continue;
      Attributes a;
      a["wrt"] = Attribute::of_int(static_cast<int64_t>(wrt));
      int d = g.emit("PReluGrad", {g.dy(), g.x(0), g.x(1)}, a, "otter");
      g.set_dx(wrt, g.sum_to_shape_of(d, g.x(wrt)));
    }
  }));
  r.add(def("Max", infer_variadic(kNumeric), min_max_grad));
  r.add(def("Min", infer_variadic(kNumeric), min_max_grad));
  r.add(def("Sum", infer_variadic(kFloat), [](GradContext& g) { sum_mean_grad(g, false); }));
  r.add(def("Mean", infer_variadic(kFloat), [](GradContext& g) { sum_mean_grad(g, true); }));
  for (const char* op : {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"}) r.add(def(op, infer_compare));
  for (const char* op : {"And", "Or", "Xor"}) r.add(def(op, infer_logical));

  {
    OpDef d = def("Where", [](InferContext& c) {
      c.expect_dtype(0, {DType::Bool});
      c.expect_same_dtype(1, 2);
      std::vector<Shape> shapes = {c.shape(0), c.shape(1), c.shape(2)};
      c.set_output(0, c.dtype(1), broadcast_shapes(c, shapes));
    }, [](GradContext& g) {
      DType t = g.value(g.y(0)).dtype;
      int zero = g.constant_scalar(0.0, t);
      if (g.wants(1)) g.set_dx(1, g.sum_to_shape_of(g.emit("Where", {g.x(0), g.dy(), zero}), g.x(1)));
      if (g.wants(2)) g.set_dx(2, g.sum_to_shape_of(g.emit("Where", {g.x(0), zero, g.dy()}), g.x(2)));
    }, {1, 2});
    d.kernel_type_input = 1;
    r.add(d);
  }

  {
    OpDef d = def("Dropout", [](InferContext& c) {
      c.expect_dtype(0, kFloat);
      c.set_output(0, c.dtype(0), c.shape(0));
      c.set_output(1, DType::Bool, c.shape(0));
    }, [](GradContext& g) {
      // The gradient needs the mask: give the forward node a mask output if it has none.
      Node& fwd = g.graph.nodes[static_cast<size_t>(&g.node() - g.graph.nodes.data())];
      if (fwd.outputs.size() < 2 || fwd.outputs[1] < 0) {
        int mask = g.graph.add_value(g.graph.unique_name(fwd.name + ":mask"), DType::Bool);
        g.graph.values[mask].producer = static_cast<int>(&fwd - g.graph.nodes.data());
        g.graph.values[mask].shape = g.value(fwd.outputs[0]).shape;
        g.graph.values[mask].shape_known = true;
        fwd.outputs.resize(2, -1);
        fwd.outputs[1] = mask;
      }
      g.set_dx(0, g.emit("DropoutGrad", {g.dy(), g.y(1), g.x(1)}, {}, "otter"));
    }, {0});
    d.deterministic = false;
    r.add(d);
  }

  // ---- internal ops used by gradients ----
  {
    OpDef d = def("UnaryGrad", [](InferContext& c) { c.set_output(0, c.dtype(0), c.shape(0)); });
    d.domain = "otter";
    r.add(d);
  }
  {
    OpDef d = def("ClipGrad", [](InferContext& c) { c.set_output(0, c.dtype(0), c.shape(1)); });
    d.domain = "otter";
    r.add(d);
  }
  {
    // PReluGrad(dy, x, slope)[wrt]: the unreduced gradient for x (wrt 0) or slope (wrt 1).
    OpDef d = def("PReluGrad", [](InferContext& c) { c.set_output(0, c.dtype(0), c.shape(0)); });
    d.domain = "otter";
    r.add(d);
  }
  {
    // MinMaxGrad(dy, y, x0, ..., xn-1)[index]: the gradient of input `index`, shaped like it.
    OpDef d = def("MinMaxGrad", [](InferContext& c) {
      int64_t index = c.node.attr_int("index", -1);
      if (index < 0 || static_cast<size_t>(index) + 2 >= c.num_inputs())
        c.fail(cat("index ", index, " is out of range for ", static_cast<int64_t>(c.num_inputs()) - 2, " inputs"));
      c.set_output(0, c.dtype(0), c.shape(static_cast<size_t>(index) + 2));
    });
    d.domain = "otter";
    r.add(d);
  }
  {
    OpDef d = def("DropoutGrad", [](InferContext& c) { c.set_output(0, c.dtype(0), c.shape(0)); });
    d.domain = "otter";
    r.add(d);
  }
  {
    // SumToShapeOf(grad, like): grad summed over the dims along which `like` was broadcast.
    // `like` is read only for its shape.
    OpDef d = def("SumToShapeOf", [](InferContext& c) { c.set_output(0, c.dtype(0), c.shape(1)); },
                  [](GradContext& g) {
                    // The gradient of a sum-to-shape is a broadcast back to the grad's shape.
                    g.set_dx(0, g.emit("Expand", {g.dy(), g.shape_of(g.x(0))}));
                  }, {0});
    d.domain = "otter";
    r.add(d);
  }

  // Traits (runtime/ops/op.h).
  r.at("", "Identity").views = {ViewTrait{0, 0, {}}};
  r.at("", "Dropout").views = {ViewTrait{0, 0, view_when_input_zero(1)}};          // ratio 0: the identity
  r.at("otter", "DropoutGrad").views = {ViewTrait{0, 0, view_when_input_zero(2)}};  // (dy, mask, ratio)
  r.at("otter", "SumToShapeOf").views = {ViewTrait{0, 0, {}}};  // nothing summed: the same bytes
  r.at("otter", "SumToShapeOf").shape_only = shape_only_inputs({1});
  for (const char* op : {"Exp", "Log", "Pow", "Reciprocal", "Softplus"}) r.at("", op).precision = PrecisionClass::Fp32;
}

}  // namespace otter
