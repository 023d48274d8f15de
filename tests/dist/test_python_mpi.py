"""The Python bindings under ``mpirun -np 2`` (label mpi; run by tests/dist/run_mpi.sh):
rank/world_size, 2 ranks with half batches == 1 process with the full batch (to 1e-6 over 10
AdamW steps), save/export written by rank 0 only, and DistributedError on every rank when the
ranks' options differ. Usage: run_mpi.sh 2 python3 test_python_mpi.py DIGITS_DIR WORK_DIR"""
import os
import sys

import numpy as np

import otter

digits, work = sys.argv[1], sys.argv[2]
model = os.path.join(digits, "mlp.onnx")
data = np.load(os.path.join(digits, "train.npz"))
x, y = data["x"], data["y"]
opts = dict(loss="cross_entropy", optimizer="adamw", lr=3e-3, device="cpu")

dist = otter.TrainingSession(model, distributed="mpi", **opts)
alone = otter.TrainingSession(model, distributed="off", **opts)
rank, world = dist.rank, dist.world_size
assert world == 2 and rank in (0, 1), (rank, world)
assert dist.stats["world_size"] == 2 and alone.world_size == 1 and alone.rank == 0
for step in range(10):
    rows = slice(64 * step, 64 * step + 64)
    xs, ys = x[rows], y[rows]
    dist.train_step(x=xs[rank::2], label=ys[rank::2])  # strided halves
    alone.train_step(x=xs, label=ys)
worst = max(float(np.abs(dist.get_parameter(k) - alone.get_parameter(k)).max()) for k in dist.parameters)
assert worst <= 1e-6, worst

os.makedirs(work, exist_ok=True)
mine = os.path.join(work, "py_rank%d" % rank)
for suffix in (".ckpt", ".onnx"):
    if os.path.exists(mine + suffix):
        os.remove(mine + suffix)
dist.save(mine + ".ckpt")
dist.export(mine + ".onnx")
assert os.path.exists(mine + ".ckpt") == (rank == 0) and os.path.exists(mine + ".onnx") == (rank == 0)

try:
    otter.TrainingSession(model, distributed="mpi", **dict(opts, lr=1e-3 if rank == 1 else 3e-3))
    raise AssertionError("ranks with different learning rates trained together")
except otter.DistributedError as e:
    assert "rank(s) 1 differ from rank 0" in str(e), str(e)

dist.train_step(x=x[:32][rank::2], label=y[:32][rank::2])  # the world still works
print("PASS python rank %d (max diff vs 1 process %.3g)" % (rank, worst))
