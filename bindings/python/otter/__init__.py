"""Otter: train ONNX models from Python.

A pure-Python (ctypes) binding over Otter's plain-C ABI (``otter.h``)::

    import numpy as np, otter

    with otter.TrainingSession("mlp.onnx", loss="cross_entropy", optimizer="adamw", lr=3e-3) as s:
        for x, y in batches:
            loss = s.train_step(x=x, label=y)
        logits = s.eval_step(x=x_test)["logits"]
        s.export("mlp_trained.onnx")

The C library is found as a ``libotter.so*`` inside this package (what ``pip install .`` at the
repository root bundles), else through the ``OTTER_LIBRARY`` environment variable, the build tree
of a source checkout (``<repo>/build``), or ``ctypes.util.find_library("otter")``, in that order.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import os
from collections import namedtuple
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import _capi
from ._capi import lib as _lib

__all__ = [
    "TrainingSession",
    "TensorInfo",
    "OtterError",
    "InvalidArgumentError",
    "NotFoundError",
    "InvalidModelError",
    "UnsupportedError",
    "OtterIOError",
    "OutOfMemoryError",
    "WrongStateError",
    "InternalError",
    "NonFiniteError",
    "BusyError",
    "DistributedError",
    "api_version",
    "version",
    "library_path",
    "__version__",
]

# ---- library info ---------------------------------------------------------------------------


def api_version() -> int:
    """OTTER_API_VERSION of the loaded library (e.g. 1000 for ABI 1.0)."""
    return int(_lib.otter_api_version())


def version() -> str:
    """The library version, "MAJOR.MINOR.PATCH"."""
    return _lib.otter_version().decode("utf-8")


__version__ = version()
library_path = _capi.library_path

# ---- errors ---------------------------------------------------------------------------------


class OtterError(RuntimeError):
    """A failed Otter call.

    Attributes:
        status: the status name, e.g. ``"OTTER_ERROR_NOT_FOUND"`` (from otter_status_name).
        code: the numeric otter_status.
        message: the library's message (otter_last_error()); also ``str(error)``.
    """

    def __init__(self, status: str, message: str, code: Optional[int] = None):
        super().__init__(message)
        self.status = status
        self.code = code if code is not None else _STATUS_CODES.get(status)
        self.message = message

    def __repr__(self) -> str:
        return "%s(status=%r, message=%r)" % (type(self).__name__, self.status, self.message)


class InvalidArgumentError(OtterError):
    """OTTER_ERROR_INVALID_ARGUMENT: bad option value, wrong shape or dtype, ..."""


class NotFoundError(OtterError):
    """OTTER_ERROR_NOT_FOUND: missing file, unknown name or option key."""


class InvalidModelError(OtterError):
    """OTTER_ERROR_INVALID_MODEL: the model does not parse or validate."""


class UnsupportedError(OtterError):
    """OTTER_ERROR_UNSUPPORTED: op, dtype, opset, device or setting not supported."""


class OtterIOError(OtterError):
    """OTTER_ERROR_IO: a file could not be written."""


class OutOfMemoryError(OtterError):
    """OTTER_ERROR_OUT_OF_MEMORY."""


class WrongStateError(OtterError):
    """OTTER_ERROR_WRONG_STATE: a call not valid in the object's current state."""


class InternalError(OtterError):
    """OTTER_ERROR_INTERNAL: a bug in Otter."""


class NonFiniteError(OtterError):
    """OTTER_ERROR_NON_FINITE: a training step met a NaN/Inf gradient (the step was skipped; see the
    ``nonfinite`` option), or an export met a non-finite weight."""


class BusyError(OtterError):
    """OTTER_ERROR_BUSY: the session is in use by another thread (C API; the Python wrapper
    serialises its own calls, so this appears only when the handle is shared with C code)."""


class DistributedError(OtterError):
    """OTTER_ERROR_DISTRIBUTED: data-parallel training (option ``distributed``) failed: MPI or NCCL
    reported an error (a lost peer), a step failed on this rank, or the ranks run different models
    or options. The run cannot continue: end the process (every rank) and restart from the last
    checkpoint. (A peer that stops answering ends the process after ``dist_timeout``.)"""


