#!/usr/bin/env python3
"""Reads the CTestTestfile.cmake files of a build tree (before its programs exist, unlike
`ctest --show-only`) for scripts/sanitize.

  ctest_select.py BUILD programs LABEL   build-tree paths (relative) of the programs that the tests
                                         labelled LABEL run: ninja targets to build
  ctest_select.py BUILD libotter-in-python   names of the tests that load libotter into Python
                                         (OTTER_LIBRARY=...): they would need the sanitizer
                                         runtime preloaded into the interpreter
"""
import os
import re
import sys

NAME = r'(?:\[=\[)?([^ \]"]+)(?:\]=\])?'


def tests(build):
    for d, _, files in os.walk(build):
        if "CTestTestfile.cmake" in files:
            text = open(os.path.join(d, "CTestTestfile.cmake")).read()
            props = {m.group(1): m.group(2) for m in re.finditer(r'set_tests_properties\(' + NAME + r' PROPERTIES(.*)\)', text)}
            for m in re.finditer(r'add_test\(' + NAME + r' (.*)\)', text):
                yield m.group(1), re.findall(r'"([^"]*)"', m.group(2)), props.get(m.group(1), "")


def main():
    build, mode = os.path.abspath(sys.argv[1]) + "/", sys.argv[2]
    out = set()
    for name, args, props in tests(build):
        if mode == "programs":
            if re.search(r'LABELS "([^"]*;)?' + re.escape(sys.argv[3]) + r'(;[^"]*)?"', props):
                out.update(a[len(build):] for a in args if a.startswith(build))
        elif mode == "libotter-in-python":
            if any(a.startswith("OTTER_LIBRARY=") for a in args):
                out.add(name)
        else:
            sys.exit(f"ctest_select: unknown mode {mode}")
    print("\n".join(sorted(out)))


if __name__ == "__main__":
    main()
