#!/usr/bin/env python3
"""Generates Otter's recurrent-model fixtures: PyTorch nn.LSTM / nn.GRU classifiers exported to ONNX,
with float64 PyTorch references for the first training step and a 5-step SGD trajectory.

Run with a Python that has torch, numpy and onnx (CI does not need it: the outputs are committed)::

    build-torch-venv/bin/python tests/models/make_rnn_models.py

Writes, next to this file:
  lstm_train.onnx, gru_train.onnx       the exported models
  lstm_train_reference.npz, gru_train_reference.npz   the references (keys below)

Models (seq 12, hidden 16, 5 classes, logits = Linear(last step's output of the top layer)):
  lstm_train  x int64 [batch, 12] -> Embedding(20, 8) -> 2-layer nn.LSTM(8, 16, batch_first)
  gru_train   x float [batch, 12, 6] -> Linear(6, 8) -> Tanh -> 2-layer nn.GRU(8, 16, batch_first)

Export: torch.onnx.export with the TorchScript exporter (dynamo=False), opset 17, training mode
(TrainingMode.TRAINING), do_constant_folding=False, a dynamic batch axis. The exporter turns each
layer into an ONNX LSTM/GRU node whose W, R and B inputs are computed in the graph from PyTorch's
weight_ih_l<k>, weight_hh_l<k>, bias_ih_l<k>, bias_hh_l<k> (Slice + Concat reorder PyTorch's gate
order ifgo to ONNX's iofc for LSTM and rzn to zrh for GRU; Unsqueeze adds num_directions). With
constant folding off those reorders stay in the graph, so every floating initializer is one
PyTorch parameter, unchanged: the mapping initializer -> parameter is checked here by name and
exact value (a folded export would instead hold reordered W/R/B initializers, whose gradients are
the reordered PyTorch gradients; this file refuses such an export rather than guess).

Reference keys (float64 PyTorch, the model converted with .double() from the float32 weights of
the file, on a fixed batch of 4):
  input:x, label                 the batch
  loss                           the first cross-entropy loss (mean over the batch)
  grad:<initializer>             d loss / d parameter, for every floating initializer
  sgd_lr                         the learning rate of the trajectory (plain SGD: momentum 0, no decay)
  traj_loss                      [5] the loss of each of 5 SGD steps on the same batch (before its update)
  final:<initializer>            every parameter after the 5 updates
  output:logits                  the first forward pass's logits
"""

import os
import warnings

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 17
SEQ, HIDDEN, CLASSES, BATCH = 12, 16, 5, 4
SGD_LR = 0.5
STEPS = 5

torch.set_num_threads(1)
warnings.filterwarnings("ignore")


class LSTMClassifier(nn.Module):
    def __init__(self, vocab=20, emb=8):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.rnn = nn.LSTM(emb, HIDDEN, num_layers=2, batch_first=True)
        self.fc = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x):
        y, _ = self.rnn(self.emb(x))
        return self.fc(y[:, -1, :])


class GRUClassifier(nn.Module):
    def __init__(self, features=6, proj=8):
        super().__init__()
        self.proj = nn.Linear(features, proj)
        self.rnn = nn.GRU(proj, HIDDEN, num_layers=2, batch_first=True)
        self.fc = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x):
        y, _ = self.rnn(torch.tanh(self.proj(x)))
        return self.fc(y[:, -1, :])


def randomize_(model, seed):
    """Seeded uniform(-0.5, 0.5) parameters: no two parameters equal (biases are not all zeros)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) - 0.5)
    return model


def batch(kind):
    rng = np.random.default_rng(7 if kind == "lstm" else 8)
    if kind == "lstm":
        x = rng.integers(0, 20, size=(BATCH, SEQ)).astype(np.int64)
    else:
        x = rng.uniform(-1.5, 1.5, size=(BATCH, SEQ, 6)).astype(np.float32)
    label = rng.integers(0, CLASSES, size=(BATCH,)).astype(np.int64)
    return x, label


def export(model, x, path):
    model.train()
    torch.onnx.export(model, (torch.from_numpy(x),), path, dynamo=False, opset_version=OPSET, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    return m


def initializer_mapping(model_proto, model):
    """initializer name -> PyTorch parameter name, checked by exact value."""
    params = {n: p.detach().numpy() for n, p in model.named_parameters()}
    mapping = {}
    for init in model_proto.graph.initializer:
        value = numpy_helper.to_array(init)
        if value.dtype != np.float32:
            continue
        if init.name not in params or not np.array_equal(params[init.name], value):
            raise SystemExit("initializer %s is not a PyTorch parameter unchanged (constant folding?)" % init.name)
        mapping[init.name] = init.name
    missing = sorted(set(params) - set(mapping))
    if missing:
        raise SystemExit("parameters without an initializer: %s" % missing)
    return mapping


def reference(model32, x, label, mapping):
    model = LSTMClassifier() if isinstance(model32, LSTMClassifier) else GRUClassifier()
    model.load_state_dict(model32.state_dict())
    model = model.double().train()
    xt = torch.from_numpy(x if x.dtype == np.int64 else x.astype(np.float64))
    yt = torch.from_numpy(label)
    params = dict(model.named_parameters())
    out = {"input:x": x, "label": label, "sgd_lr": np.float64(SGD_LR)}
    losses = []
    for step in range(STEPS):
        model.zero_grad(set_to_none=True)
        logits = model(xt)
        loss = F.cross_entropy(logits, yt)
        loss.backward()
        losses.append(float(loss.item()))
        if step == 0:
            out["loss"] = np.float64(loss.item())
            out["output:logits"] = logits.detach().numpy().copy()
            for init, pname in mapping.items():
                out["grad:" + init] = params[pname].grad.detach().numpy().copy()
        with torch.no_grad():
            for p in model.parameters():
                p -= SGD_LR * p.grad
    out["traj_loss"] = np.asarray(losses)
    for init, pname in mapping.items():
        out["final:" + init] = params[pname].detach().numpy().copy()
    return out


def main():
    for kind, cls, seed in (("lstm", LSTMClassifier, 1), ("gru", GRUClassifier, 2)):
        torch.manual_seed(seed)
        model = randomize_(cls(), seed)
        x, label = batch(kind)
        path = os.path.join(HERE, "%s_train.onnx" % kind)
        m = export(model, x, path)
        mapping = initializer_mapping(m, model)
        ref = reference(model, x, label, mapping)
        np.savez_compressed(os.path.join(HERE, "%s_train_reference.npz" % kind), **ref)
        ops = sorted({n.op_type for n in m.graph.node})
        print("%s_train.onnx: %d bytes, ops %s; loss %.6f, trajectory %s" %
              (kind, os.path.getsize(path), ops, ref["loss"], " ".join("%.5f" % v for v in ref["traj_loss"])))


if __name__ == "__main__":
    main()
