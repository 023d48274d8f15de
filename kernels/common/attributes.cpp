// Attribute semantics shared by runtime/ops and the kernels (see attributes.h).
#include "kernels/common/attributes.h"

#include <algorithm>
#include <string>

namespace otter {

namespace {

std::vector<int64_t> ints_or(const Node& node, const char* key, size_t n, int64_t fallback) {
  std::vector<int64_t> v = node.attr_ints(key);
  if (v.empty()) v.assign(n, fallback);
  return v;
}

void read_strides_dilations(const Node& node, size_t d, std::vector<int64_t>& strides,
                            std::vector<int64_t>& dilations) {
  strides = ints_or(node, "strides", d, 1);
  dilations = ints_or(node, "dilations", d, 1);
  if (strides.size() != d)
    OTTER_FAIL(node.describe(), ": strides has ", strides.size(), " values for ", d, " spatial dims");
  if (dilations.size() != d)
    OTTER_FAIL(node.describe(), ": dilations has ", dilations.size(), " values for ", d, " spatial dims");
  for (size_t i = 0; i < d; ++i) {
    if (strides[i] < 1) OTTER_FAIL(node.describe(), ": strides must be >= 1, got ", strides[i]);
    if (dilations[i] < 1) OTTER_FAIL(node.describe(), ": dilations must be >= 1, got ", dilations[i]);
  }
}

std::string read_auto_pad(const Node& node) {
  std::string auto_pad = node.attr_string("auto_pad", "NOTSET");
  if (auto_pad.empty()) auto_pad = "NOTSET";
  if (auto_pad != "NOTSET" && auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER" && auto_pad != "VALID")
    OTTER_FAIL(node.describe(), ": unsupported auto_pad '", auto_pad,
               "' (expected NOTSET, SAME_UPPER, SAME_LOWER or VALID)");
  return auto_pad;
}

}  // namespace

void window_geometry(const Node& node, const Shape& in_spatial, const Shape& kernel, bool allow_ceil_mode,
                     std::vector<int64_t>& strides, std::vector<int64_t>& dilations,
                     std::vector<int64_t>& pads_begin, std::vector<int64_t>& pads_end, std::vector<int64_t>& out) {
  size_t d = in_spatial.size();
  if (kernel.size() != d)
    OTTER_FAIL(node.describe(), ": the kernel has ", kernel.size(), " spatial dims but the input has ", d);
  read_strides_dilations(node, d, strides, dilations);
  std::string auto_pad = read_auto_pad(node);
  bool ceil_mode = allow_ceil_mode && node.attr_int("ceil_mode", 0) != 0;
  std::vector<int64_t> pads = ints_or(node, "pads", 2 * d, 0);
  if (pads.size() != 2 * d)
    OTTER_FAIL(node.describe(), ": pads has ", pads.size(), " values; expected ", 2 * d,
               " (begin and end per spatial dim)");
  for (int64_t p : pads)
    if (p < 0) OTTER_FAIL(node.describe(), ": pads must be >= 0, got ", p);
  pads_begin.assign(d, 0);
  pads_end.assign(d, 0);
  out.assign(d, -1);
  for (size_t i = 0; i < d; ++i) {
    if (kernel[i] >= 0 && kernel[i] < 1) OTTER_FAIL(node.describe(), ": kernel dims must be >= 1, got ", kernel[i]);
    if (in_spatial[i] < 0 || kernel[i] < 0) continue;  // symbolic: unknown output dim
    int64_t in = in_spatial[i], window = (kernel[i] - 1) * dilations[i] + 1, s = strides[i];
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      out[i] = (in + s - 1) / s;
      int64_t total = std::max<int64_t>(0, (out[i] - 1) * s + window - in);
      pads_begin[i] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      pads_end[i] = total - pads_begin[i];
      continue;
    }
    if (auto_pad == "NOTSET") {
      pads_begin[i] = pads[i];
      pads_end[i] = pads[i + d];
    }
    int64_t span = in + pads_begin[i] + pads_end[i] - window;
    if (span < 0)
      OTTER_FAIL(node.describe(), ": spatial dim ", i, " of size ", in, " (padded by ", pads_begin[i], "+", pads_end[i],
                 ") is smaller than the window ", window);
    if (ceil_mode && auto_pad == "NOTSET") {
      out[i] = (span + s - 1) / s + 1;
      // The last window must start inside the input or its begin padding.
      if ((out[i] - 1) * s >= in + pads_begin[i]) --out[i];
    } else {
      out[i] = span / s + 1;
    }
  }
}

void conv_transpose_geometry(const Node& node, const Shape& in_spatial, const Shape& kernel,
                             std::vector<int64_t>& strides, std::vector<int64_t>& dilations,
                             std::vector<int64_t>& pads_begin, std::vector<int64_t>& out) {
  size_t d = in_spatial.size();
  if (kernel.size() != d)
    OTTER_FAIL(node.describe(), ": the kernel has ", kernel.size(), " spatial dims but the input has ", d);
  read_strides_dilations(node, d, strides, dilations);
  std::string auto_pad = read_auto_pad(node);
  std::vector<int64_t> pads = ints_or(node, "pads", 2 * d, 0);
  if (pads.size() != 2 * d)
    OTTER_FAIL(node.describe(), ": pads has ", pads.size(), " values; expected ", 2 * d);
  for (int64_t p : pads)
    if (p < 0) OTTER_FAIL(node.describe(), ": pads must be >= 0, got ", p);
  std::vector<int64_t> out_pad = ints_or(node, "output_padding", d, 0);
  if (out_pad.size() != d)
    OTTER_FAIL(node.describe(), ": output_padding has ", out_pad.size(), " values for ", d, " spatial dims");
  for (int64_t p : out_pad)
    if (p < 0) OTTER_FAIL(node.describe(), ": output_padding must be >= 0, got ", p);
  std::vector<int64_t> out_shape = node.attr_ints("output_shape");
  if (out_shape.size() == d + 2) out_shape.erase(out_shape.begin(), out_shape.begin() + 2);  // full [N, C, ...] form
  if (!out_shape.empty() && out_shape.size() != d)
    OTTER_FAIL(node.describe(), ": output_shape has ", out_shape.size(), " values for ", d, " spatial dims");
  pads_begin.assign(d, 0);
  out.assign(d, -1);
  for (size_t i = 0; i < d; ++i) {
    if (kernel[i] >= 0 && kernel[i] < 1) OTTER_FAIL(node.describe(), ": kernel dims must be >= 1, got ", kernel[i]);
    if (in_spatial[i] < 0 || kernel[i] < 0) continue;
    int64_t in = in_spatial[i], window = (kernel[i] - 1) * dilations[i] + 1, s = strides[i];
    int64_t natural = s * (in - 1) + out_pad[i] + window;  // the output size before padding is removed
    if (!out_shape.empty() || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      int64_t target = !out_shape.empty() ? out_shape[i] : in * s;
      if (target < 1) OTTER_FAIL(node.describe(), ": output_shape values must be >= 1, got ", target);
      int64_t total = std::max<int64_t>(0, natural - target);
      pads_begin[i] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      out[i] = target;
      continue;
    }
    if (auto_pad == "NOTSET") pads_begin[i] = pads[i];
    int64_t pe = auto_pad == "NOTSET" ? pads[i + d] : 0;
    out[i] = natural - pads_begin[i] - pe;
    if (out[i] < 1)
      OTTER_FAIL(node.describe(), ": the pads ", pads_begin[i], "+", pe, " remove the whole output along spatial dim ",
                 i);
  }
}

std::vector<int64_t> reduction_axes(const Node& node, const std::optional<std::vector<int64_t>>& axes_input,
                                    int64_t rank, bool* noop) {
  std::vector<int64_t> axes = axes_input ? *axes_input : node.attr_ints("axes");
  *noop = false;
  if (axes.empty()) {
    if (node.attr_int("noop_with_empty_axes", 0)) { *noop = true; return {}; }
    for (int64_t i = 0; i < rank; ++i) axes.push_back(i);
  }
  for (int64_t& a : axes) {
    OTTER_CHECK(a >= -rank && a < rank, node.describe(), ": axis ", a, " is out of range for rank ", rank);
    if (a < 0) a += rank;
  }
  std::sort(axes.begin(), axes.end());
  axes.erase(std::unique(axes.begin(), axes.end()), axes.end());
  return axes;
}

}  // namespace otter
