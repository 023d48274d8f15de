// Vectorised float32 math for the CPU kernels whose time went to libm: GELU (exact and tanh
// forms) and its gradient, and softmax lines; and LayerNorm rows (in double lanes, see below). glibc's erff/expf/tanhf are scalar calls (~5 ns an element); these
// run 16 lanes of AVX-512 with PyTorch's formulas (aten's Vectorized<float>::erf, the
// Abramowitz-Stegun 7.1.26 rational form, absolute error < 1.5e-7; Cephes' expf), so GELU costs
// a memory pass. Each returns false where the host has no AVX-512 (host_avx512(); also
// OTTER_CPU_ISA=scalar): the caller then runs the scalar functors of kernels/common/
// elementwise_math.h. FP64 (the gradient checker) always takes the scalar path.
#pragma once
#include <cstdint>

namespace otter::cpu {

// y = Gelu(x) over n elements.
bool vec_gelu(const float* x, float* y, int64_t n, bool tanh_approx);
// dx = dy * Gelu'(x) over n elements.
bool vec_gelu_grad(const float* x, const float* dy, float* dx, int64_t n, bool tanh_approx);

// The same over FP16 storage (bits), widened and rounded in registers: the bits of widening the
// data, the FP32 functions above and rounding back (runtime/core/convert.h) for every result that
// is a number; a NaN stays a NaN, its sign and payload not kept.
bool vec_gelu_half(const uint16_t* x, uint16_t* y, int64_t n, bool tanh_approx);
bool vec_gelu_grad_half(const uint16_t* x, const uint16_t* dy, uint16_t* dx, int64_t n, bool tanh_approx);

// One softmax (or log-softmax) line of n contiguous floats: max subtracted, exp in float
// (Cephes' expf, within 2 ulp), the sum accumulated in float lanes then in double, divided once.
bool vec_softmax_row(const float* x, float* y, int64_t n, bool log);
// Log-softmax over the classes of a [c, d] block (class stride d: ONNX's [N, C, D...] scores, one
// item): each of the d columns gets exactly the arithmetic vec_softmax_row(log = true) gives it as
// a contiguous line (the same 16 partial sums), so both layouts give the same bits.
bool vec_log_softmax_columns(const float* x, float* y, int64_t c, int64_t d);
// y = exp(x) over n elements (Cephes' expf, within 2 ulp).
bool vec_exp(const float* x, float* y, int64_t n);

// LayerNormalization of one row of n floats with a [n] scale w and bias b (b may be null), in
// double precision as the scalar kernel computes it (kernels/cpu/norm.cpp): the same per-element
// arithmetic, the sums (mean, variance) in 8 double lanes, so only their order differs. Writes
// the row's mean and 1/sqrt(var + eps).
bool vec_layer_norm_row(const float* x, const double* w, const double* b, float* y, int64_t n, double eps,
                        double* mean, double* inv_std);
// Its gradient for one row: dx, and gw[j] += dy[j] * xhat[j], gb[j] += dy[j] (gb may be null).
bool vec_layer_norm_grad_row(const float* x, const float* dy, const double* w, float* dx, double* gw, double* gb,
                             int64_t n, double eps);

// z = a op b over n elements for FP16 storage on a CPU without FP16 arithmetic: each operand is
// FP16 bits or FP32 (`*_half`), contiguous (stride 1) or one value (stride 0), and so is z. The
// FP32 operation on the widened values, rounded once to nearest even: the same bits as widening,
// the FP32 functor and narrowing (kernels/cpu/elementwise.cpp's chunks; NaN lanes take those
// scalar conversions, runtime/core/convert.h), in one pass over the 16-bit data.
enum class BinaryOp { Add, Sub, Mul, Div };
bool vec_binary_half(BinaryOp op, const void* a, bool a_half, bool a_one, const void* b, bool b_half, bool b_one,
                     void* z, bool z_half, int64_t n);

// One [h, w] plane of a 2-D max pool (kernel kh x kw, strides, pads at the start, dilations; the
// output [oh, ow] as the node's window gives it): y the first maximum of each window (taps in
// row-major order, strict >, so a NaN tap is kept only when it comes first) and/or `argmax` its
// row-major offset in the plane (-1 and y = 0 for a window with no input tap), as the window-table
// loop of kernels/cpu/pool.cpp computes them. Rows of 16 outputs or more: the windows inside the
// plane's width 16 output columns a vector, the border columns a scalar loop; narrower planes: 16
// positions of the flattened output a vector, taps gathered. Either output may be null.
struct MaxPool2d {
  int64_t h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
};
bool vec_max_pool_2d(const float* x, const MaxPool2d& g, float* y, int32_t* argmax);

}  // namespace otter::cpu
