#!/usr/bin/env bash
# Builds and runs bench/cpu/half_gemm_bench.cpp (the otter_half_gemm_bench target of a Release
# build: default build/, or $1) on one thread: half_gemm against the widened path and sgemm.
# Usage: bash bench/cpu/half_gemm_bench.sh [build-dir]   (configure first: cmake -B build -G Ninja)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$(cd "$here/../.." && pwd)/build}
cmake --build "$build" --target otter_half_gemm_bench >/dev/null
echo "== OMP_NUM_THREADS=1 ($(lscpu | sed -n 's/^Model name: *//p'), $(date -u +%Y-%m-%dT%H:%MZ))"
OMP_NUM_THREADS=1 "$build/otter_half_gemm_bench"
