#!/usr/bin/env python3
"""Models and data of the Otter-vs-PyTorch CPU benchmark (bench/cpu/bench_models.py).

Run with a Python that has torch, torchvision, numpy and onnx (the repo's build-torch-venv)::

    build-torch-venv/bin/python bench/cpu/make_torch_models.py [--outdir DIR] [--models a,b] [--force]

For each model writes into OUTDIR (default build/bench-cpu/models), deterministically:

  <name>.onnx   the PyTorch model exported for training, as tests/models/make_models.py does:
                model.train(), torch.onnx.export(dynamo=False, opset 20,
                training=TrainingMode.TRAINING, do_constant_folding=False), batch axis dynamic,
                output "logits". The weights are the PyTorch model's initial weights, so Otter and
                PyTorch start equal.
  <name>.pt     the same initial weights as a PyTorch state_dict (not for creation-only models).
  <name>.npz    synthetic data with a fixed seed, N_BATCHES full batches: the model inputs by name
                and "label" (int64); the label is a fixed function of the inputs (mlp: a random
                linear teacher; resnet18: the class whose fixed random pattern was added to the
                noise image; GPTs: the next token of a random bigram chain; bert: the first token
                mod 4), so the loss can fall.
  <name>.json   meta: config, inputs, label shape, parameters, op histogram, a config hash (files
                with the same hash are reused unless --force).

Models (dropout 0, PyTorch default initialisation after torch.manual_seed):
  mlp          784-2048-2048-10 (Linear + ReLU), batch 256
  resnet18     torchvision.models.resnet18(num_classes=10), batch 32 of 3x32x32
  gpt-2l-d64   nanoGPT-style decoder: 2 layers, d_model 64, 2 heads, vocab 64, batch 16 x seq 32
  gpt-4l-d256  the same at 4 layers, d_model 256, 4 heads, vocab 64, batch 32 x seq 32
  bert-tiny    BERT-style encoder: 2 post-LN layers, d 64, 2 heads, FFN 256, vocab 1024, padding
               mask input, tanh pooler + classifier (4 classes), batch 32 x seq 24
  gpt2-124m    GPT-2 small shape (12 layers, d 768, 12 heads, vocab 50257, context 64), for session
               creation time only (wte tied to lm_head as in GPT-2: 123.7 M parameters at context 64; no .pt;
               one batch of 1 x 64 for the optional first step)

The decoders use F.scaled_dot_product_attention(is_causal=True) (exports to MatMul/Softmax with a
causal mask, as in tests/models' gpt fixture), LayerNorm, GELU, untied embedding and lm_head, and
return logits as [B, vocab, T] so that Otter's cross_entropy (class axis 1) and PyTorch's
F.cross_entropy both read them with a [B, T] label.
"""

import argparse
import collections
import hashlib
import json
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OPSET = 20          # the newest opset of the TorchScript exporter (as tests/models/make_models.py)
N_BATCHES = 16      # batches of synthetic data per model (cycled)
FORMAT = 3          # bump when the export or data generation changes

CONFIGS = collections.OrderedDict([
    ("mlp", dict(kind="mlp", sizes=[784, 2048, 2048, 10], batch=256)),
    ("resnet18", dict(kind="resnet18", num_classes=10, image=[3, 32, 32], batch=32)),
    ("gpt-2l-d64", dict(kind="gpt", n_layer=2, n_embd=64, n_head=2, vocab=64, seq=32, batch=16)),
    ("gpt-4l-d256", dict(kind="gpt", n_layer=4, n_embd=256, n_head=4, vocab=64, seq=32, batch=32)),
    ("bert-tiny", dict(kind="bert", layers=2, hidden=64, heads=2, intermediate=256, vocab=1024, seq=24,
                       classes=4, batch=32)),
    ("gpt2-124m", dict(kind="gpt", n_layer=12, n_embd=768, n_head=12, vocab=50257, seq=64, batch=1,
                       tied=True, creation_only=True, n_batches=1)),
])
SEED = 1234


