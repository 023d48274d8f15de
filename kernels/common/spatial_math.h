// Index math of the spatial ops (Pad, Resize), shared by the op definitions (output shapes, in
// runtime/ops/spatial.cpp), the CPU kernels (kernels/cpu/spatial.cpp) and later CUDA ones.
//
// Pad: pad_source maps an output coordinate along one axis to its source coordinate (or -1 for
// constant padding) for the modes constant, reflect (numpy's mirror without the edge, repeated),
// edge and wrap.
//
// Resize follows the ONNX reference (onnx/reference/ops/op_resize.py): separable, one axis at a
// time, each output coordinate y maps to x = transform(y) in the input and takes n taps
// (input index, weight) around it: nearest 2 taps with 0/1 weights, linear 2, cubic 4, and with
// antialias (linear, cubic) a filter stretched by 1/scale when downsampling. Tap j sits at
// base - n/2 + 1 + j where base = floor(x) (x - 1 when x is whole, so the fraction is in (0, 1]),
// clamped into [0, in); exclude_outside drops the taps outside and renormalises.
// tf_crop_and_resize maps through the roi and marks coordinates outside the input as
// extrapolated (they take extrapolation_value). Host code: taps are computed once per axis.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace otter::spatial {

// ---- Pad ----

enum class PadMode { Constant, Reflect, Edge, Wrap };

inline bool parse_pad_mode(const std::string& s, PadMode& m) {
  if (s == "constant") m = PadMode::Constant;
  else if (s == "reflect") m = PadMode::Reflect;
  else if (s == "edge") m = PadMode::Edge;
  else if (s == "wrap") m = PadMode::Wrap;
  else return false;
  return true;
}

// The source coordinate of output coordinate o along an axis of size n padded by `begin` in front
// (negative: cropped), or -1 for a constant-padded place.
inline int64_t pad_source(int64_t o, int64_t n, int64_t begin, PadMode mode) {
  int64_t i = o - begin;
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case PadMode::Constant: return -1;
    case PadMode::Edge: return i < 0 ? 0 : n - 1;
    case PadMode::Wrap: return ((i % n) + n) % n;
    case PadMode::Reflect: {
      if (n == 1) return 0;
      int64_t period = 2 * (n - 1);
      int64_t m = ((i % period) + period) % period;
      return m < n ? m : period - m;
    }
  }
  return -1;
}

// ---- Resize ----

enum class ResizeMode { Nearest, Linear, Cubic };
enum class Coord { HalfPixel, HalfPixelSymmetric, PytorchHalfPixel, AlignCorners, Asymmetric, TfCropAndResize };
enum class NearestMode { RoundPreferFloor, RoundPreferCeil, Floor, Ceil };
enum class AspectPolicy { Stretch, NotLarger, NotSmaller };

struct ResizeParams {
  ResizeMode mode = ResizeMode::Nearest;
  Coord coord = Coord::HalfPixel;
  NearestMode nearest = NearestMode::RoundPreferFloor;
  AspectPolicy aspect = AspectPolicy::Stretch;
  double cubic_a = -0.75;
  bool exclude_outside = false;
  bool antialias = false;
  double extrapolation_value = 0.0;
  std::vector<int64_t> axes;  // the attribute as given (may be negative); empty: all dims
};

// Fills p from the attribute strings; returns an error message or "".
inline std::string parse_resize_params(const std::string& mode, const std::string& coord, const std::string& nearest,
                                       const std::string& aspect, ResizeParams& p) {
  if (mode == "nearest") p.mode = ResizeMode::Nearest;
  else if (mode == "linear") p.mode = ResizeMode::Linear;
  else if (mode == "cubic") p.mode = ResizeMode::Cubic;
  else return "unknown mode '" + mode + "' (expected nearest, linear or cubic)";
  if (coord == "half_pixel") p.coord = Coord::HalfPixel;
  else if (coord == "half_pixel_symmetric") p.coord = Coord::HalfPixelSymmetric;
  else if (coord == "pytorch_half_pixel") p.coord = Coord::PytorchHalfPixel;
  else if (coord == "align_corners") p.coord = Coord::AlignCorners;
  else if (coord == "asymmetric") p.coord = Coord::Asymmetric;
  else if (coord == "tf_crop_and_resize") p.coord = Coord::TfCropAndResize;
  else if (coord == "tf_half_pixel_for_nn") return "coordinate_transformation_mode 'tf_half_pixel_for_nn' is not supported (removed in opset 13)";
  else return "unknown coordinate_transformation_mode '" + coord + "'";
  if (nearest == "round_prefer_floor") p.nearest = NearestMode::RoundPreferFloor;
  else if (nearest == "round_prefer_ceil") p.nearest = NearestMode::RoundPreferCeil;
  else if (nearest == "floor") p.nearest = NearestMode::Floor;
  else if (nearest == "ceil") p.nearest = NearestMode::Ceil;
  else return "unknown nearest_mode '" + nearest + "'";
  if (aspect == "stretch") p.aspect = AspectPolicy::Stretch;
  else if (aspect == "not_larger") p.aspect = AspectPolicy::NotLarger;
  else if (aspect == "not_smaller") p.aspect = AspectPolicy::NotSmaller;
  else return "unknown keep_aspect_ratio_policy '" + aspect + "'";
  return "";
}

