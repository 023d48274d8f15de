#!/usr/bin/env python3
"""Trains the PyTorch-exported fixtures on real data through the Otter Python bindings (CPU):

  gpt   tests/models/gpt_train_dropout.onnx (nanoGPT, dropout 0.1) on the character corpus
        examples/text/corpus.txt (first 90% train, last 10% validation): random 64-character
        windows, next-character cross-entropy; the validation loss must fall clearly (to at most
        0.75x its initial value and below the unigram entropy of the corpus).
  cnn   tests/models/cnn_train.onnx (ResNet-18 layout, BatchNorm in training mode) on scikit-learn's
        8x8 digits upsampled to 3x32x32; test accuracy must reach --cnn-target (default 0.90).

With several precisions (--precision fp32,fp16,bf16) the first is the reference: the CNN's test
accuracy in each other precision must be within 2 points of it (see the comment in main), and the GPT's final validation
loss within 3% of it (the mixed-precision issue's criterion).

Usage: OTTER_LIBRARY=build/libotter.so python3 tests/models/train_real.py [--only gpt,cnn]
       [--precision fp32[,fp16,bf16]] [--gpt-steps N] [--cnn-epochs N]
Prints one line per evaluation and a summary; exits 1 if a target is missed.
"""
import argparse
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
import otter  # noqa: E402


def train_gpt(args, precision):
    text = open(os.path.join(ROOT, "examples", "text", "corpus.txt"), encoding="ascii").read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in text], dtype=np.int64)
    split = int(0.9 * len(data))
    train, val = data[:split], data[split:]
    T, B = 64, 16
    rng = np.random.default_rng(0)

    def batch(src, n):
        starts = rng.integers(0, len(src) - T - 1, size=n)
        x = np.stack([src[s:s + T] for s in starts])
        y = np.stack([src[s + 1:s + T + 1] for s in starts])
        return x, y

    vx, vy = batch(val, 64)  # a fixed validation set
    counts = np.bincount(train, minlength=len(chars)).astype(np.float64)
    p = counts / counts.sum()
    unigram = float(-(p[p > 0] * np.log(p[p > 0])).sum())
    s = otter.TrainingSession(os.path.join(HERE, "gpt_train_dropout.onnx"), loss="cross_entropy", label="label",
                              optimizer="adamw", lr=3e-3, weight_decay=0.01, schedule="cosine", warmup_steps=20,
                              total_steps=args.gpt_steps, clip_norm=1.0, precision=precision, seed=1)

    def val_loss():
        _, loss = s.eval_loss(idx=vx, label=vy)
        return loss

    first = val_loss()
    print(f"gpt  step    0  val_loss {first:.4f}  (uniform {math.log(len(chars)):.4f}, unigram {unigram:.4f})")
    t0 = time.time()
    for step in range(1, args.gpt_steps + 1):
        x, y = batch(train, B)
        loss = s.train_step(idx=x, label=y)
        if step % max(1, args.gpt_steps // 4) == 0:
            print(f"gpt  step {step:4d}  train_loss {loss:.4f}  val_loss {val_loss():.4f}  "
                  f"{step * B * T / (time.time() - t0):.0f} tokens/s  loss_scale {s.stats['loss_scale']:g}")
    last = val_loss()
    ok = last <= 0.75 * first and last < unigram
    return ok, last, f"gpt {precision}: validation loss {first:.4f} -> {last:.4f} (target <= {0.75 * first:.4f} and < unigram {unigram:.4f})"


def train_cnn(args, precision):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    x = np.repeat(np.repeat(x, 4, axis=1), 4, axis=2)[:, None]  # 8x8 -> 32x32
    x = np.repeat(x, 3, axis=1)  # 3 channels
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[:1500], idx[1500:]
    s = otter.TrainingSession(os.path.join(HERE, "cnn_train.onnx"), loss="cross_entropy", label="label",
                              optimizer="adamw", lr=2e-3, precision=precision, seed=2)
    rng = np.random.default_rng(1)
    t0 = time.time()
    for epoch in range(args.cnn_epochs):
        order = tr[rng.permutation(len(tr))]
        losses = [s.train_step(x=x[order[i:i + 32]], label=y[order[i:i + 32]]) for i in range(0, len(order), 32)]
        out = s.eval_step(x=x[te])
        acc = float((out["logits"].argmax(axis=1) == y[te]).mean())
        print(f"cnn  epoch {epoch + 1}  train_loss {np.mean(losses):.4f}  test_accuracy {acc:.4f}  "
              f"{(epoch + 1) * len(tr) / (time.time() - t0):.0f} images/s")
    return acc >= args.cnn_target, acc, f"cnn {precision}: test accuracy {acc:.4f} (target >= {args.cnn_target})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="gpt,cnn")
    ap.add_argument("--precision", default="fp32", help="comma-separated; the first is the reference")
    ap.add_argument("--gpt-steps", type=int, default=300)
    ap.add_argument("--cnn-epochs", type=int, default=3)
    ap.add_argument("--cnn-target", type=float, default=0.90)
    args = ap.parse_args()
    results = []
    precisions = args.precision.split(",")
    for name in args.only.split(","):
        reference = None
        for precision in precisions:
            ok, metric, line = {"gpt": train_gpt, "cnn": train_cnn}[name](args, precision)
            if reference is None:
                reference = metric
            elif name == "cnn":
                # 2 points, not 1: the test set has 297 images and FP32 alone ends 1.0 point apart
                # after 2 epochs (4.4 after 3) when only its convolution library changes (oneDNN vs
                # im2col, both equal to FP64 within 1e-5; OTTER_CPU_ONEDNN=0), so a 1-point margin
                # measures rounding luck. Accuracy at or above FP32's always passes.
                close = metric >= reference - 0.02
                ok = ok and close
                line += f"; fp32 reference {reference:.4f} ({'within' if close else 'NOT within'} 2 points)"
            else:
                close = metric <= reference * 1.03
                ok = ok and close
                line += f"; reference {reference:.4f} ({'within' if close else 'NOT within'} 3%)"
            results.append((ok, line))
    print("\nsummary:")
    for ok, line in results:
        print(("  PASS  " if ok else "  FAIL  ") + line)
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
