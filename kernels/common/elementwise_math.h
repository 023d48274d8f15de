// Elementwise formulas shared by the CPU loops and (later) the CUDA kernels: each op is a small
// functor with a forward `operator()` and, where differentiable, a `grad(x, y, dy)` that returns
// dx from the input, the output and the output's gradient. Only launch and indexing code is
// backend-specific; the arithmetic lives here once (docs/architecture.md, decision 5). Also here:
// PRelu's two partial gradients and the elementwise parts of the reduction gradients.
#pragma once
#include <cmath>
#include <type_traits>

#ifndef OTTER_HD
#if defined(__CUDACC__)
#define OTTER_HD __host__ __device__ inline
#else
#define OTTER_HD inline
#endif
#endif

namespace otter::math {

struct Neg { template <class T> OTTER_HD T operator()(T x) const { return -x; }
             template <class T> OTTER_HD T grad(T, T, T dy) const { return -dy; } };
struct Abs { template <class T> OTTER_HD T operator()(T x) const { return x < T(0) ? -x : x; }
             template <class T> OTTER_HD T grad(T x, T, T dy) const { return x > T(0) ? dy : (x < T(0) ? -dy : T(0)); } };
struct Sqrt { template <class T> OTTER_HD T operator()(T x) const { return std::sqrt(x); }
              template <class T> OTTER_HD T grad(T, T y, T dy) const { return dy * T(0.5) / y; } };
struct Reciprocal { template <class T> OTTER_HD T operator()(T x) const { return T(1) / x; }
                    template <class T> OTTER_HD T grad(T, T y, T dy) const { return -dy * y * y; } };
struct Exp { template <class T> OTTER_HD T operator()(T x) const { return std::exp(x); }
             template <class T> OTTER_HD T grad(T, T y, T dy) const { return dy * y; } };
struct Log { template <class T> OTTER_HD T operator()(T x) const { return std::log(x); }
             template <class T> OTTER_HD T grad(T x, T, T dy) const { return dy / x; } };
struct Erf { template <class T> OTTER_HD T operator()(T x) const { return std::erf(x); }
             template <class T> OTTER_HD T grad(T x, T, T dy) const {
               return dy * T(1.1283791670955126) * std::exp(-x * x); } };
struct Relu { template <class T> OTTER_HD T operator()(T x) const { return x > T(0) ? x : T(0); }
              template <class T> OTTER_HD T grad(T x, T, T dy) const { return x > T(0) ? dy : T(0); } };
struct LeakyRelu { double alpha = 0.01;
                   template <class T> OTTER_HD T operator()(T x) const { return x >= T(0) ? x : T(alpha) * x; }
                   template <class T> OTTER_HD T grad(T x, T, T dy) const { return x > T(0) ? dy : T(alpha) * dy; } };
struct Sigmoid { template <class T> OTTER_HD T operator()(T x) const {
                   return x >= T(0) ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x)); }
                 template <class T> OTTER_HD T grad(T, T y, T dy) const { return dy * y * (T(1) - y); } };
struct Tanh { template <class T> OTTER_HD T operator()(T x) const { return std::tanh(x); }
              template <class T> OTTER_HD T grad(T, T y, T dy) const { return dy * (T(1) - y * y); } };
struct Identity { template <class T> OTTER_HD T operator()(T x) const { return x; }
                  template <class T> OTTER_HD T grad(T, T, T dy) const { return dy; } };
struct Floor { template <class T> OTTER_HD T operator()(T x) const { return std::floor(x); } };
struct Ceil { template <class T> OTTER_HD T operator()(T x) const { return std::ceil(x); } };
// Round: halves go to the nearest even integer (nearbyint in the default rounding mode).
struct Round { template <class T> OTTER_HD T operator()(T x) const { return std::nearbyint(x); } };
// Sign: -1, 0 or 1, for every numeric type (unsigned types give 0 or 1).
struct Sign { template <class T> OTTER_HD T operator()(T x) const {
                return x != x ? x : static_cast<T>((T(0) < x) - (x < T(0))); } };  // NaN stays NaN

struct Sin { template <class T> OTTER_HD T operator()(T x) const { return std::sin(x); }
             template <class T> OTTER_HD T grad(T x, T, T dy) const { return dy * std::cos(x); } };
struct Cos { template <class T> OTTER_HD T operator()(T x) const { return std::cos(x); }
             template <class T> OTTER_HD T grad(T x, T, T dy) const { return -dy * std::sin(x); } };
