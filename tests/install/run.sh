#!/usr/bin/env bash
# The installed library as its users see it: `cmake --install` of BUILD_DIR into a temporary prefix,
# then the README's C example built two ways against that prefix only and run:
#   1. a separate CMake project (tests/install/CMakeLists.txt): find_package(Otter 1) + Otter::otter
#      (also a C++ program on <otter/otter.hpp>);
#   2. cc $(pkg-config --cflags --libs otter).
# Also checks the installed layout (SONAME links, headers, CLI, no build-folder RPATH).
# Usage: run.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$(cd "$1" && pwd); build=$(cd "$2" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/otter-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
fail() { echo "install test: FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }
libdir=$(dirname "$(find "$prefix" -name 'libotter.so' -print -quit)")
[[ -n $libdir && -d $libdir ]] || fail "no libotter.so installed"
for f in include/otter/otter.h include/otter/otter.hpp bin/otter; do
  [[ -e $prefix/$f ]] || fail "$f not installed"
done
[[ -f $libdir/pkgconfig/otter.pc && -f $libdir/cmake/Otter/OtterConfig.cmake && -f $libdir/cmake/Otter/OtterConfigVersion.cmake ]] ||
  fail "pkg-config or CMake package files missing under $libdir"
soname=$(readelf -d "$libdir/libotter.so" | sed -nE 's/.*\(SONAME\).*\[(.*)\].*/\1/p')
[[ $soname == libotter.so.1 && -L $libdir/libotter.so.1 && -L $libdir/libotter.so ]] || fail "SONAME links wrong (SONAME '$soname')"
real=$(basename "$(readlink -f "$libdir/libotter.so")")
[[ $real =~ ^libotter\.so\.1\.[0-9]+\.[0-9]+$ ]] || fail "libotter.so resolves to $real"
for f in "$libdir/$real" "$prefix/bin/otter"; do
  if readelf -d "$f" | grep -E 'R(UN)?PATH' | grep -qF "$build"; then fail "$f has an RPATH into the build folder"; fi
done
env -u LD_LIBRARY_PATH "$prefix/bin/otter" --version >/dev/null || fail "the installed CLI does not run"

python3 - "$src/README.md" "$work/example.c" <<'PY'
import re, sys
code = re.search(r"```c\n(.*?)```", open(sys.argv[1]).read(), re.S).group(1)
open(sys.argv[2], "w").write(code)
PY
run_example() {  # $1: the program; runs it where examples/digits resolves, checks the export
  local dir=$work/run-$2
  mkdir -p "$dir" && ln -s "$src/examples" "$dir/examples"
  (cd "$dir" && env -u LD_LIBRARY_PATH "$1") | tee "$dir/out"
  grep -q "final loss" "$dir/out" || fail "$2: no final loss"
  python3 -c "import onnx, sys; onnx.checker.check_model(sys.argv[1])" "$dir/trained.onnx" || fail "$2: bad export"
}

# 1. find_package(Otter 1 REQUIRED) from a separate project.
cmake -S "$src/tests/install" -B "$work/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DREADME_EXAMPLE="$work/example.c" >"$work/consumer.log" ||
  { cat "$work/consumer.log"; fail "consumer configure"; }
cmake --build "$work/consumer" >>"$work/consumer.log" || { cat "$work/consumer.log"; fail "consumer build"; }
run_example "$work/consumer/readme_example" cmake
env -u LD_LIBRARY_PATH "$work/consumer/hpp_check" || fail "the otter.hpp program"
echo "install test: find_package(Otter) consumer ok"

# 2. pkg-config.
export PKG_CONFIG_PATH=$libdir/pkgconfig
[[ $(pkg-config --modversion otter) =~ ^1\. ]] || fail "pkg-config --modversion otter"
# shellcheck disable=SC2046
cc -std=c99 -Wall -Wextra -Werror "$work/example.c" -o "$work/example_pc" $(pkg-config --cflags --libs otter) \
  -Wl,-rpath,"$(pkg-config --variable=libdir otter)"
run_example "$work/example_pc" pkgconfig
echo "install test: pkg-config consumer ok"
