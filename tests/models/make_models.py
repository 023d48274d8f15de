#!/usr/bin/env python3
"""Generates Otter's real-model fixtures: ONNX files exported by PyTorch and first-step references.

Run with a Python that has torch, numpy, onnx, onnxruntime and onnxscript (CI does not need it:
the outputs are committed)::

    build-torch-venv/bin/python tests/models/make_models.py

Writes, next to this file:
  <name>.onnx               the exported model (see README.md for the list)
  <name>_reference.npz      the reference batch and PyTorch's first-step loss and gradients
  manifest.json             per fixture: inputs, outputs, loss, trainable initializers, the
                            PyTorch-parameter -> initializer mapping, op histogram, sizes
and prints the op histogram and the parameter mapping of each file.

Everything is deterministic: fixed seeds, random initialisation, no downloads. The GPT reads the
character set and its reference batch from examples/text/corpus.txt.
"""

import argparse
import collections
import copy
import json
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(REPO, "examples", "text", "corpus.txt")

TS_OPSET = 20     # the newest opset the TorchScript exporter (dynamo=False) supports in torch 2.x
DYNAMO_OPSET = 23  # the newest opset the dynamo exporter supports (torch.onnx._constants.ONNX_MAX_OPSET)
BATCH = 4         # rows in each reference batch

torch.set_num_threads(1)
warnings.filterwarnings("ignore")


# ---- models --------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: conv3x3-BN-ReLU-conv3x3-BN, + shortcut, ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:  # 1x1 conv shortcut (stride 2)
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class ResNet18Small(nn.Module):
    """ResNet-18 layout (stem conv + BN + ReLU + max-pool, 4 stages of 2 BasicBlocks, global
    average pool, Linear) at widths 8/16/32/64 for 3x32x32 images and 10 classes."""

    def __init__(self, widths=(8, 16, 32, 64), num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w, 1)))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, dropout):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head, self.n_embd, self.dropout = n_head, n_embd, dropout

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None,
                                           dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class GPTMLP(nn.Module):
    def __init__(self, n_embd, dropout):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class GPTBlock(nn.Module):
    def __init__(self, n_embd, n_head, dropout):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = GPTMLP(n_embd, dropout)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT's model at toy size. forward(idx [B, T] int64) -> logits [B, V, T]: the class axis
    is 1 so that Otter's cross_entropy (class axis 1) reads it with [B, T] next-char targets."""

    def __init__(self, vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=64, dropout=0.0):
        super().__init__()
        self.block_size = block_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(block_size, n_embd),
            drop=nn.Dropout(dropout),
            h=nn.ModuleList([GPTBlock(n_embd, n_head, dropout) for _ in range(n_layer)]),
            ln_f=nn.LayerNorm(n_embd),
        ))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as nanoGPT

    def forward(self, idx):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        return self.lm_head(x).transpose(1, 2)


class BertSelfAttention(nn.Module):
    def __init__(self, hidden, heads, dropout):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def split(self, x):
        B, T, _ = x.shape
        return x.view(B, T, self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x, mask_bias):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / (self.head_dim ** 0.5) + mask_bias
        probs = self.dropout(torch.softmax(scores, dim=-1))
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(ctx.shape[0], ctx.shape[1], -1)


class BertLayer(nn.Module):
    """A post-LN BERT encoder layer (as HuggingFace's BertLayer)."""

    def __init__(self, hidden, heads, intermediate, dropout):
        super().__init__()
        self.attention = BertSelfAttention(hidden, heads, dropout)
        self.attention_output = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.intermediate = nn.Linear(hidden, intermediate)
        self.output = nn.Linear(intermediate, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask_bias):
        a = self.attention_norm(x + self.dropout(self.attention_output(self.attention(x, mask_bias))))
        h = F.gelu(self.intermediate(a))
        return self.output_norm(a + self.dropout(self.output(h)))