// The resized axes (normalised, in the order given) for a tensor of `rank`, or an error.
inline std::string resize_axes(const ResizeParams& p, int64_t rank, std::vector<int64_t>& axes) {
  axes.clear();
  if (p.axes.empty()) {
    for (int64_t d = 0; d < rank; ++d) axes.push_back(d);
    return "";
  }
  std::vector<bool> seen(static_cast<size_t>(rank), false);
  for (int64_t a : p.axes) {
    if (a < -rank || a >= rank) return "axis " + std::to_string(a) + " is out of range for rank " + std::to_string(rank);
    if (a < 0) a += rank;
    if (seen[static_cast<size_t>(a)]) return "axis " + std::to_string(a) + " appears more than once";
    seen[static_cast<size_t>(a)] = true;
    axes.push_back(a);
  }
  return "";
}

// Output shape and per-dim scale from the input shape (known dims) and either `scales` or
// `sizes` (one value per resized axis). Returns an error or "".
inline std::string resize_output(const ResizeParams& p, const std::vector<int64_t>& in,
                                 const std::vector<int64_t>& axes, const std::vector<double>* scales,
                                 const std::vector<int64_t>* sizes, std::vector<int64_t>& out,
                                 std::vector<double>& scale) {
  size_t r = in.size();
  out = in;
  scale.assign(r, 1.0);
  if (scales) {
    if (scales->size() != axes.size())
      return "scales has " + std::to_string(scales->size()) + " values for " + std::to_string(axes.size()) + " axes";
    for (size_t i = 0; i < axes.size(); ++i) {
      double s = (*scales)[i];
      if (!(s > 0)) return "scale " + std::to_string(s) + " is not positive";
      size_t d = static_cast<size_t>(axes[i]);
      scale[d] = s;
      out[d] = static_cast<int64_t>(std::floor(s * static_cast<double>(in[d])));
    }
    return "";
  }
  if (!sizes) return "needs scales or sizes";
  if (sizes->size() != axes.size())
    return "sizes has " + std::to_string(sizes->size()) + " values for " + std::to_string(axes.size()) + " axes";
  for (size_t i = 0; i < axes.size(); ++i) {
    int64_t s = (*sizes)[i];
    if (s < 0) return "size " + std::to_string(s) + " is negative";
    size_t d = static_cast<size_t>(axes[i]);
    if (in[d] == 0 && s != 0) return "cannot resize an axis of size 0 to " + std::to_string(s);
    out[d] = s;
    scale[d] = in[d] ? static_cast<double>(s) / static_cast<double>(in[d]) : 1.0;
  }
  if (p.aspect != AspectPolicy::Stretch && !axes.empty()) {
    double chosen = scale[static_cast<size_t>(axes[0])];
    for (int64_t a : axes) {
      double s = scale[static_cast<size_t>(a)];
      chosen = p.aspect == AspectPolicy::NotLarger ? std::min(chosen, s) : std::max(chosen, s);
    }
    for (int64_t a : axes) {
      size_t d = static_cast<size_t>(a);
      scale[d] = chosen;
      out[d] = static_cast<int64_t>(chosen * static_cast<double>(in[d]) + 0.5);
    }
  }
  return "";
}

// The taps of one resized axis: for output coordinate y, taps j in [0, n): idx[y*n + j],
// weight[y*n + j]; extrapolated[y] for tf_crop_and_resize places outside the input.
struct AxisTaps {
  int64_t in = 0, out = 0;
  int n = 0;
  std::vector<int64_t> idx;
  std::vector<double> weight;
  std::vector<uint8_t> extrapolated;
  bool identity = false;  // the axis is left as it is
};

