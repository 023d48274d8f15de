"""Reliability regressions (issue #13, docs/reliability.md): each test is one hole a hostile-user
probe found, checked through the CLI, the C ABI (ctypes) or the Python bindings. Every test failed
(a signal, exit 0 with a wrong result, or an unclear message) before its fix.

Environment: OTTER_LIBRARY (libotter.so), OTTER_CLI (the otter binary), OTTER_TESTDATA (build/testdata).
"""

import ctypes
import json
import os
import stat
import struct
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("OTTER_BUILD_DIR") or os.path.join(REPO, "build")
LIBRARY = os.environ.get("OTTER_LIBRARY") or os.path.join(BUILD_DIR, "libotter.so")
CLI = os.environ.get("OTTER_CLI") or os.path.join(BUILD_DIR, "otter")
TESTDATA = os.environ.get("OTTER_TESTDATA") or os.path.join(BUILD_DIR, "testdata")
DIGITS = os.path.join(TESTDATA, "digits")
MODEL = os.path.join(DIGITS, "mlp.onnx")
TRAIN = os.path.join(DIGITS, "train.npz")

if not (os.path.exists(LIBRARY) and os.path.exists(CLI) and os.path.exists(MODEL)):
    pytest.skip("libotter, the otter CLI or the digits data is missing", allow_module_level=True)
os.environ["OTTER_LIBRARY"] = LIBRARY
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))
import otter  # noqa: E402
from otter import _capi  # noqa: E402

LOSS = ["--label", "y", "--loss", "cross_entropy"]


def run(*args, expect=None):
    """Runs the CLI; returns (exit code, stderr). A signal (negative code) always fails the test."""
    p = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert p.returncode >= 0, "killed by signal %d: %s" % (-p.returncode, p.stderr)
    if expect is not None:
        assert p.returncode == expect, (p.returncode, p.stderr)
    return p.returncode, p.stderr


def train(tmp_path, *extra, data=TRAIN, model=MODEL, out=None, expect=0):
    out = out or tmp_path / "out.onnx"
    return run("train", model, "--data", data, *LOSS, "--out", out, *extra, expect=expect)


@pytest.fixture(scope="module")
def digits():
    d = np.load(TRAIN)
    return d["x"], d["y"]


def weights(path):
    import onnx
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


# ---- 1, 2: CLI arithmetic ----------------------------------------------------------------------


def test_empty_data_with_steps_is_an_error(tmp_path, digits):
    x, y = digits
    np.savez(tmp_path / "empty.npz", x=x[:0], y=y[:0])
    code, err = train(tmp_path, "--steps", 5, data=tmp_path / "empty.npz", expect=2)
    assert "no rows" in err


def test_huge_batch_sizes(tmp_path):
    # INT64_MAX: a batch larger than the data is the whole data (rows + batch - 1 overflowed).
    code, err = train(tmp_path, "--batch-size", 9223372036854775807, "--steps", 2)
    assert "2 steps of 1 x 1500 rows" in err
    code, err = train(tmp_path, "--batch-size", "99999999999999999999", "--steps", 2, expect=2)
    assert "--batch-size must be between" in err
    code, err = train(tmp_path, "--batch-size", 0, expect=2)
    code, err = train(tmp_path, "--epochs", 9223372036854775807, expect=2)
    assert "--epochs" in err


# ---- 4: npz headers that claim more than the file holds -----------------------------------------


def npz_with_header(path, shape_text, payload):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % shape_text
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", npy)


def npz_load(path):
    lib = _capi.lib
    lib.otter_npz_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.otter_npz_load.restype = ctypes.c_int
    out = ctypes.c_void_p()
    code = lib.otter_npz_load(os.fsencode(str(path)), ctypes.byref(out))
    if code == 0:
        lib.otter_tensor_list_free(out)
    return code, lib.otter_last_error().decode()


@pytest.mark.parametrize("shape", ["(2305843009213693953, 64)", "(4611686018427387904, 4)", "(-3, 64)",
                                   "(1099511627776, 64)", "(12, 4)"])
def test_npz_header_lies(tmp_path, shape):
    path = tmp_path / "lie.npz"
    npz_with_header(path, shape, np.zeros((1, 64), np.float32).tobytes())
    code, msg = npz_load(path)
    assert code == _capi.OTTER_ERROR_INVALID_ARGUMENT, (code, msg)
    assert "lie.npz" in msg and ("overflow" in msg or "needs" in msg or "out of range" in msg), msg
    run("train", MODEL, "--data", path, *LOSS, "--out", tmp_path / "o.onnx", expect=1)


