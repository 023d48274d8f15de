#!/usr/bin/env bash
# Generates the test data the C++ tests read: the digits example, the NumPy reference losses and
# the ONNX backend node tests for the supported ops. Usage: generate_testdata.sh SOURCE_DIR OUT_DIR [gpu]
# ("gpu": only what the GPU tests read, with what a GPU machine has: onnx, numpy, onnxruntime;
# without scikit-learn the digits data are the bundled examples/digits files make_digits wrote.)
set -euo pipefail
src=$1; out=$2; what=${3:-all}
mkdir -p "$out"
if python3 -c "import sklearn" 2> /dev/null; then
  python3 "$src/examples/digits/make_digits.py" "$out/digits"
else
  mkdir -p "$out/digits" && cp "$src"/examples/digits/{mlp.onnx,train.npz,test.npz} "$out/digits/"
fi
python3 "$src/tests/e2e/numpy_reference.py" "$out/digits/mlp.onnx" "$out/digits/train.npz" "$out/digits/reference.json"
rm -rf "$out/node"
python3 "$src/tests/conformance/generate_node_tests.py" "$out/node"
python3 "$src/tests/conformance/generate_opset_cases.py" "$out/node"
python3 "$src/tests/conformance/generate_rnn_cases.py" "$out/node"
python3 "$src/tests/training/make_training_cases.py" "$out/node" "$out/training_graphs"
[ "$what" = gpu ] || python3 "$src/tests/unit/make_half_cases.py" "$out/half_cases.npz"
