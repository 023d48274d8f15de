"""Check an ONNX model exported by Otter after training against its original.

Usage:
    python3 tests/python/check_export.py ORIGINAL.onnx EXPORTED.onnx \
        INPUTS.npz EXPECTED.npz --trainable name1,name2,...

Checks, in order:
  1. EXPORTED.onnx passes onnx.checker.check_model.
  2. The graph structure is unchanged: nodes, graph inputs, graph outputs,
     opset_import and metadata_props are identical to ORIGINAL's.
  3. Both models have the same set of initializer names. Initializers NOT in
     --trainable are bit-identical (same dtype, shape and bytes of
     numpy_helper.to_array); trainable ones keep their dtype and shape.
  4. Running EXPORTED.onnx in onnxruntime (CPUExecutionProvider) on the arrays
     of INPUTS.npz (keys = graph input names) reproduces every graph output
     stored in EXPECTED.npz (keys = graph output names) to rtol 1e-5,
     atol 1e-6; the max abs difference of each output is printed.

Exits 0 when every check passes, 1 with a message for each failure otherwise
(2 on bad usage).
"""

import argparse
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

RTOL = 1e-5
ATOL = 1e-6


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original")
    parser.add_argument("exported")
    parser.add_argument("inputs", help="npz with one array per graph input")
    parser.add_argument("expected", help="npz with one array per graph output")
    parser.add_argument("--trainable", default="",
                        help="comma-separated names of trainable initializers")
    return parser.parse_args(argv)


def _one_line(proto, limit=400):
    text = " ".join(str(proto).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def check_structure(orig, exp, errors):
    fields = [
        ("graph nodes", list(orig.graph.node), list(exp.graph.node)),
        ("graph inputs", list(orig.graph.input), list(exp.graph.input)),
        ("graph outputs", list(orig.graph.output), list(exp.graph.output)),
        ("opset_import", list(orig.opset_import), list(exp.opset_import)),
        ("metadata_props", list(orig.metadata_props), list(exp.metadata_props)),
    ]
    for what, a, b in fields:
        if a == b:
            continue
        if len(a) != len(b):
            errors.append(f"{what} differ: {len(a)} in original vs {len(b)} in exported")
            continue
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                label = getattr(x, "name", "") or getattr(x, "key", "") or getattr(x, "domain", "")
                errors.append(f"{what} differ at index {i} ({label!r}):\n"
                              f"      original: {_one_line(x)}\n"
                              f"      exported: {_one_line(y)}")
                break


def check_initializers(orig, exp, trainable, errors):
    orig_inits = {t.name: t for t in orig.graph.initializer}
    exp_inits = {t.name: t for t in exp.graph.initializer}
    for name in sorted(trainable - set(orig_inits)):
        errors.append(f"--trainable names {name!r}, which is not an initializer of the original")
    missing = sorted(set(orig_inits) - set(exp_inits))
    extra = sorted(set(exp_inits) - set(orig_inits))
    if missing:
        errors.append(f"initializers missing from exported: {missing}")
    if extra:
        errors.append(f"initializers not in original: {extra}")
    if len(exp.graph.initializer) != len(exp_inits):
        errors.append("exported model has duplicate initializer names")

    n_frozen = n_trained = 0
    for name in sorted(set(orig_inits) & set(exp_inits)):
        a = numpy_helper.to_array(orig_inits[name])
        b = numpy_helper.to_array(exp_inits[name])
        if orig_inits[name].data_type != exp_inits[name].data_type or a.dtype != b.dtype:
            errors.append(f"initializer {name!r}: dtype changed "
                          f"{a.dtype} -> {b.dtype}")
            continue
        if a.shape != b.shape:
            errors.append(f"initializer {name!r}: shape changed {a.shape} -> {b.shape}")
            continue
        if name in trainable:
            n_trained += 1
            continue
        n_frozen += 1
        if a.tobytes() != b.tobytes():
            differs = np.count_nonzero(
                np.frombuffer(a.tobytes(), np.uint8) != np.frombuffer(b.tobytes(), np.uint8))
            errors.append(f"non-trainable initializer {name!r} changed "
                          f"({differs} differing bytes)")
    print(f"initializers: {n_frozen} frozen checked bit-identical, "
          f"{n_trained} trainable checked for dtype/shape")


def check_outputs(exp_path, exp, inputs_path, expected_path, errors):
    inputs = dict(np.load(inputs_path))
    expected = dict(np.load(expected_path))
    sess = ort.InferenceSession(exp_path, providers=["CPUExecutionProvider"])
    input_names = [i.name for i in sess.get_inputs()]
    missing = [n for n in input_names if n not in inputs]
    if missing:
        errors.append(f"INPUTS.npz lacks arrays for inputs {missing} (has {sorted(inputs)})")
        return
    unknown = sorted(set(inputs) - set(input_names))
    if unknown:  # labels and other arrays that are not model inputs are not fed
        print(f"note: ignoring arrays {unknown} that are not model inputs")
        inputs = {k: v for k, v in inputs.items() if k in input_names}
    output_names = [o.name for o in exp.graph.output]
    got = sess.run(output_names, inputs)
    for name, value in zip(output_names, got):
        if name not in expected:
            errors.append(f"EXPECTED.npz lacks output {name!r} (has {sorted(expected)})")
            continue
        want = expected[name]
        value = np.asarray(value)
        if value.shape != want.shape:
            errors.append(f"output {name!r}: shape {value.shape}, expected {want.shape}")
            continue
        if value.dtype != want.dtype:
            errors.append(f"output {name!r}: dtype {value.dtype}, expected {want.dtype}")
            continue
        if value.size == 0:
            print(f"output {name}: empty, max abs diff 0")
            continue
        if value.dtype == np.bool_:
            diff = float(np.count_nonzero(value != want))
        else:
            diff = float(np.max(np.abs(value.astype(np.float64) - want.astype(np.float64))))
        print(f"output {name}: shape {value.shape}, max abs diff {diff:.3e}")
        if not np.allclose(value, want, rtol=RTOL, atol=ATOL, equal_nan=True):
            errors.append(f"output {name!r}: mismatch beyond rtol={RTOL} atol={ATOL} "
                          f"(max abs diff {diff:.3e})")
    for name in sorted(set(expected) - set(output_names)):
        errors.append(f"EXPECTED.npz has {name!r}, which is not a model output {output_names}")


def main(argv):
    args = parse_args(argv)
    trainable = {n.strip() for n in args.trainable.split(",") if n.strip()}
    errors = []

    try:
        orig = onnx.load(args.original)
        exp = onnx.load(args.exported)
    except Exception as e:  # noqa: BLE001 - report any load failure
        print(f"FAIL: cannot load model: {e}")
        return 1

    try:
        onnx.checker.check_model(exp, full_check=False)
        print("onnx.checker: ok")
    except Exception as e:  # noqa: BLE001
        errors.append(f"onnx.checker rejects exported model: {e}")

    check_structure(orig, exp, errors)
    check_initializers(orig, exp, trainable, errors)
    try:
        check_outputs(args.exported, exp, args.inputs, args.expected, errors)
    except Exception as e:  # noqa: BLE001
        errors.append(f"running exported model in onnxruntime failed: {e}")

    if errors:
        print(f"FAIL: {len(errors)} problem(s) in {args.exported}:")
        for e in errors:
            print(f"  - {e}")
        return 1
    print(f"OK: {args.exported} matches {args.original}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
