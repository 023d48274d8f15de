// The loss chart of `otter train --plot` (see loss_plot.h): axis ranges rounded outwards to nice
// tick spacings, labels printed with just the decimals the spacing needs, log axes ticked at
// 1-2-5 x 10^k (or powers of ten over a wide range; a range under one decade gets linear 1-2-5 ticks).
#include "tools/loss_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace otter::cli {

std::vector<double> nice_ticks(double lo, double hi, int target, double* spacing) {
  if (!(hi > lo)) hi = lo + 1;
  double raw = (hi - lo) / std::max(target, 1);
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  *spacing = step;
  std::vector<double> ticks;
  for (double t = std::floor(lo / step) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

std::string tick_label(double value, double spacing) {
  char buf[64];
  double a = std::abs(value);
  if (a != 0 && (a >= 1e6 || a < 1e-4)) {
    std::snprintf(buf, sizeof buf, "%.3g", value);
  } else {
    int decimals = spacing >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(spacing) - 1e-9));
    std::snprintf(buf, sizeof buf, "%.*f", std::min(decimals, 6), value);
  }
  return buf;
}

namespace {

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

// Log-axis ticks (values, not logs) over [lo, hi] > 0.
std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> ticks;
  int e0 = static_cast<int>(std::floor(std::log10(lo))), e1 = static_cast<int>(std::ceil(std::log10(hi)));
  const bool dense = e1 - e0 <= 2;
  for (int e = e0; e <= e1; ++e)
    for (double m : dense ? std::vector<double>{1, 2, 5} : std::vector<double>{1}) {
      double t = m * std::pow(10.0, e);
      if (t >= lo * (1 - 1e-9) && t <= hi * (1 + 1e-9)) ticks.push_back(t);
    }
  return ticks;
}

