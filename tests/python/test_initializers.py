"""Which initializers train (issue #14): a default users can predict, shown by `otter inspect`.

A causal-attention classifier whose mask is an initializer, as PyTorch exports a registered
buffer (nn.Transformer.generate_square_subsequent_mask: -inf above the diagonal). Before, the mask
was trained, its -inf entries became NaN after one step and every later loss was NaN with exit 0.
Now an initializer holding NaN/Inf is a constant; a {0, -10000} or {0, 1} mask is trained but
named in a warning; --freeze and --train-only override.

Environment: OTTER_LIBRARY (libotter.so), OTTER_CLI (the otter binary).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("OTTER_BUILD_DIR") or os.path.join(REPO, "build")
LIBRARY = os.environ.get("OTTER_LIBRARY") or os.path.join(BUILD_DIR, "libotter.so")
CLI = os.environ.get("OTTER_CLI") or os.path.join(BUILD_DIR, "otter")
if not (os.path.exists(LIBRARY) and os.path.exists(CLI)):
    pytest.skip("libotter or the otter CLI is missing", allow_module_level=True)
os.environ["OTTER_LIBRARY"] = LIBRARY
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import otter  # noqa: E402

T, D, C, B = 6, 8, 3, 16


def causal_model(path, mask_values):
    """x [B, T, D] -> causal self-attention (mask added to the scores) -> mean over T -> Linear."""
    rng = np.random.default_rng(0)
    mask = np.triu(np.full((T, T), mask_values, np.float32), k=1)
    inits = [
        numpy_helper.from_array(mask, "causal_mask"),
        numpy_helper.from_array((rng.standard_normal((D, D)) * 0.3).astype(np.float32), "wq"),
        numpy_helper.from_array((rng.standard_normal((D, C)) * 0.3).astype(np.float32), "head.weight"),
        numpy_helper.from_array(np.zeros(C, np.float32), "head.bias"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "xt"], ["scores"]),
        helper.make_node("Add", ["scores", "causal_mask"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "x"], ["ctx"]),
        helper.make_node("ReduceMean", ["ctx", "axis1"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "head.weight"], ["h"]),
        helper.make_node("Add", ["h", "head.bias"], ["logits"]),
    ]
    g = helper.make_graph(nodes, "causal", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", T, D])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", C])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(m, str(path))
    return path


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, T, D)).astype(np.float32)
    y = rng.integers(0, C, 64).astype(np.int64)
    np.savez(tmp_path / "d.npz", x=x, label=y)
    return tmp_path / "d.npz", x, y


def roles(session):
    return {name: (trained, reason) for name, trained, reason in session.initializer_roles}


def test_minus_inf_mask_is_a_constant(tmp_path, data):
    path, x, y = data
    model = causal_model(tmp_path / "m.onnx", -np.inf)
    s = otter.TrainingSession(str(model), loss="cross_entropy", optimizer="adamw", lr=1e-2, device="cpu")
    r = roles(s)
    assert r["causal_mask"] == (False, "holds NaN or infinite values: a constant (e.g. a -inf attention mask)")
    assert r["wq"][0] and r["head.weight"][0] and r["head.bias"][0]
    assert r["axis1"] == (False, "a constant (int64)")
    assert s.notes == []
    losses = [s.train_step(x=x[i * B:(i + 1) * B], label=y[i * B:(i + 1) * B]) for i in range(4)]
    assert all(np.isfinite(losses)), losses
    s.export(tmp_path / "out.onnx")
    exported = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "out.onnx")).graph.initializer}
    np.testing.assert_array_equal(exported["causal_mask"], np.triu(np.full((T, T), -np.inf, np.float32), k=1))
    # Asking to train it is an error that says why.
    with pytest.raises(otter.InvalidArgumentError, match="NaN or infinite"):
        otter.TrainingSession(str(model), loss="cross_entropy", trainable="wq,causal_mask", device="cpu")


def test_cli_trains_the_masked_model_and_inspect_says_why(tmp_path, data):
    path, _, _ = data
    model = causal_model(tmp_path / "m.onnx", -np.inf)
    p = subprocess.run([CLI, "train", model, "--data", path, "--loss", "cross_entropy", "--epochs", "3", "--batch-size", str(B),
                        "--out", tmp_path / "o.onnx", "--metrics", tmp_path / "m.json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    import json

    m = json.load(open(tmp_path / "m.json"))
    assert all(h["loss"] is not None for h in m["history"]) and m["skipped_steps"] == 0
    p = subprocess.run([CLI, "inspect", model, "--loss", "cross_entropy"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "causal_mask" in p.stdout and "holds NaN or infinite values" in p.stdout


@pytest.mark.parametrize("value", [-10000.0, -1e9, 1.0])
def test_mask_like_initializer_is_trained_with_a_warning(tmp_path, data, value):
    path, _, _ = data
    model = causal_model(tmp_path / "m.onnx", value)
    s = otter.TrainingSession(str(model), loss="cross_entropy", device="cpu")
    assert roles(s)["causal_mask"][0]
    assert len(s.notes) == 1 and "'causal_mask'" in s.notes[0] and "looks like a buffer" in s.notes[0], s.notes
    assert "--freeze causal_mask" in s.notes[0]
    p = subprocess.run([CLI, "train", model, "--data", path, "--loss", "cross_entropy", "--steps", "1",
                        "--out", tmp_path / "o.onnx"], capture_output=True, text=True)
    assert p.returncode == 0 and "warning: initializer 'causal_mask'" in p.stderr, p.stderr
    # --freeze silences it; --train-only trains exactly the listed ones.
    s = otter.TrainingSession(str(model), loss="cross_entropy", freeze="causal_mask", device="cpu")
    assert s.notes == [] and roles(s)["causal_mask"] == (False, "frozen (freeze option)")
    p = subprocess.run([CLI, "inspect", model, "--loss", "cross_entropy", "--train-only", "wq"], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    assert "head.weight" in p.stdout and "not in the trainable list" in p.stdout


def test_ordinary_weights_raise_no_warning(tmp_path, data):
    model = causal_model(tmp_path / "m.onnx", -np.inf)
    m = onnx.load(str(model))
    for init in m.graph.initializer:  # a bias of zeros and ones is not a mask: it feeds a MatMul
        if init.name == "wq":
            init.CopyFrom(numpy_helper.from_array(np.eye(D, dtype=np.float32), "wq"))
    onnx.save(m, str(model))
    s = otter.TrainingSession(str(model), loss="cross_entropy", device="cpu")
    assert s.notes == []


def test_infinite_weight_is_constant_with_a_warning_and_nan_is_refused(tmp_path, data):
    model = causal_model(tmp_path / "m.onnx", -np.inf)
    m = onnx.load(str(model))
    for init in m.graph.initializer:  # a damaged weight: one infinity in a MatMul weight
        if init.name == "head.weight":
            w = numpy_helper.to_array(init).copy()
            w[0, 0] = np.inf
            init.CopyFrom(numpy_helper.from_array(w, "head.weight"))
    onnx.save(m, str(model))
    s = otter.TrainingSession(str(model), loss="cross_entropy", device="cpu")
    assert not roles(s)["head.weight"][0]
    assert len(s.notes) == 1 and "'head.weight' holds infinite values and is read as a weight (by MatMul)" in s.notes[0]
    w[0, 0] = np.nan
    for init in m.graph.initializer:
        if init.name == "head.weight":
            init.CopyFrom(numpy_helper.from_array(w, "head.weight"))
    onnx.save(m, str(model))
    with pytest.raises(otter.InvalidModelError, match="'head.weight' holds NaN"):
        otter.TrainingSession(str(model), loss="cross_entropy", device="cpu")
    s = otter.TrainingSession(str(model), loss="cross_entropy", freeze="head.weight", device="cpu")
    assert roles(s)["head.weight"] == (False, "holds NaN or infinite values: a constant (e.g. a -inf attention mask)")
