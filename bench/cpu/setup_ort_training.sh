#!/usr/bin/env bash
# Creates the isolated Python environment for the ONNX Runtime training anchor of the CPU
# training benchmark (bench/cpu/bench_train.py).
#
# onnxruntime-training-cpu ships its own `onnxruntime` module, which would clash with a plain
# onnxruntime install, so it lives in its own venv:
#   ${OTTER_BENCH_VENV:-<repo>/build/ort-training-venv}
# Idempotent: an existing venv that already imports the right versions is left as it is.
# Exits non-zero (with a message) when PyPI cannot be reached.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${OTTER_BENCH_VENV:-$HERE/../../build/ort-training-venv}"
PY="${PYTHON:-python3}"
ORT_PKG="onnxruntime-training-cpu==1.19.2"
PKGS=("$ORT_PKG" "numpy<2" "onnx==1.16.*")

# The import goes through ort_worker.import_ort_training, which skips onnxruntime/training/__init__.py
# (it imports PyTorch, which the on-device training API does not need).
check() {
  BENCH_DIR="$HERE" "$VENV/bin/python" - <<'PYEOF' 2>/dev/null
import os, sys
sys.path.insert(0, os.environ["BENCH_DIR"])
import onnx
from ort_worker import import_ort_training
ort, artifacts, api = import_ort_training()
assert ort.__version__.startswith("1.19.2"), ort.__version__
assert onnx.__version__.startswith("1.16."), onnx.__version__
PYEOF
}

if [ -x "$VENV/bin/python" ] && check; then
  echo "setup_ort_training: $VENV is ready (onnxruntime-training 1.19.2)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup_ort_training: creating venv $VENV"
  "$PY" -m venv "$VENV"
fi

if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${PKGS[@]}"; then
  echo "setup_ort_training: pip could not install ${PKGS[*]} (is PyPI reachable?)" >&2
  exit 1
fi

if ! check; then
  echo "setup_ort_training: the venv at $VENV does not import onnxruntime.training 1.19.2" >&2
  exit 1
fi
echo "setup_ort_training: $VENV is ready (onnxruntime-training 1.19.2)"
