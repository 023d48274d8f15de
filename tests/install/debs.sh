#!/usr/bin/env bash
# The Debian packages of cmake/packaging.cmake, built with CPack from BUILD_DIR into a temporary
# folder and inspected with dpkg-deb (not installed): names, declared dependencies, and that each
# file sits in the right package (library + SONAME link in libotter1; headers, dev link, CMake and
# pkg-config files in libotter-dev; the CLI in otter-tools).
# Usage: debs.sh BUILD_DIR. Exits 77 (skipped) without cpack, dpkg-deb or dpkg-shlibdeps.
set -euo pipefail
build=$(cd "$1" && pwd)
for tool in cpack dpkg-deb dpkg-shlibdeps; do
  command -v "$tool" >/dev/null || { echo "debs: $tool not found: skipped"; exit 77; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/otter-debs.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "debs: FAIL: $*" >&2; exit 1; }

(cd "$work" && cpack --config "$build/CPackConfig.cmake" -G DEB -B "$work/out") >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log"; fail "cpack"; }
deb() { ls "$work"/out/"$1"_*.deb 2>/dev/null | head -1; }
lib=$(deb libotter1); dev=$(deb libotter-dev); tools=$(deb otter-tools)
[[ -n $lib && -n $dev && -n $tools ]] || { ls "$work/out"; fail "expected libotter1, libotter-dev and otter-tools packages"; }

for d in "$lib" "$dev" "$tools"; do
  echo "== $(basename "$d")"
  dpkg-deb -f "$d" Package Version Architecture Depends Section
done
version=$(dpkg-deb -f "$lib" Version)
depends() { dpkg-deb -f "$1" Depends; }
grep -q "libotter1 (= $version)" <<<"$(depends "$dev")" || fail "libotter-dev must depend on libotter1 (= $version)"
grep -q "libotter1 (= $version)" <<<"$(depends "$tools")" || fail "otter-tools must depend on libotter1 (= $version)"
for need in libc6 libstdc++6 libprotobuf libopenblas libgomp1; do
  grep -q "$need" <<<"$(depends "$lib")" || fail "libotter1 does not declare a dependency on $need (shlibdeps)"
done

contents() { dpkg-deb -c "$1" | awk '{print $6}' | sed 's|^\./|/|'; }
expect() {  # package, regex of a path it must hold
  contents "$1" | grep -qE "$2" || { contents "$1"; fail "$(basename "$1") holds no file matching $2"; }
}
refuse() {
  if contents "$1" | grep -qE "$2"; then fail "$(basename "$1") must not hold $2"; fi
}
expect "$lib" '/lib/(.*/)?libotter\.so\.1\.[0-9]+\.[0-9]+$'
expect "$lib" '/lib/(.*/)?libotter\.so\.1$'
refuse "$lib" '/include/|libotter\.so$|/bin/'
expect "$dev" '/include/otter/otter\.h$'
expect "$dev" '/include/otter/otter\.hpp$'
expect "$dev" '/lib/(.*/)?libotter\.so$'
expect "$dev" '/cmake/Otter/OtterConfig\.cmake$'
expect "$dev" '/cmake/Otter/OtterConfigVersion\.cmake$'
expect "$dev" '/pkgconfig/otter\.pc$'
refuse "$dev" 'libotter\.so\.1\.'
expect "$tools" '/usr/bin/otter$'
dpkg-deb -e "$lib" "$work/control"
[[ -f $work/control/shlibs ]] && grep -q ldconfig "$work/control/postinst" || fail "libotter1 has no shlibs file or no ldconfig in postinst"
echo "debs: ok"
