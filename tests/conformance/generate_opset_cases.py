"""Write extra node-test cases for older opset forms, with outputs from ONNX Runtime.

Usage:
    python3 tests/conformance/generate_opset_cases.py OUTDIR

The installed onnx package's node tests (tests/conformance/generate_node_tests.py)
mostly exercise the newest form of each op. These cases cover the forms of
opsets 13, 17, 18 and 21 that Otter accepts and normalises: ReduceMean with an
`axes` attribute (moved to an input at 18), ReduceSum / Squeeze / Unsqueeze with
an axes input, Split with a `split` input and with `num_outputs` (18+, uneven),
Softmax / LogSoftmax along axis 1 of a 3-D input, Gemm with transA and a
broadcast C, batched-broadcast MatMul, Gather along axis 1 with negative
indices and Slice with negative steps.

Layout (the same as the ONNX backend node tests, read by
tests/conformance/test_node_conformance.cpp):

    OUTDIR/otter_opset<N>_<what>/model.onnx
    OUTDIR/otter_opset<N>_<what>/test_data_set_0/input_J.pb   (serialized TensorProto)
    OUTDIR/otter_opset<N>_<what>/test_data_set_0/output_J.pb

Every graph input is a floating tensor; integer operands (axes, split sizes,
indices, slice bounds) are initializers or Constant nodes, as the conformance
runner binds only floating inputs by shape. Each model is checked with
onnx.checker (full check, with shape inference) before its outputs are computed
with onnxruntime's CPU provider. The data are drawn from a fixed seed, so the
output is the same on every run. Each case directory is replaced if it exists;
other entries of OUTDIR are left alone.
"""

import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# IR version to write for each opset (the one released with it, so that older runtimes load it).
IR_VERSION = {13: 7, 17: 8, 18: 8, 21: 10}


