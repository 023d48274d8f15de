"""Tests of the Python bindings (bindings/python/otter) over libotter.so.

Environment:
    OTTER_LIBRARY    path to libotter.so (default: $OTTER_BUILD_DIR/libotter.so, OTTER_BUILD_DIR
                     defaulting to <repo>/build)
    OTTER_TESTDATA   test data directory (default: <repo>/build/testdata)

Skips cleanly when the library or the test data is missing.
"""

import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("OTTER_BUILD_DIR") or os.path.join(REPO, "build")
LIBRARY = os.environ.get("OTTER_LIBRARY") or os.path.join(BUILD_DIR, "libotter.so")
TESTDATA = os.environ.get("OTTER_TESTDATA") or os.path.join(REPO, "build", "testdata")
DIGITS = os.path.join(TESTDATA, "digits")
MODEL = os.path.join(DIGITS, "mlp.onnx")

if not os.path.exists(LIBRARY):
    pytest.skip("Otter library not found at %s (set OTTER_LIBRARY or OTTER_BUILD_DIR)" % LIBRARY,
                allow_module_level=True)
if not os.path.exists(MODEL):
    pytest.skip("digits test data not found in %s (set OTTER_TESTDATA)" % DIGITS, allow_module_level=True)

os.environ["OTTER_LIBRARY"] = LIBRARY
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))

import otter  # noqa: E402
from otter import _capi  # noqa: E402

BATCH = 32


@pytest.fixture(scope="module")
def data():
    train = np.load(os.path.join(DIGITS, "train.npz"))
    test = np.load(os.path.join(DIGITS, "test.npz"))
    return {"x": train["x"], "y": train["y"], "x_test": test["x"], "y_test": test["y"]}


def new_session(**kw):
    args = dict(loss="cross_entropy", optimizer="adamw", lr=3e-3, seed=0, device="cpu")
    args.update(kw)
    return otter.TrainingSession(MODEL, **args)


def train_epochs(session, data, epochs):
    x, y = data["x"], data["y"]
    losses = []
    for _ in range(epochs):
        for b in range(0, len(x), BATCH):
            losses.append(session.train_step(x=x[b:b + BATCH], label=y[b:b + BATCH]))
    return losses


@pytest.fixture(scope="module")
def trained(data):
    session = new_session()
    losses = train_epochs(session, data, 8)
    yield session, losses
    session.close()


# ---- library ----


def test_version():
    assert isinstance(otter.__version__, str) and otter.__version__.count(".") == 2
    assert otter.__version__ == otter.version()
    assert otter.api_version() // 1000 == 1


# ---- training ----


def test_train_digits_accuracy(trained, data):
    session, losses = trained
    assert all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    outputs, loss = session.eval_loss(x=data["x_test"], label=data["y_test"])
    assert set(outputs) == {"logits"}
    logits = outputs["logits"]
    assert logits.shape == (len(data["x_test"]), 10) and logits.dtype == np.float32
    accuracy = float(np.mean(logits.argmax(axis=1) == data["y_test"]))
    assert accuracy >= 0.90, accuracy
    assert loss is not None and np.isfinite(loss)
    # Without the label there is no loss.
    outputs2, loss2 = session.eval_loss(x=data["x_test"])
    assert loss2 is None
    np.testing.assert_array_equal(outputs2["logits"], logits)


def test_stats_and_learning_rate(trained, data):
    session, losses = trained
    stats = session.stats
    for key in ("step", "micro_step", "learning_rate", "grad_norm", "loss_scale", "skipped_steps"):
        assert key in stats
    assert stats["step"] == len(losses)
    assert stats["skipped_steps"] == 0
    assert stats["loss_scale"] == 1.0
    assert stats["last_loss"] == pytest.approx(losses[-1])
    assert stats["learning_rate"] == pytest.approx(3e-3)
    assert session.learning_rate == pytest.approx(3e-3)


