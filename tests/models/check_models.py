#!/usr/bin/env python3
"""Checks Otter against the PyTorch-exported fixtures of tests/models (no torch needed).

Usage:
    OTTER_LIBRARY=build/libotter.so python3 tests/models/check_models.py [--models cnn_eval,gpt_train]
        [--steps 30] [--precisions fp32,fp16,bf16] [--no-probe] [--verbose]

Needs numpy, onnx, onnxruntime and the Otter Python bindings (bindings/python, found
automatically); the library comes from OTTER_LIBRARY (default: build/libotter.so in this checkout).

For every fixture in manifest.json (see README.md):
  ref   (fixtures with a <name>_reference.npz) an fp32 session with plain SGD (momentum 0, weight
        decay 0) and the fixture's trainable initializers: the first train_step's loss must match
        PyTorch's to --tol (relative), and (p_before - p_after) / lr must match PyTorch's gradient
        of every trainable initializer to --tol, relative to the gradient's max-abs (for the
        gradients listed as zero_gradient in the manifest, exactly zero in exact arithmetic:
        relative to the largest gradient of the model). The references are float64. lr is
        --grad-lr (default 1024, a power of two: lr * g is exact, and the update is not lost in
        the rounding of p - lr * g as it is with lr = 1 when |g| << |p|).
  fwd   Otter's eval_step output on the reference batch vs PyTorch's (before any update); skipped
        for graphs whose eval and train forward differ (training-mode BatchNormalization).
  fp32/fp16/bf16  30 AdamW steps (lr --train-lr) on the reference batch in each precision: the
        loss must stay finite and fall below 0.9x the first step's.
  ort   the fp32 session after training: export(), reload in ONNX Runtime and compare its output
        with Otter's eval_step to --tol (max abs difference relative to the output's max-abs).
        Otter's eval_step runs Dropout off and BatchNormalization on running statistics, so ONNX
        Runtime runs the inference form of the file (Dropout -> Identity, BatchNormalization
        training_mode=0).
  probe (unless --no-probe) every node of the file run alone in Otter (eval_step) on the inputs
        ONNX Runtime computes for it on the reference batch: lists the ops Otter does not
        register ("op 'X' ... is not supported"), the ones without a kernel for the dtype, and
        the ones whose outputs differ from ONNX Runtime's (by more than --tol, relative).

Prints a table (and the probe's op lists) and exits 1 when any check fails, 0 otherwise.
"""

import argparse
import collections
import json
import math
import os
import re
import sys
import tempfile
import time
import traceback

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
os.environ.setdefault("OTTER_LIBRARY", os.path.join(REPO, "build", "libotter.so"))
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))
try:
    import otter  # noqa: E402
except Exception as e:  # noqa: BLE001 - no library: say which and stop
    sys.exit("cannot load the Otter library (OTTER_LIBRARY=%s): %s" % (os.environ["OTTER_LIBRARY"], e))

ort.set_default_logger_severity(3)  # no warnings about unused initializers

UNSUPPORTED_RE = re.compile(r"op '([^']+)' of domain (\S+) \(opset (\d+)\) is not supported")
NO_KERNEL_RE = re.compile(r"(\w+) node '[^']*': no (\w+) kernel for dtype (\w+)")


def short(exc):
    """A one-line description of an exception, naming the unsupported op when there is one."""
    msg = str(exc).strip().replace("\n", " ")
    m = UNSUPPORTED_RE.search(msg)
    if m:
        return "UNSUPPORTED op %s" % (m.group(1) if m.group(2) == "ai.onnx" else m.group(2) + "::" + m.group(1))
    m = NO_KERNEL_RE.search(msg)
    if m:
        return "NO KERNEL %s(%s)" % (m.group(1), m.group(3))
    status = getattr(exc, "status", type(exc).__name__)
    msg = msg.replace("otter_session_create_from_file: ", "").replace("otter_session_train_step: ", "")
    return "%s: %s" % (status.replace("OTTER_ERROR_", ""), msg[:160])


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(fa, fb) or not np.array_equal(a[~fa], b[~fb]):
        return math.inf  # NaN, or infinities (such as a -inf attention mask) that differ
    a, b = a[fa], b[fb]
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    diff = float(np.max(np.abs(a - b))) if b.size else 0.0
    return diff / scale if scale > 0 else diff


class Check:
    """One cell of the table: ok / FAIL / skipped, with a short text."""

    def __init__(self, ok, text):
        self.ok, self.text = ok, text

    def __str__(self):
        return self.text


def skipped(text="-"):
    return Check(None, text)


# ---- the fixtures ----------------------------------------------------------------------------


