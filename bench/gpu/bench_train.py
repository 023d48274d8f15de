#!/usr/bin/env python3
"""GPU training benchmark: Otter on CUDA (fp32, fp16, bf16) beside PyTorch eager (fp32 and AMP
fp16/bf16 with torch.autocast; GradScaler for fp16) on the same GPU in the same run.

Models (built here, random initialisation, no downloads):
  digits-mlp  examples/digits/mlp.onnx (64 -> 64 -> 10), batch 32: launch-bound, shows the
              per-step overhead (and what CUDA graph replay saves)
  mlp-large   784 -> 1024 -> 1024 -> 10 (bench/cpu/make_models.py), batch 256
  gpt         nanoGPT (tests/models/make_models.py) with 6 layers, 6 heads, d=384, context 256,
              vocab 65 (about 10.7M parameters: GPT-2-class, small), batch 16, exported by
              torch.onnx.export (TorchScript exporter, training mode, no constant folding)
Every configuration: AdamW lr 1e-3, the same weights for Otter and PyTorch, 10 warm-up steps then
--steps timed steps; the clock stops after a device synchronisation (Otter: reading a statistic
synchronises). Reported: ms per step, samples (or tokens) per second, peak memory, and Otter's
time over PyTorch's in the same precision (below 1: Otter is faster). Peak memory: PyTorch's
torch.cuda.max_memory_allocated; Otter's is the stat device_peak_bytes (the peak in use in its
stream-ordered pool since the session was created; cuBLAS/cuDNN handles and workspaces are in
neither figure).

  python3 bench/gpu/bench_train.py [--steps 50] [--lib build-gpu/libotter.so] [--json out.json]
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "models"))
sys.path.insert(0, os.path.join(ROOT, "bench", "cpu"))


def torch_mlp(sizes):
    import torch.nn as nn
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def export_mlp(model, in_features, path):
    import torch
    model.eval()
    torch.onnx.export(model, torch.zeros(2, in_features), path, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "N"}}, opset_version=17, dynamo=False, do_constant_folding=False)


def models(tmp):
    import torch
    from make_models import GPT  # tests/models/make_models.py
    torch.manual_seed(0)
    rng = np.random.RandomState(0)
    out = []
    digits = torch_mlp([64, 64, 10])
    export_mlp(digits, 64, os.path.join(tmp, "digits.onnx"))
    out.append(("digits-mlp", digits, os.path.join(tmp, "digits.onnx"), "logits",
                {"x": rng.randn(32, 64).astype(np.float32)}, rng.randint(0, 10, size=32).astype(np.int64), 32))
    large = torch_mlp([784, 1024, 1024, 10])
    export_mlp(large, 784, os.path.join(tmp, "mlp-large.onnx"))
    out.append(("mlp-large", large, os.path.join(tmp, "mlp-large.onnx"), "logits",
                {"x": rng.randn(256, 784).astype(np.float32)}, rng.randint(0, 10, size=256).astype(np.int64), 256))
    gpt = GPT(65, block_size=256, n_layer=6, n_head=6, n_embd=384)
    gpt.train()
    idx = torch.from_numpy(rng.randint(0, 65, size=(16, 256)).astype(np.int64))
    path = os.path.join(tmp, "gpt.onnx")
    torch.onnx.export(gpt, (idx,), path, input_names=["idx"], output_names=["logits"], opset_version=20,
                      dynamo=False, do_constant_folding=False, training=torch.onnx.TrainingMode.TRAINING)
    out.append(("gpt", gpt, path, "logits", {"idx": idx.numpy()}, rng.randint(0, 65, size=(16, 256)).astype(np.int64),
                16 * 256))
    return out


def bench_otter(otter, path, output, feeds, label, precision, steps):
    s = otter.TrainingSession(path, loss="cross_entropy", loss_output=output, optimizer="adamw", lr=1e-3,
                              precision=precision, device="cuda")
    batch = dict(feeds)
    batch["label"] = label
    for _ in range(10):
        s.train_step(batch, return_loss=False)
    s.stat("step")  # synchronises
    t0 = time.perf_counter()
    for _ in range(steps):
        s.train_step(batch, return_loss=False)
    s.stat("step")
    dt = (time.perf_counter() - t0) / steps
    mem = s.stat("device_peak_bytes")
    loss = s.stat("last_loss")
    s.close()
    return dt, mem, loss


def bench_torch(model, feeds, label, precision, steps):
    import copy
    import torch
    m = copy.deepcopy(model).cuda().train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01)
    x = [torch.from_numpy(v).cuda() for v in feeds.values()]
    y = torch.from_numpy(label).cuda()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(m(*x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    for _ in range(10):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    return dt, torch.cuda.max_memory_allocated(), float(loss)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--lib", default=None, help="libotter.so to load (sets OTTER_LIBRARY)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.lib:
        os.environ["OTTER_LIBRARY"] = os.path.abspath(a.lib)
    import torch
    import otter
    if not torch.cuda.is_available():
        print("bench_train: no CUDA GPU; nothing to measure")
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, path, output, feeds, label, samples in models(tmp):
            for precision in ("fp32", "fp16", "bf16"):
                o = bench_otter(otter, path, output, feeds, label, precision, a.steps)
                t = bench_torch(model, feeds, label, precision, a.steps)
                rows.append(dict(model=name, precision=precision, otter_ms=o[0] * 1e3, torch_ms=t[0] * 1e3,
                                 otter_per_s=samples / o[0], torch_per_s=samples / t[0], otter_mem=o[1],
                                 torch_mem=t[1], ratio=o[0] / t[0], otter_loss=o[2], torch_loss=t[2]))
                r = rows[-1]
                print("%-10s %-4s otter %8.3f ms  torch %8.3f ms  ratio %.2f" % (name, precision, r["otter_ms"],
                                                                               r["torch_ms"], r["ratio"]), flush=True)
    print("\n| model | precision | Otter ms/step | PyTorch ms/step | Otter / PyTorch time | Otter items/s | "
          "PyTorch items/s | Otter peak pool memory | PyTorch peak allocated |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %.3f | %.3f | %.2f | %.0f | %.0f | %.1f MiB | %.1f MiB |" % (
            r["model"], r["precision"], r["otter_ms"], r["torch_ms"], r["ratio"], r["otter_per_s"], r["torch_per_s"],
            r["otter_mem"] / 2**20, r["torch_mem"] / 2**20))
    print("\nGPU: %s; torch %s; %s" % (torch.cuda.get_device_name(0), torch.__version__,
                                       time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
