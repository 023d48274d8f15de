#!/usr/bin/env bash
# The Rust crate (bindings/rust): `cargo test --offline` against the build's libotter (FFI vs
# otter.h, digits training to >= 95%, error paths, export) and the examples/rust example builds.
# Exits 77 (ctest SKIP_RETURN_CODE: reported as skipped, never as passed) when cargo is missing.
# Usage: run.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$(cd "$1" && pwd); build=$(cd "$2" && pwd)
cargo=$(command -v cargo || true)
[[ -z $cargo && -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]] && cargo=${CARGO_HOME:-$HOME/.cargo}/bin/cargo
if [[ -z $cargo ]]; then
  echo "rust: cargo not found: skipped"
  exit 77
fi
export OTTER_LIB_DIR=$build CARGO_TARGET_DIR=$build/cargo
"$cargo" test --offline --manifest-path "$src/bindings/rust/Cargo.toml" --all-targets
"$cargo" test --offline --manifest-path "$src/bindings/rust/Cargo.toml" --doc