class BertTiny(nn.Module):
    """BERT-style classifier: word + position embeddings, LayerNorm, 2 encoder layers with an
    additive padding mask from attention_mask [B, T] (1 = token, 0 = padding), a tanh pooler on
    the first token and a Linear head. forward(input_ids, attention_mask) -> logits [B, classes]."""

    def __init__(self, vocab_size=128, max_positions=32, hidden=64, layers=2, heads=2, intermediate=128,
                 num_labels=3, dropout=0.0):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, hidden)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.embedding_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.embedding_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList([BertLayer(hidden, heads, intermediate, dropout) for _ in range(layers)])
        self.pooler = nn.Linear(hidden, hidden)
        self.classifier_dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, input_ids, attention_mask):
        t = input_ids.shape[1]
        pos = torch.arange(t, dtype=torch.long, device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(pos)
        x = self.embedding_dropout(self.embedding_norm(x))
        mask_bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, mask_bias)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return self.classifier(self.classifier_dropout(pooled))


# ---- fixed initialisation and batches ------------------------------------------------------


def randomize_(model, seed):
    """Overwrites every parameter and BatchNorm buffer with seeded random values, so that no two
    parameters are equal (zeros/ones biases and norms would make matching initializers by value
    ambiguous) and eval-mode BatchNorm is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, (nn.BatchNorm2d, nn.LayerNorm)):
                mod.weight.copy_(1 + 0.1 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=g))
                if isinstance(mod, nn.BatchNorm2d):
                    mod.running_mean.copy_(0.1 * torch.randn(mod.running_mean.shape, generator=g))
                    mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=g))
            elif isinstance(mod, nn.Embedding):
                mod.weight.copy_(0.02 * torch.randn(mod.weight.shape, generator=g))
            elif isinstance(mod, (nn.Linear, nn.Conv2d)):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) / fan_in ** 0.5)
                if mod.bias is not None:
                    mod.bias.copy_(0.02 * torch.randn(mod.bias.shape, generator=g))
    return model


def corpus():
    with open(CORPUS, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    return text, chars


def cnn_batch():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=(BATCH,)).astype(np.int64)
    return {"x": x}, y


def gpt_batch(block_size=64):
    text, chars = corpus()
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in text], dtype=np.int64)
    rng = np.random.default_rng(2)
    starts = rng.integers(0, len(data) - block_size - 1, size=(BATCH,))
    x = np.stack([data[s:s + block_size] for s in starts])
    y = np.stack([data[s + 1:s + 1 + block_size] for s in starts])
    return {"idx": x}, y


def bert_batch(t=16, vocab=128, labels=3):
    rng = np.random.default_rng(3)
    ids = rng.integers(1, vocab, size=(BATCH, t)).astype(np.int64)
    lengths = np.array([t, 12, 9, 5])[:BATCH]
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, 0)  # padding token 0
    y = rng.integers(0, labels, size=(BATCH,)).astype(np.int64)
    return {"input_ids": ids, "attention_mask": mask}, y


# ---- PyTorch references --------------------------------------------------------------------


class Candidate:
    """A tensor an ONNX initializer may hold: a PyTorch parameter (or its transpose, or a Conv
    weight/bias with its BatchNorm folded in) with its value and the loss gradient w.r.t. it.
    `uses`: the op types that may consume it (None: any)."""

    def __init__(self, name, value, grad, param_names, uses=None):
        self.name, self.value, self.grad = name, value, grad
        self.param_names = param_names  # the PyTorch parameters it is made of
        self.uses = uses


def loss_and_grads(model, inputs, label, training):
    """Runs the model in train() or eval() mode on the batch; returns (loss, output, {param: grad})."""
    model.train(training)
    model.zero_grad(set_to_none=True)
    args = [torch.from_numpy(v) for v in inputs.values()]
    out = model(*args)
    loss = F.cross_entropy(out, torch.from_numpy(label))
    loss.backward()
    grads = {n: p.grad.detach().numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.item()), out.detach().numpy().copy(), grads


def untie_gpt(model):
    """A copy with lm_head.weight a separate parameter of the same value: its gradient is then the
    head's share alone and wte's the embedding's share alone."""
    m = copy.deepcopy(model)
    m.lm_head.weight = nn.Parameter(m.transformer.wte.weight.detach().clone())
    return m