def test_learning_rate_setter(data):
    with new_session() as s:
        s.learning_rate = 0.25
        assert s.learning_rate == pytest.approx(0.25)
        # The new rate is used by the next step: with lr 0 (AdamW's decay scales with lr too)
        # a step changes nothing.
        s.learning_rate = 0.0
        before = s.parameters
        s.train_step(x=data["x"][:32], label=data["y"][:32])
        after = s.parameters
        for k in before:
            np.testing.assert_array_equal(after[k], before[k])
        assert s.stats["learning_rate"] == 0.0


def test_learning_rate_stat_follows_setter():
    with new_session() as s:
        s.learning_rate = 0.25
        assert s.stats["learning_rate"] == pytest.approx(0.25)


def test_stats_before_first_step():
    with new_session() as s:
        stats = s.stats
        assert stats["step"] == 0
        assert "last_loss" not in stats
        with pytest.raises(otter.OtterError) as e:
            s.stat("last_loss")
        assert e.value.status == "OTTER_ERROR_WRONG_STATE"


def test_description():
    with new_session() as s:
        assert s.device == "cpu"
        assert s.inputs == [("x", np.dtype(np.float32), (None, 64)), ("label", np.dtype(np.int64), (None,))]
        assert s.outputs == [("logits", np.dtype(np.float32), (None, 10))]
        name, dtype, shape = s.outputs[0]
        assert name == "logits"
        params = s.parameters
        assert set(params) == {p.name for p in s.parameter_info}
        for info in s.parameter_info:
            assert params[info.name].shape == info.shape
            assert params[info.name].dtype == info.dtype


def test_export_matches_onnxruntime(trained, data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    session, _ = trained
    path = tmp_path / "mlp_trained.onnx"
    session.export(path)
    x = data["x_test"]
    expected = session.eval_step(x=x)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x})
    names = [o.name for o in sess.get_outputs()]
    assert set(names) == set(expected)
    for name, value in zip(names, got):
        np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-6)


def test_checkpoint_round_trip(data, tmp_path):
    path = str(tmp_path / "ckpt.otter")
    with new_session() as s:
        train_epochs(s, {"x": data["x"][:320], "y": data["y"][:320]}, 1)
        s.save(path)
        params = s.parameters
        step = s.stats["step"]
        logits = s.eval_step(x=data["x_test"])["logits"]
    assert os.path.exists(path) and not os.path.exists(path + ".tmp")
    with new_session() as fresh:
        before = fresh.parameters
        assert any(not np.array_equal(before[k], params[k]) for k in params)
        fresh.load(path)
        after = fresh.parameters
        assert set(after) == set(params)
        for k in params:
            np.testing.assert_array_equal(after[k], params[k])
        assert fresh.stats["step"] == step
        np.testing.assert_array_equal(fresh.eval_step(x=data["x_test"])["logits"], logits)


def test_training_resumes_identically_after_checkpoint(data, tmp_path):
    path = str(tmp_path / "ckpt.otter")
    x, y = data["x"][:64], data["y"][:64]
    with new_session() as a:
        a.train_step(x=x[:32], label=y[:32])
        a.save(path)
        la = a.train_step(x=x[32:], label=y[32:])
        pa = a.parameters
    with new_session() as b:
        b.load(path)
        lb = b.train_step(x=x[32:], label=y[32:])
        pb = b.parameters
    assert la == lb
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k])


def test_set_and_get_parameter():
    with new_session() as s:
        name, dtype, shape = s.parameter_info[1]
        value = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        s.set_parameter(name, value)
        np.testing.assert_array_equal(s.get_parameter(name), value)
        got = s.get_parameter(name)
        got[...] = 0  # a copy: the session is unchanged
        np.testing.assert_array_equal(s.get_parameter(name), value)
        # A list is converted to the parameter's dtype.
        s.set_parameter(name, [1.0] * int(np.prod(shape)))
        np.testing.assert_array_equal(s.get_parameter(name), np.ones(shape, np.float32))


def test_model_from_bytes(data):
    with open(MODEL, "rb") as f:
        blob = f.read()
    with otter.TrainingSession(blob, loss="cross_entropy", optimizer="adamw", lr=3e-3, seed=0) as a, \
            new_session() as b:
        x, y = data["x"][:32], data["y"][:32]
        assert a.train_step(x=x, label=y) == b.train_step(x=x, label=y)


