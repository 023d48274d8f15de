"""Write extra LSTM / GRU / RNN node-test cases, with outputs from ONNX Runtime.

Usage:
    python3 tests/conformance/generate_rnn_cases.py OUTDIR

The ONNX backend node tests (test_lstm_*, test_gru_*, test_simple_rnn_*, test_rnn_seq_length)
cover the default attributes, biases, peepholes, reverse/bidirectional and layout 1, but not
per-batch sequence_lens shorter than the sequence, clip, initial states with bidirectional,
input_forget, linear_before_reset=1 or the other activations. These cases do. Their outputs come
from onnxruntime's CPU provider: onnx.reference.ReferenceEvaluator's LSTM/GRU/RNN ignore
sequence_lens, clip and the activation attributes (see onnx/reference/ops/op_lstm.py), so they
cannot be the reference here. Where an activation takes alpha/beta the values are given
explicitly (onnxruntime and the ONNX operators differ on some defaults).

Layout: the same as generate_opset_cases.py (read by test_node_conformance.cpp):

    OUTDIR/otter_<op>_<what>/model.onnx
    OUTDIR/otter_<op>_<what>/test_data_set_0/input_J.pb   (serialized TensorProto)
    OUTDIR/otter_<op>_<what>/test_data_set_0/output_J.pb

sequence_lens is an int32 graph input (the conformance runner binds it as a constant). Each model
is checked with onnx.checker (full check) first. Fixed seed: the same output on every run.
"""

import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 14
IR_VERSION = 7


def build_cases():
    rng = np.random.default_rng(20240614)
    cases = []

    def case(name, op, hidden, seq, batch, inp, direction="forward", layout=0, lens=None, init_h=False,
             init_c=False, peep=False, bias=True, outputs=("Y", "Y_h"), **attrs):
        gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
        dirs = 2 if direction == "bidirectional" else 1

        def f(*shape, scale=1.0):
            return (rng.uniform(-1, 1, size=shape) * scale).astype(np.float32)

        x_shape = (batch, seq, inp) if layout else (seq, batch, inp)
        state_shape = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
        inputs = [("X", f(*x_shape, scale=2.0)), ("W", f(dirs, gates * hidden, inp)),
                  ("R", f(dirs, gates * hidden, hidden))]
        node_inputs = ["X", "W", "R"]
        optional = [("B", f(dirs, 2 * gates * hidden) if bias else None),
                    ("sequence_lens", np.asarray(lens, dtype=np.int32) if lens is not None else None),
                    ("initial_h", f(*state_shape) if init_h else None)]
        if op == "LSTM":
            optional += [("initial_c", f(*state_shape) if init_c else None),
                         ("P", f(dirs, 3 * hidden) if peep else None)]
        for name_, value in optional:
            node_inputs.append(name_ if value is not None else "")
            if value is not None:
                inputs.append((name_, value))
        while node_inputs[-1] == "":
            node_inputs.pop()
        node_outputs = list(outputs)
        while node_outputs[-1] == "":
            node_outputs.pop()
        node = helper.make_node(op, node_inputs, node_outputs, name=op.lower(), hidden_size=hidden,
                                direction=direction, layout=layout, **attrs)
        cases.append((f"otter_{op.lower()}_{name}", node, inputs, [o for o in node_outputs if o]))

    case("bidirectional_seqlens_initial_clip", "LSTM", 3, 5, 3, 4, direction="bidirectional", lens=[5, 2, 4],
         init_h=True, init_c=True, peep=True, clip=0.7, outputs=("Y", "Y_h", "Y_c"))
    case("reverse_seqlens_input_forget_layout1", "LSTM", 4, 4, 3, 2, direction="reverse", layout=1,
         lens=[1, 4, 3], init_h=True, init_c=True, input_forget=1, outputs=("Y", "", "Y_c"))
    case("forward_seqlens_activations", "LSTM", 3, 4, 2, 3, lens=[3, 4], init_c=True,
         activations=["HardSigmoid", "LeakyRelu", "Softsign"], activation_alpha=[0.3, 0.2],
         activation_beta=[0.45], outputs=("Y", "Y_h", "Y_c"))
    case("bidirectional_activations_nobias", "LSTM", 2, 3, 2, 3, direction="bidirectional", bias=False,
         activations=["Sigmoid", "Elu", "ScaledTanh", "HardSigmoid", "Tanh", "Softplus"],
         activation_alpha=[0.8, 1.3, 0.25], activation_beta=[0.7, 0.55], outputs=("Y", "Y_h", "Y_c"))
    case("bidirectional_seqlens_initial_lbr1_clip", "GRU", 3, 5, 3, 4, direction="bidirectional",
         lens=[3, 5, 1], init_h=True, linear_before_reset=1, clip=0.9)
    case("bidirectional_seqlens_initial_lbr0", "GRU", 4, 4, 2, 3, direction="bidirectional", lens=[2, 4],
         init_h=True)
    case("reverse_seqlens_layout1_lbr1_activations", "GRU", 3, 4, 3, 2, direction="reverse", layout=1,
         lens=[4, 2, 3], init_h=True, linear_before_reset=1, activations=["HardSigmoid", "Relu"],
         activation_alpha=[0.25], activation_beta=[0.4], outputs=("", "Y_h"))
    case("bidirectional_seqlens_initial_clip", "RNN", 3, 5, 3, 4, direction="bidirectional", lens=[5, 1, 3],
         init_h=True, clip=0.6, activations=["Tanh", "Relu"])
    case("reverse_seqlens_affine_layout1", "RNN", 4, 3, 2, 3, direction="reverse", layout=1, lens=[2, 3],
         activations=["Affine"], activation_alpha=[0.6], activation_beta=[0.1])
    case("forward_thresholdedrelu", "RNN", 3, 4, 2, 2, activations=["ThresholdedRelu"], activation_alpha=[0.1],
         outputs=("Y",))
    return cases


