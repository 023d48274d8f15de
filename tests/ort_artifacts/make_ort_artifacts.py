"""Generate the ONNX Runtime on-device training fixtures of tests/ort_artifacts (committed, so CI
needs no PyPI): run inside the venv of bench/cpu/setup_ort_training.sh (onnxruntime-training-cpu
1.19.2, onnx 1.16).

    build-ort-venv/bin/python tests/ort_artifacts/make_ort_artifacts.py tests/ort_artifacts

For each model (mlp: Gemm -> Relu -> Gemm with fc2.bias frozen; cnn: Conv -> Relu -> MaxPool ->
Flatten -> Gemm; cnn_bn: Conv -> BatchNormalization -> Relu -> MaxPool -> Flatten -> Gemm;
transformer: one pre-LN transformer block (Gather embedding, LayerNormalization with its mean and
inv-std outputs, attention through MatMul/Split/Reshape/Transpose/Softmax, Erf GELU, residuals,
ReduceMean pooling, Gemm head); CrossEntropyLoss, AdamW; mlp_sgd: the MLP with SGD and nothing
frozen) it writes <name>/ with the artifacts exactly as
onnxruntime.training.artifacts.generate_artifacts writes them (training_model.onnx,
eval_model.onnx, optimizer_model.onnx, checkpoint), the data (<name>/data.npz: per step, one array
per data input of the training model, named like it) and ORT's own training trajectory
(<name>/ort_losses.npz: the loss of every step, the learning rate, every parameter after the last
step (frozen ones and BatchNormalization running statistics included, as param/<name>) and the
eval model's loss on step 0's batch after training (eval_loss)) and ORT's own checkpoint after
those steps (<name>/ort_trained_checkpoint, with the optimizer state), which the Otter-only tests
compare against.

ms_ops/<case>.onnx and .npz: single com.microsoft gradient ops (FusedMatMul, Scale, SoftmaxGrad*,
GatherGrad, LayerNormalizationGrad, BatchNormInternal, BatchNormalizationGrad, DropoutGrad,
DivGrad, GeluGrad, ...) run by ORT's own CPU kernels (in/<input>, out/<output>), against which
OrtArtifacts.MsOpsMatchOrtKernels checks Otter's rewrites.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "cpu"))
from ort_worker import import_ort_training  # noqa: E402

STEPS = 10
LR = 0.01


def mlp_model(seed=0, n_in=4, hidden=8, classes=3):
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((hidden, n_in)) * 0.5).astype(np.float32)
    b1 = (rng.standard_normal(hidden) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((classes, hidden)) * 0.5).astype(np.float32)
    b2 = (rng.standard_normal(classes) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], name="fc1", transB=1),
         helper.make_node("Relu", ["h"], ["a"], name="relu"),
         helper.make_node("Gemm", ["a", "fc2.weight", "fc2.bias"], ["logits"], name="fc2", transB=1)],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(w1, "fc1.weight"), numpy_helper.from_array(b1, "fc1.bias"),
         numpy_helper.from_array(w2, "fc2.weight"), numpy_helper.from_array(b2, "fc2.bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    data_rng = np.random.default_rng(seed + 1)
    x = data_rng.standard_normal((STEPS, 5, n_in)).astype(np.float32)
    y = data_rng.integers(0, classes, (STEPS, 5)).astype(np.int64)
    return model, x, y


def cnn_model(seed=2, classes=3):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((4, 1, 3, 3)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(4) * 0.1).astype(np.float32)
    fw = (rng.standard_normal((classes, 4 * 4 * 4)) * 0.2).astype(np.float32)
    fb = (rng.standard_normal(classes) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
         helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1)],
        "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(w, "conv.weight"), numpy_helper.from_array(b, "conv.bias"),
         numpy_helper.from_array(fw, "fc.weight"), numpy_helper.from_array(fb, "fc.bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    data_rng = np.random.default_rng(seed + 1)
    x = data_rng.standard_normal((STEPS, 4, 1, 8, 8)).astype(np.float32)
    y = data_rng.integers(0, classes, (STEPS, 4)).astype(np.int64)
    return model, x, y


def cnn_bn_model(seed=4, classes=3):
    """The CNN with a BatchNormalization after the Conv (running statistics frozen buffers). The
    Conv has no bias: BatchNormalization cancels it, so its gradient is rounding noise, which AdamW
    would turn into steps of size lr that no two runtimes take alike."""
    model, x, y = cnn_model(seed, classes)
    g = model.graph
    rng = np.random.default_rng(seed + 10)
    nodes = list(g.node)
    nodes[0].output[0] = "c0"
    del nodes[0].input[2]
    kept = [t for t in g.initializer if t.name != "conv.bias"]
    del g.initializer[:]
    g.initializer.extend(kept)
    bn = helper.make_node("BatchNormalization", ["c0", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"],
                          ["c"], name="bn", momentum=0.9, epsilon=1e-5)
    del g.node[:]
    g.node.extend([nodes[0], bn] + nodes[1:])
    g.initializer.extend([
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "bn.weight"),
        numpy_helper.from_array((rng.standard_normal(4) * 0.1).astype(np.float32), "bn.bias"),
        numpy_helper.from_array((rng.standard_normal(4) * 0.1).astype(np.float32), "bn.running_mean"),
        numpy_helper.from_array(rng.uniform(0.8, 1.2, 4).astype(np.float32), "bn.running_var")])
    onnx.checker.check_model(model)
    return model, x, y


def transformer_model(seed=7, V=16, S=6, D=8, H=2, C=3, batch=4):
    """One pre-LN transformer block written by hand (what ORT differentiates with FusedMatMul,
    GatherGrad, LayerNormalizationGrad, SoftmaxGrad_13, Scale). The q/k/v projection has no bias:
    softmax cancels the key bias, whose gradient is then rounding noise (see cnn_bn_model)."""
    rng = np.random.default_rng(seed)

    def P(*s):
        return (rng.standard_normal(s) * 0.3).astype(np.float32)
    inits = {"emb": P(V, D), "pos": P(S, D), "ln1.w": 1 + P(D) * 0.3, "ln1.b": P(D) * 0.3,
             "qkv.w": P(D, 3 * D), "proj.w": P(D, D), "proj.b": P(D) * 0.3,
             "ln2.w": 1 + P(D) * 0.3, "ln2.b": P(D) * 0.3, "fc1.w": P(D, 4 * D), "fc1.b": P(4 * D) * 0.3,
             "fc2.w": P(4 * D, D), "fc2.b": P(D) * 0.3, "head.w": P(D, C), "head.b": P(C) * 0.3,
             "shape_heads": np.array([0, S, H, D // H], np.int64), "shape_back": np.array([0, S, D], np.int64),
             "scale": np.array(np.sqrt(D // H), np.float32), "half": np.array(0.5, np.float32),
             "one": np.array(1.0, np.float32), "rsqrt2": np.array(1 / np.sqrt(2), np.float32),
             "split3": np.array([D, D, D], np.int64), "axes1": np.array([1], np.int64)}
    n = helper.make_node
    nodes = [n("Gather", ["emb", "ids"], ["e"]), n("Add", ["e", "pos"], ["x0"]),
             n("LayerNormalization", ["x0", "ln1.w", "ln1.b"], ["l1", "l1m", "l1s"], axis=-1, epsilon=1e-5),
             n("MatMul", ["l1", "qkv.w"], ["qkv"]),
             n("Split", ["qkv", "split3"], ["q0", "k0", "v0"], axis=-1)]
    for t in "qkv":
        nodes += [n("Reshape", [t + "0", "shape_heads"], [t + "r"]),
                  n("Transpose", [t + "r"], [t + "h"], perm=[0, 2, 1, 3] if t != "k" else [0, 2, 3, 1])]
    nodes += [n("MatMul", ["qh", "kh"], ["att0"]), n("Div", ["att0", "scale"], ["att1"]),
              n("Softmax", ["att1"], ["att"], axis=-1), n("MatMul", ["att", "vh"], ["ctx0"]),
              n("Transpose", ["ctx0"], ["ctx1"], perm=[0, 2, 1, 3]), n("Reshape", ["ctx1", "shape_back"], ["ctx"]),
              n("MatMul", ["ctx", "proj.w"], ["p0"]), n("Add", ["p0", "proj.b"], ["p1"]), n("Add", ["x0", "p1"], ["x1"]),
              n("LayerNormalization", ["x1", "ln2.w", "ln2.b"], ["l2", "l2m", "l2s"], axis=-1, epsilon=1e-5),
              n("MatMul", ["l2", "fc1.w"], ["f0"]), n("Add", ["f0", "fc1.b"], ["f1"]),
              n("Mul", ["f1", "rsqrt2"], ["g0"]), n("Erf", ["g0"], ["g1"]), n("Add", ["g1", "one"], ["g2"]),
              n("Mul", ["f1", "g2"], ["g3"]), n("Mul", ["g3", "half"], ["g4"]),
              n("MatMul", ["g4", "fc2.w"], ["f2"]), n("Add", ["f2", "fc2.b"], ["f3"]), n("Add", ["x1", "f3"], ["x2"]),
              n("ReduceMean", ["x2", "axes1"], ["pool"], keepdims=0),
              n("Gemm", ["pool", "head.w", "head.b"], ["logits"])]
    g = helper.make_graph(nodes, "transformer", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", S])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", C])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    onnx.checker.check_model(model)
    data_rng = np.random.default_rng(seed + 1)
    ids = data_rng.integers(0, V, (STEPS, batch, S)).astype(np.int64)
    y = data_rng.integers(0, C, (STEPS, batch)).astype(np.int64)
    return model, ids, y


def ms_op_cases(out):
    """Single com.microsoft ops run by ORT's own CPU kernels (tests/ort_artifacts/ms_ops)."""
    import onnxruntime
    d = os.path.join(out, "ms_ops")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(11)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731

    def softmax(x, axis):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    def case(name, op, inputs, n_out, initializers=None, **attrs):
        initializers = initializers or {}
        names_in = [k if v is not None else "" for k, v in inputs]
        outs = ["y%d" % k for k in range(n_out)]
        node = helper.make_node(op, names_in, outs, domain="com.microsoft", name=name, **attrs)
        feeds = {k: v for k, v in inputs if v is not None and k not in initializers}
        ttype = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
                 np.dtype(np.bool_): TensorProto.BOOL}
        graph = helper.make_graph(
            [node], name, [helper.make_tensor_value_info(k, ttype[v.dtype], v.shape) for k, v in feeds.items()],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
            [numpy_helper.from_array(v, k) for k, v in initializers.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                                  ir_version=8)
        so = onnxruntime.SessionOptions()
        so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = onnxruntime.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        got = sess.run(None, feeds)
        onnx.save(model, os.path.join(d, name + ".onnx"))
        arrays = {"in/" + k: v for k, v in feeds.items()}
        arrays.update({"out/" + o: v for o, v in zip(outs, got)})
        np.savez(os.path.join(d, name + ".npz"), **arrays)

    case("fused_matmul", "FusedMatMul", [("A", f32(2, 3, 4)), ("B", f32(4, 5))], 1)
    case("fused_matmul_transB_alpha", "FusedMatMul", [("A", f32(2, 3, 4, 5)), ("B", f32(2, 3, 6, 5))], 1, transB=1, alpha=0.5)
    case("fused_matmul_transA_2d", "FusedMatMul", [("A", f32(5, 3)), ("B", f32(5, 4))], 1, transA=1)
    case("fused_matmul_transBatchA", "FusedMatMul", [("A", f32(3, 2, 4, 5)), ("B", f32(2, 4, 5, 6))], 1, transBatchA=1)
    case("fused_matmul_all", "FusedMatMul", [("A", f32(5, 2, 4, 3)), ("B", f32(6, 2, 4, 5))], 1, transBatchA=1, transA=1,
         transBatchB=1, transB=1, alpha=-1.5)
    case("scale_down_int64", "Scale", [("x", f32(3, 4)), ("s", np.array(4, np.int64))], 1, scale_down=1)
    case("scale_float", "Scale", [("x", f32(3, 4)), ("s", np.array(0.25, np.float32))], 1)
    x = f32(2, 3, 4)
    case("softmax_grad_13", "SoftmaxGrad_13", [("dY", f32(2, 3, 4)), ("Y", softmax(x, 1))], 1, axis=1)
    case("softmax_grad_13_default", "SoftmaxGrad_13", [("dY", f32(2, 3, 4)), ("Y", softmax(x, -1))], 1)
    ls = x - np.log(np.exp(x).sum(-1, keepdims=True))
    case("log_softmax_grad_13", "LogSoftmaxGrad_13", [("dY", f32(2, 3, 4)), ("Y", ls.astype(np.float32))], 1, axis=-1)
    flat = softmax(x.reshape(2, 12), 1).reshape(2, 3, 4)
    case("softmax_grad_default", "SoftmaxGrad", [("dY", f32(2, 3, 4)), ("Y", flat)], 1)
    ls2 = np.log(softmax(x, 2)).astype(np.float32)
    case("log_softmax_grad_axis2", "LogSoftmaxGrad", [("dY", f32(2, 3, 4)), ("Y", ls2)], 1, axis=2)
    idx = np.array([[0, 2, 2], [4, 0, 1]], np.int64)
    case("gather_grad_axis0", "GatherGrad", [("shape", np.array([5, 3], np.int64)), ("indices", idx), ("dY", f32(2, 3, 3))], 1,
         initializers={"shape": np.array([5, 3], np.int64)})
    case("gather_grad_axis1", "GatherGrad", [("shape", np.array([2, 4, 3], np.int64)), ("indices", np.array([3, 3, 0], np.int64)),
                                              ("dY", f32(2, 3, 3))], 1, initializers={"shape": np.array([2, 4, 3], np.int64)},
         axis=1)
    for name, shape, axis in [("layer_norm_grad", (2, 3, 4), -1), ("layer_norm_grad_axis1", (2, 3, 4), 1)]:
        x = f32(*shape) * 2 + 0.5
        red = tuple(range(axis % len(shape), len(shape)))
        mean = x.mean(axis=red, keepdims=True)
        inv = 1 / np.sqrt(x.var(axis=red, keepdims=True) + 1e-5)
        case(name, "LayerNormalizationGrad", [("dY", f32(*shape)), ("X", x), ("scale", f32(*shape[axis % len(shape):])),
                                              ("mean", mean.astype(np.float32)), ("inv_std", inv.astype(np.float32))], 3,
             axis=axis, epsilon=1e-5)
    x = f32(2, 3, 4, 4) * 1.5 + 0.3
    mean = x.mean(axis=(0, 2, 3))
    inv = 1 / np.sqrt(x.var(axis=(0, 2, 3)) + 1e-5)
    case("batch_norm_grad", "BatchNormalizationGrad", [("dY", f32(2, 3, 4, 4)), ("X", x), ("scale", f32(3)),
                                                       ("saved_mean", mean.astype(np.float32)),
                                                       ("saved_inv_std", inv.astype(np.float32))], 3, epsilon=1e-5)
    case("batch_norm_internal", "BatchNormInternal", [("X", f32(4, 3, 2, 2) * 2 + 1), ("scale", f32(3)), ("B", f32(3)),
                                                      ("mean", f32(3) * 0.1), ("var", np.abs(f32(3)) + 0.5)], 5,
         epsilon=1e-5, momentum=0.8, training_mode=1)
    mask = rng.random((3, 5)) > 0.3
    case("dropout_grad", "DropoutGrad", [("dY", f32(3, 5)), ("mask", mask), ("ratio", np.array(0.3, np.float32)),
                                         ("training_mode", np.array(True))], 1)
    case("dropout_grad_eval", "DropoutGrad", [("dY", f32(3, 5)), ("mask", mask), ("ratio", np.array(0.3, np.float32)),
                                              ("training_mode", np.array(False))], 1)
    case("dropout_grad_no_ratio", "DropoutGrad", [("dY", f32(3, 5)), ("mask", mask)], 1)
    case("div_grad", "DivGrad", [("dY", f32(2, 3)), ("A", f32(2, 3)), ("B", np.abs(f32(3)) + 0.5)], 2)
    case("div_grad_scalar", "DivGrad", [("dY", f32(2, 3)), ("A", f32(1, 3)), ("B", np.abs(f32(2, 1)) + 0.5)], 2)
    for op in ["GeluGrad", "FastGeluGrad", "ReluGrad"]:
        case(op, op, [("dY", f32(3, 4)), ("X", f32(3, 4) * 2)], 1)
    y = 1 / (1 + np.exp(-f32(3, 4)))
    case("SigmoidGrad", "SigmoidGrad", [("dY", f32(3, 4)), ("Y", y.astype(np.float32))], 1)
    case("TanhGrad", "TanhGrad", [("dY", f32(3, 4)), ("Y", np.tanh(f32(3, 4)))], 1)


def main(argv):
    out = argv[1] if len(argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    ort, artifacts, api = import_ort_training()
    ms_op_cases(out)
    mlp = mlp_model()
    cases = {"mlp": (mlp, artifacts.OptimType.AdamW, ["fc2.bias"]), "cnn": (cnn_model(), artifacts.OptimType.AdamW, []),
             "mlp_sgd": (mlp, artifacts.OptimType.SGD, []),
             "cnn_bn": (cnn_bn_model(), artifacts.OptimType.AdamW, ["bn.running_mean", "bn.running_var"]),
             "transformer": (transformer_model(), artifacts.OptimType.AdamW, [])}
    for name, ((model, x, y), optim, frozen) in cases.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        params = [t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT and len(t.dims) > 0]
        trained = [p for p in params if p not in frozen]
        artifacts.generate_artifacts(model, requires_grad=trained, frozen_params=frozen,
                                     loss=artifacts.LossType.CrossEntropyLoss, optimizer=optim, artifact_directory=d)
        x_name = model.graph.input[0].name
        np.savez(os.path.join(d, "data.npz"), **{x_name: x, "labels": y})
        state = api.CheckpointState.load_checkpoint(os.path.join(d, "checkpoint"))
        module = api.Module(os.path.join(d, "training_model.onnx"), state, os.path.join(d, "eval_model.onnx"))
        opt = api.Optimizer(os.path.join(d, "optimizer_model.onnx"), module)
        opt.set_learning_rate(LR)
        module.train()
        losses = []
        for s in range(STEPS):
            loss = module(x[s], y[s])
            opt.step()
            module.lazy_reset_grad()
            losses.append(float(loss))
        module.eval()
        eval_loss = float(module(x[0], y[0]))
        result = {"loss": np.array(losses), "lr": np.array(LR), "eval_loss": np.array(eval_loss)}
        for p in params:
            result["param/" + p] = state.parameters[p].data
        np.savez(os.path.join(d, "ort_losses.npz"), **result)
        # ORT's own checkpoint after training (parameters, AdamW moments, step), for the reader.
        api.CheckpointState.save_checkpoint(state, os.path.join(d, "ort_trained_checkpoint"), include_optimizer_state=True)
        print(name, "losses", losses)


if __name__ == "__main__":
    main(sys.argv)
