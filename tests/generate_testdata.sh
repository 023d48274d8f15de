#!/usr/bin/env bash
# Generates the test data the C++ tests read: the digits example, the NumPy reference losses and
# the ONNX backend node tests for the supported ops. Usage: generate_testdata.sh SOURCE_DIR OUT_DIR
set -euo pipefail
src=$1; out=$2
mkdir -p "$out"
python3 "$src/examples/digits/make_digits.py" "$out/digits"
python3 "$src/tests/e2e/numpy_reference.py" "$out/digits/mlp.onnx" "$out/digits/train.npz" "$out/digits/reference.json"
rm -rf "$out/node"
python3 "$src/tests/conformance/generate_node_tests.py" "$out/node"
python3 "$src/tests/conformance/generate_opset_cases.py" "$out/node"
python3 "$src/tests/unit/make_half_cases.py" "$out/half_cases.npz"
