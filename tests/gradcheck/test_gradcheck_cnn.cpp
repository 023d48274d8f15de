// Finite-difference checks of the conv and pool families' gradient builders (Conv,
// ConvTranspose, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool) over their attribute
// variants; harness and tolerance: tests/common/gradcheck.h. MaxPool inputs are P() random values
// (no ties, so the argmax is stable under the +-1e-6 perturbation).
#include "tests/common/gradcheck.h"

using namespace otter;
using namespace otter::testing;

TEST(GradCheckCnn, Conv1D) {
  Shape x = {2, 4, 9};
  check("Conv", {P(x), P({3, 4, 3}), P({3})});
  check("Conv", {P(x), P({3, 4, 3})});                                             // no bias
  check("Conv", {P(x), P({3, 4, 3}), P({3})}, A({{"strides", Is({2})}}));
  check("Conv", {P(x), P({3, 4, 3}), P({3})}, A({{"dilations", Is({2})}}));
  check("Conv", {P(x), P({3, 4, 3}), P({3})}, A({{"pads", Is({1, 2})}}));
  check("Conv", {P(x), P({4, 2, 3}), P({4})}, A({{"group", I(2)}}));
  check("Conv", {P(x), P({8, 1, 3}), P({8})}, A({{"group", I(4)}}));             // depthwise, multiplier 2
  check("Conv", {P(x), P({3, 4, 3}), P({3})}, A({{"auto_pad", S("SAME_UPPER")}, {"strides", Is({2})}}));
  check("Conv", {P(x), P({3, 4, 4})}, A({{"auto_pad", S("SAME_LOWER")}}));
  check("Conv", {P(x), P({3, 4, 3}), P({3})}, A({{"auto_pad", S("VALID")}, {"strides", Is({3})}}));
  check("Conv", {P(x), P({3, 4, 1}), P({3})});                                     // 1x1: no im2col
  check("Conv", {P(x), P({4, 2, 3}), P({4})},
        A({{"group", I(2)}, {"strides", Is({2})}, {"dilations", Is({2})}, {"pads", Is({2, 1})}}));
}

TEST(GradCheckCnn, Conv2D) {
  Shape x = {2, 4, 7, 6};
  check("Conv", {P(x), P({3, 4, 3, 3}), P({3})});
  check("Conv", {P(x), P({3, 4, 3, 2})});                                          // no bias
  check("Conv", {P(x), P({3, 4, 3, 3}), P({3})}, A({{"strides", Is({2, 2})}}));
  check("Conv", {P(x), P({3, 4, 2, 3}), P({3})}, A({{"strides", Is({2, 1})}, {"pads", Is({1, 0, 0, 2})}}));
  check("Conv", {P(x), P({3, 4, 2, 2}), P({3})}, A({{"dilations", Is({2, 2})}}));
  check("Conv", {P(x), P({3, 4, 3, 3}), P({3})}, A({{"pads", Is({1, 1, 1, 1})}, {"kernel_shape", Is({3, 3})}}));
  check("Conv", {P(x), P({6, 2, 3, 3}), P({6})}, A({{"group", I(2)}, {"pads", Is({1, 1, 1, 1})}}));
  check("Conv", {P(x), P({4, 1, 3, 3}), P({4})}, A({{"group", I(4)}, {"pads", Is({1, 1, 1, 1})}}));  // depthwise
  check("Conv", {P(x), P({4, 1, 3, 3})}, A({{"group", I(4)}, {"strides", Is({2, 2})}}));           // depthwise, no bias
  check("Conv", {P(x), P({3, 4, 3, 3}), P({3})}, A({{"auto_pad", S("SAME_UPPER")}}));
  check("Conv", {P(x), P({3, 4, 3, 3}), P({3})}, A({{"auto_pad", S("SAME_UPPER")}, {"strides", Is({2, 2})}}));
  check("Conv", {P(x), P({3, 4, 2, 2})}, A({{"auto_pad", S("SAME_LOWER")}, {"strides", Is({2, 2})}}));
  check("Conv", {P(x), P({5, 4, 1, 1}), P({5})});                                  // 1x1: no im2col
  check("Conv", {P(x), P({6, 2, 2, 3}), P({6})},
        A({{"group", I(2)}, {"strides", Is({2, 2})}, {"dilations", Is({2, 1})}, {"pads", Is({1, 2, 2, 1})}}));
}

