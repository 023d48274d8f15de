"""ONNX training graphs (ModelProto.training_info) through the Python bindings and the CLI.

Reads the models of tests/training/make_training_cases.py from $OTTER_TESTDATA/training_graphs:
a training graph is detected at session creation, trains step by step like its float64 NumPy
reference, exports a file that keeps training_info and trains further, and the CLI trains it from
an .npz (a 0-d array such as the learning rate is fed at every step).

Environment: OTTER_LIBRARY (libotter.so), OTTER_TESTDATA, OTTER_CLI (the otter binary; the CLI
test is skipped without it). Skips cleanly when the library or the data is missing.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("OTTER_BUILD_DIR") or os.path.join(REPO, "build")
LIBRARY = os.environ.get("OTTER_LIBRARY") or os.path.join(BUILD_DIR, "libotter.so")
TESTDATA = os.environ.get("OTTER_TESTDATA") or os.path.join(REPO, "build", "testdata")
GRAPHS = os.path.join(TESTDATA, "training_graphs")

if not os.path.exists(LIBRARY):
    pytest.skip("Otter library not found at %s" % LIBRARY, allow_module_level=True)
if not os.path.exists(os.path.join(GRAPHS, "linear_adam.onnx")):
    pytest.skip("training graph test data not found in %s" % GRAPHS, allow_module_level=True)

os.environ["OTTER_LIBRARY"] = LIBRARY
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))

import otter  # noqa: E402


def test_python_trains_a_training_graph(tmp_path):
    ref = np.load(os.path.join(GRAPHS, "linear_adam.npz"))
    s = otter.TrainingSession(os.path.join(GRAPHS, "linear_adam.onnx"), device="cpu")
    names = [i.name for i in s.inputs]
    assert names == ["X", "label"]
    for k in range(3):
        loss = s.train_step({"X": ref["X"][k], "label": ref["label"][k]})
        assert abs(loss - ref["loss"][k]) <= 1e-5 * abs(ref["loss"][k]) + 1e-6
    np.testing.assert_allclose(s.get_parameter("W"), ref["W3"], rtol=1e-4, atol=1e-6)
    out = tmp_path / "trained.onnx"
    s.export(str(out))
    # The exported file keeps training_info and trains further from step 3.
    s2 = otter.TrainingSession(str(out), device="cpu")
    for k in range(3, 6):
        loss = s2.train_step({"X": ref["X"][k], "label": ref["label"][k]})
        assert abs(loss - ref["loss"][k]) <= 1e-5 * abs(ref["loss"][k]) + 1e-6
    np.testing.assert_allclose(s2.get_parameter("W"), ref["W6"], rtol=1e-4, atol=1e-6)
    # training_graph=off: the inference graph with Otter's own loss.
    plain = otter.TrainingSession(os.path.join(GRAPHS, "linear_adam.onnx"), device="cpu", training_graph="off", loss="mse")
    assert [i.name for i in plain.inputs] == ["X", "label"]
    with pytest.raises(otter.OtterError) as e:
        otter.TrainingSession(os.path.join(GRAPHS, "bad_key_missing.onnx"), device="cpu")
    assert "no_such_weight" in str(e.value)


def test_cli_trains_a_training_graph(tmp_path):
    cli = os.environ.get("OTTER_CLI")
    if not cli or not os.path.exists(cli):
        pytest.skip("OTTER_CLI not set")
    ref = np.load(os.path.join(GRAPHS, "mlp_momentum.npz"))
    data = tmp_path / "train.npz"
    # 2 epochs of one 6-row batch (the CLI shuffles rows inside it: the sums are the same up to
    # rounding), R fed at every step.
    np.savez(data, X=ref["X"][0], label=ref["label"][0], R=np.array(0.01, np.float32))
    out = tmp_path / "trained.onnx"
    model = os.path.join(GRAPHS, "mlp_momentum.onnx")
    r = subprocess.run([cli, "train", model, "--data", str(data), "--epochs", "2", "--batch-size", "6", "--out", str(out),
                        "--device", "cpu"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = otter.TrainingSession(model, device="cpu")
    for _ in range(2):
        s.train_step({"X": ref["X"][0], "label": ref["label"][0], "R": np.array(0.01, np.float32)})
    trained = otter.TrainingSession(str(out), device="cpu")  # the initialization does not run again
    for name in ("W1", "W2", "V1", "V2"):
        np.testing.assert_allclose(trained.get_parameter(name), s.get_parameter(name), rtol=1e-5, atol=1e-6)


def test_ort_artifacts_through_python_and_cli(tmp_path):
    """ONNX Runtime training artifacts (tests/ort_artifacts/mlp, committed): Python trains them like
    ORT did; the CLI trains them, writes an ORT checkpoint and eval_model.onnx with the trained
    parameters."""
    src = os.path.join(REPO, "tests", "ort_artifacts", "mlp")
    data = np.load(os.path.join(src, "data.npz"))
    ref = np.load(os.path.join(src, "ort_losses.npz"))
    s = otter.TrainingSession(os.path.join(src, "training_model.onnx"), device="cpu", lr=float(ref["lr"]))
    assert [i.name for i in s.inputs] == ["x", "labels"]
    for k in range(len(ref["loss"])):
        loss = s.train_step({"x": data["x"][k], "labels": data["labels"][k]})
        assert abs(loss - ref["loss"][k]) <= 1e-6 * abs(ref["loss"][k]) + 1e-6
    np.testing.assert_allclose(s.get_parameter("fc2.weight"), ref["param/fc2.weight"], rtol=1e-5, atol=1e-6)
    cli = os.environ.get("OTTER_CLI")
    if not cli or not os.path.exists(cli):
        pytest.skip("OTTER_CLI not set")
    train = tmp_path / "train.npz"
    np.savez(train, x=data["x"].reshape(-1, 4), labels=data["labels"].reshape(-1))
    out, ckpt = tmp_path / "trained.onnx", tmp_path / "ort_checkpoint"
    r = subprocess.run([cli, "train", os.path.join(src, "training_model.onnx"), "--data", str(train), "--epochs", "2",
                        "--batch-size", "8", "--lr", "0.01", "--out", str(out), "--checkpoint", str(ckpt), "--device", "cpu"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # The checkpoint is ORT's format: a session starts from it at the CLI's step count.
    s2 = otter.TrainingSession(os.path.join(src, "training_model.onnx"), device="cpu", ort_checkpoint=str(ckpt))
    rows = data["x"].shape[0] * data["x"].shape[1]
    assert s2.stat("step") == 2 * -(-rows // 8)  # 2 epochs of ceil(rows / 8) batches
    # The export is eval_model.onnx with the trained parameters as initializers.
    import onnx
    m = onnx.load(str(out))
    assert sorted(t.name for t in m.graph.initializer) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    # `otter export` takes ORT checkpoints too (ORT's own, after its 10 steps, into eval_model.onnx).
    exported = tmp_path / "from_ort_checkpoint.onnx"
    r = subprocess.run([cli, "export", os.path.join(src, "ort_trained_checkpoint"), "--model",
                        os.path.join(src, "eval_model.onnx"), "--out", str(exported)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from onnx import numpy_helper
    for t in onnx.load(str(exported)).graph.initializer:
        np.testing.assert_array_equal(numpy_helper.to_array(t), ref["param/" + t.name])
