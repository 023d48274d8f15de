"""Generate the ONNX Runtime on-device training fixtures of tests/ort_artifacts (committed, so CI
needs no PyPI): run inside the venv of bench/cpu/setup_ort_training.sh (onnxruntime-training-cpu
1.19.2, onnx 1.16).

    build-ort-venv/bin/python tests/ort_artifacts/make_ort_artifacts.py tests/ort_artifacts

For each model (mlp: Gemm -> Relu -> Gemm; cnn: Conv -> Relu -> MaxPool -> Flatten -> Gemm;
CrossEntropyLoss, AdamW; mlp_sgd: the MLP with SGD) it writes <name>/ with the
artifacts exactly as onnxruntime.training.artifacts.generate_artifacts writes them
(training_model.onnx, eval_model.onnx, optimizer_model.onnx, checkpoint), the data
(<name>/data.npz: per step x and labels) and ORT's own training trajectory (<name>/ort_losses.npz:
the loss of every step, the learning rate, and the parameters after the last step) and ORT's own
checkpoint after those steps (<name>/ort_trained_checkpoint, with the optimizer state), which the
Otter-only tests compare against.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "cpu"))
from ort_worker import import_ort_training  # noqa: E402

STEPS = 8
LR = 0.01


def mlp_model(seed=0, n_in=4, hidden=8, classes=3):
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((hidden, n_in)) * 0.5).astype(np.float32)
    b1 = (rng.standard_normal(hidden) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((classes, hidden)) * 0.5).astype(np.float32)
    b2 = (rng.standard_normal(classes) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], name="fc1", transB=1),
         helper.make_node("Relu", ["h"], ["a"], name="relu"),
         helper.make_node("Gemm", ["a", "fc2.weight", "fc2.bias"], ["logits"], name="fc2", transB=1)],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(w1, "fc1.weight"), numpy_helper.from_array(b1, "fc1.bias"),
         numpy_helper.from_array(w2, "fc2.weight"), numpy_helper.from_array(b2, "fc2.bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    data_rng = np.random.default_rng(seed + 1)
    x = data_rng.standard_normal((STEPS, 5, n_in)).astype(np.float32)
    y = data_rng.integers(0, classes, (STEPS, 5)).astype(np.int64)
    return model, x, y


def cnn_model(seed=2, classes=3):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((4, 1, 3, 3)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(4) * 0.1).astype(np.float32)
    fw = (rng.standard_normal((classes, 4 * 4 * 4)) * 0.2).astype(np.float32)
    fb = (rng.standard_normal(classes) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
         helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1)],
        "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(w, "conv.weight"), numpy_helper.from_array(b, "conv.bias"),
         numpy_helper.from_array(fw, "fc.weight"), numpy_helper.from_array(fb, "fc.bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    data_rng = np.random.default_rng(seed + 1)
    x = data_rng.standard_normal((STEPS, 4, 1, 8, 8)).astype(np.float32)
    y = data_rng.integers(0, classes, (STEPS, 4)).astype(np.int64)
    return model, x, y


def main(argv):
    out = argv[1] if len(argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    ort, artifacts, api = import_ort_training()
    cases = {"mlp": (mlp_model(), artifacts.OptimType.AdamW), "cnn": (cnn_model(), artifacts.OptimType.AdamW),
             "mlp_sgd": (mlp_model(), artifacts.OptimType.SGD)}
    for name, ((model, x, y), optim) in cases.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        params = [t.name for t in model.graph.initializer]
        artifacts.generate_artifacts(model, requires_grad=params, frozen_params=[],
                                     loss=artifacts.LossType.CrossEntropyLoss, optimizer=optim, artifact_directory=d)
        np.savez(os.path.join(d, "data.npz"), x=x, labels=y)
        state = api.CheckpointState.load_checkpoint(os.path.join(d, "checkpoint"))
        module = api.Module(os.path.join(d, "training_model.onnx"), state, os.path.join(d, "eval_model.onnx"))
        opt = api.Optimizer(os.path.join(d, "optimizer_model.onnx"), module)
        opt.set_learning_rate(LR)
        module.train()
        losses = []
        for s in range(STEPS):
            loss = module(x[s], y[s])
            opt.step()
            module.lazy_reset_grad()
            losses.append(float(loss))
        result = {"loss": np.array(losses), "lr": np.array(LR)}
        for p in params:
            result["param/" + p] = state.parameters[p].data
        np.savez(os.path.join(d, "ort_losses.npz"), **result)
        # ORT's own checkpoint after training (parameters, AdamW moments, step), for the reader.
        api.CheckpointState.save_checkpoint(state, os.path.join(d, "ort_trained_checkpoint"), include_optimizer_state=True)
        print(name, "losses", losses)


if __name__ == "__main__":
    main(sys.argv)