TEST(GradCheckCnn, Conv3D) {
  check("Conv", {P({1, 2, 4, 5, 4}), P({2, 2, 2, 3, 2}), P({2})}, A({{"pads", Is({1, 0, 1, 0, 1, 1})}}));
  check("Conv", {P({2, 2, 5, 4, 5}), P({2, 1, 2, 2, 2})}, A({{"group", I(2)}, {"strides", Is({2, 1, 2})}}));
}

TEST(GradCheckCnn, ConvTranspose) {
  // 2-D, stride 2 and output_padding: dx is a Conv node.
  check("ConvTranspose", {P({2, 3, 3, 4}), P({3, 2, 3, 3}), P({2})},
        A({{"strides", Is({2, 2})}, {"output_padding", Is({1, 1})}}));
  check("ConvTranspose", {P({2, 3, 3, 4}), P({3, 2, 3, 3})});
  check("ConvTranspose", {P({2, 3, 3, 4}), P({3, 2, 3, 2}), P({2})},
        A({{"strides", Is({2, 3})}, {"pads", Is({1, 0, 1, 1})}, {"output_padding", Is({0, 1})}}));
  check("ConvTranspose", {P({2, 4, 3, 3}), P({4, 1, 2, 2}), P({2})}, A({{"group", I(2)}, {"dilations", Is({2, 2})}}));
  check("ConvTranspose", {P({2, 4, 3, 3}), P({4, 1, 3, 3}), P({4})},
        A({{"group", I(4)}, {"strides", Is({2, 2})}}));  // depthwise
  // Pads that depend on the shapes: dx through otter.ConvTransposeGradInput.
  check("ConvTranspose", {P({2, 3, 3, 4}), P({3, 2, 3, 3}), P({2})},
        A({{"strides", Is({2, 2})}, {"auto_pad", S("SAME_UPPER")}}));
  check("ConvTranspose", {P({2, 3, 3, 4}), P({3, 2, 3, 3})},
        A({{"strides", Is({2, 2})}, {"auto_pad", S("SAME_LOWER")}}));
  check("ConvTranspose", {P({1, 2, 3, 3}), P({2, 2, 3, 3}), P({2})},
        A({{"strides", Is({3, 2})}, {"output_shape", Is({10, 8})}}));
  check("ConvTranspose", {P({2, 2, 3, 3}), P({2, 2, 2, 2})},
        A({{"strides", Is({2, 2})}, {"output_padding", Is({2, 0})}, {"dilations", Is({3, 1})}}));  // padding >= stride
  // 1-D and 3-D.
  check("ConvTranspose", {P({2, 3, 5}), P({3, 2, 3}), P({2})}, A({{"strides", Is({2})}, {"output_padding", Is({1})}}));
  check("ConvTranspose", {P({1, 2, 2, 3, 2}), P({2, 1, 2, 2, 2}), P({1})}, A({{"strides", Is({2, 1, 2})}}));
}