def fuse_conv_bn(model):
    """A copy with every Conv2d+BatchNorm2d pair folded (as constant folding in an eval export
    does), and the map fused-conv-name -> (conv name, bn name)."""
    m = copy.deepcopy(model).eval()
    pairs = {}

    def fold(parent, conv_attr, bn_attr, prefix):
        conv, bn = getattr(parent, conv_attr), getattr(parent, bn_attr)
        setattr(parent, conv_attr, torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn))
        setattr(parent, bn_attr, nn.Identity())
        pairs[prefix + conv_attr] = (prefix + conv_attr, prefix + bn_attr)

    fold(m, "conv1", "bn1", "")
    for lname in ("layer1", "layer2", "layer3", "layer4"):
        for bi, block in enumerate(getattr(m, lname)):
            prefix = "%s.%d." % (lname, bi)
            fold(block, "conv1", "bn1", prefix)
            fold(block, "conv2", "bn2", prefix)
            if block.downsample is not None:
                conv, bn = block.downsample[0], block.downsample[1]
                block.downsample[0] = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
                block.downsample[1] = nn.Identity()
                pairs[prefix + "downsample.0"] = (prefix + "downsample.0", prefix + "downsample.1")
    for p in m.parameters():
        p.requires_grad_(True)
    return m, pairs


def candidates_for(kind, model, inputs, label, training):
    """The reference loss, output and the candidate tensors (with gradients) for one fixture.

    Computed in float64 (the fp32 weights and batch, converted exactly): PyTorch's own fp32
    gradients of the train-mode ResNet differ from the exact ones by up to 6% (max-abs-relative)
    in the early layers -- a batch of 4 through 20 training-mode BatchNorms is ill-conditioned --
    which would make a 1e-4 comparison meaningless."""
    cands = []
    model = copy.deepcopy(model).double()
    inputs = {k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in inputs.items()}
    if kind == "gpt":
        tied_loss, out, tied = loss_and_grads(model, inputs, label, training)
        u = untie_gpt(model)
        loss, out_u, grads = loss_and_grads(u, inputs, label, training)
        assert abs(loss - tied_loss) <= 1e-6 * abs(tied_loss)
        both = grads["transformer.wte.weight"] + grads["lm_head.weight"]
        assert np.allclose(both, tied["transformer.wte.weight"], rtol=1e-5, atol=1e-8), "untied grads do not add up"
        params = dict(u.named_parameters())
    else:
        loss, out, grads = loss_and_grads(model, inputs, label, training)
        params = dict(model.named_parameters())
    for name, p in params.items():
        val = p.detach().numpy().copy()
        is_emb = name.endswith("wte.weight") or name.endswith("embeddings.weight") or name.endswith("wpe.weight")
        uses = {"Gather"} if is_emb else None
        cands.append(Candidate(name, val, grads[name], [name], uses))
        if is_emb and kind == "bert" and name.startswith("position"):
            # Gather(position table, arange(T)) with T fixed constant-folds to the first T rows.
            t = next(iter(inputs.values())).shape[1]
            if t < val.shape[0]:
                cands.append(Candidate("%s[:%d]" % (name, t), val[:t].copy(), grads[name][:t].copy(), [name]))
        if val.ndim == 2 and not is_emb:
            cands.append(Candidate(name + ".T", val.T.copy(), grads[name].T.copy(), [name], uses))
    if kind == "gpt":
        # The one tied parameter read by both Gather and (a Transpose or) MatMul.
        cands.append(Candidate("transformer.wte.weight+lm_head.weight (tied)", params["lm_head.weight"].detach().numpy(),
                               both, ["transformer.wte.weight", "lm_head.weight"], uses="tied"))
    if kind == "cnn" and not training:
        fused, pairs = fuse_conv_bn(model)
        floss, _, fgrads = loss_and_grads(fused, inputs, label, False)
        assert abs(floss - loss) <= 1e-5 * abs(loss), (floss, loss)
        fparams = dict(fused.named_parameters())
        for conv_name, (cname, bname) in pairs.items():
            for suffix in ("weight", "bias"):
                n = conv_name + "." + suffix
                src = [cname + ".weight", bname + ".weight", bname + ".bias"]
                cands.append(Candidate("fold(%s, %s).%s" % (cname, bname, suffix), fparams[n].detach().numpy().copy(),
                                       fgrads[n], src))
    return loss, out, cands


# ---- mapping initializers to parameters ----------------------------------------------------


FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)


def consumers_of(graph):
    cons = collections.defaultdict(list)
    for node in graph.node:
        for i in node.input:
            if i:
                cons[i].append(node)
    return cons


