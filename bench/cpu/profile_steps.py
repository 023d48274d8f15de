#!/usr/bin/env python3
"""Where a training step's time goes, per op: a few Otter steps of one benchmark model with the
library's kernel profile on (OTTER_PROFILE=1: per op type; shapes: per op and input shapes),
printed to stderr when the process exits, after the mean step time. The per-op figures in
docs/benchmarks.md come from this (FP16 or BF16 minus FP32 on the same model says what a
precision costs where).

Usage (from anywhere, after build/libotter.so and one run of bench/cpu/bench_models.py, which
writes the models and their data to build/bench-cpu/models):
  python3 bench/cpu/profile_steps.py resnet18 fp16 --threads 1 --steps 10 --profile shapes
  python3 bench/cpu/profile_steps.py gpt2-124m fp32 --steps 5 --otter-options denormals=flush

Runs two untimed steps first (the plan is built at the first). Thread settings apply at library
load, so the script re-executes itself once with them and OTTER_PROFILE in the environment.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import bench_models as bm  # noqa: E402  (no torch at import)
import bench_train as bt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a model of build/bench-cpu/models (mlp, resnet18, gpt-2l-d64, gpt2-124m, ...)")
    ap.add_argument("precision", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", choices=["1", "all"], default="all")
    ap.add_argument("--profile", choices=["1", "shapes"], default="1")
    ap.add_argument("--otter-options", default="", help="extra session options, key=value,... (e.g. denormals=flush)")
    ap.add_argument("--model-dir", default=os.path.join(REPO, "build", "bench-cpu", "models"))
    args = ap.parse_args()
    if os.environ.get("OTTER_PROFILE_STEPS_CHILD") != "1":
        env = bt.thread_env(args.threads)
        env.update(OTTER_PROFILE=args.profile, OTTER_PROFILE_STEPS_CHILD="1")
        env.setdefault("OTTER_LIBRARY", os.path.join(REPO, "build", "libotter.so"))
        env["PYTHONPATH"] = os.pathsep.join([os.path.join(REPO, "bindings", "python"), env.get("PYTHONPATH", "")])
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    if not os.path.exists(os.path.join(args.model_dir, args.model + ".onnx")):
        sys.exit("no model %s in %s: run bench/cpu/bench_models.py first (it writes the models)"
                 % (args.model, args.model_dir))
    otter = bm.import_otter()
    _, batches = bm.load_batches(args.model_dir, args.model)
    sess = bm.otter_session(otter, os.path.join(args.model_dir, args.model + ".onnx"), args.precision,
                            args.otter_options)
    k = [0]

    def step():
        x, y = batches[k[0] % len(batches)]
        k[0] += 1
        sess.train_step(x, label=y)

    step()
    step()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    print("%s %s threads=%s: %.2f ms/step over %d steps (the profile below also counts the 2 untimed steps)"
          % (args.model, args.precision, args.threads, (time.perf_counter() - t) / args.steps * 1e3, args.steps),
          file=sys.stderr, flush=True)
    sess.close()


if __name__ == "__main__":
    main()