def load_manifest():
    with open(os.path.join(HERE, "manifest.json")) as f:
        return json.load(f)


def reference_for(name, entry, manifest):
    """The reference npz of a fixture; dropout variants borrow their batch from the twin."""
    ref = entry.get("reference")
    if ref:
        return dict(np.load(os.path.join(HERE, ref))), True
    twin = name.replace("_dropout", "")
    if twin in manifest and manifest[twin].get("reference"):
        return dict(np.load(os.path.join(HERE, manifest[twin]["reference"]))), False
    return None, False


def feeds_of(ref):
    return {k[len("input:"):]: v for k, v in ref.items() if k.startswith("input:")}


def has_training_bn(model):
    return any(n.op_type == "BatchNormalization" and any(a.name == "training_mode" and a.i == 1 for a in n.attribute)
               for n in model.graph.node)


def session(entry, path, **kw):
    opts = dict(loss=entry["loss"], loss_output=entry["loss_output"], label=entry["label"],
                trainable=entry["trainable"])
    opts.update(kw)
    return otter.TrainingSession(path, **opts)


# ---- checks ------------------------------------------------------------------------------------


def check_reference(entry, path, ref, args, onnx_model):
    """(loss, grads, fwd) checks of the first SGD step."""
    feeds = feeds_of(ref)
    s = session(entry, path, optimizer="sgd", lr=args.grad_lr, momentum=0.0, weight_decay=0.0, precision="fp32")
    with s:
        names = {p.name for p in s.parameter_info}
        want = {k[len("grad:"):] for k in ref if k.startswith("grad:")}
        if names != want:
            extra, missing = sorted(names - want), sorted(want - names)
            return (Check(False, "params differ: +%s -%s" % (extra[:3], missing[:3])), skipped(), skipped())
        fwd = skipped("n/a (BN train)")
        if not has_training_bn(onnx_model):
            out = s.eval_step(feeds)[entry["loss_output"]]
            e = rel_err(out, ref["output:" + entry["loss_output"]])
            fwd = Check(e <= args.tol, "%.1e" % e)
        before = s.parameters
        loss = s.train_step(feeds, label=ref["label"])
        after = s.parameters
    ref_loss = float(ref["loss"])
    le = abs(loss - ref_loss) / abs(ref_loss)
    loss_check = Check(le <= args.tol, "%.1e" % le)
    worst, worst_name = 0.0, ""
    gmax = max(float(np.max(np.abs(ref["grad:" + n]))) for n in want)
    zero = set(entry.get("zero_gradient", []))
    for name in sorted(want):
        g = (before[name].astype(np.float64) - after[name].astype(np.float64)) / args.grad_lr
        if name in zero:  # zero in exact arithmetic: measured against the model's largest gradient
            e = float(np.max(np.abs(g - ref["grad:" + name]))) / gmax
        else:
            e = rel_err(g, ref["grad:" + name])
        if args.verbose:
            print("      grad %-48s rel err %.2e" % (name, e))
        if not e <= worst:
            worst, worst_name = e, name
    grad_check = Check(worst <= args.tol, "%.1e" % worst + ("" if worst <= args.tol else " " + worst_name))
    return loss_check, grad_check, fwd


def check_training(entry, path, ref, precision, args):
    """30 AdamW steps on the reference batch; returns (check, session or None)."""
    feeds = feeds_of(ref)
    s = session(entry, path, optimizer="adamw", lr=args.train_lr, precision=precision)
    losses = []
    for _ in range(args.steps):
        losses.append(s.train_step(feeds, label=ref["label"]))
    finite = all(math.isfinite(l) for l in losses)
    ok = finite and losses[-1] < 0.9 * losses[0]
    text = "%.3g->%.3g" % (losses[0], losses[-1])
    if args.verbose:
        print("      %s losses: %s" % (precision, " ".join("%.4g" % l for l in losses)))
    return Check(ok, text), s


