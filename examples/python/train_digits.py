#!/usr/bin/env python3
"""Trains the bundled digits MLP with Otter's Python bindings and exports the trained model.

    OTTER_LIBRARY=build/libotter.so python3 examples/python/train_digits.py \
        build/testdata/digits /tmp/mlp_trained.onnx [--epochs 10]

DATA_DIR holds mlp.onnx (input "x" float32 [N,64], output "logits" [N,10]) and train.npz /
test.npz (keys "x" float32 and "y" int64).
"""

import argparse
import os
import sys
import time

import numpy as np

try:
    import otter
except ImportError:  # running from a source checkout without `pip install bindings/python`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bindings", "python"))
    import otter


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", help="directory with mlp.onnx, train.npz and test.npz")
    parser.add_argument("output", help="path of the exported, trained .onnx model")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()

    train = np.load(os.path.join(args.data_dir, "train.npz"))
    test = np.load(os.path.join(args.data_dir, "test.npz"))
    x, y = train["x"], train["y"]
    rng = np.random.default_rng(0)

    print("otter %s (%s)" % (otter.__version__, otter.library_path))
    with otter.TrainingSession(os.path.join(args.data_dir, "mlp.onnx"), loss="cross_entropy",
                               optimizer="adamw", lr=args.lr, seed=0) as session:
        print("device %s; inputs %s" % (session.device, session.inputs))
        start = time.perf_counter()
        for epoch in range(args.epochs):
            order = rng.permutation(len(x))
            xs, ys = x[order], y[order]  # contiguous copies: slices of them are passed without copying
            losses = [session.train_step(x=xs[b:b + args.batch], label=ys[b:b + args.batch])
                      for b in range(0, len(xs), args.batch)]
            print("epoch %2d  mean loss %.4f" % (epoch + 1, float(np.mean(losses))))
        seconds = time.perf_counter() - start

        outputs, loss = session.eval_loss(x=test["x"], label=test["y"])
        accuracy = float(np.mean(outputs["logits"].argmax(axis=1) == test["y"]))
        print("trained %d epochs (%d steps) in %.2f s; test loss %.4f, accuracy %.2f%%"
              % (args.epochs, session.stats["step"], seconds, loss, 100 * accuracy))
        session.export(args.output)
        print("exported %s" % args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
