// Host-side parameter resolution of the spatial ops (see spatial_host.h).
#include "kernels/common/spatial_host.h"

#include <string>

namespace otter::spatial {

PadLayout pad_layout(const KernelContext& ctx, const Shape& in, const Shape& out, size_t pads_input,
                     size_t axes_input) {
  PadLayout l;
  std::string m = ctx.node.attr_string("mode", "constant");
  OTTER_CHECK(parse_pad_mode(m, l.mode), ctx.node.describe(), ": unknown mode '", m, "'");
  int64_t r = static_cast<int64_t>(in.size());
  std::vector<int64_t> pads = ctx.int64_values(pads_input), axes;
  if (ctx.has_input(axes_input)) axes = ctx.int64_values(axes_input);
  else for (int64_t k = 0; k < r; ++k) axes.push_back(k);
  OTTER_CHECK(pads.size() == 2 * axes.size(), ctx.node.describe(), ": pads has ", pads.size(), " values for ",
              axes.size(), " axes");
  std::vector<int64_t> begin(static_cast<size_t>(r), 0), end(static_cast<size_t>(r), 0);
  for (size_t i = 0; i < axes.size(); ++i) {
    int64_t a = axes[i];
    OTTER_CHECK(a >= -r && a < r, ctx.node.describe(), ": axis ", a, " is out of range for rank ", r);
    if (a < 0) a += r;
    begin[a] = pads[i];
    end[a] = pads[axes.size() + i];
  }
  OTTER_CHECK(static_cast<int64_t>(out.size()) == r, ctx.node.describe(), ": rank mismatch");
  l.src.resize(static_cast<size_t>(r));
  l.padded.assign(static_cast<size_t>(r), false);
  for (int64_t d = 0; d < r; ++d) {
    OTTER_CHECK(out[d] == in[d] + begin[d] + end[d], ctx.node.describe(), ": output ", shape_str(out),
                " does not match padding ", shape_str(in));
    OTTER_CHECK(in[d] > 0 || out[d] == 0 || l.mode == PadMode::Constant, ctx.node.describe(),
                ": cannot pad the empty axis ", d, " in mode ", m);
    l.padded[d] = begin[d] != 0 || end[d] != 0;
    std::vector<int64_t>& s = l.src[d];
    s.resize(static_cast<size_t>(out[d]));
    for (int64_t o = 0; o < out[d]; ++o) s[o] = pad_source(o, in[d], begin[d], l.mode);
  }
  return l;
}

std::vector<std::pair<int64_t, AxisTaps>> resize_taps(const KernelContext& ctx, const Shape& in, const Shape& out,
                                                      size_t first, ResizeParams& p) {
  const Node& n = ctx.node;
  std::string err = parse_resize_params(
      n.attr_string("mode", "nearest"), n.attr_string("coordinate_transformation_mode", "half_pixel"),
      n.attr_string("nearest_mode", "round_prefer_floor"), n.attr_string("keep_aspect_ratio_policy", "stretch"), p);
  OTTER_CHECK(err.empty(), n.describe(), ": ", err);
  p.cubic_a = n.attr_float("cubic_coeff_a", -0.75);
  p.exclude_outside = n.attr_int("exclude_outside", 0) != 0;
  p.antialias = n.attr_int("antialias", 0) != 0;
  p.extrapolation_value = n.attr_float("extrapolation_value", 0.0);
  p.axes = n.attr_ints("axes");
  std::vector<int64_t> axes;
  err = resize_axes(p, static_cast<int64_t>(in.size()), axes);
  OTTER_CHECK(err.empty(), n.describe(), ": ", err);
  auto given = [&](size_t i) { return ctx.has_input(i) && ctx.in(i).numel() > 0; };
  std::vector<double> scales;
  std::vector<int64_t> sizes;
  if (given(first + 1)) scales = ctx.double_values(first + 1);
  else if (given(first + 2)) sizes = ctx.int64_values(first + 2);
  else OTTER_FAIL(n.describe(), ": needs scales or sizes");
  Shape want;
  std::vector<double> scale;
  err = resize_output(p, in, axes, given(first + 1) ? &scales : nullptr, given(first + 1) ? nullptr : &sizes, want,
                      scale);
  OTTER_CHECK(err.empty(), n.describe(), ": ", err);
  OTTER_CHECK(want == out, n.describe(), ": the resized shape ", shape_str(want), " does not match ", shape_str(out));
  std::vector<double> roi;
  if (p.coord == Coord::TfCropAndResize) {
    OTTER_CHECK(given(first), n.describe(), ": tf_crop_and_resize needs the roi input");
    roi = ctx.double_values(first);
    OTTER_CHECK(roi.size() == 2 * axes.size(), n.describe(), ": roi has ", roi.size(), " values for ", axes.size(),
                " axes (needs starts then ends)");
  }
  std::vector<std::pair<int64_t, AxisTaps>> taps;
  for (size_t i = 0; i < axes.size(); ++i) {
    int64_t a = axes[i];
    double rs = roi.empty() ? 0.0 : roi[i], re = roi.empty() ? 1.0 : roi[axes.size() + i];
    AxisTaps t = resize_axis_taps(p, in[a], out[a], scale[a], rs, re);
    if (!t.identity) taps.emplace_back(a, std::move(t));
  }
  return taps;
}

}  // namespace otter::spatial