struct Atan { template <class T> OTTER_HD T operator()(T x) const { return std::atan(x); }
              template <class T> OTTER_HD T grad(T x, T, T dy) const { return dy / (T(1) + x * x); } };
// Softplus: log(1 + exp(x)), written so that neither branch overflows; d/dx = sigmoid(x).
struct Softplus { template <class T> OTTER_HD T operator()(T x) const {
                    return x > T(0) ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }
                  template <class T> OTTER_HD T grad(T x, T, T dy) const { return dy * Sigmoid{}(x); } };
// Elu: x > 0 ? x : alpha (exp(x) - 1); below 0 the derivative is y + alpha.
struct Elu { double alpha = 1.0;
             template <class T> OTTER_HD T operator()(T x) const { return x > T(0) ? x : T(alpha) * std::expm1(x); }
             template <class T> OTTER_HD T grad(T x, T y, T dy) const { return x > T(0) ? dy : dy * (y + T(alpha)); } };
// Selu: gamma (x > 0 ? x : alpha (exp(x) - 1)); defaults are ONNX's (float32 values of the paper's).
struct Selu { double alpha = 1.67326319217681884765625, gamma = 1.05070102214813232421875;
              template <class T> OTTER_HD T operator()(T x) const {
                return x > T(0) ? T(gamma) * x : T(gamma) * T(alpha) * std::expm1(x); }
              template <class T> OTTER_HD T grad(T x, T y, T dy) const {
                return x > T(0) ? dy * T(gamma) : dy * (y + T(gamma) * T(alpha)); } };
// HardSigmoid: clamp(alpha x + beta, 0, 1); the derivative is alpha strictly inside.
struct HardSigmoid { double alpha = 0.2, beta = 0.5;
                     template <class T> OTTER_HD T operator()(T x) const {
                       T v = T(alpha) * x + T(beta);
                       return v < T(0) ? T(0) : (v > T(1) ? T(1) : v); }
                     template <class T> OTTER_HD T grad(T x, T, T dy) const {
                       T v = T(alpha) * x + T(beta);
                       return (v > T(0) && v < T(1)) ? dy * T(alpha) : T(0); } };
// HardSwish: x * HardSigmoid(x) with alpha 1/6, beta 0.5.
struct HardSwish { template <class T> OTTER_HD T operator()(T x) const {
                     T v = x / T(6) + T(0.5);
                     return x * (v < T(0) ? T(0) : (v > T(1) ? T(1) : v)); }
                   template <class T> OTTER_HD T grad(T x, T, T dy) const {
                     return x < T(-3) ? T(0) : (x > T(3) ? dy : dy * (x / T(3) + T(0.5))); } };
// Mish: x tanh(softplus(x)); d/dx = tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2).
struct Mish { template <class T> OTTER_HD T operator()(T x) const { return x * std::tanh(Softplus{}(x)); }
              template <class T> OTTER_HD T grad(T x, T, T dy) const {
                T t = std::tanh(Softplus{}(x));
                return dy * (t + x * Sigmoid{}(x) * (T(1) - t * t)); } };
// Gelu (opset 20): approximate "none" is x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); "tanh" is
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
struct Gelu { bool tanh_approx = false;
              template <class T> OTTER_HD T operator()(T x) const {
                if (tanh_approx) {
                  T u = T(0.7978845608028654) * (x + T(0.044715) * x * x * x);
                  return T(0.5) * x * (T(1) + std::tanh(u));
                }
                return T(0.5) * x * (T(1) + std::erf(x * T(0.7071067811865476))); }
              template <class T> OTTER_HD T grad(T x, T, T dy) const {
                if (tanh_approx) {
                  T u = T(0.7978845608028654) * (x + T(0.044715) * x * x * x);
                  T t = std::tanh(u);
                  T du = T(0.7978845608028654) * (T(1) + T(3 * 0.044715) * x * x);
                  return dy * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du);
                }
                T cdf = T(0.5) * (T(1) + std::erf(x * T(0.7071067811865476)));
                T pdf = T(0.3989422804014327) * std::exp(T(-0.5) * x * x);
                return dy * (cdf + x * pdf); } };

// Binary arithmetic.
struct Add { template <class T> OTTER_HD T operator()(T a, T b) const { return a + b; } };
struct Sub { template <class T> OTTER_HD T operator()(T a, T b) const { return a - b; } };
struct Mul { template <class T> OTTER_HD T operator()(T a, T b) const { return a * b; } };
struct Div { template <class T> OTTER_HD T operator()(T a, T b) const { return a / b; } };
struct Pow { template <class T> OTTER_HD T operator()(T a, T b) const {
               return static_cast<T>(std::pow(static_cast<double>(a), static_cast<double>(b))); } };
