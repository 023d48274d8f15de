// The spatial op family: Pad (opset 13+ form: pads, optional constant_value and, from 18, axes
// as inputs; modes constant, reflect, edge, wrap; negative pads crop) and Resize (opset 13-19
// forms: roi, scales or sizes as inputs; nearest/linear/cubic, every coordinate transformation,
// antialias, axes, keep_aspect_ratio_policy, exclude_outside). Index math is shared with the
// kernels through kernels/common/spatial_math.h. Gradients are internal ops: otter.PadGrad
// (dy, x, pads, axes?) adds dy back into the source places of every mode (constant: a slice of
// dy), and otter.ResizeGrad(dy, X, roi, scales, sizes) scatters dy back with the forward's
// interpolation weights (X read only for its shape). Only X is differentiable.
#include <cmath>

#include "kernels/common/spatial_math.h"
#include "runtime/ops/op.h"

namespace otter {
namespace {

const std::initializer_list<DType> kFloat = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};

// ---- Pad ----

void infer_pad(InferContext& c) {
  spatial::PadMode mode;
  std::string mode_name = c.node.attr_string("mode", "constant");
  if (!spatial::parse_pad_mode(mode_name, mode))
    c.fail(cat("unknown mode '", mode_name, "' (expected constant, reflect, edge or wrap)"));
  if (!c.has_input(1)) c.fail("the pads input is required (the pads attribute of opset < 11 is not supported)");
  c.expect_dtype(1, {DType::Int64});
  const Shape& in = c.shape(0);
  int64_t r = c.rank(0);
  if (c.rank(1) != 1) c.fail(cat("pads must be 1-D, got shape ", c.dims(c.shape(1))));
  if (c.has_input(2) && c.num_inputs() > 2) {
    c.expect_same_dtype(0, 2);
    const Shape& v = c.shape(2);
    if (!(v.empty() || (v.size() == 1 && (v[0] == 1 || v[0] < 0))))
      c.fail(cat("constant_value must be a scalar, got shape ", c.dims(v)));
  }
  std::optional<std::vector<int64_t>> axes = std::vector<int64_t>();
  if (c.has_input(3)) {
    c.expect_dtype(3, {DType::Int64, DType::Int32});
    if (c.rank(3) != 1) c.fail(cat("axes must be 1-D, got shape ", c.dims(c.shape(3))));
    if (const Tensor* t = c.data(3)) axes = t->to_int64_vector();
    else axes.reset();
  } else {
    for (int64_t k = 0; k < r; ++k) axes->push_back(k);
  }
  std::optional<std::vector<int64_t>> pads;
  if (const Tensor* t = c.data(1)) pads = t->to_int64_vector();
  if (!axes || !pads) {
    Shape out;
    for (int64_t k = 0; k < r; ++k) out.push_back(c.unknown_dim());
    c.set_output(0, c.dtype(0), out);
    return;
  }
  size_t n = axes->size();
  if (pads->size() != 2 * n)
    c.fail(cat("pads has ", pads->size(), " values but ", n, " axes need ", 2 * n));
  Shape out = in;
  std::vector<bool> seen(static_cast<size_t>(r), false);
  for (size_t i = 0; i < n; ++i) {
    int64_t a = c.axis((*axes)[i], r);
    if (seen[a]) c.fail(cat("axis ", a, " appears more than once"));
    seen[a] = true;
    int64_t b = (*pads)[i], e = (*pads)[n + i];
    if (in[a] < 0) {
      if (b != 0 || e != 0) out[a] = c.unknown_dim();
      continue;
    }
    if (mode != spatial::PadMode::Constant && in[a] == 0 && (b > 0 || e > 0))
      c.fail(cat("cannot pad the empty axis ", a, " in mode ", mode_name));
    out[a] = in[a] + b + e;
    if (out[a] < 0) c.fail(cat("pads ", b, " and ", e, " crop more than the ", in[a], " elements of axis ", a));
  }
  c.set_output(0, c.dtype(0), out);
}

void pad_grad(GradContext& g) {
  std::vector<int> in = {g.dy(), g.x(0), g.x(1)};
  if (g.x(3) >= 0) in.push_back(g.x(3));
  Attributes a;
  a["mode"] = Attribute::of_string(g.node().attr_string("mode", "constant"));
  g.set_dx(0, g.emit("PadGrad", in, a, "otter"));
}

// ---- Resize ----

spatial::ResizeParams resize_params(const InferContext& c) {
  const Node& n = c.node;
  spatial::ResizeParams p;
  std::string err = spatial::parse_resize_params(
      n.attr_string("mode", "nearest"), n.attr_string("coordinate_transformation_mode", "half_pixel"),
      n.attr_string("nearest_mode", "round_prefer_floor"), n.attr_string("keep_aspect_ratio_policy", "stretch"), p);
  if (!err.empty()) c.fail(err);
  p.cubic_a = n.attr_float("cubic_coeff_a", -0.75);
  p.exclude_outside = n.attr_int("exclude_outside", 0) != 0;
  p.antialias = n.attr_int("antialias", 0) != 0;
  p.extrapolation_value = n.attr_float("extrapolation_value", 0.0);
  p.axes = n.attr_ints("axes");
  return p;
}

// Whether optional input i is given and not an empty tensor.
bool given(const InferContext& c, size_t i) {
  if (!c.has_input(i)) return false;
  const Shape& s = c.shape(i);
  return !(s.size() == 1 && s[0] == 0);
}

// A fresh symbol for an output size that depends on scales/sizes data not known yet; in a plan,
// where every size must be known, a clear error.
int64_t unknown_size(InferContext& c, const char* input) {
  try {
    return c.unknown_dim();
  } catch (const Error&) {
    c.fail(cat("the output shape depends on the ", input, " input, which must be known when the plan is built "
               "(a constant, an initializer or a value computed from shapes)"));
  }
}

// Validates Resize's inputs (X at x_input, roi/scales/sizes after it) and returns the output shape.
Shape resize_shape(InferContext& c, size_t x_input) {
  spatial::ResizeParams p = resize_params(c);
  const Shape& in = c.shape(x_input);
  int64_t r = static_cast<int64_t>(in.size());
  std::vector<int64_t> axes;
  std::string err = spatial::resize_axes(p, r, axes);
  if (!err.empty()) c.fail(err);
  size_t roi = x_input + 1, scales = x_input + 2, sizes = x_input + 3;
  bool has_scales = given(c, scales), has_sizes = given(c, sizes);
  if (has_scales && has_sizes) c.fail("takes either scales or sizes, not both");
  if (!has_scales && !has_sizes) c.fail("needs scales or sizes");
  if (p.coord == spatial::Coord::TfCropAndResize && !given(c, roi))
    c.fail("coordinate_transformation_mode tf_crop_and_resize needs the roi input");
  if (given(c, roi)) c.expect_dtype(roi, kFloat);
  size_t vi = has_scales ? scales : sizes;
  if (c.rank(vi) != 1) c.fail(cat(has_scales ? "scales" : "sizes", " must be 1-D, got shape ", c.dims(c.shape(vi))));
  int64_t len = c.shape(vi)[0];
  if (len >= 0 && len != static_cast<int64_t>(axes.size()))
    c.fail(cat(has_scales ? "scales" : "sizes", " has ", len, " values for ", axes.size(), " resized axes"));
  bool known_in = true;
  for (int64_t a : axes) known_in = known_in && in[a] >= 0;
  Shape out = in;
  if (has_scales) {
    c.expect_dtype(scales, kFloat);
    const Tensor* t = c.data(scales);
    if (!t) {
      for (int64_t a : axes) out[a] = unknown_size(c, "scales");
      return out;
    }
    std::vector<double> s = t->to_double_vector();
    if (s.size() != axes.size()) c.fail(cat("scales has ", s.size(), " values for ", axes.size(), " resized axes"));
    for (size_t i = 0; i < axes.size(); ++i) {
      if (!(s[i] > 0)) c.fail(cat("scale ", s[i], " is not positive"));
      int64_t d = in[axes[i]];
      out[axes[i]] = d >= 0 ? static_cast<int64_t>(std::floor(s[i] * static_cast<double>(d)))
                            : (s[i] == 1.0 ? d : c.unknown_dim());
    }
    return out;
  }
  c.expect_dtype(sizes, {DType::Int64});
  std::optional<std::vector<int64_t>> v = c.int_values(sizes);
  if (!v) {
    for (int64_t a : axes) out[a] = unknown_size(c, "sizes");
    return out;
  }
  if (v->size() != axes.size()) c.fail(cat("sizes has ", v->size(), " values for ", axes.size(), " resized axes"));
  bool literal = c.data(sizes) != nullptr;
  if (p.aspect == spatial::AspectPolicy::Stretch) {
    for (size_t i = 0; i < axes.size(); ++i) {
      int64_t s = (*v)[i];
      if (literal && s < 0) c.fail(cat("size ", s, " is negative"));
      out[axes[i]] = s;  // a symbol from a Shape result stays that symbol
    }
    return out;
  }
  if (!literal || !known_in) {
    for (int64_t a : axes) out[a] = c.unknown_dim();
    return out;
  }
  std::vector<double> scale;
  Shape computed;
  err = spatial::resize_output(p, in, axes, nullptr, &*v, computed, scale);
  if (!err.empty()) c.fail(err);
  return computed;
}

void infer_resize(InferContext& c) {
  c.expect_dtype(0, kFloat);
  c.set_output(0, c.dtype(0), resize_shape(c, 0));
}

void resize_grad(GradContext& g) {
  g.set_dx(0, g.emit("ResizeGrad", {g.dy(), g.x(0), g.x(1), g.x(2), g.x(3)}, g.node().attrs, "otter"));
}

OpDef def(const std::string& op, int64_t since, InferFn infer, GradFn grad, std::vector<int> diff) {
  OpDef d;
  d.op_type = op;
  d.since_version = since;
  d.infer = std::move(infer);
  d.gradient = std::move(grad);
  d.differentiable_inputs = std::move(diff);
  return d;
}

}  // namespace