def test_npz_not_regular_files(tmp_path):
    code, err = train(tmp_path, data="/dev/zero", expect=1)
    assert "not a regular file" in err
    code, err = train(tmp_path, data=tmp_path, expect=1)
    assert "is a folder" in err


# ---- 5: closing a session while another thread steps it -----------------------------------------


def test_close_during_train_step(digits):
    x, y = digits
    s = otter.TrainingSession(MODEL, loss="cross_entropy", optimizer="adamw", lr=1e-3, device="cpu")
    errors, done = [], []

    def loop():
        try:
            for _ in range(2000):
                s.train_step(x=x, label=y)
                done.append(1)
        except otter.WrongStateError:
            pass  # the session was closed between two steps: the documented outcome
        except Exception as e:  # pragma: no cover - a failure
            errors.append(e)

    t = threading.Thread(target=loop)
    t.start()
    while not done:
        pass
    s.close()  # waits for the running step; the next one raises WrongStateError
    t.join()
    assert not errors, errors
    assert s.closed


def test_calls_from_threads_are_serialised(digits):
    x, y = digits
    s = otter.TrainingSession(MODEL, loss="cross_entropy", optimizer="sgd", lr=0.1, device="cpu")
    threads = [threading.Thread(target=lambda: [s.train_step(x=x[:256], label=y[:256]) for _ in range(10)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.stat("step") == 40
    s.close()


# ---- 6, 7: non-finite training is an error, never an exit 0 with NaN weights ---------------------


def test_nan_features_stop_training(tmp_path, digits):
    x, y = digits
    x = x.copy()
    x[3, 5] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=y)
    code, err = train(tmp_path, data=tmp_path / "nan.npz", expect=1)
    assert "NaN or Inf" in err and "weights are unchanged" in err
    assert not (tmp_path / "out.onnx").exists()
    # nonfinite=skip: the step is skipped and training goes on; the export is finite.
    train(tmp_path, "--nonfinite", "skip", "--metrics", tmp_path / "m.json", data=tmp_path / "nan.npz")
    m = json.load(open(tmp_path / "m.json"))
    assert m["skipped_steps"] == 1 and m["steps"] == 46, m
    assert all(np.isfinite(w).all() for w in weights(tmp_path / "out.onnx").values())


def test_diverging_fp32_run_is_an_error(tmp_path):
    code, err = train(tmp_path, "--lr", "1e30", expect=1)
    assert "NaN or Inf" in err
    assert not (tmp_path / "out.onnx").exists()


def test_fp16_static_overflow_is_an_error(tmp_path):
    code, err = train(tmp_path, "--precision", "fp16", "--loss-scale", "1e30", expect=1)
    assert "NaN or Inf" in err


def test_run_that_skipped_every_step_is_an_error(tmp_path, digits):
    x, y = digits
    np.savez(tmp_path / "allnan.npz", x=np.full_like(x, np.nan), y=y)
    code, err = train(tmp_path, "--precision", "fp16", data=tmp_path / "allnan.npz", expect=1)
    assert "every one of the 47 optimizer steps was skipped" in err
    assert not (tmp_path / "out.onnx").exists()


def test_export_refuses_non_finite_weights(tmp_path):
    s = otter.TrainingSession(MODEL, loss="cross_entropy", device="cpu")
    w = s.get_parameter("fc1.weight")
    w[0, 0] = np.inf
    s.set_parameter("fc1.weight", w)
    with pytest.raises(otter.NonFiniteError, match="fc1.weight"):
        s.export(tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    s.close()


def test_export_over_the_mapped_model_and_after_an_in_place_rewrite(tmp_path, digits):
    """The session maps its model file (SharedBytes): exports over the model's own path replace it by
    a rename and keep working; a file rewritten in place is refused at export, nothing written."""
    import shutil
    x, y = digits
    model = tmp_path / "m.onnx"
    shutil.copy(MODEL, model)
    original = model.read_bytes()
    s = otter.TrainingSession(model, loss="cross_entropy", optimizer="sgd", lr=0.1, device="cpu")
    s.train_step(x=x[:32], label=y[:32])
    s.export(model)  # over its own file: a rename, the mapped original stays intact
    first = weights(model)
    s.train_step(x=x[32:64], label=y[32:64])
    s.export(model)
    assert not np.array_equal(weights(model)["fc1.weight"], first["fc1.weight"])
    s.close()
    s = otter.TrainingSession(model, loss="cross_entropy", device="cpu")
    model.write_bytes(original + b"\0")  # in place (truncate + write), as torch.onnx.export does
    with pytest.raises(otter.InvalidArgumentError, match="was changed in place"):
        s.export(tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
    s.close()


# ---- 8: checkpoints: checksum, metadata, offsets -------------------------------------------------


def read_ckpt(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def write_ckpt(path, header, data, checksum=True):
    """A checkpoint with `header` (its checksum recomputed as Otter does, unless checksum=False)."""
    meta = header["__metadata__"]
    meta["checksum"] = "00000000"
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    blob = struct.pack("<Q", len(text)) + text.encode() + data
    if checksum:
        crc = "%08x" % (zlib.crc32(blob) & 0xFFFFFFFF)
        blob = blob.replace(b'"checksum":"00000000"', ('"checksum":"%s"' % crc).encode())
    open(path, "wb").write(blob)


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "c.ckpt"
    train(tmp_path, "--steps", 3, "--checkpoint", path)
    return path


def resume_error(tmp_path, ckpt):
    code, err = train(tmp_path, "--steps", 5, "--resume", ckpt, out=tmp_path / "r.onnx", expect=1)
    assert "internal error" not in err, err
    return err


def test_checkpoint_roundtrip_is_exact(tmp_path, checkpoint):
    header, data = read_ckpt(checkpoint)
    write_ckpt(tmp_path / "same.ckpt", header, data)
    assert open(tmp_path / "same.ckpt", "rb").read() == open(checkpoint, "rb").read()


def test_checkpoint_flipped_byte(tmp_path, checkpoint):
    b = bytearray(open(checkpoint, "rb").read())
    b[-100] ^= 1
    open(tmp_path / "flip.ckpt", "wb").write(bytes(b))
    assert "is corrupt" in resume_error(tmp_path, tmp_path / "flip.ckpt")


@pytest.mark.parametrize("key,value,needle", [
    ("loss_scale", "nan", "loss_scale"), ("loss_scale", "0", "loss_scale"), ("loss_scale", "1e300", "loss_scale"),
    ("loss_scale_growth_tracker", "inf", "growth_tracker"), ("step", "9223372036854775808", "step"),
    ("step", "-1", "step"), ("seed", "x", "seed"), ("base_lr", "nan", "base_lr")])
def test_checkpoint_bad_metadata(tmp_path, checkpoint, key, value, needle):
    header, data = read_ckpt(checkpoint)
    header["__metadata__"][key] = value
    write_ckpt(tmp_path / "bad.ckpt", header, data)
    assert needle in resume_error(tmp_path, tmp_path / "bad.ckpt")


def test_checkpoint_bad_offsets(tmp_path, checkpoint):
    header, data = read_ckpt(checkpoint)
    name = next(k for k in header if k.startswith("param/"))
    h = json.loads(json.dumps(header))
    h[name]["data_offsets"] = [9223372036854775808, 9223372036854775812]
    write_ckpt(tmp_path / "big.ckpt", h, data)
    assert "out of range" in resume_error(tmp_path, tmp_path / "big.ckpt")
    h = json.loads(json.dumps(header))
    other = [k for k in header if k.startswith("exp_avg/")][0]
    h[other]["data_offsets"] = list(h[name]["data_offsets"])  # two tensors on the same bytes
    write_ckpt(tmp_path / "overlap.ckpt", h, data)
    assert "overlap" in resume_error(tmp_path, tmp_path / "overlap.ckpt")


def test_checkpoint_non_finite_weights(tmp_path, checkpoint):
    header, data = read_ckpt(checkpoint)
    name = next(k for k in header if k.startswith("param/"))
    begin = header[name]["data_offsets"][0]
    data = data[:begin] + struct.pack("<f", float("nan")) + data[begin + 4:]
    write_ckpt(tmp_path / "nan.ckpt", header, data)
    assert "non-finite" in resume_error(tmp_path, tmp_path / "nan.ckpt")


# ---- 10, 11, 12: outputs ------------------------------------------------------------------------


def test_outputs_never_replace_inputs(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(open(MODEL, "rb").read())
    before = model.read_bytes()
    data = tmp_path / "d.npz"
    data.write_bytes(open(TRAIN, "rb").read())
    for flag, target in [("--checkpoint", model), ("--metrics", model), ("--plot", data), ("--out", data)]:
        args = ["train", model, "--data", data, *LOSS, "--out", tmp_path / "o.onnx", flag, target]
        if flag == "--out":
            args = ["train", model, "--data", data, *LOSS, flag, target]
        code, err = run(*args, expect=2)
        assert "refusing to overwrite an input" in err, err
    run("eval", model, "--data", data, *LOSS, "--outputs", model, expect=2)
    run("eval", model, "--data", data, *LOSS, "--metrics", data, expect=2)
    train(tmp_path, "--steps", 2, "--checkpoint", tmp_path / "c.ckpt", model=model)
    run("export", tmp_path / "c.ckpt", "--model", model, "--out", tmp_path / "c.ckpt", expect=2)
    run("export", tmp_path / "c.ckpt", "--model", model, "--out", model, expect=2)
    # a hard link or another spelling of the same file is the same file
    os.link(model, tmp_path / "hard.onnx")
    run("train", model, "--data", data, *LOSS, "--out", tmp_path / "hard.onnx", expect=2)
    run("train", model, "--data", data, *LOSS, "--out", tmp_path / "." / "o.onnx", "--plot", tmp_path / "o.onnx",
        expect=2)
    assert model.read_bytes() == before and data.read_bytes() == open(TRAIN, "rb").read()
    # --checkpoint may equal --resume (a run continuing its own checkpoint)
    train(tmp_path, "--steps", 4, "--checkpoint", tmp_path / "c.ckpt", "--resume", tmp_path / "c.ckpt", model=model)


def test_symlinks_and_devices_are_written_through(tmp_path):
    real = tmp_path / "real.json"
    link = tmp_path / "link.json"
    os.symlink(real.name, link)  # relative target
    train(tmp_path, "--steps", 2, "--metrics", link, "--plot", "/dev/null")
    assert os.path.islink(link) and json.load(open(real))["steps"] == 2
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    leftovers = [p for p in os.listdir(tmp_path) if ".tmp" in p]
    assert not leftovers, leftovers
    code, err = train(tmp_path, "--steps", 2, "--metrics", tmp_path, expect=1)
    assert "folder" in err


def test_write_keeps_permissions_and_reports_missing_folder(tmp_path):
    out = tmp_path / "out.onnx"
    out.write_bytes(b"old")
    os.chmod(out, 0o640)
    train(tmp_path, "--steps", 2)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640 and out.stat().st_size > 1000
    code, err = train(tmp_path, "--steps", 2, out=tmp_path / "no" / "such" / "x.onnx", expect=1)
    assert "does not exist" in err


# ---- 13: resume mid-epoch equals the uninterrupted run -------------------------------------------


def test_resume_mid_epoch_is_exact(tmp_path):
    train(tmp_path, "--steps", 100, "--seed", 3, out=tmp_path / "full.onnx")
    train(tmp_path, "--steps", 70, "--seed", 3, "--checkpoint", tmp_path / "mid.ckpt", out=tmp_path / "a.onnx")
    train(tmp_path, "--steps", 100, "--seed", 3, "--resume", tmp_path / "mid.ckpt", out=tmp_path / "b.onnx")
    full, resumed = weights(tmp_path / "full.onnx"), weights(tmp_path / "b.onnx")
    for k in full:
        np.testing.assert_array_equal(full[k], resumed[k], err_msg=k)
    # a different batch size resumes with a warning naming both layouts
    code, err = train(tmp_path, "--steps", 100, "--batch-size", 16, "--resume", tmp_path / "mid.ckpt",
                      out=tmp_path / "c.onnx")
    assert "data order differs" in err


# ---- unclear errors -------------------------------------------------------------------------------


def test_clear_messages(tmp_path):
    code, err = run("train", MODEL, "--lr", "--data", TRAIN, *LOSS, "--out", tmp_path / "o.onnx", expect=2)
    assert "'--lr' needs a value" in err
    code, err = train(tmp_path, "--checkpoint", tmp_path / "c", "--checkpoint-every", 0, expect=2)
    assert "--checkpoint-every must be" in err
    code, err = train(tmp_path, model=tmp_path, expect=1)
    assert "is a folder" in err
    code, err = train(tmp_path, model="/dev/zero", expect=1)
    assert "not a regular file" in err


def model_with_input(tmp_path, dims, twice=False):
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load(MODEL)
    g = m.graph
    x = g.input[0]
    del x.type.tensor_type.shape.dim[:]
    for d in dims:
        x.type.tensor_type.shape.dim.add().dim_value = d
    if twice:
        g.input.append(helper.make_tensor_value_info(x.name, TensorProto.FLOAT, dims))
    path = tmp_path / "bad.onnx"
    onnx.save(m, str(path))
    return path


def test_bad_graph_inputs(tmp_path):
    code, err = train(tmp_path, model=model_with_input(tmp_path, [-5, 64]), expect=1)
    assert "negative dimension" in err
    code, err = train(tmp_path, model=model_with_input(tmp_path, [32, 64], twice=True), expect=1)
    assert "listed twice" in err
