"""Generate the Otter "digits" example: dataset splits and an initial MLP model.

Usage:
    python3 examples/digits/make_digits.py OUTDIR

Writes into OUTDIR:
  train.npz  -- keys "x" (float32 [1500, 64], pixel values / 16 so in [0, 1])
                and "y" (int64 [1500]); the first 1500 samples of
                sklearn.datasets.load_digits after a permutation drawn with
                np.random.RandomState(0).
  test.npz   -- the remaining samples, same keys and dtypes.
  mlp.onnx   -- a 64 -> 64 -> 10 MLP (Gemm -> Relu -> Gemm), opset 18,
                ir_version 8, input "x" [N, 64], output "logits" [N, 10],
                initializers drawn with np.random.RandomState(42) in the
                PyTorch nn.Linear style: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))
                for both weights and biases.

Everything is deterministic; running it twice gives byte-identical outputs.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits

N_TRAIN = 1500
IN_FEATURES = 64
HIDDEN = 64
N_CLASSES = 10
OPSET = 18
IR_VERSION = 8


def make_splits():
    digits = load_digits()
    x = (digits.data.astype(np.float32) / np.float32(16.0)).astype(np.float32)
    y = digits.target.astype(np.int64)
    perm = np.random.RandomState(0).permutation(len(x))
    x, y = x[perm], y[perm]
    train = {"x": np.ascontiguousarray(x[:N_TRAIN]), "y": np.ascontiguousarray(y[:N_TRAIN])}
    test = {"x": np.ascontiguousarray(x[N_TRAIN:]), "y": np.ascontiguousarray(y[N_TRAIN:])}
    return train, test


def linear_init(rng, out_features, in_features):
    bound = 1.0 / np.sqrt(in_features)
    w = rng.uniform(-bound, bound, size=(out_features, in_features)).astype(np.float32)
    b = rng.uniform(-bound, bound, size=(out_features,)).astype(np.float32)
    return w, b


def make_model():
    rng = np.random.RandomState(42)
    w1, b1 = linear_init(rng, HIDDEN, IN_FEATURES)
    w2, b2 = linear_init(rng, N_CLASSES, HIDDEN)

    initializers = [
        numpy_helper.from_array(w1, "fc1.weight"),
        numpy_helper.from_array(b1, "fc1.bias"),
        numpy_helper.from_array(w2, "fc2.weight"),
        numpy_helper.from_array(b2, "fc2.bias"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["fc1_out"],
                         name="fc1", transB=1),
        helper.make_node("Relu", ["fc1_out"], ["relu1_out"], name="relu1"),
        helper.make_node("Gemm", ["relu1_out", "fc2.weight", "fc2.bias"], ["logits"],
                         name="fc2", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", IN_FEATURES])],
        outputs=[helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", N_CLASSES])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="otter-examples",
        doc_string=("Otter digits example: 64-64-10 MLP (Gemm, Relu, Gemm) for "
                    "sklearn load_digits, inputs scaled to [0,1]; outputs logits."),
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"otter.example": "digits-mlp"})
    onnx.checker.check_model(model)
    return model


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: make_digits.py OUTDIR\n")
        return 2
    outdir = argv[1]
    os.makedirs(outdir, exist_ok=True)

    train, test = make_splits()
    np.savez(os.path.join(outdir, "train.npz"), **train)
    np.savez(os.path.join(outdir, "test.npz"), **test)

    model = make_model()
    onnx.save(model, os.path.join(outdir, "mlp.onnx"))

    print(f"wrote {outdir}: train {train['x'].shape[0]}, test {test['x'].shape[0]}, mlp.onnx")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
