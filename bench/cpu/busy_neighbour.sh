#!/usr/bin/env bash
# The "With a busy neighbour" table of docs/benchmarks.md: Otter and PyTorch FP32 training steps
# (all threads) on an idle machine and with one `yes > /dev/null` process beside them, for three
# libgomp wait settings: libgomp's default, GOMP_SPINCOUNT=10000 (the CLI's and the Python
# binding's default) and OMP_WAIT_POLICY=passive. Run from anywhere, after building
# build/libotter.so and build-torch-venv (see bench/cpu/bench_models.py).
#   bash bench/cpu/busy_neighbour.sh [MODELS]      (default: resnet18,gpt-4l-d256)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
MODELS="${1:-resnet18,gpt-4l-d256}"
PY="${TORCH_PYTHON:-$REPO/build-torch-venv/bin/python}"
run() {  # label, then env assignments
  local label=$1; shift
  env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$@" "$PY" "$HERE/bench_models.py" --quick \
    --models "$MODELS" --precisions fp32 --threads all --tries 1 --json "$REPO/build/bench-cpu/busy-$label.json" 2>&1 \
    | grep -E "ms/step" | sed "s/^/$label /"
}
neighbour=""
trap '[ -n "$neighbour" ] && kill "$neighbour" 2>/dev/null || true' EXIT
for mode in idle busy; do
  if [ "$mode" = busy ]; then
    yes > /dev/null &
    neighbour=$!
    sleep 1
  fi
  # libgomp's own default: neither variable set, and OTTER_WAIT_POLICY=keep so that the Otter
  # worker's Python binding does not set its short spin (GOMP_SPINCOUNT=300000 set explicitly is
  # not the same: unset, libgomp throttles the spin when it counts more threads than CPUs).
  run "$mode-default" OTTER_WAIT_POLICY=keep
  run "$mode-spin10k" GOMP_SPINCOUNT=10000
  run "$mode-passive" OMP_WAIT_POLICY=passive
  if [ "$mode" = busy ]; then kill "$neighbour"; neighbour=""; fi
done
