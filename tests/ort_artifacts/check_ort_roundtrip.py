"""Otter <-> ONNX Runtime training on the same artifacts (tests/ort_artifacts/<name>):

  1. Otter trains N steps on the artifacts, computes the eval model's loss on step 0's batch and
     writes an ORT checkpoint;
  2. onnxruntime-training 1.19.2 loads that checkpoint, gets Otter's eval loss with its own eval
     model (BatchNormalization: the running statistics Otter's training updated), and trains N
     more steps;
  3. ORT alone trains 2N steps from the original checkpoint;
then the losses of every step and the final parameters (frozen ones and running statistics
included) must agree (rtol 1e-5), and ORT's step count must continue from Otter's.

Run with the Python of the venv made by bench/cpu/setup_ort_training.sh (OTTER_ORT_VENV, default
<repo>/build-ort-venv): the ctest `ort_artifacts_roundtrip` does. Exits 77 (skipped) when that
venv or the Otter library is absent, so CI without PyPI skips it cleanly.

Environment: OTTER_LIBRARY (libotter.so).
"""

import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SKIP = 77

try:
    import numpy as np
    sys.path.insert(0, os.path.join(REPO, "bench", "cpu"))
    from ort_worker import import_ort_training
    ort, artifacts, api = import_ort_training()
except Exception as e:  # noqa: BLE001 - any import problem means "no ORT training here"
    print("skipped: onnxruntime-training is not importable (%s)" % e)
    sys.exit(SKIP)

LIBRARY = os.environ.get("OTTER_LIBRARY") or os.path.join(REPO, "build", "libotter.so")
if not os.path.exists(LIBRARY):
    print("skipped: no Otter library at %s" % LIBRARY)
    sys.exit(SKIP)
os.environ["OTTER_LIBRARY"] = LIBRARY
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))
import otter  # noqa: E402

N = 5
LR = 0.01


def batch(data, k):
    """Step k's inputs, in the training model's order (the data input, then labels)."""
    names = [n for n in data.files if n != "labels"] + ["labels"]
    return [data[n][k] for n in names], {n: data[n][k] for n in names}


def ort_train(d, checkpoint, data, steps, eval_first=False):
    state = api.CheckpointState.load_checkpoint(checkpoint)
    module = api.Module(os.path.join(d, "training_model.onnx"), state, os.path.join(d, "eval_model.onnx"))
    opt = api.Optimizer(os.path.join(d, "optimizer_model.onnx"), module)
    opt.set_learning_rate(LR)
    eval_loss = None
    if eval_first:
        module.eval()
        eval_loss = float(module(*batch(data, 0)[0]))
    module.train()
    losses = []
    for s in steps:
        losses.append(float(module(*batch(data, s)[0])))
        opt.step()
        module.lazy_reset_grad()
    return losses, state, eval_loss


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "mlp"
    src = os.path.join(HERE, name)
    data = np.load(os.path.join(src, "data.npz"))
    tmp = tempfile.mkdtemp(prefix="otter_ort_")
    try:
        d = os.path.join(tmp, name)
        shutil.copytree(src, d)
        # 1. Otter, N steps, then an ORT checkpoint.
        s = otter.TrainingSession(os.path.join(d, "training_model.onnx"), device="cpu", lr=LR)
        otter_losses = [s.train_step(batch(data, k)[1]) for k in range(N)]
        _, otter_eval = s.eval_loss(batch(data, 0)[1])
        ckpt = os.path.join(tmp, "otter_checkpoint")
        s.save_checkpoint(ckpt)
        # 2. ORT evaluates and continues from Otter's checkpoint.
        cont_losses, cont_state, ort_eval = ort_train(d, ckpt, data, range(N, 2 * N), eval_first=True)
        print("eval loss after %d steps: otter %.8g, ORT on Otter's checkpoint %.8g" % (N, otter_eval, ort_eval))
        np.testing.assert_allclose(otter_eval, ort_eval, rtol=1e-5)
        # 3. ORT alone.
        ref_losses, ref_state, _ = ort_train(d, os.path.join(d, "checkpoint"), data, range(2 * N))
        got = np.array(otter_losses + cont_losses)
        want = np.array(ref_losses)
        print("otter+ort:", got)
        print("ort only: ", want)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        for p, _ in ref_state.parameters:  # trained and frozen (running statistics too)
            np.testing.assert_allclose(cont_state.parameters[p].data, ref_state.parameters[p].data, rtol=1e-5, atol=1e-6,
                                       err_msg=p)
        print("ok: ORT continued Otter's checkpoint and matches ORT-only training (%d + %d steps)" % (N, N))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
