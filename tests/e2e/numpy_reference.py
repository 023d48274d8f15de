"""NumPy float64 reference training run for the digits MLP (end-to-end oracle).

Usage:
    python3 tests/e2e/numpy_reference.py MODEL.onnx TRAIN.npz OUT.json

MODEL.onnx is the model written by examples/digits/make_digits.py:
    logits = Gemm(Relu(Gemm(x, fc1.weight, fc1.bias, transB=1)), fc2.weight, fc2.bias, transB=1)
i.e. h = relu(x @ W1.T + b1), logits = h @ W2.T + b2, with the loss being the
mean softmax cross-entropy of logits against the integer labels.

Starting from the initializers stored in MODEL.onnx (cast to float64), it runs
20 training steps on the fixed batches train.x[32*i : 32*(i+1)], i = 0..19
(no shuffling), four times from the same initial weights:
  (a) "sgd":   torch.optim.SGD(lr=0.1, momentum=0.9, dampening=0,
               nesterov=False, weight_decay=0)  -- first step: buf = grad
  (b) "adamw": torch.optim.AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
               weight_decay=0.01)  -- decoupled decay p -= lr*wd*p, then the
               bias-corrected Adam update, as in PyTorch.
  (c) "adam":  torch.optim.Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
               weight_decay=0.01)  -- L2 decay added to the gradient
               (g += wd*p) before the moments, as in PyTorch.
  (d) "sgd_nesterov": torch.optim.SGD(lr=0.05, momentum=0.9, dampening=0,
               nesterov=True, weight_decay=1e-3)  -- g += wd*p; buf = g on
               the first step, then buf = mu*buf + g; update with g + mu*buf.
Weight decay / momentum apply to all four parameters (weights and biases).
The loss of each step is computed on the current weights BEFORE the update.

Writes OUT.json: {"sgd": [20 floats], "adamw": [20 floats], "adam": [20 floats],
"sgd_nesterov": [20 floats], "batch_size": 32}.
"""

import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper

BATCH_SIZE = 32
NUM_STEPS = 20
PARAM_NAMES = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")


def load_params(model_path):
    model = onnx.load(model_path)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    missing = [n for n in PARAM_NAMES if n not in inits]
    if missing:
        raise SystemExit(f"error: {model_path} lacks initializers {missing}")
    ops = [n.op_type for n in model.graph.node]
    if ops != ["Gemm", "Relu", "Gemm"]:
        raise SystemExit(f"error: unexpected graph {ops}; expected Gemm, Relu, Gemm")
    for node in model.graph.node:
        if node.op_type == "Gemm":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("transB", 0) != 1 or attrs.get("transA", 0) != 0 \
                    or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                raise SystemExit(f"error: unsupported Gemm attributes {attrs}")
    return {n: inits[n].astype(np.float64) for n in PARAM_NAMES}


def forward_backward(params, x, y):
    """Returns (mean cross-entropy loss, dict of gradients)."""
    w1, b1 = params["fc1.weight"], params["fc1.bias"]
    w2, b2 = params["fc2.weight"], params["fc2.bias"]
    n = x.shape[0]

    z1 = x @ w1.T + b1
    h = np.maximum(z1, 0.0)
    logits = h @ w2.T + b2

    shifted = logits - logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_sum
    loss = -log_probs[np.arange(n), y].mean()

    dlogits = np.exp(log_probs)
    dlogits[np.arange(n), y] -= 1.0
    dlogits /= n

    grads = {
        "fc2.weight": dlogits.T @ h,
        "fc2.bias": dlogits.sum(axis=0),
    }
    dh = dlogits @ w2
    dz1 = dh * (z1 > 0.0)
    grads["fc1.weight"] = dz1.T @ x
    grads["fc1.bias"] = dz1.sum(axis=0)
    return float(loss), grads


class SGD:
    def __init__(self, lr=0.1, momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.0):
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.nesterov, self.weight_decay = nesterov, weight_decay
        self.buf = {}

    def step(self, params, grads):
        for name, p in params.items():
            g = grads[name]
            if self.weight_decay != 0.0:
                g = g + self.weight_decay * p
            if self.momentum != 0.0:
                if name not in self.buf:
                    buf = g.copy()
                else:
                    buf = self.momentum * self.buf[name] + (1.0 - self.dampening) * g
                self.buf[name] = buf
                g = g + self.momentum * buf if self.nesterov else buf
            params[name] = p - self.lr * g


class AdamW:
    """torch.optim.AdamW; with decoupled=False, torch.optim.Adam (L2 decay in the gradient)."""

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, decoupled=True):
        self.lr, self.beta1, self.beta2 = lr, betas[0], betas[1]
        self.eps, self.weight_decay = eps, weight_decay
        self.decoupled = decoupled
        self.t = 0
        self.m, self.v = {}, {}

    def step(self, params, grads):
        self.t += 1
        bc1 = 1.0 - self.beta1 ** self.t
        bc2 = 1.0 - self.beta2 ** self.t
        for name, p in params.items():
            g = grads[name]
            if self.decoupled:
                p = p * (1.0 - self.lr * self.weight_decay)
            elif self.weight_decay != 0.0:
                g = g + self.weight_decay * p
            m = self.m.get(name, np.zeros_like(p))
            v = self.v.get(name, np.zeros_like(p))
            m = self.beta1 * m + (1.0 - self.beta1) * g
            v = self.beta2 * v + (1.0 - self.beta2) * g * g
            self.m[name], self.v[name] = m, v
            step_size = self.lr / bc1
            denom = np.sqrt(v) / np.sqrt(bc2) + self.eps
            params[name] = p - step_size * m / denom


def train(init_params, x, y, optimizer):
    params = {k: v.copy() for k, v in init_params.items()}
    losses = []
    for i in range(NUM_STEPS):
        xb = x[BATCH_SIZE * i:BATCH_SIZE * (i + 1)]
        yb = y[BATCH_SIZE * i:BATCH_SIZE * (i + 1)]
        loss, grads = forward_backward(params, xb, yb)
        losses.append(loss)
        optimizer.step(params, grads)
    return losses


def main(argv):
    if len(argv) != 4:
        sys.stderr.write("usage: numpy_reference.py MODEL.onnx TRAIN.npz OUT.json\n")
        return 2
    model_path, train_path, out_path = argv[1:]
    params = load_params(model_path)
    data = np.load(train_path)
    x = data["x"].astype(np.float64)
    y = data["y"].astype(np.int64)
    if x.shape[0] < BATCH_SIZE * NUM_STEPS:
        raise SystemExit(f"error: need at least {BATCH_SIZE * NUM_STEPS} samples, got {x.shape[0]}")

    result = {
        "sgd": train(params, x, y, SGD(lr=0.1, momentum=0.9)),
        "adamw": train(params, x, y, AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                                           weight_decay=0.01)),
        "adam": train(params, x, y, AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                                          weight_decay=0.01, decoupled=False)),
        "sgd_nesterov": train(params, x, y, SGD(lr=0.05, momentum=0.9, nesterov=True,
                                                weight_decay=1e-3)),
        "batch_size": BATCH_SIZE,
    }
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    for key in ("sgd", "adamw", "adam", "sgd_nesterov"):
        print(f"{key}: first {result[key][0]:.6f} last {result[key][-1]:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