def consumer_ops(name, cons, depth=0):
    """Op types reading `name`, looking through Transpose/Identity/Cast (the tied head weight)."""
    ops = set()
    for node in cons.get(name, []):
        if node.op_type in ("Transpose", "Identity", "Cast") and depth < 3:
            sub = consumer_ops(node.output[0], cons, depth + 1)
            ops |= {("T:" + o if node.op_type == "Transpose" else o) for o in sub}
        else:
            ops.add(node.op_type)
    return ops


def same(a, b, exact):
    if a.shape != b.shape:
        return False
    if exact:
        return np.array_equal(a, b)
    return np.allclose(a, b, rtol=1e-5, atol=1e-7)


def map_initializers(model_proto, cands, all_params):
    """Maps each floating initializer to the candidate it holds. Returns (mapping, constants,
    unmapped_params): mapping init -> Candidate; constants: floating initializers that are no
    parameter; unmapped_params: PyTorch parameters no initializer holds by itself."""
    graph = model_proto.graph
    cons = consumers_of(graph)
    mapping, constants = {}, []
    for init in graph.initializer:
        if init.data_type not in FLOAT_TYPES:
            continue
        val = numpy_helper.to_array(init).astype(np.float32)
        matches = [c for c in cands if same(c.value, val, exact=True)]
        if not matches:
            matches = [c for c in cands if same(c.value, val, exact=False)]
        if len(matches) > 1:  # the tied GPT weight: decide by who reads the initializer
            ops = consumer_ops(init.name, cons)
            gather = "Gather" in ops
            other = any(o != "Gather" for o in ops)
            if gather and other:
                matches = [c for c in matches if c.uses == "tied"]
            elif gather:
                matches = [c for c in matches if c.uses == {"Gather"}]
            else:
                matches = [c for c in matches if c.uses is None]
        if len(matches) > 1:
            by_name = [c for c in matches if c.name == init.name]
            matches = by_name or matches
        if not matches:
            constants.append(init.name)
            continue
        if len(matches) > 1:
            raise RuntimeError("initializer %s matches several parameters: %s" % (init.name, [c.name for c in matches]))
        mapping[init.name] = matches[0]
    held_alone = {c.param_names[0] for c in mapping.values() if len(c.param_names) == 1 or c.uses == "tied"}
    unmapped = [p for p in all_params if p not in held_alone]
    return mapping, constants, unmapped


def describe_tie(model_proto, mapping):
    """How the export represents GPT's tied wte/lm_head weight."""
    cons = consumers_of(model_proto.graph)
    tied = [k for k, c in mapping.items() if c.uses == "tied"]
    if tied:
        return ("one shared initializer '%s' read by %s: the tie is kept"
                % (tied[0], " and ".join(sorted(consumer_ops(tied[0], cons)))))
    emb = [k for k, c in mapping.items() if c.name == "transformer.wte.weight"]
    head = [k for k, c in mapping.items() if c.name.startswith("lm_head.weight")]
    return ("split by constant folding into '%s' (read by %s) and '%s' (%s, read by %s): two independent "
            "initializers, so training them no longer keeps them tied; the first-step gradients are the "
            "embedding's and the head's shares of PyTorch's tied gradient"
            % (emb[0], "/".join(sorted(consumer_ops(emb[0], cons))), head[0],
               "transposed copy" if mapping[head[0]].name.endswith(".T") else "copy",
               "/".join(sorted(consumer_ops(head[0], cons)))))


# ---- export ----------------------------------------------------------------------------------


def op_histogram(model_proto):
    hist = collections.Counter()

    def walk(nodes):
        for n in nodes:
            hist[(n.domain + "::" if n.domain not in ("", "ai.onnx") else "") + n.op_type] += 1
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g.node)
                for sg in a.graphs:
                    walk(sg.node)

    walk(model_proto.graph.node)
    for f in model_proto.functions:
        walk(f.node)
    return dict(sorted(hist.items()))