def inference_form(model):
    """The model with Dropout -> Identity and BatchNormalization in inference mode (one output),
    i.e. what Otter's eval_step computes."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes = []
    for n in m.graph.node:
        if n.op_type == "Dropout" and n.domain in ("", "ai.onnx"):
            nodes.append(helper.make_node("Identity", [n.input[0]], [n.output[0]], name=n.name))
            continue
        if n.op_type == "BatchNormalization" and n.domain in ("", "ai.onnx"):
            attrs = [a for a in n.attribute if a.name != "training_mode"]
            del n.attribute[:]
            n.attribute.extend(attrs)
            del n.output[1:]
        nodes.append(n)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m


def check_ort(entry, s, ref, args):
    feeds = feeds_of(ref)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trained.onnx")
        s.export(path)
        model = inference_form(onnx.load(path))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ort_out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    mine = s.eval_step(feeds)
    worst = 0.0
    for name, value in mine.items():
        if name in ort_out:
            worst = max(worst, rel_err(value, ort_out[name]))
    return Check(worst <= args.tol, "%.1e" % worst)


# ---- per-node probe --------------------------------------------------------------------------


FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)


def ort_intermediates(model, feeds):
    """Every value of the graph computed by ONNX Runtime on `feeds` (Dropout as Identity,
    BatchNormalization in inference mode, as Otter's eval_step)."""
    m = inference_form(model)
    have = {o.name for o in m.graph.output}
    inits = {i.name for i in m.graph.initializer}
    for n in m.graph.node:
        for o in n.output:
            if o and o not in have and o not in inits:
                m.graph.output.append(helper.make_empty_tensor_value_info(o))
                have.add(o)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(None, feeds)))
    for i in m.graph.initializer:
        values[i.name] = numpy_helper.to_array(i)
    values.update(feeds)
    return values


