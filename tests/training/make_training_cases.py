"""Write Otter's own test cases for the ONNX training format (docs/training-graphs.md).

Usage:
    python3 tests/training/make_training_cases.py NODE_DIR GRAPH_DIR

NODE_DIR gets node tests in the ONNX backend layout (model.onnx, test_data_set_0/input_J.pb,
output_J.pb), run by tests/conformance/test_node_conformance.cpp like the official ones: Adam,
Adagrad and Momentum (standard and Nesterov) with T > 0, every attribute set, single- and
multi-tensor forms, float and double, the expected outputs computed by the onnx package's
reference implementation (onnx.reference.ReferenceEvaluator).

GRAPH_DIR gets whole training graphs (ModelProto.training_info) and their NumPy references, read
by tests/e2e/test_training_graphs.cpp:
  linear_adam.onnx      Y = X W + B, loss = mean((Y - label)^2), Gradient + Adam (T state,
                        R in the algorithm's initializers), update_binding of W, B, moments, T;
  mlp_momentum.onnx     Relu MLP, Nesterov Momentum, an initialization graph that sets the
                        velocity and T (initialization_binding), R a graph input;
  linear_adam.npz       the data and, per step, the loss and every state variable (float64 NumPy
                        with the onnx reference's optimizer functions);
  mlp_momentum.npz      the same for the MLP;
  bad_*.onnx            malformed variants of linear_adam.onnx (each error is checked by name).
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops.aionnx_preview_training.op_adam import _apply_adam
from onnx.reference.ops.aionnx_preview_training.op_momentum import _apply_nesterov

TRAINING = "ai.onnx.preview.training"


def write_node_case(outdir, name, node, inputs):
    """inputs: list of (name, array); outputs computed by ReferenceEvaluator."""
    graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in inputs]
    outs = [o for o in node.output]
    model0 = helper.make_model(
        helper.make_graph([node], name, graph_inputs, [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outs]),
        opset_imports=[helper.make_opsetid(TRAINING, 1)], ir_version=8)
    results = ReferenceEvaluator(model0).run(None, dict(inputs))
    # The spec gives every output the type of its X (T3). The reference's Adam returns float64 for
    # float32 inputs when T > 0 (r_adjusted is a NumPy float64) and casts its multi-tensor outputs
    # to float32 whatever X's type: its values are kept, in X's type.
    xtype = dict(inputs)[node.input[2]].dtype
    results = [np.asarray(r).astype(xtype) for r in results]
    graph_outputs = [helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(r.dtype), r.shape)
                     for o, r in zip(outs, results)]
    model = helper.make_model(helper.make_graph([node], name, graph_inputs, graph_outputs),
                              opset_imports=[helper.make_opsetid(TRAINING, 1)], ir_version=8)
    onnx.checker.check_model(model)
    d = os.path.join(outdir, name)
    os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    for j, (n, a) in enumerate(inputs):
        with open(os.path.join(d, "test_data_set_0", f"input_{j}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(np.asarray(a), n).SerializeToString())
    for j, (o, r) in enumerate(zip(outs, results)):
        with open(os.path.join(d, "test_data_set_0", f"output_{j}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(np.asarray(r), o).SerializeToString())


def node_cases(outdir):
    rng = np.random.default_rng(17)
    for dtype, tag in ((np.float32, "float"), (np.float64, "double")):
        def arr(*shape):
            return rng.standard_normal(shape).astype(dtype)
        r = np.array(0.05, dtype=dtype)
        for t in (0, 3):
            T = np.array(t, dtype=np.int64)
            # Adam, two tensors, every attribute.
            node = helper.make_node("Adam", ["R", "T", "X1", "X2", "G1", "G2", "V1", "V2", "H1", "H2"],
                                    ["X1n", "X2n", "V1n", "V2n", "H1n", "H2n"], domain=TRAINING,
                                    alpha=0.85, beta=0.99, epsilon=1e-4, norm_coefficient=0.01,
                                    norm_coefficient_post=0.02)
            write_node_case(outdir, f"test_otter_adam_multiple_t{t}_{tag}", node,
                            [("R", r), ("T", T), ("X1", arr(3, 2)), ("X2", arr(5)), ("G1", arr(3, 2)), ("G2", arr(5)),
                             ("V1", arr(3, 2)), ("V2", arr(5)), ("H1", np.abs(arr(3, 2))), ("H2", np.abs(arr(5)))])
            # Adam with the defaults.
            node = helper.make_node("Adam", ["R", "T", "X", "G", "V", "H"], ["Xn", "Vn", "Hn"], domain=TRAINING)
            write_node_case(outdir, f"test_otter_adam_defaults_t{t}_{tag}", node,
                            [("R", r), ("T", T), ("X", arr(4)), ("G", arr(4)), ("V", arr(4)), ("H", np.abs(arr(4)))])
            # Adagrad, two tensors, decay.
            node = helper.make_node("Adagrad", ["R", "T", "X1", "X2", "G1", "G2", "H1", "H2"],
                                    ["X1n", "X2n", "H1n", "H2n"], domain=TRAINING, decay_factor=0.1, epsilon=1e-5,
                                    norm_coefficient=0.003)
            write_node_case(outdir, f"test_otter_adagrad_multiple_t{t}_{tag}", node,
                            [("R", r), ("T", T), ("X1", arr(2, 3)), ("X2", arr(1)), ("G1", arr(2, 3)), ("G2", arr(1)),
                             ("H1", np.abs(arr(2, 3))), ("H2", np.abs(arr(1)))])
            for mode in ("standard", "nesterov"):
                node = helper.make_node("Momentum", ["R", "T", "X1", "X2", "G1", "G2", "V1", "V2"],
                                        ["X1n", "X2n", "V1n", "V2n"], domain=TRAINING, alpha=0.9, beta=0.7,
                                        mode=mode, norm_coefficient=0.01)
                write_node_case(outdir, f"test_otter_momentum_{mode}_t{t}_{tag}", node,
                                [("R", r), ("T", T), ("X1", arr(4, 2)), ("X2", arr(3)), ("G1", arr(4, 2)),
                                 ("G2", arr(3)), ("V1", arr(4, 2)), ("V2", arr(3))])


def f32(name, a):
    return numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)


def linear_adam(outdir, steps=6):
    rng = np.random.default_rng(3)
    n, i, o = 8, 4, 3
    W = rng.standard_normal((i, o)).astype(np.float32) * 0.5
    B = rng.standard_normal(o).astype(np.float32) * 0.1
    X = rng.standard_normal((steps, n, i)).astype(np.float32)
    L = rng.standard_normal((steps, n, o)).astype(np.float32)
    inference = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["XW"], name="matmul"),
         helper.make_node("Add", ["XW", "B"], ["Y"], name="bias")],
        "linear", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", i])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", o])],
        [f32("W", W), f32("B", B)])
    adam = dict(alpha=0.9, beta=0.999, epsilon=1e-6, norm_coefficient=0.001, norm_coefficient_post=0.0)
    algorithm = helper.make_graph(
        [helper.make_node("Sub", ["Y", "label"], ["diff"], name="diff"),
         helper.make_node("Mul", ["diff", "diff"], ["sq"], name="square"),
         helper.make_node("ReduceMean", ["sq"], ["loss"], name="mean", keepdims=0),
         helper.make_node("Gradient", ["W", "B"], ["dW", "dB"], domain=TRAINING, name="grad", xs=["W", "B"], y="loss"),
         helper.make_node("Adam", ["R", "T", "W", "B", "dW", "dB", "VW", "VB", "HW", "HB"],
                          ["W_new", "B_new", "VW_new", "VB_new", "HW_new", "HB_new"], domain=TRAINING, name="adam", **adam),
         helper.make_node("Add", ["T", "one"], ["T_new"], name="count")],
        "adam_step", [helper.make_tensor_value_info("label", TensorProto.FLOAT, ["N", o])],
        [helper.make_tensor_value_info(v, TensorProto.FLOAT, None)
         for v in ("loss", "W_new", "B_new", "VW_new", "VB_new", "HW_new", "HB_new")] +
        [helper.make_tensor_value_info("T_new", TensorProto.INT64, [])],
        [f32("R", 0.05), numpy_helper.from_array(np.array(1, np.int64), "T"), numpy_helper.from_array(np.array(1, np.int64), "one"),
         f32("VW", np.zeros((i, o))), f32("VB", np.zeros(o)), f32("HW", np.zeros((i, o))), f32("HB", np.zeros(o))])
    binding = [("W", "W_new"), ("B", "B_new"), ("VW", "VW_new"), ("VB", "VB_new"), ("HW", "HW_new"), ("HB", "HB_new"),
               ("T", "T_new")]
    info = onnx.TrainingInfoProto()
    info.algorithm.CopyFrom(algorithm)
    for k, v in binding:
        e = info.update_binding.add()
        e.key, e.value = k, v
    model = helper.make_model(inference, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(TRAINING, 1)],
                              ir_version=8)
    model.training_info.append(info)
    onnx.checker.check_model(model)
    with open(os.path.join(outdir, "linear_adam.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    # Reference, float64.
    w, b = W.astype(np.float64), B.astype(np.float64)
    vw, vb, hw, hb = np.zeros_like(w), np.zeros_like(b), np.zeros_like(w), np.zeros_like(b)
    t = 1
    ref = {"X": X, "label": L, "W0": W, "B0": B}
    losses = []
    for s in range(steps):
        x, lab = X[s].astype(np.float64), L[s].astype(np.float64)
        y = x @ w + b
        d = y - lab
        losses.append(np.mean(d * d))
        dy = 2 * d / d.size
        dw, db = x.T @ dy, dy.sum(0)
        r = np.float64(np.float32(0.05))
        kw = {k: np.float64(np.float32(v)) for k, v in adam.items()}
        w, vw, hw = _apply_adam(r, t, w, dw, vw, hw, kw["norm_coefficient"], kw["norm_coefficient_post"], kw["alpha"],
                                kw["beta"], kw["epsilon"])
        b, vb, hb = _apply_adam(r, t, b, db, vb, hb, kw["norm_coefficient"], kw["norm_coefficient_post"], kw["alpha"],
                                kw["beta"], kw["epsilon"])
        t += 1
        ref[f"W{s + 1}"], ref[f"B{s + 1}"], ref[f"VW{s + 1}"], ref[f"HB{s + 1}"] = w, b, vw, hb
    ref["loss"] = np.array(losses)
    ref["T_final"] = np.array(t, np.int64)
    np.savez(os.path.join(outdir, "linear_adam.npz"), **ref)


def mlp_momentum(outdir, steps=5):
    rng = np.random.default_rng(5)
    n, i, h, o = 6, 5, 7, 2
    W1 = rng.standard_normal((i, h)).astype(np.float32) * 0.4
    W2 = rng.standard_normal((h, o)).astype(np.float32) * 0.4
    X = rng.standard_normal((steps, n, i)).astype(np.float32)
    L = rng.standard_normal((steps, n, o)).astype(np.float32)
    inference = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W1"], ["H"], name="fc1"),
         helper.make_node("Relu", ["H"], ["A"], name="relu"),
         helper.make_node("MatMul", ["A", "W2"], ["Y"], name="fc2")],
        "mlp", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", i])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", o])], [f32("W1", W1), f32("W2", W2)])
    mom = dict(alpha=0.9, beta=0.5, mode="nesterov", norm_coefficient=0.01)
    algorithm = helper.make_graph(
        [helper.make_node("Sub", ["Y", "label"], ["diff"], name="diff"),
         helper.make_node("Mul", ["diff", "diff"], ["sq"], name="square"),
         helper.make_node("ReduceSum", ["sq"], ["loss"], name="sum", keepdims=0),
         helper.make_node("Gradient", ["W1", "W2"], ["dW1", "dW2"], domain=TRAINING, name="grad", xs=["W1", "W2"], y="loss"),
         helper.make_node("Momentum", ["R", "T", "W1", "W2", "dW1", "dW2", "V1", "V2"],
                          ["W1_new", "W2_new", "V1_new", "V2_new"], domain=TRAINING, name="momentum", **mom),
         helper.make_node("Add", ["T", "one"], ["T_new"], name="count")],
        "momentum_step", [helper.make_tensor_value_info("label", TensorProto.FLOAT, ["N", o]),
                          helper.make_tensor_value_info("R", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info(v, TensorProto.FLOAT, None) for v in ("W1_new", "W2_new", "V1_new", "V2_new")] +
        [helper.make_tensor_value_info("T_new", TensorProto.INT64, [])],
        # Initial values the initialization graph overwrites (nonsense on purpose).
        [f32("V1", np.full((i, h), 7.0)), f32("V2", np.full((h, o), 7.0)),
         numpy_helper.from_array(np.array(99, np.int64), "T"), numpy_helper.from_array(np.array(1, np.int64), "one")])
    initialization = helper.make_graph(
        [helper.make_node("Constant", [], ["v1_zero"], value=f32("v1z", np.zeros((i, h)))),
         helper.make_node("Constant", [], ["v2_zero"], value=f32("v2z", np.zeros((h, o)))),
         helper.make_node("Constant", [], ["t_zero"], value=numpy_helper.from_array(np.array(0, np.int64), "tz"))],
        "init", [], [helper.make_tensor_value_info("v1_zero", TensorProto.FLOAT, [i, h]),
                     helper.make_tensor_value_info("v2_zero", TensorProto.FLOAT, [h, o]),
                     helper.make_tensor_value_info("t_zero", TensorProto.INT64, [])])
    info = onnx.TrainingInfoProto()
    info.algorithm.CopyFrom(algorithm)
    info.initialization.CopyFrom(initialization)
    for k, v in (("V1", "v1_zero"), ("V2", "v2_zero"), ("T", "t_zero")):
        e = info.initialization_binding.add()
        e.key, e.value = k, v
    for k, v in (("W1", "W1_new"), ("W2", "W2_new"), ("V1", "V1_new"), ("V2", "V2_new"), ("T", "T_new")):
        e = info.update_binding.add()
        e.key, e.value = k, v
    model = helper.make_model(inference, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(TRAINING, 1)],
                              ir_version=8)
    model.training_info.append(info)
    onnx.checker.check_model(model)
    with open(os.path.join(outdir, "mlp_momentum.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    w1, w2 = W1.astype(np.float64), W2.astype(np.float64)
    v1, v2 = np.zeros_like(w1), np.zeros_like(w2)
    t = 0
    lrs = np.array([0.01, 0.02, 0.01, 0.005, 0.01, 0.01, 0.01, 0.01][:steps], np.float32)
    ref = {"X": X, "label": L, "R": lrs}
    losses = []
    kw = {k: (np.float64(np.float32(v)) if not isinstance(v, str) else v) for k, v in mom.items()}
    for s in range(steps):
        x, lab = X[s].astype(np.float64), L[s].astype(np.float64)
        hpre = x @ w1
        a = np.maximum(hpre, 0)
        y = a @ w2
        d = y - lab
        losses.append(np.sum(d * d))
        dy = 2 * d
        dw2 = a.T @ dy
        dw1 = x.T @ ((dy @ w2.T) * (hpre > 0))
        r = np.float64(lrs[s])
        w1, v1 = _apply_nesterov(r, t, w1, dw1, v1, kw["norm_coefficient"], kw["alpha"], kw["beta"])
        w2, v2 = _apply_nesterov(r, t, w2, dw2, v2, kw["norm_coefficient"], kw["alpha"], kw["beta"])
        t += 1
        ref[f"W1_{s + 1}"], ref[f"W2_{s + 1}"], ref[f"V2_{s + 1}"] = w1, w2, v2
    ref["loss"] = np.array(losses)
    ref["T_final"] = np.array(t, np.int64)
    np.savez(os.path.join(outdir, "mlp_momentum.npz"), **ref)


def bad_models(outdir):
    """Malformed variants of linear_adam.onnx, each with the problem in its name."""
    base = onnx.load(os.path.join(outdir, "linear_adam.onnx"))

    def variant(name, edit):
        m = onnx.ModelProto()
        m.CopyFrom(base)
        edit(m)
        with open(os.path.join(outdir, f"bad_{name}.onnx"), "wb") as f:
            f.write(m.SerializeToString())

    def key_missing(m):
        m.training_info[0].update_binding[0].key = "no_such_weight"
    def value_missing(m):
        m.training_info[0].update_binding[0].value = "no_such_output"
    def bound_twice(m):
        e = m.training_info[0].update_binding.add()
        e.key, e.value = "W", "W_new"
    def ir6(m):
        m.ir_version = 6
    def init_input(m):
        m.training_info[0].initialization.input.append(helper.make_tensor_value_info("seed", TensorProto.FLOAT, []))
    def init_binding_value(m):
        e = m.training_info[0].initialization_binding.add()
        e.key, e.value = "VW", "not_an_init_output"
    def unsupported_op(m):
        m.training_info[0].algorithm.node.append(helper.make_node("SVMRegressor", ["Y"], ["svm"], name="svm"))
    def dtype_mismatch(m):
        m.training_info[0].update_binding[6].value = "loss"  # T (int64) <- loss (float)
    def bad_xs(m):
        for a in m.training_info[0].algorithm.node[3].attribute:
            if a.name == "xs":
                a.strings[1] = b"no_such_x"
    variant("key_missing", key_missing)
    variant("value_missing", value_missing)
    variant("bound_twice", bound_twice)
    variant("ir6", ir6)
    variant("init_input", init_input)
    variant("init_binding_value", init_binding_value)
    variant("unsupported_op", unsupported_op)
    variant("dtype_mismatch", dtype_mismatch)
    variant("gradient_xs", bad_xs)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: make_training_cases.py NODE_DIR GRAPH_DIR\n")
        return 2
    os.makedirs(argv[1], exist_ok=True)
    os.makedirs(argv[2], exist_ok=True)
    node_cases(argv[1])
    linear_adam(argv[2])
    mlp_momentum(argv[2])
    bad_models(argv[2])
    print(f"wrote Otter's training-op node tests to {argv[1]} and training graphs to {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