def export(model, inputs, path, training, dynamo):
    args = tuple(torch.from_numpy(v) for v in inputs.values())
    names = list(inputs)
    model.train(training)
    if dynamo:
        batch = torch.export.Dim("batch", min=1, max=1024)
        dyn = tuple({0: batch} for _ in names)
        prog = torch.onnx.export(model, args, dynamo=True, opset_version=DYNAMO_OPSET, input_names=names,
                                 output_names=["logits"], dynamic_shapes=dyn, external_data=False,
                                 optimize=True)
        prog.save(path, external_data=False)
    else:
        axes = {n: {0: "batch"} for n in names}
        axes["logits"] = {0: "batch"}
        torch.onnx.export(model, args, path, dynamo=False, opset_version=TS_OPSET, input_names=names,
                          output_names=["logits"], dynamic_axes=axes,
                          training=torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL,
                          do_constant_folding=not training)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    return m


def graph_signature(m):
    """Nodes (op, domain, attributes) and initializer names: equal signatures mean the same graph."""
    nodes = ["%s:%s:%s" % (n.domain, n.op_type, ";".join(sorted(str(a).replace("\n", " ") for a in n.attribute)))
             for n in m.graph.node]
    return nodes + sorted(i.name for i in m.graph.initializer)


def ort_outputs(path, inputs):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, inputs)[0]


def build(kind, dropout=0.0):
    if kind == "cnn":
        torch.manual_seed(0)
        return randomize_(ResNet18Small(), 10)
    if kind == "gpt":
        _, chars = corpus()
        torch.manual_seed(0)
        return randomize_(GPT(len(chars), dropout=dropout), 20)
    if kind == "bert":
        torch.manual_seed(0)
        return randomize_(BertTiny(dropout=dropout), 30)
    raise ValueError(kind)