def probe_node(model, node, values):
    """Runs one node alone in Otter. Returns (status, detail): ok | unsupported | no-kernel |
    mismatch | error."""
    graph_inputs, inits, feeds = [], [], {}
    model_inits = {i.name for i in model.graph.initializer}
    for name in dict.fromkeys(i for i in node.input if i):
        v = values[name]
        if np.issubdtype(v.dtype, np.floating) and name not in model_inits:
            graph_inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape))
            feeds[name] = v
        else:
            inits.append(numpy_helper.from_array(v, name))
    # Otter wants a trainable parameter on the loss's path: a scalar one, through an Identity.
    inits.append(numpy_helper.from_array(np.zeros((), np.float32), "otter_probe_w"))
    nodes = [node, helper.make_node("Identity", ["otter_probe_w"], ["otter_probe_loss"], name="otter_probe")]
    outputs = [helper.make_tensor_value_info("otter_probe_loss", onnx.TensorProto.FLOAT, [])]
    outs = [o for o in node.output if o]
    for o in outs:
        v = values.get(o)
        if v is None:
            outputs.append(helper.make_empty_tensor_value_info(o))
        else:
            outputs.append(helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape))
    g = helper.make_graph(nodes, "probe", graph_inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    try:
        with otter.TrainingSession(m, loss="none", loss_output="otter_probe_loss", label=None) as s:
            got = s.eval_step(feeds)
    except otter.OtterError as e:
        text = short(e)
        if text.startswith("UNSUPPORTED"):
            return "unsupported", text
        if text.startswith("NO KERNEL"):
            return "no-kernel", text
        return "error", text
    worst = 0.0
    for o in outs:
        if o in got and o in values and not (node.op_type == "BatchNormalization" and len(node.output) > 1):
            exp = values[o]
            if np.issubdtype(exp.dtype, np.floating):
                worst = max(worst, rel_err(got[o], exp))
            elif got[o].shape != exp.shape or not np.array_equal(got[o], exp):
                worst = math.inf
    return ("ok", "") if worst <= 1e-4 else ("mismatch", "%.1e" % worst)


def probe(model, ref):
    """Per op type: counts of probe outcomes and the first message of each kind."""
    values = ort_intermediates(model, feeds_of(ref))
    result = collections.OrderedDict()
    for node in sorted(model.graph.node, key=lambda n: n.op_type):
        op = node.op_type if node.domain in ("", "ai.onnx") else node.domain + "::" + node.op_type
        status, detail = probe_node(model, node, values)
        r = result.setdefault(op, {"nodes": 0, "status": collections.Counter(), "detail": {}})
        r["nodes"] += 1
        r["status"][status] += 1
        r["detail"].setdefault(status, "%s (%s)" % (detail, node.name) if detail else node.name)
    return result


# ---- main ------------------------------------------------------------------------------------


def run_fixture(name, entry, manifest, args):
    path = os.path.join(HERE, entry["file"])
    onnx_model = onnx.load(path)
    ref, has_ref = reference_for(name, entry, manifest)
    row = collections.OrderedDict()
    row["load"] = skipped()
    for col in ("loss", "grads", "fwd"):
        row[col] = skipped()
    for p in args.precisions:
        row[p] = skipped()
    row["ort"] = skipped()
    try:
        session(entry, path, optimizer="sgd", precision="fp32").close()
        row["load"] = Check(True, "ok")
    except otter.OtterError as e:
        row["load"] = Check(False, short(e))
        return row
    if has_ref:
        try:
            row["loss"], row["grads"], row["fwd"] = check_reference(entry, path, ref, args, onnx_model)
        except otter.OtterError as e:
            row["loss"] = Check(False, short(e))
    trained = None
    if ref is not None:
        for p in args.precisions:
            try:
                row[p], s = check_training(entry, path, ref, p, args)
                if p == "fp32":
                    trained = s
                else:
                    s.close()
            except otter.OtterError as e:
                row[p] = Check(False, short(e))
    if trained is not None:
        try:
            row["ort"] = check_ort(entry, trained, ref, args)
        except (otter.OtterError, Exception) as e:  # noqa: BLE001 - ORT errors too
            row["ort"] = Check(False, short(e))
        trained.close()
    return row


def print_table(rows):
    cols = list(next(iter(rows.values())).keys())
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows.values())) for c in cols}
    # keep the table readable: long error texts go below it
    notes = []
    for name, row in rows.items():
        for c in cols:
            if len(str(row[c])) > 28:
                notes.append("%s %s: %s" % (name, c, row[c]))
    wide = {c: min(widths[c], 28) for c in cols}
    namew = max(len(n) for n in rows)
    head = "%-*s  %s  result" % (namew, "model", "  ".join("%-*s" % (wide[c], c) for c in cols))
    print(head)
    print("-" * len(head))
    for name, row in rows.items():
        cells = []
        for c in cols:
            t = str(row[c])
            if len(t) > 28:
                t = t[:25] + "..."
            cells.append("%-*s" % (wide[c], t))
        ok = all(row[c].ok is not False for c in cols)
        print("%-*s  %s  %s" % (namew, name, "  ".join(cells), "PASS" if ok else "FAIL"))
    if notes:
        print()
        for n in notes:
            print("  " + n)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated fixture names (default: all)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--precisions", default="fp32,fp16,bf16")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--grad-lr", type=float, default=1024.0)
    ap.add_argument("--train-lr", type=float, default=3e-3)
    ap.add_argument("--no-probe", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    args.precisions = [p for p in args.precisions.split(",") if p]
    manifest = load_manifest()
    names = [n for n in manifest if not args.models or n in args.models.split(",")]
    unknown = set(args.models.split(",")) - set(manifest) - {""}
    if unknown:
        print("unknown fixtures: %s" % ", ".join(sorted(unknown)))
        return 2
    print("Otter %s (%s), onnxruntime %s, onnx %s" % (otter.version(), otter.library_path, ort.__version__,
                                                      onnx.__version__))
    rows, probes = collections.OrderedDict(), collections.OrderedDict()
    for name in names:
        t0 = time.time()
        try:
            rows[name] = run_fixture(name, manifest[name], manifest, args)
        except Exception as e:  # noqa: BLE001 - a bug in a check must not hide the others
            traceback.print_exc()
            rows[name] = collections.OrderedDict(load=Check(False, "check crashed: %s" % e))
        if not args.no_probe:
            ref, _ = reference_for(name, manifest[name], manifest)
            if ref is not None:
                try:
                    probes[name] = probe(onnx.load(os.path.join(HERE, manifest[name]["file"])), ref)
                except Exception as e:  # noqa: BLE001
                    probes[name] = "probe crashed: %s" % e
        print("  %-22s checked in %.1f s" % (name, time.time() - t0), flush=True)
    # rows that crashed early lack columns: fill them
    cols = max(rows.values(), key=len).keys()
    for row in rows.values():
        for c in cols:
            row.setdefault(c, skipped())
    print()
    print_table(rows)
    failed = [n for n, row in rows.items() if any(c.ok is False for c in row.values())]
    if probes:
        print()
        print("Per-node probe (each node alone in Otter on ONNX Runtime's inputs for it):")
        for name, res in probes.items():
            if isinstance(res, str):
                print("  %s: %s" % (name, res))
                continue
            bad = collections.OrderedDict()
            for op, r in res.items():
                for status in ("unsupported", "no-kernel", "mismatch", "error"):
                    if r["status"][status]:
                        bad.setdefault(status, []).append("%s (%d/%d nodes: %s)" % (
                            op, r["status"][status], r["nodes"], r["detail"][status]))
            total = sum(r["nodes"] for r in res.values())
            okc = sum(r["status"]["ok"] for r in res.values())
            print("  %s: %d/%d nodes ok" % (name, okc, total))
            for status, items in bad.items():
                label = {"unsupported": "not registered", "no-kernel": "no kernel", "mismatch": "output differs",
                         "error": "other error"}[status]
                if status == "unsupported":
                    print("    %s: %s" % (label, ", ".join(sorted({i.split(" ")[0] for i in items}))))
                else:
                    for i in items:
                        print("    %s: %s" % (label, i))
    print()
    print("%d passed, %d failed" % (len(rows) - len(failed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
