"""TensorBoard event files, the metrics CSV and the loss plot (runtime/train/tensorboard.cpp, the
C shim's "tensorboard" option, otter_session_log_scalar, and `otter train --tensorboard
--metrics-csv --plot`).

The event files are read back by a small parser written here, independent of Otter's writer: the
TFRecord framing (length, masked CRC-32C of the length, data, masked CRC-32C of the data; every
CRC is checked) and the protobuf fields of Event/Summary. When the `tensorboard` package is
installed, its own EventAccumulator must read the same scalars.

Environment: OTTER_LIBRARY (libotter.so), OTTER_CLI (the otter binary); defaults: <repo>/build.
"""

import csv
import glob
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("OTTER_BUILD_DIR") or os.path.join(REPO, "build")
LIBRARY = os.environ.get("OTTER_LIBRARY") or os.path.join(BUILD_DIR, "libotter.so")
CLI = os.environ.get("OTTER_CLI") or os.path.join(BUILD_DIR, "otter")
DIGITS = os.path.join(REPO, "examples", "digits")
MODEL = os.path.join(DIGITS, "mlp.onnx")

if not os.path.exists(LIBRARY):
    pytest.skip("Otter library not found at %s (set OTTER_LIBRARY)" % LIBRARY, allow_module_level=True)
os.environ["OTTER_LIBRARY"] = LIBRARY
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))

import otter  # noqa: E402

TRAIN_TAGS = {"train/loss", "train/learning_rate", "train/loss_scale", "train/skipped_steps",
              "train/grad_norm", "train/step_time_ms", "train/samples_per_second"}


# ---- an independent reader -------------------------------------------------------------------