_ERROR_CLASSES = {
    _capi.OTTER_ERROR_INVALID_ARGUMENT: InvalidArgumentError,
    _capi.OTTER_ERROR_NOT_FOUND: NotFoundError,
    _capi.OTTER_ERROR_INVALID_MODEL: InvalidModelError,
    _capi.OTTER_ERROR_UNSUPPORTED: UnsupportedError,
    _capi.OTTER_ERROR_IO: OtterIOError,
    _capi.OTTER_ERROR_OUT_OF_MEMORY: OutOfMemoryError,
    _capi.OTTER_ERROR_WRONG_STATE: WrongStateError,
    _capi.OTTER_ERROR_INTERNAL: InternalError,
    _capi.OTTER_ERROR_NON_FINITE: NonFiniteError,
    _capi.OTTER_ERROR_BUSY: BusyError,
    _capi.OTTER_ERROR_DISTRIBUTED: DistributedError,
}
_STATUS_CODES = {
    "OTTER_ERROR_INVALID_ARGUMENT": _capi.OTTER_ERROR_INVALID_ARGUMENT,
    "OTTER_ERROR_NOT_FOUND": _capi.OTTER_ERROR_NOT_FOUND,
    "OTTER_ERROR_INVALID_MODEL": _capi.OTTER_ERROR_INVALID_MODEL,
    "OTTER_ERROR_UNSUPPORTED": _capi.OTTER_ERROR_UNSUPPORTED,
    "OTTER_ERROR_IO": _capi.OTTER_ERROR_IO,
    "OTTER_ERROR_OUT_OF_MEMORY": _capi.OTTER_ERROR_OUT_OF_MEMORY,
    "OTTER_ERROR_WRONG_STATE": _capi.OTTER_ERROR_WRONG_STATE,
    "OTTER_ERROR_INTERNAL": _capi.OTTER_ERROR_INTERNAL,
    "OTTER_ERROR_NON_FINITE": _capi.OTTER_ERROR_NON_FINITE,
    "OTTER_ERROR_BUSY": _capi.OTTER_ERROR_BUSY,
    "OTTER_ERROR_DISTRIBUTED": _capi.OTTER_ERROR_DISTRIBUTED,
}


def _error(code: int, message: Optional[str] = None) -> OtterError:
    """An exception for status `code`; the message defaults to otter_last_error()."""
    name = _lib.otter_status_name(code)
    status = name.decode("utf-8") if name else "OTTER_STATUS_%d" % code
    if message is None:
        raw = _lib.otter_last_error()
        message = raw.decode("utf-8", "replace") if raw else ""
    return _ERROR_CLASSES.get(code, OtterError)(status, message, code)


def _check(code: int) -> None:
    if code != _capi.OTTER_OK:
        raise _error(code)


# ---- dtypes ---------------------------------------------------------------------------------

try:  # optional: bfloat16 arrays (the ml_dtypes package, used by JAX and onnx)
    import ml_dtypes as _ml_dtypes

    _BFLOAT16: Optional[np.dtype] = np.dtype(_ml_dtypes.bfloat16)
except Exception:  # pragma: no cover - optional dependency
    _BFLOAT16 = None

_NP_TO_OTTER: Dict[np.dtype, int] = {
    np.dtype(np.float32): _capi.OTTER_DTYPE_FLOAT32,
    np.dtype(np.float64): _capi.OTTER_DTYPE_FLOAT64,
    np.dtype(np.float16): _capi.OTTER_DTYPE_FLOAT16,
    np.dtype(np.int64): _capi.OTTER_DTYPE_INT64,
    np.dtype(np.int32): _capi.OTTER_DTYPE_INT32,
    np.dtype(np.int8): _capi.OTTER_DTYPE_INT8,
    np.dtype(np.uint8): _capi.OTTER_DTYPE_UINT8,
    np.dtype(np.bool_): _capi.OTTER_DTYPE_BOOL,
}
if _BFLOAT16 is not None:
    _NP_TO_OTTER[_BFLOAT16] = _capi.OTTER_DTYPE_BFLOAT16
