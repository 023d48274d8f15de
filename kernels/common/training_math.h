// The per-element arithmetic of the ONNX training ops (ai.onnx.preview.training opset 1: Adam,
// Adagrad, Momentum), shared by the CPU (kernels/cpu/training.cpp) and CUDA
// (kernels/cuda/training.cu) kernels. Semantics follow onnx/defs/training/defs.cc and the onnx
// reference implementation (onnx/reference/ops/aionnx_preview_training): every step in double,
// rounded to the tensor's type once at the end. T is the step count (int64); T > 0 enables
// Adam's bias correction and Momentum's beta (at T = 0 the gradient's coefficient is 1).
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common/elementwise_math.h"

namespace otter::math {

struct AdamScalars {
  double r = 0;  // the learning rate after bias correction
  double alpha = 0.9, beta = 0.999, epsilon = 1e-6, norm_coefficient = 0, norm_coefficient_post = 0;
};

// r_adjusted = r * sqrt(1 - beta^T) / (1 - alpha^T) when T > 0, else r.
OTTER_HD double adam_rate(double r, int64_t t, double alpha, double beta) {
  if (t <= 0) return r;
  double td = static_cast<double>(t);
  return r * ::sqrt(1.0 - ::pow(beta, td)) / (1.0 - ::pow(alpha, td));
}

// x, g, v, h -> x_new, v_new, h_new (in double).
OTTER_HD void adam_element(const AdamScalars& s, double x, double g, double v, double h, double* x_new, double* v_new,
                           double* h_new) {
  double gr = s.norm_coefficient * x + g;
  double vn = s.alpha * v + (1.0 - s.alpha) * gr;
  double hn = s.beta * h + (1.0 - s.beta) * (gr * gr);
  double xn = x - s.r * (vn / (::sqrt(hn) + s.epsilon));
  *x_new = (1.0 - s.norm_coefficient_post) * xn;
  *v_new = vn;
  *h_new = hn;
}

// Adagrad: r_ = r / (1 + T * decay_factor); h_new = h + g_reg^2; x_new = x - r_ * g_reg / (sqrt(h_new) + eps).
OTTER_HD double adagrad_rate(double r, int64_t t, double decay_factor) {
  return r / (1.0 + static_cast<double>(t) * decay_factor);
}

OTTER_HD void adagrad_element(double r, double epsilon, double norm_coefficient, double x, double g, double h,
                              double* x_new, double* h_new) {
  double gr = norm_coefficient * x + g;
  double hn = h + gr * gr;
  *x_new = x - r * gr / (::sqrt(hn) + epsilon);
  *h_new = hn;
}

// Momentum (standard or Nesterov): beta_adjusted = T > 0 ? beta : 1; v_new = alpha v + beta_adj g_reg;
// standard x_new = x - r v_new; nesterov x_new = x - r (g_reg + alpha v_new).
OTTER_HD void momentum_element(double r, double alpha, double beta_adjusted, double norm_coefficient, bool nesterov,
                               double x, double g, double v, double* x_new, double* v_new) {
  double gr = norm_coefficient * x + g;
  double vn = alpha * v + beta_adjusted * gr;
  *x_new = nesterov ? x - r * (gr + alpha * vn) : x - r * vn;
  *v_new = vn;
}

}  // namespace otter::math