def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path):
    """The data of every TFRecord in `path`; raises on a bad CRC or a truncated record."""
    blob = open(path, "rb").read()
    pos, records = 0, []
    while pos < len(blob):
        assert pos + 12 <= len(blob), "truncated record header at %d" % pos
        header = blob[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", blob[pos + 8:pos + 12])
        assert length_crc == masked(header), "bad length CRC at %d" % pos
        data = blob[pos + 12:pos + 12 + length]
        assert len(data) == length, "truncated record at %d" % pos
        (data_crc,) = struct.unpack("<I", blob[pos + 12 + length:pos + 16 + length])
        assert data_crc == masked(data), "bad data CRC at %d" % pos
        records.append(data)
        pos += 16 + length
    return records


def parse_fields(buf: bytes):
    """Protobuf wire format -> list of (field number, wire type, value)."""
    out, pos = [], 0

    def varint():
        nonlocal pos
        shift = result = 0
        while True:
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    while pos < len(buf):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out.append((field, wire, varint()))
        elif wire == 1:
            out.append((field, wire, buf[pos:pos + 8]))
            pos += 8
        elif wire == 2:
            n = varint()
            out.append((field, wire, buf[pos:pos + n]))
            pos += n
        elif wire == 5:
            out.append((field, wire, buf[pos:pos + 4]))
            pos += 4
        else:
            raise AssertionError("unexpected wire type %d" % wire)
    return out


def read_events(folder):
    """(file_version, {tag: [(step, value)]}) of the single event file in `folder`."""
    files = glob.glob(os.path.join(folder, "events.out.tfevents.*"))
    assert len(files) == 1, files
    version, scalars = None, {}
    for record in read_records(files[0]):
        step, wall_time = 0, None
        summary = None
        for field, wire, value in parse_fields(record):
            if field == 1 and wire == 1:
                (wall_time,) = struct.unpack("<d", value)
            elif field == 2 and wire == 0:
                step = value
            elif field == 3 and wire == 2:
                version = value.decode()
            elif field == 5 and wire == 2:
                summary = value
        assert wall_time is not None and wall_time > 1.5e9
        if summary is None:
            continue
        for field, wire, value in parse_fields(summary):
            assert (field, wire) == (1, 2)
            tag, simple = None, None
            for f, w, v in parse_fields(value):
                if (f, w) == (1, 2):
                    tag = v.decode()
                elif (f, w) == (2, 5):
                    (simple,) = struct.unpack("<f", v)
            scalars.setdefault(tag, []).append((step, simple))
    return version, scalars


# ---- tests -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    d = np.load(os.path.join(DIGITS, "train.npz"))
    return d["x"], d["y"]


def test_crc32c_reference():
    # The CRC-32C check value ("123456789") and TFRecord's mask, so the reader itself is right.
    assert crc32c(b"123456789") == 0xE3069283
    assert masked(b"") == ((0 >> 15 | 0 << 17) + 0xA282EAD8) & 0xFFFFFFFF


def test_session_scalars_match_stats(tmp_path, digits):
    x, y = digits
    logdir = tmp_path / "runs" / "a"  # parents are created
    losses, lrs = [], []
    with otter.TrainingSession(MODEL, loss="cross_entropy", optimizer="sgd", lr=0.1, schedule="linear",
                               total_steps=12, tensorboard=logdir) as s:
        for i in range(12):
            lrs.append(s.learning_rate if i == 0 else s.stat("learning_rate"))
            losses.append(s.train_step(x=x[i * 32:(i + 1) * 32], label=y[i * 32:(i + 1) * 32]))
        s.log_scalar("val/accuracy", 0.5)
        norm = s.stat("grad_norm")
    version, scalars = read_events(logdir)
    assert version == "brain.Event:2"
    assert TRAIN_TAGS <= set(scalars), scalars.keys()
    assert [st for st, _ in scalars["train/loss"]] == list(range(1, 13))
    np.testing.assert_allclose([v for _, v in scalars["train/loss"]], losses, rtol=1e-6)
    np.testing.assert_allclose([v for _, v in scalars["train/learning_rate"]], lrs, rtol=1e-6)
    assert all(v == 1.0 for _, v in scalars["train/loss_scale"])
    assert all(v == 0.0 for _, v in scalars["train/skipped_steps"])
    assert scalars["train/grad_norm"][-1][1] == pytest.approx(norm, rel=1e-6) and norm > 0
    assert all(v > 0 for _, v in scalars["train/samples_per_second"])
    assert scalars["val/accuracy"] == [(12, 0.5)]


def test_interval_accumulation_and_skips(tmp_path, digits):
    x, y = digits
    logdir = tmp_path / "tb"
    # fp16 with a static scale far too large: some steps overflow and are skipped (nonfinite=skip).
    with otter.TrainingSession(MODEL, loss="cross_entropy", lr=0.1, precision="fp16", loss_scale=1e9,
                               nonfinite="skip", grad_accum=2, tensorboard=logdir, tensorboard_interval=2) as s:
        for i in range(8):
            s.train_step(x=x[i * 32:(i + 1) * 32], label=y[i * 32:(i + 1) * 32])
        skipped = s.stat("skipped_steps")
    _, scalars = read_events(logdir)
    # 8 micro-batches, grad_accum 2 -> 4 effective batches, every 2nd recorded: x = 2, 4.
    assert [st for st, _ in scalars["train/loss"]] == [2, 4]
    assert scalars["train/skipped_steps"][-1][1] == skipped > 0
    assert scalars["train/loss_scale"][-1][1] == pytest.approx(1e9, rel=1e-6)
    # A skipped step has no gradient norm.
    assert "train/grad_norm" not in scalars or len(scalars["train/grad_norm"]) < 2


def test_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(otter.OtterIOError, match="TensorBoard folder"):
        otter.TrainingSession(MODEL, loss="cross_entropy", tensorboard=blocker / "sub")
    with pytest.raises(otter.OtterIOError, match="not a folder"):
        otter.TrainingSession(MODEL, loss="cross_entropy", tensorboard=blocker)
    with pytest.raises(otter.InvalidArgumentError, match="tensorboard_interval"):
        otter.TrainingSession(MODEL, loss="cross_entropy", tensorboard=tmp_path, tensorboard_interval=0)
    with pytest.raises(otter.InvalidArgumentError, match="empty"):
        otter.TrainingSession(MODEL, loss="cross_entropy", tensorboard="")
    with pytest.raises(otter.InvalidArgumentError, match="needs the option 'tensorboard'"):
        otter.TrainingSession(MODEL, loss="cross_entropy", tensorboard_interval=5)
    with otter.TrainingSession(MODEL, loss="cross_entropy") as s:
        with pytest.raises(otter.WrongStateError, match="tensorboard"):
            s.log_scalar("val/loss", 1.0)
    with otter.TrainingSession(MODEL, loss="cross_entropy", tensorboard=tmp_path / "ok") as s:
        with pytest.raises(otter.InvalidArgumentError, match="empty"):
            s.log_scalar("", 1.0)


def test_reader_rejects_a_damaged_record(tmp_path):
    with otter.TrainingSession(MODEL, loss="cross_entropy", tensorboard=tmp_path) as s:
        s.log_scalar("a", 1.0)
    (path,) = glob.glob(str(tmp_path / "events.out.tfevents.*"))
    blob = bytearray(open(path, "rb").read())
    blob[-6] ^= 0x01  # inside the last record's data
    open(path, "wb").write(bytes(blob))
    with pytest.raises(AssertionError, match="CRC"):
        read_records(path)


def assert_rounded_ticks(svg: str, log: bool):
    """Tick labels: x labels (text-anchor middle under the axis) are integers evenly spaced; y labels
    (text-anchor end) have at most 3 decimals and are evenly spaced, or (log axis) 1/2/5 x 10^k."""
    import re
    xs = [float(v) for v in re.findall(r'text-anchor="middle">(-?[0-9.]+)</text>', svg)]
    ys = [float(v) for v in re.findall(r'text-anchor="end">(-?[0-9.e+-]+)</text>', svg)]
    labels = re.findall(r'text-anchor="end">(-?[0-9.e+-]+)</text>', svg)
    assert len(xs) >= 3 and all(x == int(x) for x in xs), xs
    assert len(set(np.diff(xs).round(9))) == 1, xs
    assert len(ys) >= 3, ys
    assert all(len(v.split(".")[1]) <= 3 for v in labels if "." in v and "e" not in v), labels
    decade_ticks = all(round(v / 10 ** np.floor(np.log10(v)), 6) in (1, 2, 5) for v in ys) if log else False
    assert decade_ticks or len(set(np.diff(ys).round(9))) == 1, ys


@pytest.mark.skipif(not os.path.exists(CLI), reason="the otter CLI is not built")
def test_cli_tensorboard_csv_plot(tmp_path):
    tb, csv_path, svg = tmp_path / "tb", tmp_path / "m.csv", tmp_path / "loss.svg"
    cmd = [CLI, "train", MODEL, "--data", os.path.join(DIGITS, "train.npz"), "--label", "y",
           "--loss", "cross_entropy", "--lr", "3e-3", "--epochs", "2", "--val", os.path.join(DIGITS, "test.npz"),
           "--out", str(tmp_path / "t.onnx"), "--tensorboard", str(tb), "--metrics-csv", str(csv_path),
           "--plot", str(svg), "--plot-scale", "log"]
    subprocess.run(cmd, check=True, capture_output=True)
    _, scalars = read_events(tb)
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == len(scalars["train/loss"]) == 94
    assert list(rows[0]) == ["batch", "step", "loss", "lr", "loss_scale", "skipped_steps", "grad_norm",
                             "step_time_ms", "rows_per_second", "val_loss", "val_accuracy"]
    np.testing.assert_allclose([float(r["loss"]) for r in rows], [v for _, v in scalars["train/loss"]], rtol=1e-6)
    np.testing.assert_allclose([float(r["grad_norm"]) for r in rows], [v for _, v in scalars["train/grad_norm"]],
                               rtol=1e-6)
    val_rows = [r for r in rows if r["val_loss"]]
    assert [int(r["batch"]) for r in val_rows] == [st for st, _ in scalars["val/loss"]] == [47, 94]
    np.testing.assert_allclose([float(r["val_accuracy"]) for r in val_rows],
                               [v for _, v in scalars["val/accuracy"]], rtol=1e-6)
    assert scalars["val/accuracy"][-1][1] > 0.8
    text = svg.read_text()
    assert "loss (log scale)" in text and "validation loss" in text and "<polyline" in text
    assert_rounded_ticks(text, log=True)

    # The linear chart of the same run: rounded, evenly spaced ticks on both axes.
    linear = tmp_path / "linear.svg"
    subprocess.run(cmd[:cmd.index("--out")] + ["--out", str(tmp_path / "t2.onnx"), "--plot", str(linear)],
                   check=True, capture_output=True)
    assert_rounded_ticks(linear.read_text(), log=False)

    tensorboard = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = tensorboard.EventAccumulator(str(tb))
    acc.Reload()
    assert TRAIN_TAGS | {"val/loss", "val/accuracy"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("val/loss")] == [47, 94]
    np.testing.assert_allclose([e.value for e in acc.Scalars("train/loss")],
                               [v for _, v in scalars["train/loss"]], rtol=1e-7)


@pytest.mark.skipif(not os.path.exists(CLI), reason="the otter CLI is not built")
def test_cli_bad_flags(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    base = [CLI, "train", MODEL, "--data", os.path.join(DIGITS, "train.npz"), "--label", "y",
            "--loss", "cross_entropy", "--steps", "2", "--out", str(tmp_path / "t.onnx")]
    cases = [
        (["--tensorboard", str(blocker)], "not a folder"),
        (["--tensorboard", str(blocker / "sub")], "is not a folder"),
        (["--tensorboard", "/proc/otter-tensorboard-test"], "cannot create the TensorBoard folder"),  # even as root
        (["--tensorboard", ""], "--tensorboard needs a folder"),
        (["--plot", str(tmp_path / "p.svg"), "--plot-scale", "cubic"], "--plot-scale expects linear or log"),
        (["--plot-scale", "log"], "--plot-scale needs --plot"),
        (["--metrics-csv", MODEL], "refusing to overwrite an input"),
        (["--metrics-csv", str(tmp_path / "missing" / "m.csv")], "does not exist"),
    ]
    for extra, message in cases:
        r = subprocess.run(base + extra, capture_output=True, text=True)
        assert r.returncode != 0, extra
        assert message in r.stderr, (extra, r.stderr)