TEST(GradCheckCnn, MaxPool) {
  Shape x = {2, 3, 6, 6};
  check("MaxPool", {P(x)}, A({{"kernel_shape", Is({2, 2})}, {"strides", Is({2, 2})}}));
  check("MaxPool", {P(x)}, A({{"kernel_shape", Is({3, 3})}, {"strides", Is({1, 1})}, {"pads", Is({1, 1, 1, 1})}}));
  check("MaxPool", {P({2, 3, 7, 5})}, A({{"kernel_shape", Is({3, 2})}, {"strides", Is({2, 2})}, {"ceil_mode", I(1)}}));
  check("MaxPool", {P(x)}, A({{"kernel_shape", Is({2, 2})}, {"dilations", Is({2, 2})}}));
  check("MaxPool", {P({2, 3, 5, 5})},
        A({{"kernel_shape", Is({3, 3})}, {"strides", Is({2, 2})}, {"auto_pad", S("SAME_UPPER")}}));
  check("MaxPool", {P({2, 3, 5, 5})}, A({{"kernel_shape", Is({2, 2})}, {"auto_pad", S("SAME_LOWER")}}));
  // With the Indices output requested by the model, row- and column-major.
  check("MaxPool", {P(x)}, A({{"kernel_shape", Is({2, 2})}, {"strides", Is({2, 2})}}), 2);
  check("MaxPool", {P({2, 3, 5, 6})}, A({{"kernel_shape", Is({2, 3})}, {"storage_order", I(1)}}), 2);
  check("MaxPool", {P({2, 3, 9})}, A({{"kernel_shape", Is({3})}, {"strides", Is({2})}, {"pads", Is({1, 1})}}));
  check("MaxPool", {P({1, 2, 4, 5, 4})},
        A({{"kernel_shape", Is({2, 2, 2})}, {"strides", Is({2, 2, 2})}, {"ceil_mode", I(1)}}));
}

TEST(GradCheckCnn, AveragePool) {
  Shape x = {2, 3, 6, 5};
  for (int64_t cip : {0, 1}) {
    check("AveragePool", {P(x)},
          A({{"kernel_shape", Is({3, 3})}, {"pads", Is({1, 1, 1, 1})}, {"count_include_pad", I(cip)}}));
    check("AveragePool", {P(x)}, A({{"kernel_shape", Is({3, 2})}, {"strides", Is({2, 2})}, {"pads", Is({1, 0, 2, 1})},
                                    {"count_include_pad", I(cip)}}));
    check("AveragePool", {P(x)}, A({{"kernel_shape", Is({3, 3})}, {"strides", Is({2, 2})}, {"ceil_mode", I(1)},
                                    {"pads", Is({1, 1, 0, 0})}, {"count_include_pad", I(cip)}}));
    check("AveragePool", {P(x)},
          A({{"kernel_shape", Is({2, 2})}, {"auto_pad", S("SAME_UPPER")}, {"count_include_pad", I(cip)}}));
    check("AveragePool", {P({2, 3, 8})},
          A({{"kernel_shape", Is({3})}, {"pads", Is({2, 1})}, {"count_include_pad", I(cip)}}));
  }
  check("AveragePool", {P(x)}, A({{"kernel_shape", Is({2, 2})}, {"strides", Is({2, 2})}}));
  check("AveragePool", {P(x)}, A({{"kernel_shape", Is({2, 2})}, {"dilations", Is({2, 2})}}));
  check("AveragePool", {P({1, 2, 4, 4, 5})}, A({{"kernel_shape", Is({2, 2, 3})}, {"strides", Is({2, 2, 2})}}));
}

TEST(GradCheckCnn, GlobalPools) {
  for (Shape s : {Shape{2, 3, 4, 5}, Shape{2, 3, 7}, Shape{1, 2, 3, 2, 3}}) {
    check("GlobalAveragePool", {P(s)});
    check("GlobalMaxPool", {P(s)});
  }
}

TEST(GradCheckCnn, ConvLargeItems) {
  // Per-item GEMMs above OpenBLAS's single-thread size with batch > 1: the kernels loop over the
  // batch and let OpenBLAS thread each GEMM (small items take the batch-parallel path). x is
  // fixed to keep the number of finite differences small; dx of this path is covered by the
  // batch-1 cases above (a single item always takes it).
  check("Conv", {Fixed(P({2, 8, 16, 16})), P({16, 8, 3, 3}), P({16})}, A({{"pads", Is({1, 1, 1, 1})}}));
  check("ConvTranspose", {Fixed(P({2, 16, 16, 16})), P({16, 8, 3, 3})}, A({{"pads", Is({1, 1, 1, 1})}}));
}
