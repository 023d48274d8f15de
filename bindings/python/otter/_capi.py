"""ctypes declarations of Otter's plain-C ABI (capi/include/otter/otter.h).

Only this module touches ctypes function signatures; everything else goes through ``lib``.
The shared library is located, in order, by:

1. a ``libotter.so*`` file inside this package (a wheel built by ``pip install .`` at the
   repository root bundles it there);
2. the ``OTTER_LIBRARY`` environment variable (a path to ``libotter.so``);
3. the build tree of a source checkout: ``<repo>/build/libotter.so`` when this package is
   ``<repo>/bindings/python/otter``;
4. ``ctypes.util.find_library("otter")`` (an installed libotter1 package or ``cmake --install``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from typing import List, Optional

# ---- constants (mirror otter.h) -------------------------------------------------------------

OTTER_API_VERSION = 1000

OTTER_OK = 0
OTTER_ERROR_INVALID_ARGUMENT = 1
OTTER_ERROR_NOT_FOUND = 2
OTTER_ERROR_INVALID_MODEL = 3
OTTER_ERROR_UNSUPPORTED = 4
OTTER_ERROR_IO = 5
OTTER_ERROR_OUT_OF_MEMORY = 6
OTTER_ERROR_WRONG_STATE = 7
OTTER_ERROR_INTERNAL = 8
OTTER_ERROR_NON_FINITE = 9
OTTER_ERROR_BUSY = 10
OTTER_ERROR_DISTRIBUTED = 11

OTTER_DTYPE_UNDEFINED = 0
OTTER_DTYPE_FLOAT32 = 1
OTTER_DTYPE_UINT8 = 2
OTTER_DTYPE_INT8 = 3
OTTER_DTYPE_INT32 = 6
OTTER_DTYPE_INT64 = 7
OTTER_DTYPE_BOOL = 9
OTTER_DTYPE_FLOAT16 = 10
OTTER_DTYPE_FLOAT64 = 11
OTTER_DTYPE_BFLOAT16 = 16

OTTER_DEVICE_CPU = 1
OTTER_DEVICE_CUDA = 2


# ---- types ----------------------------------------------------------------------------------


class TensorView(ctypes.Structure):
    """otter_tensor_view (frozen layout)."""

    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dtype", ctypes.c_int),
        ("ndim", ctypes.c_int32),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("device_type", ctypes.c_int32),
        ("device_id", ctypes.c_int32),
    ]


c_status = ctypes.c_int
c_dtype = ctypes.c_int
c_options_p = ctypes.c_void_p  # otter_options*
c_session_p = ctypes.c_void_p  # otter_session*
c_list_p = ctypes.c_void_p  # otter_tensor_list*
c_int64_p = ctypes.POINTER(ctypes.c_int64)
c_size_p = ctypes.POINTER(ctypes.c_size_t)

# ---- library lookup -------------------------------------------------------------------------

_HERE = os.path.dirname(os.path.abspath(__file__))


def _candidates_next_to_package() -> List[str]:
    found = glob.glob(os.path.join(_HERE, "libotter.so*")) + glob.glob(os.path.join(_HERE, "libotter*.dylib"))
    # Prefer the unversioned name, then the shortest (least specific) versioned one.
    return sorted(set(found), key=lambda p: (os.path.basename(p) != "libotter.so", len(p), p))


# OpenMP's wait policy, read by libgomp once, when it loads: a short spin before a waiting thread
# sleeps (GOMP_SPINCOUNT=10000) costs nothing measurable on an idle machine and keeps a busy
# neighbour from stalling every parallel loop (docs/benchmarks.md, "With a busy neighbour"). Set
# only when the user chose no policy (OMP_WAIT_POLICY, GOMP_SPINCOUNT, or OTTER_WAIT_POLICY=keep for
# libgomp's own default), and effective only if nothing loaded libgomp before Otter.
if ("OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ
        and os.environ.get("OTTER_WAIT_POLICY") != "keep"):
    os.environ["GOMP_SPINCOUNT"] = "10000"


def _load_library() -> ctypes.CDLL:
    tried = []
    # 1. bundled in the package (a wheel): always the library the bindings were built with.
    local = _candidates_next_to_package()
    for path in local:
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    if not local:
        tried.append("%s (no libotter.so* there)" % os.path.join(_HERE, "libotter.so*"))

    # 2. OTTER_LIBRARY: an explicit path is an error when it does not load.
    env = os.environ.get("OTTER_LIBRARY")
    if env:
        try:
            return ctypes.CDLL(env)
        except OSError as e:
            raise ImportError(
                "otter: could not load the Otter C library from OTTER_LIBRARY=%r: %s" % (env, e)
            ) from e
    tried.append("OTTER_LIBRARY (not set)")

    # 3. the build tree of a source checkout (bindings/python/otter -> <repo>/build).
    build = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(_HERE))), "build", "libotter.so")
    if os.path.basename(os.path.dirname(_HERE)) == "python" and os.path.exists(build):
        try:
            return ctypes.CDLL(build)
        except OSError as e:
            tried.append("%s (%s)" % (build, e))
    else:
        tried.append("%s (not a source checkout or not built)" % build)

    # 4. the system (an installed libotter1 / cmake --install prefix on the loader's path).
    name = ctypes.util.find_library("otter")
    if name:
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            tried.append("find_library('otter') -> %s (%s)" % (name, e))
    else:
        tried.append("ctypes.util.find_library('otter') (not found)")

    raise ImportError(
        "otter: could not find the Otter C library (libotter.so). Install the package with "
        "`pip install .` at the repository root (it bundles the library), or set OTTER_LIBRARY to "
        "its path, e.g. OTTER_LIBRARY=/path/to/build/libotter.so. Tried: " + "; ".join(tried)
    )


def _declare(lib: ctypes.CDLL) -> None:
    def fn(name, restype, *argtypes):
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = list(argtypes)

    cp = ctypes.c_char_p
    cpp = ctypes.POINTER(ctypes.c_char_p)
    vp = ctypes.c_void_p

    # library
    fn("otter_api_version", ctypes.c_uint32)
    fn("otter_version", cp)
    fn("otter_last_error", cp)
    fn("otter_status_name", cp, c_status)
    fn("otter_dtype_size", ctypes.c_size_t, c_dtype)

    # options
    fn("otter_options_create", c_status, ctypes.POINTER(c_options_p))
    fn("otter_options_free", None, c_options_p)
    fn("otter_options_set", c_status, c_options_p, cp, cp)
    fn("otter_options_set_double", c_status, c_options_p, cp, ctypes.c_double)
    fn("otter_options_set_int", c_status, c_options_p, cp, ctypes.c_int64)
    fn("otter_options_get", c_status, c_options_p, cp, cpp)

    # sessions
    fn("otter_session_create_from_file", c_status, cp, c_options_p, ctypes.POINTER(c_session_p))
    fn("otter_session_create_from_buffer", c_status, vp, ctypes.c_size_t, cp, c_options_p,
       ctypes.POINTER(c_session_p))
    fn("otter_session_free", None, c_session_p)
    fn("otter_session_device", c_status, c_session_p, cpp)
    fn("otter_session_compute", c_status, c_session_p, cpp)

    info_args = (c_session_p, ctypes.c_size_t, cpp, ctypes.POINTER(c_dtype), ctypes.POINTER(ctypes.c_int32),
                 ctypes.POINTER(c_int64_p))
    for kind in ("input", "output", "parameter"):
        fn("otter_session_%s_count" % kind, c_status, c_session_p, c_size_p)
        fn("otter_session_%s_info" % kind, c_status, *info_args)

    fn("otter_session_train_step", c_status, c_session_p, ctypes.c_size_t, cpp, ctypes.POINTER(TensorView),
       ctypes.POINTER(ctypes.c_double))
    fn("otter_session_eval_step", c_status, c_session_p, ctypes.c_size_t, cpp, ctypes.POINTER(TensorView),
       ctypes.POINTER(c_list_p), ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_int))

    fn("otter_session_get_learning_rate", c_status, c_session_p, ctypes.POINTER(ctypes.c_double))
    fn("otter_session_set_learning_rate", c_status, c_session_p, ctypes.c_double)
    fn("otter_session_get_parameter", c_status, c_session_p, cp, vp, ctypes.c_size_t)
    fn("otter_session_set_parameter", c_status, c_session_p, cp, ctypes.POINTER(TensorView))
    fn("otter_session_get_stat", c_status, c_session_p, cp, ctypes.POINTER(ctypes.c_double))
    fn("otter_session_save_checkpoint", c_status, c_session_p, cp)
    fn("otter_session_load_checkpoint", c_status, c_session_p, cp)
    fn("otter_session_export", c_status, c_session_p, cp)
    fn("otter_session_set_metadata", c_status, c_session_p, cp, cp)
    fn("otter_session_initializer_count", c_status, c_session_p, c_size_p)
    fn("otter_session_initializer_info", c_status, c_session_p, ctypes.c_size_t, cpp, ctypes.POINTER(ctypes.c_int), cpp)
    fn("otter_session_note_count", c_status, c_session_p, c_size_p)
    fn("otter_session_note", c_status, c_session_p, ctypes.c_size_t, cpp)
    fn("otter_session_get_metadata", c_status, c_session_p, cp, cpp)
    fn("otter_session_log_scalar", c_status, c_session_p, cp, ctypes.c_double)

    # tensor lists
    fn("otter_tensor_list_size", c_status, c_list_p, c_size_p)
    fn("otter_tensor_list_get", c_status, c_list_p, ctypes.c_size_t, cpp, ctypes.POINTER(TensorView))
    fn("otter_tensor_list_free", None, c_list_p)


lib = _load_library()
try:
    _declare(lib)
except AttributeError as e:  # a symbol is missing: an old or foreign library
    raise ImportError("otter: %r does not export the Otter C ABI: %s" % (lib._name, e)) from e

_abi = lib.otter_api_version()
if _abi // 1000 != OTTER_API_VERSION // 1000:
    raise ImportError(
        "otter: %r has ABI version %d, but these bindings need %d.x (OTTER_API_VERSION %d)"
        % (lib._name, _abi, OTTER_API_VERSION // 1000, OTTER_API_VERSION)
    )

library_path: Optional[str] = lib._name

# Test hook: when set to a callable, it is called as hook(name, data_pointer, array) for every
# input right before it is handed to the C library (lets tests check that inputs are not copied).
input_hook = None
