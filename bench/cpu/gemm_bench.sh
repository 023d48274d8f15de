#!/usr/bin/env bash
# Builds bench/cpu/gemm_bench.cpp against Debian's OpenBLAS (OpenMP build) and oneDNN, the
# libraries Otter links, and runs it at 1 thread and at all threads.
# Usage: bash bench/cpu/gemm_bench.sh   (needs libopenblas-openmp-dev, libdnnl-dev)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
g++ -O2 -fopenmp "$here/gemm_bench.cpp" -I/usr/include/x86_64-linux-gnu/openblas-openmp -L"$blas" -Wl,-rpath,"$blas" \
  -lopenblas -ldnnl -o "$out/gemm_bench"
for t in 1 "$(nproc)"; do
  echo "== OMP_NUM_THREADS=$t ($(lscpu | sed -n 's/^Model name: *//p'))"
  OMP_NUM_THREADS=$t "$out/gemm_bench"
done