def make_model(name, node, inputs, outputs, output_shapes):
    elem = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32}
    graph_inputs = [helper.make_tensor_value_info(n, elem[a.dtype], a.shape) for n, a in inputs]
    graph_outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in zip(outputs, output_shapes)]
    graph = helper.make_graph([node], name, graph_inputs, graph_outputs)
    model = helper.make_model(graph, producer_name="otter generate_rnn_cases",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


def run_ort(ort, name, node, inputs, outputs):
    """The node's outputs from onnxruntime. Its CPU RNNs lack layout 1: such a node is run as its
    layout-0 twin on transposed X / initial states, and the outputs are transposed back."""
    layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
    if layout:
        node = onnx.NodeProto.FromString(node.SerializeToString())
        next(a for a in node.attribute if a.name == "layout").i = 0
        inputs = [(n, a.transpose(1, 0, 2) if n in ("X", "initial_h", "initial_c") else a) for n, a in inputs]
    model = make_model(name, node, inputs, outputs, [None] * len(outputs))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    results = session.run(outputs, dict(inputs))
    if layout:
        results = [r.transpose(2, 0, 1, 3) if r.ndim == 4 else r.transpose(1, 0, 2) for r in results]
    return results


def write_case(ort, outdir, name, node, inputs, outputs):
    results = run_ort(ort, name, node, inputs, outputs)
    model = make_model(name, node, inputs, outputs, [np.asarray(r).shape for r in results])
    onnx.checker.check_model(model, full_check=True)
    case_dir = os.path.join(outdir, name)
    if os.path.exists(case_dir):
        shutil.rmtree(case_dir)
    data_dir = os.path.join(case_dir, "test_data_set_0")
    os.makedirs(data_dir)
    with open(os.path.join(case_dir, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    for j, (input_name, array) in enumerate(inputs):
        with open(os.path.join(data_dir, f"input_{j}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(array, input_name).SerializeToString())
    for j, (output_name, array) in enumerate(zip(outputs, results)):
        with open(os.path.join(data_dir, f"output_{j}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(np.asarray(array), output_name).SerializeToString())


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: generate_rnn_cases.py OUTDIR\n")
        return 2
    import onnxruntime as ort

    outdir = argv[1]
    os.makedirs(outdir, exist_ok=True)
    cases = build_cases()
    for name, node, inputs, outputs in cases:
        try:
            write_case(ort, outdir, name, node, inputs, outputs)
        except Exception as e:  # name the case, then fail the whole run
            raise SystemExit(f"error: case {name}: {e}") from e
    print(f"wrote {len(cases)} LSTM/GRU/RNN cases (onnx {onnx.__version__}, onnxruntime {ort.__version__}) to {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
