#!/usr/bin/env bash
# End-to-end test of the `otter` CLI contract (docs/cli.md): train with validation, metrics, plot
# and checkpoints; export from the checkpoint; eval metrics; inspect; help; and one-line errors
# with a non-zero exit for bad flags, missing files and mismatched arrays.
# Usage: test_cli.sh OTTER_BINARY SOURCE_DIR WORK_DIR
set -euo pipefail
otter=$1; src=$2; work=$3
rm -rf "$work"; mkdir -p "$work"
ex=$src/examples/digits
fail() { echo "FAIL: $*"; exit 1; }

"$otter" train "$ex/mlp.onnx" --data "$ex/train.npz" --val "$ex/test.npz" --label y --loss cross_entropy \
  --optimizer adamw --lr 3e-3 --epochs 8 --batch-size 32 --schedule cosine --warmup 10 --clip-norm 5 --seed 3 \
  --checkpoint "$work/ckpt.safetensors" --checkpoint-every 50 --out "$work/trained.onnx" \
  --metrics "$work/train.json" --plot "$work/loss.svg" 2> "$work/train.log"
[ -s "$work/trained.onnx" ] || fail "no trained model"
grep -q "<svg" "$work/loss.svg" || fail "no SVG plot"
grep -q "epoch 8" "$work/train.log" || fail "no per-epoch lines on a non-terminal"
python3 - "$work/train.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for k in ("steps", "skipped_steps", "final_loss", "loss_scale", "history", "val"):
    assert k in m, f"metrics lack {k}"
assert m["steps"] == 8 * 47, m["steps"]
assert len(m["history"]) == m["steps"]
assert set(m["history"][0]) >= {"step", "loss", "lr", "loss_scale"}
assert m["history"][-1]["loss"] < m["history"][0]["loss"]
assert m["val"][-1]["accuracy"] > 0.9, m["val"][-1]
PY
# The checkpoint saved at the end holds the final weights: exporting it gives the same file.
"$otter" export "$work/ckpt.safetensors" --model "$ex/mlp.onnx" --out "$work/from_ckpt.onnx" 2>/dev/null
cmp -s "$work/trained.onnx" "$work/from_ckpt.onnx" || fail "export from checkpoint differs from train --out"
# Resume for one more epoch.
"$otter" train "$ex/mlp.onnx" --data "$ex/train.npz" --label y --loss cross_entropy --optimizer adamw --lr 3e-3 \
  --epochs 9 --schedule cosine --warmup 10 --resume "$work/ckpt.safetensors" --out "$work/resumed.onnx" \
  --metrics "$work/resumed.json" 2>/dev/null
python3 -c "import json,sys; m=json.load(open('$work/resumed.json')); assert m['steps']==9*47, m['steps']; assert len(m['history'])==47"
"$otter" eval "$work/trained.onnx" --data "$ex/test.npz" --label y --loss cross_entropy --metrics "$work/eval.json" > /dev/null
python3 -c "import json; m=json.load(open('$work/eval.json'))['eval']; assert m['accuracy']>0.9 and m['loss']<0.5, m"
"$otter" inspect "$ex/mlp.onnx" --loss cross_entropy --label y | grep "fc1.weight" > /dev/null || fail "inspect lacks parameters"
# The CLI runs itself with a short OpenMP spin unless the user chose a wait policy (tools/otter_cli.cpp).
env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$otter" inspect "$ex/mlp.onnx" --loss cross_entropy --label y \
  | grep "thread wait: GOMP_SPINCOUNT=10000 (the CLI's default)" > /dev/null || fail "the CLI's default wait policy"
OMP_WAIT_POLICY=passive "$otter" inspect "$ex/mlp.onnx" --loss cross_entropy --label y \
  | grep "thread wait: OMP_WAIT_POLICY=passive$" > /dev/null || fail "a user's wait policy is kept"
for cmd in train eval export inspect; do "$otter" $cmd --help | grep "usage: otter $cmd" > /dev/null || fail "$cmd --help"; done
"$otter" train --help | grep -- "--checkpoint-every" > /dev/null || fail "train help lacks a flag"

expect_error() {  # expect_error NEEDLE COMMAND...: non-zero exit, one line on stderr naming the problem
  local needle=$1; shift
  if "$@" > /dev/null 2> "$work/err"; then fail "expected failure: $*"; fi
  [ "$(wc -l < "$work/err")" -eq 1 ] || { cat "$work/err"; fail "error is not one line: $*"; }
  grep -q -- "$needle" "$work/err" || { cat "$work/err"; fail "error lacks '$needle': $*"; }
}
expect_error "unknown flag '--bogus'" "$otter" train "$ex/mlp.onnx" --data "$ex/train.npz" --out x --bogus 1
expect_error "cannot open '/nonexistent.npz'" "$otter" train "$ex/mlp.onnx" --data /nonexistent.npz --out x
expect_error "cannot open '/nonexistent.onnx'" "$otter" train /nonexistent.onnx --data "$ex/train.npz" --label y --loss cross_entropy --out x
expect_error "has no array 'label'" "$otter" train "$ex/mlp.onnx" --data "$ex/train.npz" --loss cross_entropy --out x
expect_error "needs --out" "$otter" train "$ex/mlp.onnx" --data "$ex/train.npz"
expect_error "expects an integer" "$otter" train "$ex/mlp.onnx" --data "$ex/train.npz" --out x --epochs two
expect_error "not one of" "$otter" train "$ex/mlp.onnx" --data "$ex/train.npz" --label y --loss hinge --out x
expect_error "unknown command" "$otter" fly
expect_error "not one of" "$otter" train "$ex/mlp.onnx" --data "$ex/train.npz" --label y --loss cross_entropy --out x --cuda-graphs maybe
expect_error "'tpu' is not auto, cpu, cuda or cuda:N" "$otter" train "$ex/mlp.onnx" --data "$ex/train.npz" --label y --loss cross_entropy --out x --device tpu
expect_error "cuda:3" "$otter" train "$ex/mlp.onnx" --data "$ex/train.npz" --label y --loss cross_entropy --out x --device cuda:3
python3 -c "
import numpy as np
d = np.load('$ex/train.npz'); np.savez('$work/bad.npz', x=d['x'][:100], y=d['y'][:99])"
expect_error "different row counts" "$otter" train "$ex/mlp.onnx" --data "$work/bad.npz" --label y --loss cross_entropy --out x
echo "cli: all checks passed"
