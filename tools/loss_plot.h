// The `otter train --plot` chart: an SVG line chart of the training loss per step and the
// validation loss per evaluation, with rounded ("nice") tick labels on both axes, light grid lines,
// a linear or logarithmic loss axis, and the steps skipped for a non-finite gradient marked on the
// x axis. Self-contained (no dependency but the C++ library), so the CLI stays on the C ABI.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace otter::cli {

struct LossPlot {
  std::vector<std::pair<double, double>> train;  // (step, loss)
  std::vector<std::pair<double, double>> val;    // (step, validation loss)
  std::vector<double> skipped;                   // steps skipped (non-finite gradient)
  bool log_y = false;                            // logarithmic loss axis (non-positive losses are left out)
  std::string x_label = "step";
};

std::string render_loss_svg(const LossPlot& plot);

// Rounded tick positions covering [lo, hi] (about `target` of them, steps of 1, 2 or 5 x 10^k) and
// the label of a tick at that spacing (exposed for tests).
std::vector<double> nice_ticks(double lo, double hi, int target, double* spacing);
std::string tick_label(double value, double spacing);

}  // namespace otter::cli
