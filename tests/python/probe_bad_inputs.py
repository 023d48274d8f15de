"""A hostile-user probe: thousands of bad inputs through the CLI and the C ABI (issue #13).

Each case must end cleanly: no signal, no hang, and never exit 0 with a wrong result (an exported
model with non-finite weights, a metrics file with a null loss). Categories:
  model     truncated, bit-flipped and byte-smashed ONNX files (otter inspect + one train step)
  npz       truncated and bit-flipped training data
  ckpt      bit-flipped and truncated checkpoints (--resume): the checksum must catch every flip
  flags     absurd flag values (negative, huge, NaN, empty, text, repeated, missing)
  views     random C API tensor views (ndim, shapes up to 2^62, dtypes, NULL data) to train_step

Usage: probe_bad_inputs.py [--cases N] [--seed S] [--keep DIR] [--categories model,npz,ckpt,flags,views]
(scripts/sanitize runs the CLI categories with the ASan+UBSan build of the CLI.)
Environment: OTTER_CLI, OTTER_LIBRARY, OTTER_TESTDATA (defaults under <repo>/build).
Prints a summary per category and exits 1 if any case crashed, hung or silently corrupted.
"""

import argparse
import ctypes
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("OTTER_BUILD_DIR") or os.path.join(REPO, "build")
CLI = os.environ.get("OTTER_CLI") or os.path.join(BUILD, "otter")
LIBRARY = os.environ.get("OTTER_LIBRARY") or os.path.join(BUILD, "libotter.so")
TESTDATA = os.environ.get("OTTER_TESTDATA") or os.path.join(BUILD, "testdata")
DIGITS = os.path.join(TESTDATA, "digits")
MODEL = os.path.join(DIGITS, "mlp.onnx")
TRAIN = os.path.join(DIGITS, "train.npz")
LOSS = ["--label", "y", "--loss", "cross_entropy"]


class Probe:
    def __init__(self, work, keep):
        self.work, self.keep = work, keep
        self.counts, self.bad = {}, []

    def cli(self, category, args, inputs=()):
        """Runs the CLI; a signal, a timeout or a corrupt exit-0 result is a failure."""
        out = os.path.join(self.work, "out.onnx")
        metrics = os.path.join(self.work, "m.json")
        for p in (out, metrics):
            if os.path.exists(p):
                os.remove(p)
        try:
            p = subprocess.run([CLI, *map(str, args)], capture_output=True, timeout=120)
            p.stderr = p.stderr.decode("utf-8")  # the library's messages are UTF-8 (otter.h)
            code, err = p.returncode, p.stderr
        except subprocess.TimeoutExpired:
            code, err = "timeout", ""
        except UnicodeDecodeError as e:
            code, err = 99, "stderr is not UTF-8: %s" % e
        problem = None
        if code == "timeout":
            problem = "hang (over 120 s)"
        elif code < 0:
            problem = "killed by signal %d" % -code
        elif code == 99:
            problem = err
        elif any(k in err for k in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                                    "ThreadSanitizer")):
            problem = "sanitizer report: " + err.strip()[-300:]
        elif code not in (0, 1, 2):
            problem = "exit %d" % code
        elif code == 0 and args[0] == "train":
            problem = self.corrupt(out, metrics, str(args[1]), err)
        elif code != 0 and ("internal error" in err or "stoll" in err or "vector" in err):
            problem = "unclear error: " + err.strip()[:200]
        self.counts.setdefault(category, [0, 0])
        self.counts[category][0] += 1
        if problem:
            self.counts[category][1] += 1
            self.bad.append((category, problem, args, err.strip()[-300:]))
            if self.keep:
                d = os.path.join(self.keep, "%s_%d" % (category, len(self.bad)))
                os.makedirs(d, exist_ok=True)
                for f in inputs:
                    shutil.copy(f, d)
                open(os.path.join(d, "cmd.txt"), "w").write(" ".join(map(str, args)) + "\n" + problem + "\n" + err)
        return code, err

    @staticmethod
    def corrupt(out, metrics, model, err):
        if os.path.exists(metrics):
            m = json.load(open(metrics))
            if m.get("final_loss") is None or any(h["loss"] is None for h in m["history"]):
                return "exit 0 with a null loss"
        if os.path.exists(out):
            import onnx
            from onnx import numpy_helper

            try:
                given = {i.name: numpy_helper.to_array(i) for i in onnx.load(model).graph.initializer}
                for init in onnx.load(out).graph.initializer:
                    a = numpy_helper.to_array(init)
                    if a.dtype.kind == "f" and not np.isfinite(a).all():
                        # An infinite constant of the input (a mask, or a damaged weight that Otter kept
                        # constant and warned about) is exported unchanged: not a corruption.
                        same = init.name in given and np.array_equal(given[init.name], a, equal_nan=True)
                        if not (same and "warning: initializer '%s'" % init.name in err):
                            return "exit 0 exporting non-finite weights (%s)" % init.name
            except Exception as e:  # an exit-0 export that does not load
                return "exit 0 with an unreadable export: %s" % e
        return None