void register_spatial_ops(OpRegistry& r) {
  r.add(def("Pad", 11, infer_pad, pad_grad, {0}));
  r.add(def("Resize", 11, infer_resize, resize_grad, {0}));

  // PadGrad(dy, x, pads, axes?): dy added back into x's places (x read only for its shape).
  OpDef pg = def("PadGrad", 1, [](InferContext& c) {
    c.expect_dtype(0, kFloat);
    spatial::PadMode m;
    if (!spatial::parse_pad_mode(c.node.attr_string("mode", "constant"), m)) c.fail("unknown mode");
    if (c.rank(0) != c.rank(1)) c.fail("dy and x must have one rank");
    c.set_output(0, c.dtype(0), c.shape(1));
  }, {}, {});
  pg.domain = "otter";
  r.add(pg);
  // ResizeGrad(dy, X, roi, scales, sizes): dy scattered back through the interpolation weights.
  OpDef rg = def("ResizeGrad", 1, [](InferContext& c) {
    c.expect_dtype(0, kFloat);
    Shape out = resize_shape(c, 1);
    const Shape& dy = c.shape(0);
    bool match = dy.size() == out.size();
    for (size_t k = 0; match && k < dy.size(); ++k)
      if (dy[k] >= 0 && out[k] >= 0 && dy[k] != out[k]) match = false;
    if (!match) c.fail(cat("dy ", c.dims(dy), " does not match the resized shape ", c.dims(out)));
    c.set_output(0, c.dtype(0), c.shape(1));
  }, {}, {});
  rg.domain = "otter";
  r.add(rg);

  // Traits (runtime/ops/op.h).
  for (const char* op : {"PadGrad", "ResizeGrad"}) r.at("otter", op).shape_only = shape_only_inputs({1});
  r.at("", "Resize").precision = PrecisionClass::Fp32;
}

}  // namespace otter
