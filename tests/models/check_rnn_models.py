#!/usr/bin/env python3
"""Trains the recurrent fixtures of tests/models (lstm_train.onnx, gru_train.onnx, made by
make_rnn_models.py) with Otter and compares with PyTorch's float64 references (no torch needed).

Usage:
    OTTER_LIBRARY=build/libotter.so python3 tests/models/check_rnn_models.py [--models lstm,gru]
        [--tol 1e-4] [--verbose]

Needs numpy, onnx and the Otter Python bindings (bindings/python, found automatically). The
LSTM/GRU nodes are expanded by Otter at import into primitive ops (onnx_import/expand_rnn.cpp).

Per model (loss: cross_entropy of output "logits" against "label"; plain SGD, momentum 0, weight
decay 0; every floating initializer trainable):
  fp32 loss   the first train_step's loss vs PyTorch's, relative error <= --tol
  fp32 grads  (p_before - p_after) / lr with lr = 1024 (a power of two: lr * g is exact) vs
              PyTorch's gradient of every initializer: max |diff| / max |reference| <= --tol per tensor
  fp32 traj   5 SGD steps at the reference's lr on the same batch: each step's loss (relative)
              and every final weight (per tensor, as above) <= --tol
  fp16, bf16  the same 5 steps in that precision (dynamic loss scaling for fp16): the first loss
              and each step's loss within --loose-tol (2e-2) relative, the final weights within
              --loose-tol per tensor (loose: the forward runs in 16-bit)
Prints one line per check and exits 1 when any check fails.
"""

import argparse
import math
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
os.environ.setdefault("OTTER_LIBRARY", os.path.join(REPO, "build", "libotter.so"))
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))
try:
    import otter  # noqa: E402
except Exception as e:  # noqa: BLE001 - no library: say which and stop
    sys.exit("cannot load the Otter library (OTTER_LIBRARY=%s): %s" % (os.environ["OTTER_LIBRARY"], e))

GRAD_LR = 1024.0


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return math.inf
    scale = float(np.max(np.abs(b)))
    diff = float(np.max(np.abs(a - b)))
    return diff / scale if scale > 0 else diff


def float_initializers(path):
    m = onnx.load(path)
    return [i.name for i in m.graph.initializer if numpy_helper.to_array(i).dtype == np.float32]


def session(path, trainable, lr, precision):
    return otter.TrainingSession(path, loss="cross_entropy", loss_output="logits", label="label", optimizer="sgd",
                                 lr=lr, momentum=0.0, weight_decay=0.0, trainable=trainable, precision=precision)


class Report:
    def __init__(self, verbose):
        self.failed, self.verbose = 0, verbose

    def check(self, name, err, tol, detail=""):
        ok = err <= tol
        self.failed += not ok
        print("  %-4s %-34s %.2e (tol %.0e)%s" % ("ok" if ok else "FAIL", name, err, tol, " " + detail if detail else ""))


def check_model(kind, args, report):
    path = os.path.join(HERE, "%s_train.onnx" % kind)
    ref = dict(np.load(os.path.join(HERE, "%s_train_reference.npz" % kind)))
    feeds = {"x": ref["input:x"]}
    label = ref["label"]
    names = float_initializers(path)
    print("%s (%s)" % (kind, os.path.basename(path)))

    # ---- fp32: the first step's loss and gradients ----
    with session(path, names, GRAD_LR, "fp32") as s:
        have = {p.name for p in s.parameter_info}
        if have != set(names):
            report.check("parameters", math.inf, 0, "Otter %s vs %s" % (sorted(have), sorted(names)))
            return
        before = s.parameters
        loss = s.train_step(feeds, label=label)
        after = s.parameters
    report.check("fp32 first loss", abs(loss - float(ref["loss"])) / abs(float(ref["loss"])), args.tol,
                 "(%.6f vs %.6f)" % (loss, float(ref["loss"])))
    worst, worst_name = 0.0, ""
    for n in names:
        g = (before[n].astype(np.float64) - after[n].astype(np.float64)) / GRAD_LR
        e = rel_err(g, ref["grad:" + n])
        if args.verbose:
            print("       grad %-40s %.2e" % (n, e))
        if not e <= worst:
            worst, worst_name = e, n
    report.check("fp32 gradients (worst tensor)", worst, args.tol, worst_name)

    # ---- the 5-step SGD trajectory, per precision ----
    lr = float(ref["sgd_lr"])
    want = ref["traj_loss"]
    for precision in args.precisions:
        tol = args.tol if precision == "fp32" else args.loose_tol
        with session(path, names, lr, precision) as s:
            losses = [s.train_step(feeds, label=label) for _ in range(len(want))]
            final = s.parameters
        if args.verbose:
            print("       %s losses %s (reference %s)" % (precision, " ".join("%.6f" % v for v in losses),
                                                          " ".join("%.6f" % v for v in want)))
        le = max(abs(a - b) / abs(b) if math.isfinite(a) else math.inf for a, b in zip(losses, want))
        report.check("%s %d-step losses" % (precision, len(want)), le, tol)
        worst, worst_name = 0.0, ""
        for n in names:
            e = rel_err(final[n], ref["final:" + n])
            if not e <= worst:
                worst, worst_name = e, n
        report.check("%s final weights (worst tensor)" % precision, worst, tol, worst_name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="lstm,gru")
    ap.add_argument("--precisions", default="fp32,fp16,bf16")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--loose-tol", type=float, default=2e-2)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    args.precisions = args.precisions.split(",")
    print("Otter %s (%s)" % (otter.version(), otter.library_path))
    report = Report(args.verbose)
    for kind in args.models.split(","):
        try:
            check_model(kind, args, report)
        except otter.OtterError as e:
            report.check("%s: %s" % (kind, str(e).replace("\n", " ")[:200]), math.inf, 0)
    print("%s: %d check(s) failed" % ("FAIL" if report.failed else "OK", report.failed))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