def mutations(data, rng, n):
    """n mutated copies of `data`: truncations, bit flips, smashed byte runs, insertions."""
    for i in range(n):
        b = bytearray(data)
        kind = i % 4
        if kind == 0:
            b = b[:rng.randrange(len(b))]
        elif kind == 1:
            for _ in range(rng.choice([1, 1, 2, 8])):
                j = rng.randrange(len(b))
                b[j] ^= 1 << rng.randrange(8)
        elif kind == 2:
            j = rng.randrange(len(b))
            run = rng.choice([4, 8, 64])
            fill = rng.choice([b"\xff", b"\x00", b"\x7f", bytes([rng.randrange(256)])])
            b[j:j + run] = fill * min(run, len(b) - j)
        else:
            j = rng.randrange(len(b))
            b[j:j] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 7, 100])))
        yield bytes(b)


def probe_models(p, rng, n):
    data = open(MODEL, "rb").read()
    path = os.path.join(p.work, "model.onnx")
    for i, m in enumerate(mutations(data, rng, n)):
        open(path, "wb").write(m)
        if i % 2:
            p.cli("model", ["inspect", path, "--loss", "cross_entropy", "--label", "y"], [path])
        else:
            p.cli("model", ["train", path, "--data", TRAIN, *LOSS, "--steps", 1, "--out", os.path.join(p.work, "out.onnx"),
                            "--metrics", os.path.join(p.work, "m.json")], [path])


def probe_npz(p, rng, n):
    x, y = np.load(TRAIN)["x"][:64], np.load(TRAIN)["y"][:64]
    base = os.path.join(p.work, "small.npz")
    np.savez(base, x=x, y=y)
    compressed = os.path.join(p.work, "small_z.npz")
    np.savez_compressed(compressed, x=x, y=y)
    path = os.path.join(p.work, "data.npz")
    sources = [open(base, "rb").read(), open(compressed, "rb").read()]
    for i in range(n):
        m = next(mutations(sources[i % 2], rng, 1 + (i % 4)))
        open(path, "wb").write(m)
        p.cli("npz", ["train", MODEL, "--data", path, *LOSS, "--steps", 2, "--out", os.path.join(p.work, "out.onnx"),
                      "--metrics", os.path.join(p.work, "m.json")], [path])


def probe_checkpoints(p, rng, n):
    ckpt = os.path.join(p.work, "good.ckpt")
    subprocess.run([CLI, "train", MODEL, "--data", TRAIN, *LOSS, "--steps", "3", "--checkpoint", ckpt, "--out",
                    os.path.join(p.work, "o.onnx")], capture_output=True, check=True)
    data = open(ckpt, "rb").read()
    path = os.path.join(p.work, "bad.ckpt")
    for m in mutations(data, rng, n):
        open(path, "wb").write(m)
        code, err = p.cli("ckpt", ["train", MODEL, "--data", TRAIN, *LOSS, "--steps", 5, "--resume", path, "--out",
                                   os.path.join(p.work, "out.onnx"), "--metrics", os.path.join(p.work, "m.json")], [path])
        if code == 0 and m != data:
            p.counts["ckpt"][1] += 1
            p.bad.append(("ckpt", "a damaged checkpoint was accepted", ["resume"], ""))


BAD_VALUES = ["-1", "0", "-9223372036854775808", "9223372036854775807", "99999999999999999999", "nan", "inf", "-inf",
              "", "abc", "1e309", "0x10", "1.5", " 3", "3 ", "--data", "1e-320", "-0"]
FLAGS = ["--batch-size", "--epochs", "--steps", "--grad-accum", "--lr", "--momentum", "--weight-decay", "--warmup",
         "--clip-norm", "--seed", "--loss-scale", "--checkpoint-every", "--precision", "--optimizer", "--schedule",
         "--loss", "--label", "--device", "--freeze", "--train-only", "--nonfinite", "--precision-op", "--loss-output"]


