#!/usr/bin/env bash
# Compiles and runs the C example in README.md exactly as shown there, so the README stays true.
# Usage: test_readme_c.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1; build=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$src/README.md" "$work/example.c" <<'PY'
import re, sys
code = re.search(r"```c\n(.*?)```", open(sys.argv[1]).read(), re.S).group(1)
open(sys.argv[2], "w").write(code)
PY
cc -std=c99 -Wall -Wextra -Werror -I "$src/capi/include" "$work/example.c" -L "$build" -lotter -Wl,-rpath,"$build" -o "$work/example"
cd "$src" && "$work/example" | tee "$work/out"
grep -q "final loss" "$work/out"
python3 -c "import onnx; onnx.checker.check_model('$src/trained.onnx')"
rm -f "$src/trained.onnx"
echo "readme C example: ok"
