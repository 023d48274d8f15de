"""Write the subset of ONNX backend node test cases that Otter's kernels cover.

Usage:
    python3 tests/conformance/generate_node_tests.py OUTDIR

Collects onnx.backend.test.case.node.collect_testcases() from the installed
onnx package and writes, in the same layout as the official test data
(onnx/backend/test/cmd_tools.py generate_data, minus the "node/" level):

    OUTDIR/<test_name>/model.onnx
    OUTDIR/<test_name>/test_data_set_K/input_J.pb    (serialized TensorProto)
    OUTDIR/<test_name>/test_data_set_K/output_J.pb   (serialized TensorProto)

but only for the tests where
  * every node of the graph (and of any nested subgraph) is in the default
    ONNX domain (any op: the C++ runner skips ops Otter lacks), and the model has no
    local functions;
  * every graph input and output is a plain tensor whose element type is in
    SUPPORTED_DTYPES, and so is every array of the test data;
  * the model imports the default domain at opset >= MIN_OPSET.
The ONNX training ops (domain ai.onnx.preview.training: Adam, Adagrad, Momentum) are node tests
too, and the two model tests of the Gradient op (test_gradient_of_add, test_gradient_of_add_and_mul,
opset 12 Add/Mul, which Otter reads as opset 13) are written with them.
"*_expanded" tests (function bodies expanded into primitive ops) are kept
when they pass the same filter.

Each written test directory is first removed if it already exists; other
entries of OUTDIR are left alone. Prints how many tests were written.
"""

import os
import shutil
import sys
import warnings

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper


SUPPORTED_DTYPES = {
    TensorProto.FLOAT: np.dtype(np.float32),
    TensorProto.DOUBLE: np.dtype(np.float64),
    TensorProto.INT64: np.dtype(np.int64),
    TensorProto.INT32: np.dtype(np.int32),
    TensorProto.INT8: np.dtype(np.int8),
    TensorProto.UINT8: np.dtype(np.uint8),
    TensorProto.BOOL: np.dtype(np.bool_),
}

MIN_OPSET = 13
DEFAULT_DOMAINS = ("", "ai.onnx")
TRAINING_DOMAIN = "ai.onnx.preview.training"
GRADIENT_MODEL_TESTS = ("test_gradient_of_add", "test_gradient_of_add_and_mul")


def iter_graphs(graph):
    """Yields graph and every subgraph nested in its node attributes."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from iter_graphs(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from iter_graphs(g)


def default_opset(model):
    versions = [o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS]
    return max(versions) if versions else None


def value_info_ok(vi):
    t = vi.type
    return t.HasField("tensor_type") and t.tensor_type.elem_type in SUPPORTED_DTYPES


def data_ok(value, value_info):
    elem_type = value_info.type.tensor_type.elem_type
    if isinstance(value, TensorProto):
        return value.data_type == elem_type
    if isinstance(value, np.ndarray):
        return value.dtype == SUPPORTED_DTYPES[elem_type]
    if isinstance(value, (np.generic, bool, int, float)):
        return np.asarray(value).dtype == SUPPORTED_DTYPES[elem_type]
    return False


def selected(case):
    """Returns None when the case is kept, or a short reason for skipping it."""
    if case.model is None or not case.data_sets:
        return "no model or data"
    if case.kind != "node" and case.name not in GRADIENT_MODEL_TESTS:
        return "not a node test"
    model = case.model
    opset = default_opset(model)
    uses_default = any(n.domain in DEFAULT_DOMAINS for g in iter_graphs(model.graph) for n in g.node)
    if uses_default and case.name not in GRADIENT_MODEL_TESTS and (opset is None or opset < MIN_OPSET):
        return f"opset {opset}"
    if len(model.functions) > 0:
        return "local functions"
    for graph in iter_graphs(model.graph):
        for node in graph.node:
            if node.domain not in DEFAULT_DOMAINS and node.domain != TRAINING_DOMAIN:
                return f"domain {node.domain}"
            # Every op is kept: the C++ runner skips the models whose ops Otter does not
            # register, so a new op is covered as soon as it exists.
    graph = model.graph
    for vi in list(graph.input) + list(graph.output):
        if not value_info_ok(vi):
            return f"io type of {vi.name}"
    for inputs, outputs in case.data_sets:
        if len(inputs) > len(graph.input) or len(outputs) > len(graph.output):
            return "data/io count mismatch"
        for value, vi in zip(inputs, graph.input):
            if not data_ok(value, vi):
                return f"input data dtype of {vi.name}"
        for value, vi in zip(outputs, graph.output):
            if not data_ok(value, vi):
                return f"output data dtype of {vi.name}"
    return None


def to_tensor_proto(value, name):
    if isinstance(value, TensorProto):
        return value
    return numpy_helper.from_array(np.asarray(value), name)


def write_case(case, outdir):
    case_dir = os.path.join(outdir, case.name)
    if os.path.exists(case_dir):
        shutil.rmtree(case_dir)
    os.makedirs(case_dir)
    with open(os.path.join(case_dir, "model.onnx"), "wb") as f:
        f.write(case.model.SerializeToString())
    graph = case.model.graph
    for k, (inputs, outputs) in enumerate(case.data_sets):
        data_dir = os.path.join(case_dir, f"test_data_set_{k}")
        os.makedirs(data_dir)
        for j, value in enumerate(inputs):
            with open(os.path.join(data_dir, f"input_{j}.pb"), "wb") as f:
                f.write(to_tensor_proto(value, graph.input[j].name).SerializeToString())
        for j, value in enumerate(outputs):
            with open(os.path.join(data_dir, f"output_{j}.pb"), "wb") as f:
                f.write(to_tensor_proto(value, graph.output[j].name).SerializeToString())


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: generate_node_tests.py OUTDIR\n")
        return 2
    outdir = argv[1]
    os.makedirs(outdir, exist_ok=True)

    # The test-case modules compute expected outputs with NumPy at import
    # time and emit overflow/divide warnings that are irrelevant here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            from onnx.backend.test.case.node import collect_testcases
            from onnx.backend.test.case.model import collect_testcases as collect_model_testcases
            cases = collect_testcases()
            cases += [c for c in collect_model_testcases() if c.name in GRADIENT_MODEL_TESTS]

    written = 0
    for case in cases:
        if selected(case) is None:
            write_case(case, outdir)
            written += 1
    print(f"wrote {written} of {len(cases)} ONNX node tests (onnx {onnx.__version__}) to {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