BATCHES = {"cnn": cnn_batch, "gpt": gpt_batch, "bert": bert_batch}


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def make_fixture(kind, mode, dynamo, manifest, dropout=0.0, reference=True):
    training = mode == "train"
    suffix = ("_dropout" if dropout else "") + ("_dynamo" if dynamo else "")
    name = "%s_%s%s" % (kind, mode, suffix)
    path = os.path.join(HERE, name + ".onnx")
    inputs, label = BATCHES[kind]()
    model = build(kind, dropout)
    try:
        m = export(copy.deepcopy(model), inputs, path, training, dynamo)
    except Exception as e:  # noqa: BLE001 - report and go on
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print("%-24s export FAILED: %s: %s" % (name, type(e).__name__, msg[:300]))
        if os.path.exists(path):
            os.remove(path)
        return None
    for other, entry in manifest.items():
        if entry["kind"] == kind and entry.get("signature") == graph_signature(m):
            print("%-24s same graph as %s; not kept" % (name, other))
            os.remove(path)
            return None
    entry = {
        "file": name + ".onnx",
        "kind": kind,
        "mode": mode,
        "exporter": "dynamo" if dynamo else "torchscript",
        "opset": [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")][0],
        "dropout": dropout,
        "inputs": {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input},
        "outputs": {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in m.graph.output},
        "loss": "cross_entropy",
        "loss_output": "logits",
        "label": "label",
        "torch_parameters": int(sum(p.numel() for p in model.parameters())),
        "bytes": os.path.getsize(path),
        "ops": op_histogram(m),
        "signature": graph_signature(m),
        "reference": None,
    }
    # The mapping is computed for every file (trainable list); the reference only without dropout.
    ref_model = copy.deepcopy(model)
    # With dropout the outputs are random: the candidates are only needed for their values then.
    loss, out, cands = candidates_for(kind, ref_model, inputs, label, training and not dropout)
    all_params = [n for n, _ in model.named_parameters()]
    mapping, constants, unmapped = map_initializers(m, cands, all_params)
    entry["trainable"] = sorted(mapping)
    entry["initializer_parameters"] = {k: c.name for k, c in sorted(mapping.items())}
    entry["constant_initializers"] = constants
    entry["parameters_without_single_initializer"] = unmapped
    entry["onnx_parameters"] = int(sum(c.value.size for c in mapping.values()))
    # Gradients that are zero in exact arithmetic (e.g. an attention key bias: softmax ignores a
    # per-row constant): the fp64 reference holds ~1e-18, so they are checked against the largest
    # gradient of the model rather than their own max-abs.
    gmax = max(float(np.max(np.abs(c.grad))) for c in mapping.values())
    entry["zero_gradient"] = sorted(k for k, c in mapping.items() if float(np.max(np.abs(c.grad))) <= 1e-9 * gmax)
    ort_out = ort_outputs(path, inputs)
    entry["ort_vs_torch_output_rel_err"] = None if dropout else rel_err(ort_out, out)
    entry["tied_weights"] = describe_tie(m, mapping) if kind == "gpt" else None
    if not dropout and entry["ort_vs_torch_output_rel_err"] > 1e-3:
        print("%-24s ONNX Runtime does not reproduce PyTorch's %s() output (max rel. error %.2g); not kept"
              % (name, "train" if training else "eval", entry["ort_vs_torch_output_rel_err"]))
        os.remove(path)
        return None
    if reference:
        npz = {"input:" + k: v for k, v in inputs.items()}
        npz["label"] = label
        npz["loss"] = np.array(loss, dtype=np.float64)
        npz["output:logits"] = out.astype(np.float32)
        for init_name, c in mapping.items():
            npz["grad:" + init_name] = c.grad.astype(np.float32)
        ref = name + "_reference.npz"
        np.savez_compressed(os.path.join(HERE, ref), **npz)
        entry["reference"] = ref
        entry["reference_loss"] = loss
        entry["reference_mode"] = "train()" if training else "eval() (frozen BN statistics), gradients flowing"
    manifest[name] = entry
    print("%-24s %7d B  opset %d  %d params in %d initializers  %s"
          % (name, entry["bytes"], entry["opset"], entry["onnx_parameters"], len(mapping),
             "loss %.6f  ORT-vs-torch %.1e" % (loss, entry["ort_vs_torch_output_rel_err"]) if reference
             else "(dropout %g: no reference)" % dropout))
    if entry["tied_weights"]:
        print("    tied wte/lm_head: %s" % entry["tied_weights"])
    renamed = [(k, c.name) for k, c in sorted(mapping.items()) if c.name != k]
    folded = [r for r in renamed if r[1].startswith("fold(")]
    if folded:
        print("    %d initializers hold Conv weights/biases with BatchNorm folded in (e.g. %s <- %s)"
              % (len(folded), folded[0][0], folded[0][1]))
    for init_name, cname in renamed:
        if not cname.startswith("fold("):
            print("    %-40s <- %s" % (init_name, cname))
    if unmapped:
        print("    %d parameters have no single initializer: %s" % (len(unmapped), ", ".join(unmapped[:6])
                                                                 + (", ..." if len(unmapped) > 6 else "")))
    if constants:
        print("    %d floating constants (not parameters): %s" % (len(constants), ", ".join(constants[:6])
                                                                + (", ..." if len(constants) > 6 else "")))
    print("    ops: %s" % ", ".join("%s %d" % kv for kv in entry["ops"].items()))
    return entry


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated kinds (cnn,gpt,bert); default all")
    ap.add_argument("--no-dynamo", action="store_true", help="skip the dynamo exporter")
    args = ap.parse_args(argv)
    kinds = [k for k in ("cnn", "gpt", "bert") if not args.only or k in args.only.split(",")]
    print("torch %s, onnx %s, onnxruntime %s" % (torch.__version__, onnx.__version__, ort.__version__))
    mpath = os.path.join(HERE, "manifest.json")
    manifest = {}
    if args.only and os.path.exists(mpath):
        with open(mpath) as f:
            manifest = {k: v for k, v in json.load(f).items() if v["kind"] not in kinds}
    for kind in kinds:
        for f in os.listdir(HERE):
            if f.startswith(kind + "_") and (f.endswith(".onnx") or f.endswith("_reference.npz")):
                os.remove(os.path.join(HERE, f))
    for kind in kinds:
        for mode in ("eval", "train"):
            for dynamo in ([False] if args.no_dynamo else [False, True]):
                make_fixture(kind, mode, dynamo, manifest)
        if kind in ("gpt", "bert"):  # dropout 0.1, train mode: op coverage and loss-falls only
            make_fixture(kind, "train", False, manifest, dropout=0.1, reference=False)
    for entry in manifest.values():
        entry.pop("signature", None)
    manifest = dict(sorted(manifest.items()))
    with open(mpath, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    big = [e["file"] for e in manifest.values() if e["bytes"] > 2 * 1024 * 1024]
    if big:
        print("files over 2 MB: %s" % ", ".join(big))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