def test_options_pass_through(data):
    # Lists are joined with commas, bools become true/false, extras pass through by key.
    with otter.TrainingSession(MODEL, loss="cross_entropy", optimizer="sgd", lr=0.1, momentum=0.9,
                               nesterov=True, freeze=["fc1.weight", "fc1.bias"], schedule="cosine",
                               warmup_steps=2, total_steps=10, clip_norm=1.0, grad_accum=2,
                               reduction="sum") as s:
        assert {p.name for p in s.parameter_info} == {"fc2.weight", "fc2.bias"}
        s.train_step(x=data["x"][:8], label=data["y"][:8])
        s.train_step(x=data["x"][8:16], label=data["y"][8:16])
        assert s.stats["step"] == 1


def test_dict_feeds(data):
    with new_session() as s:
        loss = s.train_step({"x": data["x"][:8], "label": data["y"][:8]})
        assert np.isfinite(loss)
        assert "logits" in s.eval_step({"x": data["x"][:8]})


# ---- errors ----


def test_error_hierarchy():
    assert issubclass(otter.OtterError, RuntimeError)
    assert issubclass(otter.NotFoundError, otter.OtterError)


def test_missing_file():
    path = "/nonexistent/dir/missing_model.onnx"
    with pytest.raises(otter.OtterError) as e:
        otter.TrainingSession(path)
    assert e.value.status == "OTTER_ERROR_NOT_FOUND"
    assert isinstance(e.value, otter.NotFoundError)
    assert path in str(e.value) and path in e.value.message


def test_unknown_option():
    with pytest.raises(otter.OtterError) as e:
        otter.TrainingSession(MODEL, no_such_option=1)
    assert e.value.status == "OTTER_ERROR_NOT_FOUND"
    assert "no_such_option" in str(e.value)


def test_bad_option_value():
    with pytest.raises(otter.OtterError) as e:
        otter.TrainingSession(MODEL, lr="abc")
    assert e.value.status == "OTTER_ERROR_INVALID_ARGUMENT"
    assert isinstance(e.value, otter.InvalidArgumentError)


def test_invalid_model_bytes():
    with pytest.raises(otter.OtterError) as e:
        otter.TrainingSession(b"definitely not an onnx model")
    assert e.value.status == "OTTER_ERROR_INVALID_MODEL"


def test_wrong_input_shape(data):
    with new_session() as s:
        with pytest.raises(otter.OtterError) as e:
            s.train_step(x=np.zeros((4, 63), np.float32), label=np.zeros(4, np.int64))
        assert e.value.status == "OTTER_ERROR_INVALID_ARGUMENT"
        assert "'x'" in str(e.value)
        # Nothing changed on error.
        assert s.stats["step"] == 0


def test_missing_label(data):
    with new_session() as s:
        with pytest.raises(otter.OtterError) as e:
            s.train_step(x=data["x"][:4])
        assert "missing input 'label'" in str(e.value)


def test_wrong_dtype(data):
    with new_session() as s:
        with pytest.raises(otter.OtterError) as e:
            s.train_step(x=data["x"][:4].astype(np.float64), label=data["y"][:4])
        assert e.value.status == "OTTER_ERROR_INVALID_ARGUMENT"
        assert "'x'" in str(e.value)


def test_unsupported_numpy_dtype(data):
    with new_session() as s:
        with pytest.raises(TypeError, match="'x'"):
            s.train_step(x=data["x"][:4].astype(np.complex64), label=data["y"][:4])


def test_set_parameter_wrong_shape():
    with new_session() as s:
        name, _, shape = s.parameter_info[0]
        before = s.get_parameter(name)
        with pytest.raises(otter.OtterError) as e:
            s.set_parameter(name, np.zeros((shape[0] + 1,) + shape[1:], np.float32))
        assert e.value.status == "OTTER_ERROR_INVALID_ARGUMENT"
        np.testing.assert_array_equal(s.get_parameter(name), before)