def config_hash(name):
    import torch

    blob = json.dumps({"name": name, "cfg": CONFIGS[name], "format": FORMAT, "opset": OPSET,
                       "torch": torch.__version__.split("+")[0]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---- models -------------------------------------------------------------------------------------

def _nn():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class MLP(nn.Module):
        def __init__(self, sizes):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])

        def forward(self, x):
            for i, layer in enumerate(self.layers):
                x = layer(x)
                if i < len(self.layers) - 1:
                    x = F.relu(x)
            return x

    class CausalSelfAttention(nn.Module):
        def __init__(self, n_embd, n_head):
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd)
            self.c_proj = nn.Linear(n_embd, n_embd)
            self.n_head, self.n_embd = n_head, n_embd

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            h = self.n_head
            q = q.view(B, T, h, C // h).transpose(1, 2)
            k = k.view(B, T, h, C // h).transpose(1, 2)
            v = v.view(B, T, h, C // h).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=True)
            y = y.transpose(1, 2).contiguous().view(B, T, C)
            return self.c_proj(y)

    class Block(nn.Module):
        def __init__(self, n_embd, n_head):
            super().__init__()
            self.ln_1 = nn.LayerNorm(n_embd)
            self.attn = CausalSelfAttention(n_embd, n_head)
            self.ln_2 = nn.LayerNorm(n_embd)
            self.c_fc = nn.Linear(n_embd, 4 * n_embd)
            self.gelu = nn.GELU()
            self.mlp_proj = nn.Linear(4 * n_embd, n_embd)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp_proj(self.gelu(self.c_fc(self.ln_2(x))))

    class GPT(nn.Module):
        """nanoGPT at configurable size, untied lm_head unless tied=True; forward(idx [B, T]) -> logits [B, V, T]."""

        def __init__(self, vocab, seq, n_layer, n_head, n_embd, tied=False):
            super().__init__()
            self.wte = nn.Embedding(vocab, n_embd)
            self.wpe = nn.Embedding(seq, n_embd)
            self.h = nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(n_embd)
            self.lm_head = nn.Linear(n_embd, vocab, bias=False)
            if tied:  # as GPT-2 (124M counts the shared matrix once)
                self.lm_head.weight = self.wte.weight

        def forward(self, idx):
            t = idx.size(1)
            pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
            x = self.wte(idx) + self.wpe(pos)
            for block in self.h:
                x = block(x)
            return self.lm_head(self.ln_f(x)).transpose(1, 2)

    class BertLayer(nn.Module):
        """Post-LN encoder layer (HuggingFace BertLayer layout), plain matmul/softmax attention."""

        def __init__(self, hidden, heads, intermediate):
            super().__init__()
            self.heads, self.head_dim = heads, hidden // heads
            self.query = nn.Linear(hidden, hidden)
            self.key = nn.Linear(hidden, hidden)
            self.value = nn.Linear(hidden, hidden)
            self.attention_output = nn.Linear(hidden, hidden)
            self.attention_norm = nn.LayerNorm(hidden, eps=1e-12)
            self.intermediate = nn.Linear(hidden, intermediate)
            self.output = nn.Linear(intermediate, hidden)
            self.output_norm = nn.LayerNorm(hidden, eps=1e-12)

        def split(self, x):
            B, T, _ = x.shape
            return x.view(B, T, self.heads, self.head_dim).permute(0, 2, 1, 3)

        def forward(self, x, mask_bias):
            q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / (self.head_dim ** 0.5) + mask_bias
            ctx = torch.matmul(torch.softmax(scores, dim=-1), v).permute(0, 2, 1, 3).contiguous()
            ctx = ctx.view(ctx.shape[0], ctx.shape[1], -1)
            a = self.attention_norm(x + self.attention_output(ctx))
            return self.output_norm(a + self.output(F.gelu(self.intermediate(a))))

    class Bert(nn.Module):
        """forward(input_ids [B, T] int64, attention_mask [B, T] int64) -> logits [B, classes]."""

        def __init__(self, vocab, seq, layers, hidden, heads, intermediate, classes):
            super().__init__()
            self.word_embeddings = nn.Embedding(vocab, hidden)
            self.position_embeddings = nn.Embedding(seq, hidden)
            self.embedding_norm = nn.LayerNorm(hidden, eps=1e-12)
            self.layers = nn.ModuleList([BertLayer(hidden, heads, intermediate) for _ in range(layers)])
            self.pooler = nn.Linear(hidden, hidden)
            self.classifier = nn.Linear(hidden, classes)

        def forward(self, input_ids, attention_mask):
            t = input_ids.shape[1]
            pos = torch.arange(t, dtype=torch.long, device=input_ids.device)
            x = self.embedding_norm(self.word_embeddings(input_ids) + self.position_embeddings(pos))
            mask_bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
            for layer in self.layers:
                x = layer(x, mask_bias)
            return self.classifier(torch.tanh(self.pooler(x[:, 0])))

    return dict(MLP=MLP, GPT=GPT, Bert=Bert)


def build(name):
    """The PyTorch model `name`, freshly initialised from a fixed seed (train mode)."""
    import torch

    cfg = CONFIGS[name]
    classes = _nn()
    torch.manual_seed(SEED)
    if cfg["kind"] == "mlp":
        m = classes["MLP"](cfg["sizes"])
    elif cfg["kind"] == "resnet18":
        import torchvision

        m = torchvision.models.resnet18(weights=None, num_classes=cfg["num_classes"])
    elif cfg["kind"] == "gpt":
        m = classes["GPT"](cfg["vocab"], cfg["seq"], cfg["n_layer"], cfg["n_head"], cfg["n_embd"],
                                 tied=cfg.get("tied", False))
    elif cfg["kind"] == "bert":
        m = classes["Bert"](cfg["vocab"], cfg["seq"], cfg["layers"], cfg["hidden"], cfg["heads"],
                            cfg["intermediate"], cfg["classes"])
    else:
        raise ValueError(name)
    return m.train()


# ---- data ---------------------------------------------------------------------------------------

def make_data(name):
    """{input name: array, ..., "label": int64 array}: n_batches * batch samples, fixed seed."""
    cfg = CONFIGS[name]
    n = cfg["batch"] * cfg.get("n_batches", N_BATCHES)
    rng = np.random.default_rng(SEED)
    if cfg["kind"] == "mlp":
        x = rng.standard_normal((n, cfg["sizes"][0]), dtype=np.float32)
        teacher = rng.standard_normal((cfg["sizes"][0], cfg["sizes"][-1])).astype(np.float32)
        return {"x": x, "label": np.argmax(x @ teacher, axis=1).astype(np.int64)}
    if cfg["kind"] == "resnet18":
        # noise plus a fixed random pattern per class: learnable within a few steps (a teacher on
        # pure-noise images was not: the loss rose over the first dozen Adam steps, both runtimes)
        y = rng.integers(0, cfg["num_classes"], size=n).astype(np.int64)
        patterns = rng.standard_normal([cfg["num_classes"]] + cfg["image"], dtype=np.float32)
        x = rng.standard_normal([n] + cfg["image"], dtype=np.float32) + patterns[y]
        return {"x": np.ascontiguousarray(x, dtype=np.float32), "label": y}
    if cfg["kind"] == "gpt":
        v, t = cfg["vocab"], cfg["seq"]
        # a random bigram chain: each token is followed by one of 3 tokens (probabilities .7/.2/.1)
        nxt = rng.integers(0, v, size=(v, 3))
        choice = rng.choice(3, size=(n, t + 1), p=[0.7, 0.2, 0.1])
        seqs = np.empty((n, t + 1), dtype=np.int64)
        seqs[:, 0] = rng.integers(0, v, size=n)
        for j in range(1, t + 1):
            seqs[:, j] = nxt[seqs[:, j - 1], choice[:, j]]
        return {"idx": np.ascontiguousarray(seqs[:, :t]), "label": np.ascontiguousarray(seqs[:, 1:])}
    if cfg["kind"] == "bert":
        t = cfg["seq"]
        ids = rng.integers(1, cfg["vocab"], size=(n, t)).astype(np.int64)
        lengths = rng.integers(t // 2, t + 1, size=n)
        mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.int64)
        ids = np.where(mask == 1, ids, 0)  # padding token 0
        return {"input_ids": ids, "attention_mask": mask,
                "label": (ids[:, 0] % cfg["classes"]).astype(np.int64)}  # read by the pooler
    raise ValueError(name)


def input_names(name):
    return [k for k in make_data_keys(name) if k != "label"]


def make_data_keys(name):
    kind = CONFIGS[name]["kind"]
    return {"mlp": ["x", "label"], "resnet18": ["x", "label"], "gpt": ["idx", "label"],
            "bert": ["input_ids", "attention_mask", "label"]}[kind]


# ---- export -------------------------------------------------------------------------------------

def op_histogram(model_proto):
    hist = collections.Counter(n.op_type if n.domain in ("", "ai.onnx") else n.domain + "::" + n.op_type
                               for n in model_proto.graph.node)
    return dict(sorted(hist.items()))


def export(name, outdir, force=False):
    import onnx
    import torch

    cfg = CONFIGS[name]
    paths = {ext: os.path.join(outdir, name + ext) for ext in (".onnx", ".pt", ".npz", ".json")}
    h = config_hash(name)
    need = [".onnx", ".npz", ".json"] + ([] if cfg.get("creation_only") else [".pt"])
    if not force and all(os.path.exists(paths[e]) for e in need):
        with open(paths[".json"]) as f:
            if json.load(f).get("hash") == h:
                print("%-12s up to date (%s)" % (name, paths[".onnx"]), flush=True)
                return
    t0 = time.perf_counter()
    model = build(name)
    data = make_data(name)
    names = input_names(name)
    batch = cfg["batch"]
    args = tuple(torch.from_numpy(data[k][:batch]) for k in names)
    axes = {k: {0: "batch"} for k in names}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, paths[".onnx"], dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=["logits"], dynamic_axes=axes,
                          training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    m = onnx.load(paths[".onnx"], load_external_data=False)
    if not cfg.get("creation_only"):
        torch.save(model.state_dict(), paths[".pt"])
    np.savez(paths[".npz"], **data)
    with torch.no_grad():
        out = model(*args)
    meta = {
        "name": name, "hash": h, "config": cfg, "inputs": names, "label_shape": list(data["label"].shape[1:]),
        "output_shape": list(out.shape), "batch": batch, "n_samples": int(len(data["label"])),
        "torch_parameters": int(sum(p.numel() for p in model.parameters())),
        "onnx_bytes": os.path.getsize(paths[".onnx"]), "opset": OPSET,
        "export": "torch.onnx.export(dynamo=False, opset_version=%d, training=TRAINING, do_constant_folding=False)" % OPSET,
        "torch": torch.__version__, "onnx": onnx.__version__, "ops": op_histogram(m),
    }
    with open(paths[".json"], "w") as f:
        json.dump(meta, f, indent=1)
    print("%-12s %6.1f M params  %7.1f MB onnx  exported in %.1f s  ops: %s" % (
        name, meta["torch_parameters"] / 1e6, meta["onnx_bytes"] / 1e6, time.perf_counter() - t0,
        ", ".join("%s %d" % kv for kv in meta["ops"].items())), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outdir", default=os.path.join(REPO, "build", "bench-cpu", "models"))
    ap.add_argument("--models", default=",".join(k for k, c in CONFIGS.items() if not c.get("creation_only")),
                    help="comma list of %s" % ", ".join(CONFIGS))
    ap.add_argument("--force", action="store_true", help="re-export even when the files are up to date")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    os.makedirs(args.outdir, exist_ok=True)
    for name in [m for m in args.models.split(",") if m]:
        if name not in CONFIGS:
            sys.exit("unknown model %r (known: %s)" % (name, ", ".join(CONFIGS)))
        export(name, args.outdir, args.force)


if __name__ == "__main__":
    main()
