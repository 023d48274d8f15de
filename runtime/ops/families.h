// The op families, listed once. Each family NAME has runtime/ops/NAME.cpp (its OpDefs:
// register_NAME_ops), kernels/cpu/NAME.cpp (register_NAME_kernels in otter::cpu) and
// kernels/cuda/NAME.cu (register_NAME_kernels in otter::cuda), plus, where the backends share
// host-side argument resolution, kernels/common/NAME_host.h. The op registry and both backends'
// registration functions expand this list, so a new family is added here and in its own files
// only; a family missing on a backend is a link error, not a silent gap.
//
// Use: #define OTTER_FAMILY(NAME) ... ; #include "runtime/ops/families.h" (the list undefines
// OTTER_FAMILY at the end).
#ifndef OTTER_FAMILY
#error "define OTTER_FAMILY(NAME) before including runtime/ops/families.h"
#endif
OTTER_FAMILY(elementwise)  // unary_ops.h, arithmetic, comparisons, Where, Clip, PRelu, Max/Min/Sum/Mean, ...
OTTER_FAMILY(matmul)       // MatMul, Gemm, Attention
OTTER_FAMILY(shape)        // Reshape, Transpose, Concat, Split, Slice, Expand, Squeeze, Cast, ...
OTTER_FAMILY(reduce)       // Reduce*, ArgMax/ArgMin
OTTER_FAMILY(softmax)      // Softmax, LogSoftmax
OTTER_FAMILY(loss)         // SoftmaxCrossEntropyLoss, NegativeLogLikelihoodLoss, otter.MSE...
OTTER_FAMILY(conv)         // Conv, ConvTranspose
OTTER_FAMILY(pool)         // MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool
OTTER_FAMILY(norm)         // BatchNormalization, Instance/Group/LayerNormalization
OTTER_FAMILY(indexing)     // Gather*, Scatter*, Trilu, Tile, CumSum, ...
OTTER_FAMILY(einsum)       // Einsum
OTTER_FAMILY(spatial)      // Pad, Resize, ...
OTTER_FAMILY(training)     // ai.onnx.preview.training: Adam, Adagrad, Momentum (Gradient is graph-level)
#undef OTTER_FAMILY