def test_unknown_parameter():
    with new_session() as s:
        with pytest.raises(otter.OtterError) as e:
            s.get_parameter("no_such_parameter")
        assert e.value.status == "OTTER_ERROR_NOT_FOUND"
        with pytest.raises(otter.OtterError) as e:
            s.set_parameter("no_such_parameter", np.zeros(3, np.float32))
        assert e.value.status == "OTTER_ERROR_NOT_FOUND"


def test_load_missing_checkpoint(tmp_path):
    with new_session() as s:
        with pytest.raises(otter.OtterError) as e:
            s.load(tmp_path / "nope.ckpt")
        assert e.value.status == "OTTER_ERROR_NOT_FOUND"


def test_closed_session():
    s = new_session()
    s.close()
    s.close()  # twice is fine
    assert s.closed
    with pytest.raises(otter.OtterError) as e:
        s.eval_step(x=np.zeros((1, 64), np.float32))
    assert e.value.status == "OTTER_ERROR_WRONG_STATE"


# ---- zero copy ----


def test_contiguous_input_is_not_copied(data, monkeypatch):
    seen = {}
    monkeypatch.setattr(_capi, "input_hook", lambda name, ptr, arr: seen.__setitem__(name, ptr))
    x = np.ascontiguousarray(data["x"][:16])
    y = np.ascontiguousarray(data["y"][:16])
    with new_session() as s:
        s.train_step(x=x, label=y)
        assert seen == {"x": x.ctypes.data, "label": y.ctypes.data}
        # A non-contiguous view is copied into a contiguous buffer, and gives the same results.
        seen.clear()
        wide = np.zeros((16, 128), np.float32)
        wide[:, ::2] = x
        strided = wide[:, ::2]
        assert not strided.flags.c_contiguous
        out_strided = s.eval_step(x=strided)["logits"]
        assert seen["x"] != strided.ctypes.data
        np.testing.assert_array_equal(out_strided, s.eval_step(x=x)["logits"])
        # So is a Fortran-ordered array and a big-endian one.
        np.testing.assert_array_equal(s.eval_step(x=np.asfortranarray(x))["logits"], out_strided)
        np.testing.assert_array_equal(s.eval_step(x=x.astype(">f4"))["logits"], out_strided)
        # A read-only array is read in place too (its address is taken another way), and a call
        # with another batch size after it gets its own shape (the bindings cache shape arrays).
        seen.clear()
        frozen = x.copy()
        frozen.flags.writeable = False
        np.testing.assert_array_equal(s.eval_step(x=frozen)["logits"], out_strided)
        assert seen["x"] == frozen.ctypes.data
        five = s.eval_step(x=x[:5])["logits"]
        assert five.shape == (5, 10)
        np.testing.assert_allclose(five, out_strided[:5], rtol=1e-5, atol=1e-6)  # another GEMM shape
        np.testing.assert_array_equal(s.eval_step({"x": x[:5].copy()})["logits"], five)


def test_train_step_without_loss(data):
    # return_loss=False: no loss is copied back (on CUDA the step does not wait for the GPU); the
    # step still happens, and the loss is available from the statistics afterwards.
    x, y = data["x"][:32], data["y"][:32]
    with new_session() as a, new_session() as b:
        assert a.train_step(x=x, label=y, return_loss=False) is None
        lb = b.train_step(x=x, label=y)
        assert a.stat("step") == 1
        assert a.stat("last_loss") == lb
        for k, v in a.parameters.items():
            np.testing.assert_array_equal(v, b.parameters[k])


def test_denormals_option(data):
    # denormals=flush (CPU threads flush subnormals to zero during the step) trains; a value other
    # than keep/flush is rejected when the session is created.
    x, y = data["x"][:32], data["y"][:32]
    with new_session(denormals="flush") as s:
        first = s.train_step(x=x, label=y)
        for _ in range(5):
            last = s.train_step(x=x, label=y)
        assert np.isfinite(first) and last < first
    with pytest.raises(otter.InvalidArgumentError, match="denormals"):
        new_session(denormals="sometimes")


def test_device_statistics():
    with new_session() as s:
        assert s.stat("captured_steps") == 0
        assert s.stat("device_peak_bytes") == 0  # a CPU session
