"""Writes the models and data of the CPU training benchmark (bench/cpu/bench_train.py).

Usage:
    python3 bench/cpu/make_models.py [OUTDIR]      (default: build/bench-cpu under the repo root)

Writes into OUTDIR, deterministically:
  digits.onnx       the bundled examples/digits/mlp.onnx (64 -> 64 -> 10, Gemm/Relu/Gemm) with
                    the same initializers, re-emitted at opset 17 / ir_version 8;
  digits.npz        the bundled digits training split (float32 x [1500, 64], int64 y [1500]);
  mlp-large.onnx    784 -> 1024 -> 1024 -> 10 MLP (Gemm(transB=1)+Relu, twice, then Gemm),
                    opset 17, ir_version 8, input "x" [N, 784], output "logits" [N, 10],
                    nn.Linear-style uniform(+-1/sqrt(fan_in)) init from RandomState(1234);
  mlp-large.npz     synthetic float32 x [4096, 784] ~ N(0, 1) and int64 y [4096] = the argmax of
                    a fixed random linear "teacher", so the loss has something to learn.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPSET = 17
IR_VERSION = 8


def mlp(name, sizes, rng=None, weights=None):
    """A Gemm/Relu MLP over `sizes` (input, hidden..., classes); input "x", output "logits".
    Initializers come from `weights` ([(w, b), ...]) or are drawn from `rng`."""
    inits, nodes = [], []
    prev = "x"
    n_layers = len(sizes) - 1
    for i in range(n_layers):
        fan_in, fan_out = sizes[i], sizes[i + 1]
        if weights is not None:
            w, b = weights[i]
        else:
            bound = 1.0 / np.sqrt(fan_in)
            w = rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(np.float32)
            b = rng.uniform(-bound, bound, size=(fan_out,)).astype(np.float32)
        wn, bn = "fc%d.weight" % (i + 1), "fc%d.bias" % (i + 1)
        inits += [numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)]
        last = i == n_layers - 1
        out = "logits" if last else "fc%d_out" % (i + 1)
        nodes.append(helper.make_node("Gemm", [prev, wn, bn], [out], transB=1, name="fc%d" % (i + 1)))
        if not last:
            nodes.append(helper.make_node("Relu", [out], ["relu%d_out" % (i + 1)], name="relu%d" % (i + 1)))
            prev = "relu%d_out" % (i + 1)
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", sizes[-1]])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="otter-bench")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def make_digits(outdir):
    src = onnx.load(os.path.join(REPO, "examples", "digits", "mlp.onnx"))
    init = {t.name: numpy_helper.to_array(t) for t in src.graph.initializer}
    weights = [(init["fc1.weight"], init["fc1.bias"]), (init["fc2.weight"], init["fc2.bias"])]
    onnx.save(mlp("digits_mlp", [64, 64, 10], weights=weights), os.path.join(outdir, "digits.onnx"))
    data = np.load(os.path.join(REPO, "examples", "digits", "train.npz"))
    np.savez(os.path.join(outdir, "digits.npz"), x=data["x"].astype(np.float32), y=data["y"].astype(np.int64))


def make_large(outdir):
    rng = np.random.RandomState(1234)
    onnx.save(mlp("mlp_large", [784, 1024, 1024, 10], rng=rng), os.path.join(outdir, "mlp-large.onnx"))
    drng = np.random.RandomState(5678)
    x = drng.standard_normal((4096, 784)).astype(np.float32)
    teacher = drng.standard_normal((784, 10)).astype(np.float32)
    y = np.argmax(x @ teacher, axis=1).astype(np.int64)
    np.savez(os.path.join(outdir, "mlp-large.npz"), x=x, y=y)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "build", "bench-cpu")
    os.makedirs(outdir, exist_ok=True)
    make_digits(outdir)
    make_large(outdir)
    print("make_models: wrote digits.{onnx,npz} and mlp-large.{onnx,npz} to %s" % outdir)


if __name__ == "__main__":
    main()