inline void resize_coeffs(const ResizeParams& p, double ratio, double scale, std::vector<double>& c) {
  c.clear();
  if (p.mode == ResizeMode::Nearest) {
    if (ratio == 1.0) { c = {0.0, 1.0}; return; }
    switch (p.nearest) {
      case NearestMode::RoundPreferFloor: c = {ratio <= 0.5 ? 1.0 : 0.0, ratio > 0.5 ? 1.0 : 0.0}; break;
      case NearestMode::RoundPreferCeil: c = {ratio < 0.5 ? 1.0 : 0.0, ratio >= 0.5 ? 1.0 : 0.0}; break;
      case NearestMode::Floor: c = {1.0, 0.0}; break;
      case NearestMode::Ceil: c = {0.0, 1.0}; break;
    }
    return;
  }
  if (p.mode == ResizeMode::Linear) {
    if (!p.antialias) { c = {1.0 - ratio, ratio}; return; }
    double s = std::min(scale, 1.0);
    int64_t start = static_cast<int64_t>(std::floor(-1.0 / s)) + 1, footprint = 2 - 2 * start;
    double sum = 0;
    for (int64_t k = 0; k < footprint; ++k) {
      double v = 1.0 - std::fabs((static_cast<double>(start + k) - ratio) * s);
      v = std::min(1.0, std::max(0.0, v));
      c.push_back(v);
      sum += v;
    }
    for (double& v : c) v /= sum;
    return;
  }
  const double A = p.cubic_a;
  if (!p.antialias) {
    double r1 = ratio + 1, q = 1 - ratio, q1 = q + 1;
    c = {((A * r1 - 5 * A) * r1 + 8 * A) * r1 - 4 * A, ((A + 2) * ratio - (A + 3)) * ratio * ratio + 1,
         ((A + 2) * q - (A + 3)) * q * q + 1, ((A * q1 - 5 * A) * q1 + 8 * A) * q1 - 4 * A};
    return;
  }
  double s = std::min(scale, 1.0);
  int64_t i_start = static_cast<int64_t>(std::floor(-2.0 / s)) + 1, i_end = 2 - i_start;
  double sum = 0;
  for (int64_t i = i_start; i < i_end; ++i) {
    double x = std::fabs(s * (static_cast<double>(i) - ratio)), v = 0;
    if (x <= 1) v = (A + 2) * x * x * x - (A + 3) * x * x + 1;
    else if (x < 2) v = A * x * x * x - 5 * A * x * x + 8 * A * x - 4 * A;
    c.push_back(v);
    sum += v;
  }
  for (double& v : c) v /= sum;
}

// Taps for one axis of size `in` resized to `out` with `scale`; roi_start/roi_end are used by
// tf_crop_and_resize only.
inline AxisTaps resize_axis_taps(const ResizeParams& p, int64_t in, int64_t out, double scale, double roi_start,
                                 double roi_end) {
  AxisTaps t;
  t.in = in;
  t.out = out;
  bool roi_identity = p.coord != Coord::TfCropAndResize ||
                      (std::fabs(roi_start) <= 1e-9 && std::fabs(roi_end - 1.0) <= 1e-9);
  if (out == in && std::fabs(scale - 1.0) <= 1e-9 && roi_identity) {
    t.identity = true;
    return t;
  }
  const double fin = static_cast<double>(in);
  const double width = scale * fin;  // the reference's (possibly fractional) output width
  std::vector<double> c;
  t.extrapolated.assign(static_cast<size_t>(out), 0);
  for (int64_t yi = 0; yi < out; ++yi) {
    double y = static_cast<double>(yi), x = 0;
    switch (p.coord) {
      case Coord::HalfPixel: x = (y + 0.5) / scale - 0.5; break;
      case Coord::HalfPixelSymmetric: {
        double adjustment = static_cast<double>(out) / width, center = fin / 2;
        x = center * (1 - adjustment) + (y + 0.5) / scale - 0.5;
        break;
      }
      case Coord::PytorchHalfPixel: x = width == 1 ? -0.5 : (y + 0.5) / scale - 0.5; break;
      case Coord::AlignCorners: x = width == 1 ? 0.0 : y * (fin - 1) / (width - 1); break;
      case Coord::Asymmetric: x = y / scale; break;
      case Coord::TfCropAndResize:
        x = width == 1 ? (roi_end - roi_start) * (fin - 1) / 2 : y * (roi_end - roi_start) * (fin - 1) / (width - 1);
        x += roi_start * (fin - 1);
        if (x < 0 || x > fin - 1) t.extrapolated[static_cast<size_t>(yi)] = 1;
        break;
    }
    double fl = std::floor(x);
    double base = x == fl ? fl - 1 : fl;
    double ratio = x - base;  // in (0, 1]
    resize_coeffs(p, ratio, scale, c);
    if (t.n == 0) {
      t.n = static_cast<int>(c.size());
      t.idx.reserve(static_cast<size_t>(out * t.n));
      t.weight.reserve(static_cast<size_t>(out * t.n));
    }
    int64_t first = static_cast<int64_t>(base) - t.n / 2 + 1;
    if (p.exclude_outside) {
      double sum = 0;
      for (int j = 0; j < t.n; ++j) {
        int64_t i = first + j;
        if (i < 0 || i >= in) c[static_cast<size_t>(j)] = 0;
        sum += c[static_cast<size_t>(j)];
      }
      if (sum != 0)
        for (double& v : c) v /= sum;
    }
    for (int j = 0; j < t.n; ++j) {
      int64_t i = std::min<int64_t>(std::max<int64_t>(first + j, 0), in - 1);
      t.idx.push_back(i);
      t.weight.push_back(c[static_cast<size_t>(j)]);
    }
  }
  return t;
}

}  // namespace otter::spatial