_OTTER_TO_NP: Dict[int, np.dtype] = {v: k for k, v in _NP_TO_OTTER.items()}


def _np_dtype(code: int) -> Union[np.dtype, str]:
    """The numpy dtype of an otter_dtype ('bfloat16' as a string when ml_dtypes is missing)."""
    dt = _OTTER_TO_NP.get(code)
    if dt is not None:
        return dt
    if code == _capi.OTTER_DTYPE_BFLOAT16:
        return "bfloat16"
    return "otter_dtype(%d)" % code


def _np_dtype_strict(code: int, what: str) -> np.dtype:
    dt = _OTTER_TO_NP.get(code)
    if dt is None:
        hint = " (install ml_dtypes for bfloat16 support)" if code == _capi.OTTER_DTYPE_BFLOAT16 else ""
        raise UnsupportedError("OTTER_ERROR_UNSUPPORTED",
                               "%s has dtype %s, which has no numpy equivalent%s" % (what, _np_dtype(code), hint))
    return dt


_SUPPORTED_NAMES = ", ".join(str(d) for d in _NP_TO_OTTER)


def _as_input(name: str, value: Any) -> Tuple[np.ndarray, int]:
    """The C-contiguous native-endian array to hand to the library (the same object when possible)
    and its otter_dtype. Raises TypeError for unsupported dtypes."""
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    dt = arr.dtype
    native = dt if dt.isnative else dt.newbyteorder("=")
    code = _NP_TO_OTTER.get(native)
    if code is None:
        raise TypeError("input '%s': unsupported dtype %s (supported: %s)" % (name, dt, _SUPPORTED_NAMES))
    if not (arr.flags.c_contiguous and arr.flags.aligned and dt.isnative):
        arr = np.array(arr, dtype=native, order="C", copy=True)
    return arr, code


_ARRAY_TYPES: Dict[Tuple[Any, int], Any] = {}


def _array_type(item: Any, n: int) -> Any:
    """ctypes' `item * n` array type, made once."""
    t = _ARRAY_TYPES.get((item, n))
    if t is None:
        t = _ARRAY_TYPES[(item, n)] = item * n
    return t


# Per-call costs of a small model's train_step (bench/cpu/bench_train.py, digits at batch 32: a
# ~40 us step) are dominated by ctypes object construction; the shape arrays and the name arrays are
# therefore made once per distinct shape and name tuple (read-only for the library, which copies
# them during the call; each cache is emptied when it reaches 1024 entries).
_SHAPE_POINTERS: Dict[Tuple[int, ...], Any] = {}
_NAME_ARRAYS: Dict[Tuple[str, ...], Any] = {}


def _shape_pointer(shape: Tuple[int, ...]) -> Any:
    p = _SHAPE_POINTERS.get(shape)
    if p is None:
        if len(_SHAPE_POINTERS) >= 1024:
            _SHAPE_POINTERS.clear()
        arr = _array_type(ctypes.c_int64, max(len(shape), 1))(*shape)
        p = _SHAPE_POINTERS[shape] = ctypes.cast(arr, ctypes.POINTER(ctypes.c_int64))  # keeps arr alive
    return p


def _name_array(names: Tuple[str, ...]) -> Any:
    a = _NAME_ARRAYS.get(names)
    if a is None:
        encoded = [n.encode("utf-8") for n in names]
        if len(_NAME_ARRAYS) >= 1024:
            _NAME_ARRAYS.clear()
        a = _NAME_ARRAYS[names] = _array_type(ctypes.c_char_p, max(len(names), 1))(*encoded)
    return a


