#!/usr/bin/env bash
# `mpirun -np 2 otter train` end to end (label mpi; exits 77, skipped, without mpirun):
#  - 2 ranks x --batch-size 16 (strided shards) == 1 process x --batch-size 32, to 1e-6 after 20 SGD steps;
#  - rank 0 alone logs and writes the model, the checkpoint and the metrics (world_size, per-rank rows/s);
#  - a checkpoint at step 10 resumed under 2 ranks to step 20 == the uninterrupted 2-rank run (bit for bit);
#  - different options on the two ranks: both end with a clear error, quickly; bad flags are refused.
# Usage: test_cli_mpi.sh OTTER_CLI EXAMPLES_DIGITS_DIR WORK_DIR
set -u
otter=$1; ex=$2; work=$3
command -v mpirun >/dev/null 2>&1 || { echo "test_cli_mpi.sh: mpirun not found: skipped"; exit 77; }
rm -rf "$work"; mkdir -p "$work"
flags=()
if mpirun --version 2>&1 | grep -q "Open MPI"; then
  flags+=(--oversubscribe)
  [[ $(id -u) == 0 ]] && flags+=(--allow-run-as-root)
fi
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
fail() { echo "test_cli_mpi.sh: FAIL: $*"; exit 1; }
common=(--data "$ex/train.npz" --label y --loss cross_entropy --optimizer sgd --lr 0.1 --momentum 0.9 --seed 3)

"$otter" train "$ex/mlp.onnx" "${common[@]}" --batch-size 32 --steps 20 --out "$work/one.onnx" --distributed off \
  2>"$work/one.log" || { cat "$work/one.log"; fail "1-process run"; }
mpirun "${flags[@]}" -np 2 "$otter" train "$ex/mlp.onnx" "${common[@]}" --batch-size 16 --steps 20 --out "$work/two.onnx" \
  --checkpoint "$work/two.ckpt" --checkpoint-every 5 --metrics "$work/two.json" --val "$ex/test.npz" >"$work/two.log" 2>&1 ||
  { cat "$work/two.log"; fail "2-rank run"; }
cat "$work/two.log"
[[ $(grep -c "otter: wrote" "$work/two.log") == 1 ]] || fail "expected one 'otter: wrote' line (rank 0 only)"
grep -q "data parallel: 2 ranks, global batch 2 x 1 x 16 rows, strided shards of 750 rows" "$work/two.log" || fail "no data-parallel summary"
grep -q "2 ranks x" "$work/two.log" || fail "no per-rank throughput in the log"
[[ $(grep -c "val_loss" "$work/two.log") == 1 ]] || fail "expected one epoch line with val_loss (rank 0 prints)"
grep -q '"val": \[{"step": 20' "$work/two.json" || fail "metrics lack the validation result"
grep -q '"world_size": 2' "$work/two.json" || fail "metrics lack world_size 2"
grep -q '"rows_per_second_per_rank"' "$work/two.json" || fail "metrics lack rows_per_second_per_rank"
[[ -f $work/two.ckpt && -f $work/two.onnx ]] || fail "checkpoint or model missing"
python3 - "$work/one.onnx" "$work/two.onnx" <<'PY' || fail "2 ranks x batch 16 != 1 process x batch 32"
import sys, onnx
from onnx import numpy_helper
a = {t.name: numpy_helper.to_array(t) for t in onnx.load(sys.argv[1]).graph.initializer}
b = {t.name: numpy_helper.to_array(t) for t in onnx.load(sys.argv[2]).graph.initializer}
worst = max(float(abs(a[k].astype("float64") - b[k]).max()) for k in a)
print("max |w(2 ranks) - w(1 process)| = %.3g" % worst)
sys.exit(0 if worst <= 1e-6 else 1)
PY

# Resume: 10 steps with a checkpoint, then 10 more from it, == 20 uninterrupted (same world size).
mpirun "${flags[@]}" -np 2 "$otter" train "$ex/mlp.onnx" "${common[@]}" --batch-size 16 --steps 10 --out "$work/half.onnx" \
  --checkpoint "$work/ten.ckpt" >"$work/ten.log" 2>&1 || { cat "$work/ten.log"; fail "2-rank run to step 10"; }
mpirun "${flags[@]}" -np 2 "$otter" train "$ex/mlp.onnx" "${common[@]}" --batch-size 16 --steps 20 --out "$work/resumed.onnx" \
  --resume "$work/ten.ckpt" >"$work/resumed.log" 2>&1 || { cat "$work/resumed.log"; fail "2-rank resume"; }
grep -q "warning" "$work/resumed.log" && { cat "$work/resumed.log"; fail "resume warned"; }
cmp -s "$work/two.onnx" "$work/resumed.onnx" || fail "checkpoint at step 10 + resume to 20 differs from 20 uninterrupted steps"

# Different options on the two ranks (MPMD launch): a clear error on both, within seconds.
start=$(date +%s)
timeout -s KILL 90 mpirun "${flags[@]}" -np 1 "$otter" train "$ex/mlp.onnx" "${common[@]}" --steps 2 --out "$work/x.onnx" : \
  -np 1 "$otter" train "$ex/mlp.onnx" "${common[@]/0.1/0.2}" --steps 2 --out "$work/x.onnx" >"$work/mismatch.log" 2>&1
rc=$?
cat "$work/mismatch.log"
[[ $rc != 0 ]] || fail "ranks with different options trained"
grep -q "rank 1 has 'optimizer sgd lr 0.2 momentum 0.9" "$work/mismatch.log" || fail "no clear mismatch error"
(($(date +%s) - start < 60)) || fail "the mismatch took too long to end"

# Bad flags.
"$otter" train "$ex/mlp.onnx" "${common[@]}" --out "$work/y.onnx" --shard diagonal 2>&1 | grep -q "\-\-shard must be strided or contiguous" ||
  fail "--shard diagonal accepted"
"$otter" train "$ex/mlp.onnx" "${common[@]}" --out "$work/y.onnx" --distributed maybe 2>&1 | grep -q "\-\-distributed must be auto, mpi or off" ||
  fail "--distributed maybe accepted"
echo "test_cli_mpi.sh: OK"