std::string log_label(double v) {
  char buf[32];
  double a = std::abs(v);
  if (a >= 1e5 || a < 1e-4) std::snprintf(buf, sizeof buf, "%.0e", v);
  else std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

std::string render_loss_svg(const LossPlot& plot) {
  const double W = 720, H = 420, L = 72, R = 24, T = 36, B = 56;
  auto usable = [&](double y) { return std::isfinite(y) && (!plot.log_y || y > 0); };
  double xmin = 0, xmax = 1, ymin = INFINITY, ymax = -INFINITY;
  for (auto* series : {&plot.train, &plot.val})
    for (auto& p : *series) {
      xmax = std::max(xmax, p.first);
      if (usable(p.second)) {
        ymin = std::min(ymin, p.second);
        ymax = std::max(ymax, p.second);
      }
    }
  for (double x : plot.skipped) xmax = std::max(xmax, x);
  bool empty = !std::isfinite(ymin);
  if (empty) {
    ymin = plot.log_y ? 0.1 : 0;
    ymax = 1;
  }

  // x: steps, nice integer ticks from 0.
  double xs = 1;
  std::vector<double> xticks = nice_ticks(xmin, xmax, 8, &xs);
  if (xs < 1) xticks = nice_ticks(xmin, xmax, static_cast<int>(xmax), &xs);
  xmax = std::max(xmax, xticks.back());
  // y: a nice linear range (a flat curve gets a band around its value), or whole log ticks.
  std::vector<double> yticks;
  double ys = 1;
  std::vector<std::string> ylabels;
  if (plot.log_y && ymax / ymin < 10) {
    // Less than a decade: decade ticks would leave one or two labels, so the linear 1-2-5 ticks
    // are drawn on the log axis (the positive ones).
    if (ymax / ymin < 1.0001) { ymin /= 1.5; ymax *= 1.5; }
    for (double t : nice_ticks(ymin, ymax, 5, &ys))
      if (t > 0) yticks.push_back(t);
    ymin = std::min(ymin, yticks.front());
    ymax = std::max(ymax, yticks.back());
    if (yticks.back() < ymax) yticks.push_back(yticks.back() + ys);
    ymax = yticks.back();
    for (double t : yticks) ylabels.push_back(tick_label(t, ys));
  } else if (plot.log_y) {
    double lo = std::pow(10.0, std::floor(std::log10(ymin))), hi = std::pow(10.0, std::ceil(std::log10(ymax)));
    // Tighten to 1-2-5 steps when the data spans a small part of the decade range.
    for (double m : {5.0, 2.0}) if (lo * m <= ymin) { lo *= m; break; }
    for (double m : {0.2, 0.5}) if (hi * m >= ymax) { hi *= m; break; }
    ymin = lo;
    ymax = hi;
    yticks = log_ticks(ymin, ymax);
    // The axis ends (1, 2 or 5 x 10^k) are labelled too.
    if (yticks.empty() || yticks.front() > ymin * (1 + 1e-9)) yticks.insert(yticks.begin(), ymin);
    if (yticks.back() < ymax * (1 - 1e-9)) yticks.push_back(ymax);
    for (double t : yticks) ylabels.push_back(log_label(t));
  } else {
    if (ymax - ymin < 1e-12 * std::max(1.0, std::abs(ymax))) {
      double pad = std::max(std::abs(ymax) * 0.1, 1e-3);
      ymin -= pad;
      ymax += pad;
    }
    yticks = nice_ticks(ymin, ymax, 6, &ys);
    ymin = yticks.front();
    ymax = std::max(ymax, yticks.back());
    if (yticks.back() < ymax) yticks.push_back(yticks.back() + ys);
    ymax = yticks.back();
    for (double t : yticks) ylabels.push_back(tick_label(t, ys));
  }

  auto X = [&](double x) { return L + (W - L - R) * (x - xmin) / (xmax - xmin); };
  auto Y = [&](double y) {
    double f = plot.log_y ? (std::log10(y) - std::log10(ymin)) / (std::log10(ymax) - std::log10(ymin))
                          : (y - ymin) / (ymax - ymin);
    return T + (H - T - B) * (1 - f);
  };
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  // Grid and ticks.
  for (size_t i = 0; i < yticks.size(); ++i) {
    double y = Y(yticks[i]);
    s << "<line x1=\"" << L << "\" y1=\"" << fmt(y) << "\" x2=\"" << W - R << "\" y2=\"" << fmt(y)
      << "\" stroke=\"#e0e0e0\"/>\n<text x=\"" << L - 6 << "\" y=\"" << fmt(y + 4) << "\" text-anchor=\"end\">"
      << ylabels[i] << "</text>\n";
  }
  for (double t : xticks) {
    double x = X(t);
    s << "<line x1=\"" << fmt(x) << "\" y1=\"" << T << "\" x2=\"" << fmt(x) << "\" y2=\"" << H - B
      << "\" stroke=\"#eeeeee\"/>\n<line x1=\"" << fmt(x) << "\" y1=\"" << H - B << "\" x2=\"" << fmt(x) << "\" y2=\""
      << H - B + 5 << "\" stroke=\"black\"/>\n<text x=\"" << fmt(x) << "\" y=\"" << H - B + 18
      << "\" text-anchor=\"middle\">" << tick_label(t, xs) << "</text>\n";
  }
  s << "<line x1=\"" << L << "\" y1=\"" << H - B << "\" x2=\"" << W - R << "\" y2=\"" << H - B << "\" stroke=\"black\"/>\n"
    << "<line x1=\"" << L << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\"" << H - B << "\" stroke=\"black\"/>\n"
    << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 14 << "\" text-anchor=\"middle\">" << plot.x_label << "</text>\n"
    << "<text transform=\"translate(18," << (T + H - B) / 2 << ") rotate(-90)\" text-anchor=\"middle\">loss"
    << (plot.log_y ? " (log scale)" : "") << "</text>\n";
  if (empty)
    s << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << (T + H - B) / 2 << "\" text-anchor=\"middle\" fill=\"#888\">"
      << "no finite loss to plot</text>\n";

  // Series, legend.
  double legend_y = T - 14;
  double legend_x = L;
  auto legend = [&](const char* color, const std::string& label, bool cross) {
    if (cross)
      s << "<path d=\"M" << fmt(legend_x) << "," << fmt(legend_y - 8) << " l8,8 m0,-8 l-8,8\" stroke=\"" << color
        << "\" stroke-width=\"2\"/>\n";
    else
      s << "<line x1=\"" << fmt(legend_x) << "\" y1=\"" << fmt(legend_y - 4) << "\" x2=\"" << fmt(legend_x + 18)
        << "\" y2=\"" << fmt(legend_y - 4) << "\" stroke=\"" << color << "\" stroke-width=\"2\"/>\n";
    s << "<text x=\"" << fmt(legend_x + 24) << "\" y=\"" << fmt(legend_y) << "\">" << label << "</text>\n";
    legend_x += 24 + 7.0 * static_cast<double>(label.size()) + 24;
  };
  auto line = [&](const std::vector<std::pair<double, double>>& pts, const char* color, const char* label, bool dots) {
    if (pts.empty()) return;
    s << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.5\" points=\"";
    for (auto& p : pts)
      if (usable(p.second)) s << fmt(X(p.first)) << "," << fmt(Y(p.second)) << " ";
    s << "\"/>\n";
    if (dots)
      for (auto& p : pts)
        if (usable(p.second))
          s << "<circle cx=\"" << fmt(X(p.first)) << "\" cy=\"" << fmt(Y(p.second)) << "\" r=\"3\" fill=\"" << color << "\"/>\n";
    legend(color, label, false);
  };
  line(plot.train, "#1f77b4", "train loss", false);
  line(plot.val, "#d62728", "validation loss", true);
  if (!plot.skipped.empty()) {
    for (double x : plot.skipped)
      s << "<path d=\"M" << fmt(X(x) - 4) << "," << fmt(H - B - 12) << " l8,8 m0,-8 l-8,8\" stroke=\"#ff7f0e\" "
        << "stroke-width=\"2\"/>\n";
    legend("#ff7f0e", "skipped step (" + std::to_string(plot.skipped.size()) + ")", true);
  }
  s << "</svg>\n";
  return s.str();
}

}  // namespace otter::cli