def _address(arr: np.ndarray) -> int:
    """The address of a C-contiguous array's data (through the buffer protocol where it can: a
    third of arr.ctypes.data's cost)."""
    if arr.flags.writeable and arr.nbytes:
        try:
            return ctypes.addressof(ctypes.c_char.from_buffer(arr))
        except (TypeError, ValueError, BufferError):  # dtypes the buffer protocol does not export
            pass
    return arr.ctypes.data


class _Feeds:
    """Names and tensor views for one call; holds every buffer alive until it is dropped."""

    def __init__(self, feeds: Optional[Mapping[str, Any]], arrays: Mapping[str, Any]):
        merged: Mapping[str, Any] = arrays
        if feeds is not None:
            merged = dict(feeds)
            for k, v in arrays.items():
                if k in merged:
                    raise TypeError("input '%s' given twice" % k)
                merged[k] = v
        n = len(merged)
        self.count = n
        self.names = _name_array(tuple(merged))
        # The ctypes array types are made once per length (making one costs more than the rest of
        # a small model's train_step call).
        self.views = views = _array_type(_capi.TensorView, max(n, 1))()
        self._keep: List[Any] = []
        hook = _capi.input_hook
        for i, (name, value) in enumerate(merged.items()):
            arr, code = _as_input(name, value)
            self._keep.append(arr)
            data = _address(arr)
            views[i] = _capi.TensorView(data, code, arr.ndim, _shape_pointer(arr.shape), _capi.OTTER_DEVICE_CPU)
            if hook is not None:
                hook(name, data, arr)


def _copy_view(view: _capi.TensorView, what: str) -> np.ndarray:
    """A numpy copy of a tensor view owned by the library."""
    if view.device_type != _capi.OTTER_DEVICE_CPU:
        raise UnsupportedError("OTTER_ERROR_UNSUPPORTED",
                               "%s lives on device type %d; only host (CPU) outputs can be copied"
                               % (what, view.device_type))
    dt = _np_dtype_strict(view.dtype, what)
    shape = tuple(int(view.shape[i]) for i in range(view.ndim))
    out = np.empty(shape, dtype=dt)
    if out.nbytes:
        ctypes.memmove(out.ctypes.data, view.data, out.nbytes)
    return out


# ---- options --------------------------------------------------------------------------------


