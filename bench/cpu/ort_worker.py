"""ONNX Runtime training side of the CPU training benchmark; run by bench/cpu/bench_train.py.

Runs inside the venv made by bench/cpu/setup_ort_training.sh (onnxruntime-training-cpu 1.19.2).
Generates training artifacts for one model (onnxruntime.training.artifacts.generate_artifacts:
every initializer trainable, CrossEntropyLoss, AdamW), then times Module.__call__ (forward +
backward) + Optimizer.step + Module.lazy_reset_grad per step with onnxruntime.training.api, and
prints one JSON object on the last line of stdout.

    python ort_worker.py --model M.onnx --data D.npz --batch 32 --threads 0 --artifacts DIR \
        --warmup 20 --reps 5 --rep-seconds 0.5 --lr 1e-3

--threads 0 leaves SessionOptions.intra_op_num_threads at ORT's default (one per physical core);
the same SessionOptions serve the training and the optimizer sessions.
"""

import argparse
import importlib.util
import json
import os
import sys
import time
import types

import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import load_batches, time_steps  # noqa: E402  (stdlib-only at import)


def import_ort_training():
    """Imports onnxruntime.training.{artifacts,api} without running onnxruntime/training/__init__.py.

    That __init__ imports the `amp` and `optim` subpackages, which import PyTorch, although the
    on-device training API used here (artifacts + api) needs none. Registering a bare package
    object with the real __path__ skips it, so the venv stays free of a ~1 GB torch install."""
    import onnxruntime

    name = "onnxruntime.training"
    if name not in sys.modules:
        spec = importlib.util.find_spec(name)
        pkg = types.ModuleType(name)
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__spec__ = spec
        pkg.__file__ = spec.origin
        sys.modules[name] = pkg
        onnxruntime.training = pkg
    from onnxruntime.training import api, artifacts

    return onnxruntime, artifacts, api


def make_artifacts(artifacts, model_path, outdir):
    """Training/eval/optimizer models and checkpoint for `model_path` in `outdir` (cached)."""
    needed = ["training_model.onnx", "optimizer_model.onnx", "checkpoint"]
    stamp = os.path.join(outdir, "source.txt")
    src_id = "%s %d %d" % (os.path.abspath(model_path), os.path.getsize(model_path), int(os.path.getmtime(model_path)))
    if all(os.path.exists(os.path.join(outdir, f)) for f in needed) and os.path.exists(stamp):
        with open(stamp) as f:
            if f.read() == src_id:
                return
    os.makedirs(outdir, exist_ok=True)
    model = onnx.load(model_path)
    params = [t.name for t in model.graph.initializer]
    artifacts.generate_artifacts(
        model,
        requires_grad=params,
        frozen_params=[],
        loss=artifacts.LossType.CrossEntropyLoss,
        optimizer=artifacts.OptimType.AdamW,
        artifact_directory=outdir,
    )
    with open(stamp, "w") as f:
        f.write(src_id)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rep-seconds", type=float, default=0.5)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()

    ort, artifacts, api = import_ort_training()
    ort.set_default_logger_severity(3)  # errors only: artifact generation logs every graph pass
    t0 = time.perf_counter()
    make_artifacts(artifacts, args.model, args.artifacts)
    artifacts_s = time.perf_counter() - t0

    so = ort.SessionOptions()
    if args.threads > 0:
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
    state = api.CheckpointState.load_checkpoint(os.path.join(args.artifacts, "checkpoint"))
    module = api.Module(os.path.join(args.artifacts, "training_model.onnx"), state,
                        os.path.join(args.artifacts, "eval_model.onnx"), device="cpu", session_options=so)
    optimizer = api.Optimizer(os.path.join(args.artifacts, "optimizer_model.onnx"), module)
    optimizer.set_learning_rate(args.lr)
    module.train()

    data = load_batches(args.data, args.batch)
    k = [0]

    def step():
        x, y = data[k[0] % len(data)]
        k[0] += 1
        loss = module(x, y)
        optimizer.step()
        module.lazy_reset_grad()
        return float(loss)

    med, rates, n, first, last = time_steps(step, args.warmup, args.reps, args.rep_seconds)
    print(json.dumps({
        "runtime": "onnxruntime-training %s" % ort.__version__,
        "steps_per_s": med,
        "reps_steps_per_s": rates,
        "steps_per_rep": n,
        "first_loss": first,
        "last_loss": last,
        "intra_op_num_threads": so.intra_op_num_threads,
        "inputs": module.input_names(),
        "artifacts_s": artifacts_s,
    }))


if __name__ == "__main__":
    main()