// ONNX Mod. fmod=0: the remainder takes the divisor's sign (Python's %, numpy.mod; floats too, as
// the onnx reference does); fmod=1: C's fmod, the dividend's sign. A zero divisor (undefined in ONNX) gives 0 for
// integers instead of a SIGFPE, and so does INT_MIN % -1.
struct ModFloor {
  template <class T> OTTER_HD T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      if (b == 0 || (std::is_signed_v<T> && b == static_cast<T>(-1))) return 0;
      T r = a % b;
      return (r != 0 && ((r < 0) != (b < 0))) ? static_cast<T>(r + b) : r;
    } else {
      double x = static_cast<double>(a), y = static_cast<double>(b), r = fmod(x, y);
      return static_cast<T>((r != 0 && ((r < 0) != (y < 0))) ? r + y : r);
    }
  }
};
struct ModTrunc {
  template <class T> OTTER_HD T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      if (b == 0 || (std::is_signed_v<T> && b == static_cast<T>(-1))) return 0;
      return static_cast<T>(a % b);
    } else {
      return static_cast<T>(fmod(static_cast<double>(a), static_cast<double>(b)));
    }
  }
};
// Comparisons produce bool.
struct Equal { template <class T> OTTER_HD bool operator()(T a, T b) const { return a == b; } };
struct Less { template <class T> OTTER_HD bool operator()(T a, T b) const { return a < b; } };
struct Greater { template <class T> OTTER_HD bool operator()(T a, T b) const { return a > b; } };
struct LessOrEqual { template <class T> OTTER_HD bool operator()(T a, T b) const { return a <= b; } };
struct GreaterOrEqual { template <class T> OTTER_HD bool operator()(T a, T b) const { return a >= b; } };
struct And { OTTER_HD bool operator()(bool a, bool b) const { return a && b; } };
struct Or { OTTER_HD bool operator()(bool a, bool b) const { return a || b; } };
struct Xor { OTTER_HD bool operator()(bool a, bool b) const { return a != b; } };

// Variadic Min / Max (NaN propagates, as with numpy's minimum / maximum).
struct Max { template <class T> OTTER_HD T operator()(T a, T b) const { return (a != a || a > b) ? a : b; } };
struct Min { template <class T> OTTER_HD T operator()(T a, T b) const { return (a != a || a < b) ? a : b; } };

// PRelu(x, slope): x < 0 ? slope x : x. grad_x / grad_slope are the unreduced gradients.
struct PRelu { template <class T> OTTER_HD T operator()(T x, T s) const { return x < T(0) ? s * x : x; }
               template <class T> OTTER_HD T grad_x(T x, T s, T dy) const { return x < T(0) ? s * dy : dy; }
               template <class T> OTTER_HD T grad_slope(T x, T, T dy) const { return x < T(0) ? x * dy : T(0); } };

// The elementwise part of reduction gradients: dx from one input element x, the reduced output
// y it contributed to and that output's gradient dy.
struct ReduceL1Grad { template <class T> OTTER_HD T operator()(T x, T, T dy) const {
                        return x > T(0) ? dy : (x < T(0) ? -dy : T(0)); } };
struct ReduceL2Grad { template <class T> OTTER_HD T operator()(T x, T y, T dy) const {
                        return y > T(0) ? dy * x / y : T(0); } };
struct ReduceSumSquareGrad { template <class T> OTTER_HD T operator()(T x, T, T dy) const { return T(2) * x * dy; } };
struct ReduceLogSumExpGrad { template <class T> OTTER_HD T operator()(T x, T y, T dy) const { return dy * std::exp(x - y); } };
struct ReduceLogSumGrad { template <class T> OTTER_HD T operator()(T, T y, T dy) const { return dy * std::exp(-y); } };
// Assumes x != 0 (the product of the other elements is y / x).
struct ReduceProdGrad { template <class T> OTTER_HD T operator()(T x, T y, T dy) const { return dy * y / x; } };
// Max / Min: the gradient goes to every element equal to the extreme, divided by their count.
template <class T> OTTER_HD T extreme_grad(T x, T y, T dy, T inv_ties) { return x == y ? dy * inv_ties : T(0); }

// Clip's gradient passes where min <= x <= max (PyTorch's clamp convention).
template <class T> OTTER_HD T clip_grad(T x, T lo, T hi, T dy) { return (x >= lo && x <= hi) ? dy : T(0); }

}  // namespace otter::math
