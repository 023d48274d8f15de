// Elementwise formulas shared by the CPU loops and (later) the CUDA kernels: each op is a small
// functor with a forward `operator()` and, where differentiable, a `grad(x, y, dy)` that returns
// dx from the input, the output and the output's gradient. Only launch and indexing code is
// backend-specific; the arithmetic lives here once (docs/architecture.md, decision 5).
#pragma once
#include <cmath>

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

// Binary arithmetic.
struct Add { template <class T> OTTER_HD T operator()(T a, T b) const { return a + b; } };
struct Sub { template <class T> OTTER_HD T operator()(T a, T b) const { return a - b; } };
struct Mul { template <class T> OTTER_HD T operator()(T a, T b) const { return a * b; } };
struct Div { template <class T> OTTER_HD T operator()(T a, T b) const { return a / b; } };
struct Pow { template <class T> OTTER_HD T operator()(T a, T b) const {
               return static_cast<T>(std::pow(static_cast<double>(a), static_cast<double>(b))); } };
// Comparisons produce bool.
struct Equal { template <class T> OTTER_HD bool operator()(T a, T b) const { return a == b; } };
struct Less { template <class T> OTTER_HD bool operator()(T a, T b) const { return a < b; } };
struct Greater { template <class T> OTTER_HD bool operator()(T a, T b) const { return a > b; } };
struct LessOrEqual { template <class T> OTTER_HD bool operator()(T a, T b) const { return a <= b; } };
struct GreaterOrEqual { template <class T> OTTER_HD bool operator()(T a, T b) const { return a >= b; } };
struct And { OTTER_HD bool operator()(bool a, bool b) const { return a && b; } };
struct Or { OTTER_HD bool operator()(bool a, bool b) const { return a || b; } };
struct Xor { OTTER_HD bool operator()(bool a, bool b) const { return a != b; } };

// Clip's gradient passes where min <= x <= max (PyTorch's clamp convention).
template <class T> OTTER_HD T clip_grad(T x, T lo, T hi, T dy) { return (x >= lo && x <= hi) ? dy : T(0); }

}  // namespace otter::math