class Case:
    """One single-node-ish model: float inputs (name -> array), integer constants, nodes."""

    def __init__(self, opset, what):
        self.opset = opset
        self.name = f"otter_opset{opset}_{what}"
        self.inputs = []        # (name, array)
        self.initializers = []  # TensorProto
        self.nodes = []
        self.outputs = []       # names

    def input(self, name, array):
        self.inputs.append((name, np.asarray(array, dtype=np.float32)))
        return name

    def init_ints(self, name, values):
        """An int64 initializer."""
        self.initializers.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name

    def const_ints(self, name, values):
        """An int64 Constant node (the other way models carry integer operands)."""
        tensor = numpy_helper.from_array(np.asarray(values, dtype=np.int64), name + "_value")
        self.nodes.append(helper.make_node("Constant", [], [name], name=name + "_const", value=tensor))
        return name

    def node(self, op, inputs, outputs, **attrs):
        self.nodes.append(helper.make_node(op, inputs, outputs, name=f"{op.lower()}_{len(self.nodes)}", **attrs))
        return outputs

    def output(self, *names):
        self.outputs.extend(names)

    def model(self, output_shapes=None):
        """The model; outputs get the given shapes (None: rank unknown, for a first run)."""
        graph_inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape) for n, a in self.inputs]
        shapes = output_shapes or [None] * len(self.outputs)
        graph_outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in zip(self.outputs, shapes)]
        graph = helper.make_graph(self.nodes, self.name, graph_inputs, graph_outputs, self.initializers)
        model = helper.make_model(graph, producer_name="otter generate_opset_cases",
                                  opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = IR_VERSION[self.opset]
        return model


def rng_array(rng, shape, low=-2.0, high=2.0):
    return rng.uniform(low, high, size=shape).astype(np.float32)


def build_cases():
    rng = np.random.default_rng(20240613)
    cases = []

    def new(opset, what):
        c = Case(opset, what)
        cases.append(c)
        return c

    # ---- reductions ----
    for opset in (13, 17):
        for keepdims in (0, 1):
            c = new(opset, f"reducemean_axes_attr_keepdims{keepdims}")
            c.input("x", rng_array(rng, (3, 4, 5)))
            c.output(*c.node("ReduceMean", ["x"], ["y"], axes=[0, -1], keepdims=keepdims))
        c = new(opset, "reducemean_no_axes_attr")
        c.input("x", rng_array(rng, (2, 3, 4)))
        c.output(*c.node("ReduceMean", ["x"], ["y"], keepdims=0))
    for opset in (18, 21):
        c = new(opset, "reducemean_axes_input")
        c.input("x", rng_array(rng, (3, 4, 5)))
        c.output(*c.node("ReduceMean", ["x", c.init_ints("axes", [1])], ["y"], keepdims=0))
    for opset in (13, 17, 21):
        for keepdims in (0, 1):
            c = new(opset, f"reducesum_axes_input_keepdims{keepdims}")
            c.input("x", rng_array(rng, (3, 4, 5)))
            c.output(*c.node("ReduceSum", ["x", c.init_ints("axes", [-1, 0])], ["y"], keepdims=keepdims))
    c = new(13, "reducesum_axes_constant_node")
    c.input("x", rng_array(rng, (2, 3, 4)))
    c.output(*c.node("ReduceSum", ["x", c.const_ints("axes", [1])], ["y"], keepdims=1))
    c = new(13, "reducesum_empty_axes_noop")
    c.input("x", rng_array(rng, (2, 3)))
    c.output(*c.node("ReduceSum", ["x", c.init_ints("axes", [])], ["y"], keepdims=1, noop_with_empty_axes=1))

    # ---- Squeeze / Unsqueeze ----
    for opset in (13, 21):
        c = new(opset, "squeeze_axes_input")
        c.input("x", rng_array(rng, (2, 1, 3, 1)))
        c.output(*c.node("Squeeze", ["x", c.init_ints("axes", [1, -1])], ["y"]))
        c = new(opset, "squeeze_no_axes")
        c.input("x", rng_array(rng, (1, 3, 1, 2)))
        c.output(*c.node("Squeeze", ["x"], ["y"]))
        c = new(opset, "unsqueeze_axes_input")
        c.input("x", rng_array(rng, (2, 3)))
        c.output(*c.node("Unsqueeze", ["x", c.const_ints("axes", [0, -1])], ["y"]))
        c = new(opset, "unsqueeze_axes_unsorted")
        c.input("x", rng_array(rng, (2, 3)))
        c.output(*c.node("Unsqueeze", ["x", c.init_ints("axes", [3, 1])], ["y"]))

    # ---- Split ----
    for opset in (13, 17):
        c = new(opset, "split_split_input")
        c.input("x", rng_array(rng, (2, 6)))
        c.output(*c.node("Split", ["x", c.init_ints("split", [1, 2, 3])], ["a", "b", "c"], axis=1))
        c = new(opset, "split_equal_no_input")
        c.input("x", rng_array(rng, (6, 2)))
        c.output(*c.node("Split", ["x"], ["a", "b", "c"], axis=0))
    for opset in (18, 21):
        c = new(opset, "split_num_outputs_uneven")
        c.input("x", rng_array(rng, (7, 2)))
        c.output(*c.node("Split", ["x"], ["a", "b", "c"], axis=0, num_outputs=3))
        c = new(opset, "split_num_outputs_uneven_neg_axis")
        c.input("x", rng_array(rng, (2, 5)))
        c.output(*c.node("Split", ["x"], ["a", "b"], axis=-1, num_outputs=2))
        c = new(opset, "split_split_input")
        c.input("x", rng_array(rng, (5, 3)))
        c.output(*c.node("Split", ["x", c.const_ints("split", [4, 1])], ["a", "b"], axis=0))

    # ---- Softmax / LogSoftmax ----
    for opset in (13, 17, 21):
        for op in ("Softmax", "LogSoftmax"):
            c = new(opset, f"{op.lower()}_axis1_3d")
            c.input("x", rng_array(rng, (2, 3, 4), -5, 5))
            c.output(*c.node(op, ["x"], ["y"], axis=1))
    c = new(13, "softmax_default_axis_3d")
    c.input("x", rng_array(rng, (2, 3, 4), -5, 5))
    c.output(*c.node("Softmax", ["x"], ["y"]))

    # ---- Gemm ----
    for opset in (13, 17, 21):
        c = new(opset, "gemm_transA_broadcast_c_row")
        c.input("a", rng_array(rng, (4, 3)))
        c.input("b", rng_array(rng, (4, 5)))
        c.input("c", rng_array(rng, (5,)))
        c.output(*c.node("Gemm", ["a", "b", "c"], ["y"], transA=1, alpha=0.5, beta=2.0))
        c = new(opset, "gemm_transA_transB_broadcast_c_col")
        c.input("a", rng_array(rng, (4, 3)))
        c.input("b", rng_array(rng, (5, 4)))
        c.input("c", rng_array(rng, (3, 1)))
        c.output(*c.node("Gemm", ["a", "b", "c"], ["y"], transA=1, transB=1))
    c = new(13, "gemm_transA_scalar_c")
    c.input("a", rng_array(rng, (2, 3)))
    c.input("b", rng_array(rng, (2, 4)))
    c.input("c", rng_array(rng, ()))
    c.output(*c.node("Gemm", ["a", "b", "c"], ["y"], transA=1, beta=-1.0))

    # ---- MatMul ----
    for opset in (13, 21):
        c = new(opset, "matmul_batched_broadcast")
        c.input("a", rng_array(rng, (2, 1, 3, 4)))
        c.input("b", rng_array(rng, (5, 4, 6)))
        c.output(*c.node("MatMul", ["a", "b"], ["y"]))
        c = new(opset, "matmul_vector_times_batched")
        c.input("a", rng_array(rng, (4,)))
        c.input("b", rng_array(rng, (2, 4, 3)))
        c.output(*c.node("MatMul", ["a", "b"], ["y"]))
        c = new(opset, "matmul_batched_times_vector")
        c.input("a", rng_array(rng, (2, 3, 4)))
        c.input("b", rng_array(rng, (4,)))
        c.output(*c.node("MatMul", ["a", "b"], ["y"]))

    # ---- Gather ----
    for opset in (13, 21):
        c = new(opset, "gather_axis1_negative_indices")
        c.input("x", rng_array(rng, (3, 5)))
        c.output(*c.node("Gather", ["x", c.init_ints("indices", [[-1, 0], [2, -3]])], ["y"], axis=1))
        c = new(opset, "gather_axis_neg1_scalar_index")
        c.input("x", rng_array(rng, (2, 3, 4)))
        c.output(*c.node("Gather", ["x", c.const_ints("indices", -2)], ["y"], axis=-1))

    # ---- Slice ----
    for opset in (13, 21):
        c = new(opset, "slice_negative_steps")
        c.input("x", rng_array(rng, (4, 6)))
        c.output(*c.node("Slice", ["x", c.init_ints("starts", [3, -1]), c.init_ints("ends", [0, -7]),
                                   c.init_ints("axes", [0, 1]), c.init_ints("steps", [-1, -2])], ["y"]))
        c = new(opset, "slice_reverse_to_start")
        c.input("x", rng_array(rng, (5, 3)))
        c.output(*c.node("Slice", ["x", c.init_ints("starts", [-1]), c.init_ints("ends", [np.iinfo(np.int64).min]),
                                   c.init_ints("axes", [0]), c.init_ints("steps", [-1])], ["y"]))
        c = new(opset, "slice_negative_axes_big_step")
        c.input("x", rng_array(rng, (3, 7)))
        c.output(*c.node("Slice", ["x", c.const_ints("starts", [6]), c.const_ints("ends", [-100]),
                                   c.const_ints("axes", [-1]), c.const_ints("steps", [-3])], ["y"]))
    return cases


def run_ort(ort, model, case):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(case.outputs, {name: array for name, array in case.inputs})


def write_case(case, outdir, ort):
    # A first run gives the output shapes, which the checker wants declared; the written model is
    # then checked (with onnx's shape inference, which must agree) and run again.
    shapes = [np.asarray(r).shape for r in run_ort(ort, case.model(), case)]
    model = case.model(shapes)
    onnx.checker.check_model(model, full_check=True)
    results = run_ort(ort, model, case)

    case_dir = os.path.join(outdir, case.name)
    if os.path.exists(case_dir):
        shutil.rmtree(case_dir)
    data_dir = os.path.join(case_dir, "test_data_set_0")
    os.makedirs(data_dir)
    with open(os.path.join(case_dir, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    for j, (name, array) in enumerate(case.inputs):
        with open(os.path.join(data_dir, f"input_{j}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(array, name).SerializeToString())
    for j, (name, array) in enumerate(zip(case.outputs, results)):
        with open(os.path.join(data_dir, f"output_{j}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(np.asarray(array), name).SerializeToString())


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: generate_opset_cases.py OUTDIR\n")
        return 2
    import onnxruntime as ort

    outdir = argv[1]
    os.makedirs(outdir, exist_ok=True)
    cases = build_cases()
    names = [c.name for c in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SystemExit(f"error: duplicate case names {duplicates}")
    for case in cases:
        try:
            write_case(case, outdir, ort)
        except Exception as e:  # name the case, then fail the whole run
            raise SystemExit(f"error: case {case.name}: {e}") from e
    print(f"wrote {len(cases)} older-opset cases (onnx {onnx.__version__}, onnxruntime {ort.__version__}) to {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