def _option_value(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (set, frozenset)):
        return ",".join(sorted(_option_value(v) for v in value))
    if isinstance(value, (list, tuple)):
        return ",".join(_option_value(v) for v in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


class _Options:
    def __init__(self, settings: List[Tuple[str, Any]]):
        self.handle = ctypes.c_void_p()
        _check(_lib.otter_options_create(ctypes.byref(self.handle)))
        try:
            for key, value in settings:
                if value is None:
                    continue
                _check(_lib.otter_options_set(self.handle, key.encode("utf-8"),
                                              _option_value(value).encode("utf-8")))
        except BaseException:
            self.free()
            raise

    def free(self) -> None:
        if self.handle:
            _lib.otter_options_free(self.handle)
            self.handle = ctypes.c_void_p()


# ---- sessions -------------------------------------------------------------------------------

TensorInfo = namedtuple("TensorInfo", ["name", "dtype", "shape"])
TensorInfo.__doc__ = """(name, dtype, shape) of a session input, output or parameter; shape is a tuple
with None for symbolic dimensions, dtype a numpy dtype."""

_STAT_KEYS = ("step", "micro_step", "learning_rate", "grad_norm", "loss_scale", "skipped_steps", "rank", "world_size")
_INT_STATS = frozenset(("step", "micro_step", "skipped_steps", "arena_bytes", "intermediate_bytes", "rank", "world_size"))

PathLike = Union[str, "os.PathLike[str]"]


def _serialised(method: Any) -> Any:
    """Runs a TrainingSession method under the session's lock: ctypes releases the GIL during a C
    call, so without it a second thread could close the session (or step it) while a step runs."""

    @functools.wraps(method)
    def locked(self: "TrainingSession", *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


class TrainingSession:
    """A training session over an ONNX model.

    Thread safety: calls on one session from several threads are serialised (each waits for the
    one running); ``close()`` waits for a running step to finish.

    Args:
        model: a path to an .onnx file, or the serialized ModelProto as bytes (or any object with
            ``SerializeToString()``, such as an ``onnx.ModelProto``).
        base_dir: for a model given as bytes, the directory its external data is resolved
            against (default: the current directory).
        loss, label, loss_output, optimizer, lr, momentum, weight_decay, schedule, warmup_steps,
        total_steps, clip_norm, grad_accum, seed, trainable, freeze, precision, device, **options:
            Otter option keys (see otter_options_set in otter.h). ``None`` leaves a key at its
            default; lists are joined with commas; bools become "true"/"false". Data parallelism:
            ``distributed="auto"`` (default: join the MPI world under ``mpirun -np N python ...``),
            ``"mpi"`` or ``"off"``; ``dist_timeout`` seconds (docs/distributed.md). Under mpirun,
            save/export write on rank 0 only; see ``rank`` and ``world_size``.
        tensorboard: a folder for TensorBoard event files (created if missing): train/loss,
            learning_rate, loss_scale, skipped_steps, grad_norm, step_time_ms and
            samples_per_second after every optimizer step (``tensorboard_interval=N``: every
            N-th); add your own scalars with ``log_scalar``.

    Raises:
        OtterError (or a subclass such as NotFoundError) when the model or an option is rejected.
    """

    def __init__(
        self,
        model: Union[PathLike, bytes, bytearray, memoryview, Any],
        *,
        loss: Optional[str] = "none",
        label: Optional[str] = "label",
        loss_output: Optional[str] = None,
        optimizer: Optional[str] = "sgd",
        lr: Optional[float] = None,
        momentum: Optional[float] = None,
        weight_decay: Optional[float] = None,
        schedule: Optional[str] = None,
        warmup_steps: Optional[int] = None,
        total_steps: Optional[int] = None,
        clip_norm: Optional[float] = None,
        grad_accum: Optional[int] = None,
        seed: Optional[int] = None,
        trainable: Optional[Union[str, List[str]]] = None,
        freeze: Optional[Union[str, List[str]]] = None,
        precision: Optional[str] = "fp32",
        device: Optional[str] = "auto",
        tensorboard: Optional[PathLike] = None,
        base_dir: Optional[PathLike] = None,
        **options: Any,
    ):
        self._handle = ctypes.c_void_p()
        self._lock = threading.RLock()
        settings = [
            ("loss", loss), ("label", label), ("loss_output", loss_output), ("optimizer", optimizer),
            ("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay), ("schedule", schedule),
            ("warmup_steps", warmup_steps), ("total_steps", total_steps), ("clip_norm", clip_norm),
            ("grad_accum", grad_accum), ("seed", seed), ("trainable", trainable), ("freeze", freeze),
            ("precision", precision), ("device", device),
            ("tensorboard", os.fspath(tensorboard) if tensorboard is not None else None),
        ]
        settings.extend(options.items())
        opts = _Options(settings)
        try:
            handle = ctypes.c_void_p()
            if hasattr(model, "SerializeToString") and not isinstance(model, (str, bytes, os.PathLike)):
                model = model.SerializeToString()
            if isinstance(model, (bytes, bytearray, memoryview)):
                data = bytes(model)
                bdir = os.fsencode(base_dir) if base_dir is not None else None
                _check(_lib.otter_session_create_from_buffer(data, len(data), bdir, opts.handle,
                                                             ctypes.byref(handle)))
                self._source = "<%d bytes>" % len(data)
            else:
                path = os.fspath(model)
                _check(_lib.otter_session_create_from_file(os.fsencode(path), opts.handle, ctypes.byref(handle)))
                self._source = path
            self._handle = handle
        finally:
            opts.free()

    # -- lifetime --

    def close(self) -> None:
        """Frees the session (after a step running in another thread ends). Further calls raise
        WrongStateError. Safe to call twice."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            handle, self._handle = getattr(self, "_handle", None), ctypes.c_void_p()
            if handle and _lib is not None:
                _lib.otter_session_free(handle)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> "TrainingSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return not self._handle

    def _h(self) -> ctypes.c_void_p:
        if not self._handle:
            raise WrongStateError("OTTER_ERROR_WRONG_STATE", "the session is closed")
        return self._handle

    def __repr__(self) -> str:
        if not self._handle:
            return "<otter.TrainingSession (closed)>"
        return "<otter.TrainingSession %s on %s>" % (self._source, self.device)

    # -- description --

    @property
    @_serialised
    def device(self) -> str:
        """The device the session runs on: "cpu" or "cuda:N"."""
        out = ctypes.c_char_p()
        _check(_lib.otter_session_device(self._h(), ctypes.byref(out)))
        return out.value.decode("utf-8")

    @property
    @_serialised
    def compute(self) -> str:
        """One line saying what computes on the device (libraries, native BF16, conversions)."""
        out = ctypes.c_char_p()
        _check(_lib.otter_session_compute(self._h(), ctypes.byref(out)))
        return out.value.decode("utf-8")

    @_serialised
    def _raw_infos(self, kind: str) -> List[Tuple[str, int, Tuple[int, ...]]]:
        count_fn = getattr(_lib, "otter_session_%s_count" % kind)
        info_fn = getattr(_lib, "otter_session_%s_info" % kind)
        h = self._h()
        n = ctypes.c_size_t()
        _check(count_fn(h, ctypes.byref(n)))
        result = []
        for i in range(n.value):
            name = ctypes.c_char_p()
            dtype = ctypes.c_int()
            ndim = ctypes.c_int32()
            shape = _capi.c_int64_p()
            _check(info_fn(h, i, ctypes.byref(name), ctypes.byref(dtype), ctypes.byref(ndim), ctypes.byref(shape)))
            dims = tuple(int(shape[j]) for j in range(ndim.value))
            result.append((name.value.decode("utf-8"), dtype.value, dims))
        return result

    def _infos(self, kind: str) -> List[TensorInfo]:
        return [TensorInfo(name, _np_dtype(code), tuple(None if d < 0 else d for d in dims))
                for name, code, dims in self._raw_infos(kind)]

    @property
    def inputs(self) -> List[TensorInfo]:
        """Inputs a training step needs (model inputs plus the label): (name, dtype, shape)."""
        return self._infos("input")

    @property
    def outputs(self) -> List[TensorInfo]:
        """Model outputs: (name, dtype, shape)."""
        return self._infos("output")

    @property
    def parameter_info(self) -> List[TensorInfo]:
        """Trainable parameters: (name, dtype, shape)."""
        return self._infos("parameter")

    @property
    @_serialised
    def initializer_roles(self) -> List[Tuple[str, bool, str]]:
        """Every initializer of the model: (name, trained, reason), e.g. ("mask", False, "holds NaN
        or infinite values: a constant (e.g. a -inf attention mask)")."""
        h = self._h()
        n = ctypes.c_size_t()
        _check(_lib.otter_session_initializer_count(h, ctypes.byref(n)))
        roles = []
        for i in range(n.value):
            name, reason, trained = ctypes.c_char_p(), ctypes.c_char_p(), ctypes.c_int()
            _check(_lib.otter_session_initializer_info(h, i, ctypes.byref(name), ctypes.byref(trained),
                                                       ctypes.byref(reason)))
            roles.append((name.value.decode("utf-8"), bool(trained.value), reason.value.decode("utf-8")))
        return roles

    @property
    @_serialised
    def notes(self) -> List[str]:
        """Warnings about the session's set-up (e.g. a trained initializer that looks like a mask)."""
        h = self._h()
        n = ctypes.c_size_t()
        _check(_lib.otter_session_note_count(h, ctypes.byref(n)))
        out = []
        for i in range(n.value):
            text = ctypes.c_char_p()
            _check(_lib.otter_session_note(h, i, ctypes.byref(text)))
            out.append(text.value.decode("utf-8"))
        return out

    # -- steps --

    @_serialised
    def train_step(self, feeds: Optional[Mapping[str, Any]] = None, /, *, return_loss: bool = True,
                   **arrays: Any) -> Optional[float]:
        """One training micro-batch (forward, backward and, every grad_accum calls, the optimizer
        step). Inputs are given by name, as keywords or as a dict; returns the micro-batch loss, or
        None with return_loss=False (on CUDA the step then returns without waiting for the GPU)."""
        h = self._h()
        f = _Feeds(feeds, arrays)
        if not return_loss:
            _check(_lib.otter_session_train_step(h, f.count, f.names, f.views, None))
            return None
        loss = ctypes.c_double()
        _check(_lib.otter_session_train_step(h, f.count, f.names, f.views, ctypes.byref(loss)))
        return loss.value

    @_serialised
    def _eval(self, feeds: Optional[Mapping[str, Any]], arrays: Mapping[str, Any],
              want_loss: bool) -> Tuple[Dict[str, np.ndarray], Optional[float]]:
        h = self._h()
        f = _Feeds(feeds, arrays)
        lst = ctypes.c_void_p()
        loss = ctypes.c_double()
        has_loss = ctypes.c_int(0)
        _check(_lib.otter_session_eval_step(h, f.count, f.names, f.views, ctypes.byref(lst),
                                            ctypes.byref(loss) if want_loss else None,
                                            ctypes.byref(has_loss) if want_loss else None))
        try:
            n = ctypes.c_size_t()
            _check(_lib.otter_tensor_list_size(lst, ctypes.byref(n)))
            outputs: Dict[str, np.ndarray] = {}
            for i in range(n.value):
                name = ctypes.c_char_p()
                view = _capi.TensorView()
                _check(_lib.otter_tensor_list_get(lst, i, ctypes.byref(name), ctypes.byref(view)))
                key = name.value.decode("utf-8")
                outputs[key] = _copy_view(view, "output '%s'" % key)
        finally:
            _lib.otter_tensor_list_free(lst)
        return outputs, (loss.value if want_loss and has_loss.value else None)

    def eval_step(self, feeds: Optional[Mapping[str, Any]] = None, /, **arrays: Any) -> Dict[str, np.ndarray]:
        """Forward pass in evaluation mode; returns copies of the model outputs by name."""
        return self._eval(feeds, arrays, False)[0]

    def eval_loss(self, feeds: Optional[Mapping[str, Any]] = None, /,
                  **arrays: Any) -> Tuple[Dict[str, np.ndarray], Optional[float]]:
        """Like eval_step, and also the loss (None unless the label was given)."""
        return self._eval(feeds, arrays, True)

    # -- learning rate, stats --

    @property
    @_serialised
    def learning_rate(self) -> float:
        """The base learning rate (a schedule scales it per step; ``stats["learning_rate"]`` is the
        scheduled rate). Settable: the new rate applies from the next step."""
        lr = ctypes.c_double()
        _check(_lib.otter_session_get_learning_rate(self._h(), ctypes.byref(lr)))
        return lr.value

    @learning_rate.setter
    @_serialised
    def learning_rate(self, value: float) -> None:
        _check(_lib.otter_session_set_learning_rate(self._h(), float(value)))

    @_serialised
    def log_scalar(self, tag: str, value: float) -> None:
        """Appends a scalar (e.g. "val/accuracy") to this session's TensorBoard log at the current
        step; WrongStateError when the session was created without ``tensorboard=DIR``."""
        _check(_lib.otter_session_log_scalar(self._h(), tag.encode("utf-8"), float(value)))

    @_serialised
    def stat(self, key: str) -> float:
        """One statistic by key (see otter_session_get_stat); raises NotFoundError/WrongStateError."""
        out = ctypes.c_double()
        _check(_lib.otter_session_get_stat(self._h(), key.encode("utf-8"), ctypes.byref(out)))
        return int(out.value) if key in _INT_STATS else out.value

    @property
    def stats(self) -> Dict[str, Union[int, float]]:
        """step, micro_step, learning_rate, grad_norm, loss_scale, skipped_steps, rank, world_size, and last_loss,
        arena_bytes, intermediate_bytes when available."""
        result: Dict[str, Union[int, float]] = {key: self.stat(key) for key in _STAT_KEYS}
        for key in ("last_loss", "arena_bytes", "intermediate_bytes"):
            try:
                result[key] = self.stat(key)
            except (WrongStateError, NotFoundError):
                pass
        return result

    # -- parameters --

    def _param(self, name: str) -> Tuple[str, int, Tuple[int, ...]]:
        for info in self._raw_infos("parameter"):
            if info[0] == name:
                return info
        raise NotFoundError("OTTER_ERROR_NOT_FOUND", "'%s' is not a trainable parameter of this session" % name)

    @_serialised
    def get_parameter(self, name: str) -> np.ndarray:
        """A copy of trainable parameter `name` (its FP32 master)."""
        _, code, dims = self._param(name)
        out = np.empty(dims, dtype=_np_dtype_strict(code, "parameter '%s'" % name))
        _check(_lib.otter_session_get_parameter(self._h(), name.encode("utf-8"),
                                                ctypes.c_void_p(out.ctypes.data), out.nbytes))
        return out

    @_serialised
    def set_parameter(self, name: str, value: Any) -> None:
        """Replaces trainable parameter `name`; `value` must have its dtype and shape (a non-array
        value, such as a list, is converted to the parameter's dtype)."""
        if not isinstance(value, np.ndarray):
            value = np.asarray(value, dtype=_OTTER_TO_NP.get(self._param(name)[1]))
        arr, code = _as_input(name, value)
        shape = (ctypes.c_int64 * max(arr.ndim, 1))(*arr.shape)
        view = _capi.TensorView(arr.ctypes.data, code, arr.ndim, ctypes.cast(shape, _capi.c_int64_p),
                                _capi.OTTER_DEVICE_CPU, 0)
        _check(_lib.otter_session_set_parameter(self._h(), name.encode("utf-8"), ctypes.byref(view)))

    @property
    def rank(self) -> int:
        """This process's data-parallel rank (0 when training alone; option ``distributed``)."""
        return int(self.stat("rank"))

    @property
    def world_size(self) -> int:
        """The number of data-parallel processes (1 when training alone)."""
        return int(self.stat("world_size"))

    @property
    def parameters(self) -> Dict[str, np.ndarray]:
        """Copies of all trainable parameters by name."""
        return {name: self.get_parameter(name) for name, _, _ in self._raw_infos("parameter")}

    # -- files --

    @_serialised
    def export(self, path: PathLike) -> None:
        """Writes the original model with its trained initializers replaced by the FP32 values."""
        _check(_lib.otter_session_export(self._h(), os.fsencode(os.fspath(path))))

    @_serialised
    def save(self, path: PathLike) -> None:
        """Writes a checkpoint (parameters, optimizer state, step, schedule, seed) atomically."""
        _check(_lib.otter_session_save_checkpoint(self._h(), os.fsencode(os.fspath(path))))

    @_serialised
    def load(self, path: PathLike) -> None:
        """Restores a checkpoint written by a session of the same model and options."""
        _check(_lib.otter_session_load_checkpoint(self._h(), os.fsencode(os.fspath(path))))

    save_checkpoint = save
    load_checkpoint = load

    @_serialised
    def set_metadata(self, key: str, value: str) -> None:
        """Stores a key/value string in the checkpoints this session saves (restored by load)."""
        _check(_lib.otter_session_set_metadata(self._h(), key.encode("utf-8"), value.encode("utf-8")))

    @_serialised
    def get_metadata(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """The value of a metadata key (set, or restored from a checkpoint), else `default`."""
        out = ctypes.c_char_p()
        code = _lib.otter_session_get_metadata(self._h(), key.encode("utf-8"), ctypes.byref(out))
        if code == _capi.OTTER_ERROR_NOT_FOUND:
            return default
        _check(code)
        return out.value.decode("utf-8")
