#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/ (small files only).

Usage: python3 tests/fuzz/make_corpus.py [--otter PATH/TO/otter]

  fuzz_onnx_import  the digits MLP, small hand-built graphs (conv, attention-like, batchnorm,
                    shape arithmetic, dropout, external data) and a sample of the ONNX node tests
                    Otter's conformance suite uses; each also with 3 extra bytes (an unknown field)
                    so that both parities, i.e. both option sets of the target, are seeded
  fuzz_npz          .npz files written by NumPy: stored and deflated, every dtype, 0-d, empty,
                    Fortran order, big-endian, and a slice of examples/digits/test.npz
  fuzz_checkpoint   checkpoints of the digits MLP written by `otter train --checkpoint` (adamw,
                    as the target's session, plus sgd with momentum and fp16 loss scaling)
  fuzz_options      key/value lists, one per line
Paths are relative to this file; the `otter` CLI defaults to build/otter, build-asan/otter
or build-fuzz/otter (the first present). Existing corpus files are replaced.
"""
import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")
DIGITS = os.path.join(ROOT, "examples", "digits")
UNKNOWN_FIELD = b"\xa0\x06\x00"  # field 100, varint 0: ignored by ModelProto, flips the parity


def out_dir(target):
    d = os.path.join(CORPUS, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def write(d, name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="otter-fuzz")
    m.ir_version = 8
    return m


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def init(name, shape, seed=0):
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def small_models():
    ms = {}
    ms["linear"] = model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
                         [f32("x", ["N", 4])], [f32("y", ["N", 3])], [init("w", (3, 4)), init("b", (3,), 1)])
    ms["conv_pool"] = model(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Flatten", ["p"], ["y"])],
        [f32("x", ["N", 1, 4, 4])], [f32("y", ["N", 8])], [init("w", (2, 1, 3, 3))])
    ms["batchnorm_dropout"] = model(
        [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["n"]),
         helper.make_node("Dropout", ["n", "ratio"], ["d"]),
         helper.make_node("Sigmoid", ["d"], ["y"])],
        [f32("x", ["N", 3])], [f32("y", ["N", 3])],
        [init("s", (3,)), init("b", (3,), 1), numpy_helper.from_array(np.zeros(3, np.float32), "m"),
         numpy_helper.from_array(np.ones(3, np.float32), "v"), numpy_helper.from_array(np.array(0.1, np.float32), "ratio")])
    ms["shape_reshape"] = model(
        [helper.make_node("Shape", ["x"], ["s"]),
         helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
         helper.make_node("Concat", ["n", "m1"], ["ns"], axis=0),
         helper.make_node("MatMul", ["x", "w"], ["h"]),
         helper.make_node("Reshape", ["h", "ns"], ["y"])],
        [f32("x", ["N", 2, 3])], [f32("y", ["N", 8])],
        [numpy_helper.from_array(np.array([0], np.int64), "i0"), numpy_helper.from_array(np.array([-1], np.int64), "m1"),
         init("w", (3, 4))])
    ms["attention"] = model(
        [helper.make_node("LayerNormalization", ["x", "g", "b"], ["ln"], axis=-1),
         helper.make_node("MatMul", ["ln", "wq"], ["q"]),
         helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1]),
         helper.make_node("MatMul", ["q", "qt"], ["a"]),
         helper.make_node("Softmax", ["a"], ["p"], axis=-1),
         helper.make_node("MatMul", ["p", "q"], ["o"]),
         helper.make_node("ReduceMean", ["o", "ax"], ["y"], keepdims=0)],
        [f32("x", ["N", 5, 4])], [f32("y", ["N", 4])],
        [init("g", (4,)), init("b", (4,), 1), init("wq", (4, 4), 2), numpy_helper.from_array(np.array([1], np.int64), "ax")],
        opset=18)
    ms["embedding"] = model(
        [helper.make_node("Gather", ["e", "ids"], ["h"], axis=0),
         helper.make_node("ReduceSum", ["h", "ax"], ["y"], keepdims=0)],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 3])], [f32("y", ["N", 4])],
        [init("e", (10, 4)), numpy_helper.from_array(np.array([1], np.int64), "ax")])
    ext = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [f32("x", ["N", 2])], [f32("y", ["N", 2])],
                [init("w", (2, 2))])
    w = ext.graph.initializer[0]
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", "16")):
        w.external_data.add(key=k, value=v)
    ms["external_data"] = ext
    return ms


def onnx_import_corpus():
    d = out_dir("fuzz_onnx_import")
    blobs = {"digits_mlp": open(os.path.join(DIGITS, "mlp.onnx"), "rb").read()}
    for name, m in small_models().items():
        blobs[name] = m.SerializeToString()
    with tempfile.TemporaryDirectory() as tmp:
        gen = os.path.join(ROOT, "tests", "conformance", "generate_node_tests.py")
        subprocess.run([sys.executable, gen, tmp], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        names = sorted(os.listdir(tmp))
        for name in names[:: max(1, len(names) // 40)]:  # about 40, spread over the op families
            p = os.path.join(tmp, name, "model.onnx")
            if os.path.exists(p) and os.path.getsize(p) < 4096:
                blobs["node_" + name[len("test_"):] if name.startswith("test_") else name] = open(p, "rb").read()
    for name, b in blobs.items():
        write(d, name + ".onnx", b)
        write(d, name + "_p.onnx", b + UNKNOWN_FIELD)
    return d


def npz_bytes(arrays, compressed):
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def npz_corpus():
    d = out_dir("fuzz_npz")
    rng = np.random.default_rng(0)
    test = np.load(os.path.join(DIGITS, "test.npz"))
    sets = {
        "digits_slice": {"x": test["x"][:4], "y": test["y"][:4]},
        "dtypes": {"f32": rng.standard_normal((2, 3)).astype(np.float32), "f16": np.arange(4, dtype=np.float16),
                   "f64": np.linspace(0, 1, 3), "i64": np.arange(3, dtype=np.int64), "i32": np.arange(3, dtype=np.int32),
                   "i8": np.array([-1, 2], np.int8), "u8": np.array([1, 255], np.uint8),
                   "b": np.array([True, False, True])},
        "scalar_empty": {"s": np.array(3.5, np.float32), "e": np.zeros((0, 4), np.float32), "e1": np.zeros(0, np.int64)},
        "fortran": {"f": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))},
        "big_endian": {"be": np.arange(3, dtype=">f4")},
        "high_rank": {"r": np.zeros((1, 2, 1, 2, 1, 2), np.float32)},
        "unicode": {"u": np.array(["ab", "c"])},
    }
    for name, arrays in sets.items():
        write(d, name + ".npz", npz_bytes(arrays, False))
        write(d, name + "_z.npz", npz_bytes(arrays, True))
    # A bare .npy member with a long header, and a zip with one empty member.
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("empty.npy", b"")
        zf.writestr("x.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
                    + b" " * 58 + b"\n" + b"\x00" * 8)
    write(d, "handmade.npz", z.getvalue())
    return d


def find_otter(arg):
    for p in ([arg] if arg else []) + [os.path.join(ROOT, b, "otter") for b in ("build", "build-asan", "build-fuzz")]:
        if p and os.access(p, os.X_OK):
            return p
    sys.exit("make_corpus: no otter CLI found (build one, or pass --otter)")


def checkpoint_corpus(otter):
    d = out_dir("fuzz_checkpoint")
    with tempfile.TemporaryDirectory() as tmp:
        train = os.path.join(tmp, "train.npz")
        t = np.load(os.path.join(DIGITS, "train.npz"))
        np.savez(train, x=t["x"][:64], y=t["y"][:64])
        runs = {"adamw": ["--optimizer", "adamw", "--batch-size", "16"],
                "adamw_accum": ["--optimizer", "adamw", "--grad-accum", "2", "--batch-size", "8"],
                "sgd_momentum": ["--optimizer", "sgd", "--momentum", "0.9", "--batch-size", "16"],
                "adamw_fp16": ["--optimizer", "adamw", "--precision", "fp16", "--batch-size", "16"]}
        for name, extra in runs.items():
            ck = os.path.join(tmp, name + ".safetensors")
            subprocess.run([otter, "train", os.path.join(DIGITS, "mlp.onnx"), "--data", train, "--label", "y",
                            "--loss", "cross_entropy", "--steps", "2", "--checkpoint", ck,
                            "--out", os.path.join(tmp, name + ".onnx")] + extra,
                           check=True, stdout=subprocess.DEVNULL)
            shutil.copy(ck, os.path.join(d, name + ".safetensors"))
    return d


def options_corpus():
    d = out_dir("fuzz_options")
    seeds = {
        "ce_adamw": "loss\ncross_entropy\noptimizer\nadamw\nlr\n0.003\nweight_decay\n0.01",
        "sgd_nesterov": "loss\ncross_entropy\noptimizer\nsgd\nmomentum\n0.9\nnesterov\ntrue\nclip_norm\n1.0",
        "schedule": "loss\ncross_entropy\nschedule\ncosine\nwarmup_steps\n2\ntotal_steps\n10\ngrad_accum\n2",
        "fp16": "loss\ncross_entropy\nprecision\nfp16\nloss_scale\ndynamic\nloss_scale_init\n1024\nloss_scale_growth_interval\n1",
        "bf16_overrides": "loss\ncross_entropy\nprecision\nbf16\nprecision_op\nGemm=fp32,Relu=follow\nprecision_node\nfc1=fp32",
        "trainable": "loss\ncross_entropy\ntrainable\nfc1.weight,fc2.bias\nfreeze\nfc1.bias",
        "label_ignore": "loss\ncross_entropy\nlabel\ntarget\nignore_index\n-100\nreduction\nsum\nseed\n7",
        "mse": "loss\nmse\nloss_output\nlogits\nbatchnorm\nfrozen\ndevice\ncpu",
        "static_scale": "loss\nl1\nloss_scale\n128\nbeta1\n0.8\nbeta2\n0.99\neps\n1e-6\noptimizer\nadam",
        "nul_separated": "loss\0bce_with_logits\0optimizer\0adamw\0cuda_graphs\0off",
    }
    for name, text in seeds.items():
        write(d, name, text.encode())
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--otter", help="the otter CLI that writes the checkpoints")
    a = ap.parse_args()
    dirs = [onnx_import_corpus(), npz_corpus(), checkpoint_corpus(find_otter(a.otter)), options_corpus()]
    for dd in dirs:
        files = os.listdir(dd)
        print(f"{os.path.relpath(dd, ROOT)}: {len(files)} files, {sum(os.path.getsize(os.path.join(dd, f)) for f in files)} bytes")


if __name__ == "__main__":
    main()
