// The linear_gemm pass: a linear layer exported as MatMul(X, Transpose(W)) (PyTorch's nn.Linear
// without constant folding, the usual training export) becomes one GEMM that reads W as it is,
// Gemm(X rows, W, transB = 1), reshaped back to X's leading dims. The forward pass then copies no
// transposed weight every step, and its gradients are two GEMMs (dX = dY W, dW = dY^T X rows)
// instead of transposes of activations and weights around batched products. The function and the
// value names are unchanged (only nodes are rewritten), so export, eval and checkpoints do not see
// it; a Transpose that something else also reads stays for that reader, the others are removed.
// A bias Add of an [N] vector that is the product's only reader becomes the Gemm's C (the Add
// node an Identity, so its output keeps its name).
#pragma once
#include "runtime/ir/graph.h"

namespace otter {

// Rewrites every MatMul whose B is a Transpose (perm [1, 0] or default) of a 2-D value with known
// dims and whose A has rank >= 2. Returns how many were rewritten. Node ids change (removed
// Transposes); value ids do not.
int fold_linear_transposes(Graph& g);

}  // namespace otter