def probe_flags(p, rng, n):
    for i in range(n):
        args = ["train", MODEL, "--data", TRAIN, *LOSS, "--out", os.path.join(p.work, "out.onnx"),
                "--metrics", os.path.join(p.work, "m.json")]
        for _ in range(rng.choice([1, 1, 2, 3])):
            flag = rng.choice(FLAGS)
            args += [flag, rng.choice(BAD_VALUES)]
        if "--steps" not in args and "--epochs" not in args:
            args += ["--steps", "2"]
        if rng.random() < 0.1:
            args = args[:rng.randrange(2, len(args))]  # a flag without its value, or missing --out
        p.cli("flags", args)


def probe_views(p, rng, n):
    sys.path.insert(0, os.path.join(REPO, "bindings", "python"))
    os.environ["OTTER_LIBRARY"] = LIBRARY
    import otter
    from otter import _capi

    lib = _capi.lib
    s = otter.TrainingSession(MODEL, loss="cross_entropy", optimizer="sgd", lr=0.1, device="cpu")
    x = np.load(TRAIN)["x"][:32].copy()
    y = np.load(TRAIN)["y"][:32].copy()
    before = s.parameters
    names = (ctypes.c_char_p * 2)(b"x", b"label")
    dims = [0, 1, 2, 32, 64, 2**31, 2**32 + 1, 2**61, 2**62, -1, -(2**63)]
    p.counts["views"] = [0, 0]
    for i in range(n):
        views = (_capi.TensorView * 2)()
        shapes = []
        for k, arr in enumerate((x, y)):
            ndim = rng.choice([arr.ndim, arr.ndim, 0, 1, 3, 17, -1])
            shape = list(arr.shape) if ndim == arr.ndim else [rng.choice(dims) for _ in range(max(ndim, 0))]
            if rng.random() < 0.5 and shape:
                shape[rng.randrange(len(shape))] = rng.choice(dims)
            c_shape = (ctypes.c_int64 * max(len(shape), 1))(*[max(min(d, 2**63 - 1), -(2**63)) for d in shape])
            shapes.append(c_shape)
            data = arr.ctypes.data if rng.random() < 0.7 else None
            dtype = rng.choice([_capi.OTTER_DTYPE_FLOAT32, _capi.OTTER_DTYPE_INT64, 0, 99, _capi.OTTER_DTYPE_FLOAT16])
            if k == 0 and rng.random() < 0.5:
                dtype = _capi.OTTER_DTYPE_FLOAT32
            views[k] = _capi.TensorView(data, dtype, ndim, ctypes.cast(c_shape, _capi.c_int64_p) if rng.random() < 0.9 else None,
                                        _capi.OTTER_DEVICE_CPU if rng.random() < 0.9 else 2, 0)
        safe = all(views[k].data and views[k].ndim == a.ndim and list(shapes[k][:a.ndim]) == list(a.shape)
                   for k, a in enumerate((x, y)))
        if not safe:  # a view that does not describe its buffer must be refused before any read
            loss = ctypes.c_double()
            code = lib.otter_session_train_step(s._handle, 2, names, views, ctypes.byref(loss))
            p.counts["views"][0] += 1
            if code == 0 and not (views[0].dtype == _capi.OTTER_DTYPE_FLOAT32 and views[1].dtype == _capi.OTTER_DTYPE_INT64):
                p.counts["views"][1] += 1
                p.bad.append(("views", "accepted a bad view", [views[0].ndim, views[1].ndim], ""))
    after = s.parameters
    changed = any(not np.array_equal(before[k], after[k]) for k in before)
    if changed and s.stat("step") == 0:
        p.bad.append(("views", "weights changed by refused steps", [], ""))
    s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=1000, help="total cases (split over the categories)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="copy the inputs of failing cases here")
    ap.add_argument("--categories", default="model,npz,ckpt,flags,views")
    a = ap.parse_args()
    wanted = a.categories.split(",")
    rng = random.Random(a.seed)
    work = tempfile.mkdtemp(prefix="otter_probe_")
    p = Probe(work, a.keep)
    per = max(a.cases // len(wanted), 1)
    for name, fn in (("model", probe_models), ("npz", probe_npz), ("ckpt", probe_checkpoints), ("flags", probe_flags),
                     ("views", probe_views)):
        if name not in wanted:
            continue
        fn(p, rng, per)
        c = p.counts.get(name, [0, 0])
        print("probe %-6s %5d cases, %d problems" % (name, c[0], c[1]), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    for cat, problem, args, err in p.bad[:20]:
        print("PROBLEM [%s] %s: %s\n    %s" % (cat, problem, " ".join(map(str, args))[:300], err))
    total = sum(c[0] for c in p.counts.values())
    print("probe: %d cases, %d problems" % (total, len(p.bad)))
    return 1 if p.bad else 0


if __name__ == "__main__":
    sys.exit(main())
