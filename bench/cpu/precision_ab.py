#!/usr/bin/env python3
"""Otter FP16 (or BF16) step time over its own FP32 step time, measured A/B in one process.

bench_models.py times each configuration in its own worker, one after the other, so on a shared
VM a slow period can land on one precision and not the other (its FP16/FP32 ratios moved by
+-0.05 between runs). Here both sessions live in one process and alternate: round after round,
`--steps` steps of FP32, then the same of the other precision, on the same batches. The ratio of
the medians (and of the fastest rounds) is reported per model and thread count.

It uses the models and data bench_models.py writes (build/bench-cpu/models/<name>.onnx, .npz):
run that once first. Threads: '1' sets OMP_NUM_THREADS=1 for a child run, 'all' leaves it unset.

    python3 bench/cpu/precision_ab.py --models gpt-2l-d64,bert-tiny --threads 1,all
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BATCH = {"mlp": 256, "resnet18": 32, "gpt-2l-d64": 16, "gpt-4l-d256": 32, "bert-tiny": 32}


def measure(name, other, rounds, steps, models_dir):
    """In this process: the median and fastest per-step ms of FP32 and `other`, alternating."""
    import numpy as np
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    os.environ.setdefault("OTTER_LIBRARY", os.path.join(ROOT, "build", "libotter.so"))
    import otter

    data = dict(np.load(os.path.join(models_dir, name + ".npz")))
    keys = [k for k in data if k != "label"]
    batch = BATCH.get(name, 32)
    n = len(data["label"]) // batch * batch
    batches = [({k: np.ascontiguousarray(data[k][i:i + batch]) for k in keys},
                np.ascontiguousarray(data["label"][i:i + batch])) for i in range(0, n, batch)][:8]
    sessions = {p: otter.TrainingSession(os.path.join(models_dir, name + ".onnx"), loss="cross_entropy",
                                         label="label", loss_output="logits", optimizer="adamw", lr=1e-3,
                                         weight_decay=0.01, precision=p, device="cpu")
                for p in ("fp32", other)}

    def run(session, count):
        for i in range(count):
            feeds, label = batches[i % len(batches)]
            session.train_step(**feeds, label=label)

    for s in sessions.values():
        run(s, 5)  # plans, first touch
    times = {p: [] for p in sessions}
    for _ in range(rounds):
        for p, s in sessions.items():
            start = time.perf_counter()
            run(s, steps)
            times[p].append((time.perf_counter() - start) / steps * 1e3)
    return {p: {"median_ms": float(np.median(v)), "min_ms": float(np.min(v))} for p, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="gpt-2l-d64,bert-tiny,mlp,resnet18")
    ap.add_argument("--precision", default="fp16", choices=["fp16", "bf16"])
    ap.add_argument("--threads", default="1,all", help="comma list of '1' and/or 'all'")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--steps", type=int, default=0, help="steps per round (default: about 0.15 s of FP32)")
    ap.add_argument("--models-dir", default=os.path.join(ROOT, "build", "bench-cpu", "models"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:  # one model in this process
        name, steps = args.child.split(":")
        print(json.dumps(measure(name, args.precision, args.rounds, int(steps), args.models_dir)))
        return

    for name in args.models.split(","):
        if not os.path.exists(os.path.join(args.models_dir, name + ".onnx")):
            sys.exit("no %s model in %s: run bench/cpu/bench_models.py first" % (name, args.models_dir))
    print("| model | threads | Otter FP32 ms (median) | Otter %s ms (median) | %s / FP32 (medians) | "
          "%s / FP32 (fastest rounds) |" % ((args.precision.upper(),) * 3))
    print("|---|---|---:|---:|---:|---:|")
    for name in args.models.split(","):
        steps = args.steps or {"mlp": 4, "resnet18": 2, "gpt-4l-d256": 2}.get(name, 40)
        for threads in args.threads.split(","):
            env = dict(os.environ)
            if threads == "1":
                env["OMP_NUM_THREADS"] = "1"
            else:
                env.pop("OMP_NUM_THREADS", None)
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "%s:%d" % (name, steps),
                                  "--precision", args.precision, "--rounds", str(args.rounds),
                                  "--models-dir", args.models_dir],
                                 env=env, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            a, b = r["fp32"], r[args.precision]
            print("| %s | %s | %.2f | %.2f | %.3f | %.3f |" % (name, threads, a["median_ms"], b["median_ms"],
                                                           b["median_ms"] / a["median_ms"], b["min_ms"] / a["min_ms"]),
                  flush=True)


if __name__ == "__main__":
    main()
