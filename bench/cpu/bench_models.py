#!/usr/bin/env python3
"""CPU training benchmark: Otter FP32 / BF16 / FP16 against PyTorch eager FP32 and PyTorch CPU
autocast BF16, in the same run, on PyTorch models exported to ONNX.

Usage (from the repository root, with build/libotter.so built and build-torch-venv holding torch,
torchvision, numpy, onnx; see tests/models/README.md)::

    nice build-torch-venv/bin/python bench/cpu/bench_models.py                 # everything
    nice build-torch-venv/bin/python bench/cpu/bench_models.py --quick \\
        --models mlp,gpt-2l-d64 --precisions fp32,bf16 --threads all,1
    nice build-torch-venv/bin/python bench/cpu/bench_models.py --models none \\
        --creation-only gpt2-124m                                              # creation time only

Models (bench/cpu/make_torch_models.py, run by this script with --torch-python; files are cached
in WORKDIR and re-exported when their config changes): mlp (784-2048-2048-10, batch 256),
resnet18 (torchvision, 10 classes, batch 32 x 3x32x32), gpt-2l-d64 (2 layers, d64, 2 heads, vocab
64, batch 16 x seq 32), gpt-4l-d256 (4 layers, d256, 4 heads, vocab 64, batch 32 x seq 32),
bert-tiny (2 layers, d64, 2 heads, batch 32 x seq 24, 4 classes); gpt2-124m (12 layers, d768, 12
heads, vocab 50257, seq 64) for --creation-only.

A step is forward + cross-entropy (mean) + backward + AdamW update, with PyTorch's AdamW defaults
on both sides (lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01), the loss read back each step:

  Otter    otter.TrainingSession(model.onnx, loss="cross_entropy", loss_output="logits",
           label="label", optimizer="adamw", lr=..., beta1, beta2, eps, weight_decay,
           precision="fp32" | "bf16" | "fp16"), one train_step(**inputs, label=y) per step;
  PyTorch  the same nn.Module with the exported initial weights (state_dict), torch.optim.AdamW
           (default implementation), zero_grad(set_to_none=True); out = model(*inputs);
           F.cross_entropy(out.float(), y).backward(); opt.step(); loss.item(). "bf16" wraps the
           forward and the loss in torch.autocast("cpu", dtype=torch.bfloat16) (no grad scaler).

Every measurement runs in a fresh subprocess (the Otter worker never imports torch), with the
thread setting applied at library load, as bench/cpu/bench_train.py does (its helpers are
imported): "all" leaves OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS unset, "1" sets
them to 1 (and torch.set_num_threads(1)). Both runtimes see the same batches in the same order
and start from the same weights (the first losses of Otter FP32 and PyTorch FP32 are printed side
by side). Warm-up steps are not timed; the figure is the median over --reps repetitions of N
steps, N chosen from the warm-up so a repetition lasts about --rep-seconds (at least
--min-steps). Session creation (Otter: import + autodiff + autocast; the execution plan is built
lazily at the first step, so "first step" = plan + one step) and the first step are timed apart;
the planning itself is Otter's plan_seconds statistic (the time its Plan constructors took), so
"create + plan" = create + plan_seconds. The rest of the first step over the second is mostly the
first touch of fresh memory (the arena, the widened scratch buffers), which a VM can make slow.
Otter's planned activation memory (stats arena_bytes / intermediate_bytes) and each worker's peak
RSS are recorded. A run whose loss does not fall (first warm-up step vs last timed step) is
flagged (!) and makes the script exit 1; so does a failed session, whose error is kept in the row.

The Otter library and its Python bindings are copied to WORKDIR/lib before the first measurement,
so that a rebuild of build/libotter.so (or a change of bindings/python) during the run does not mix
two builds (a load that fails is retried once, after 20 s).

Prints the machine (lscpu model, cores, avx512_bf16 / amx_bf16 / avx512_fp16 flags), date,
versions and markdown tables; writes JSON (default build/bench-cpu/models.json).
"""

import argparse
import datetime
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import bench_train as bt  # noqa: E402  (stdlib-only at import: thread_env, machine_info, load probes)

MODELS = ["mlp", "resnet18", "gpt-2l-d64", "gpt-4l-d256", "bert-tiny"]
CREATION_MODELS = ["gpt2-124m"]
PRECISIONS = ["fp32", "bf16", "fp16"]
THREADS = ["all", "1"]
RUNTIMES = ["otter", "torch"]
ADAMW = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)  # torch.optim.AdamW defaults
TORCH_PRECISIONS = {"fp32": "fp32", "bf16": "bf16-autocast"}  # PyTorch has no CPU FP16 counterpart here
STAT_KEYS = ("arena_bytes", "intermediate_bytes", "loss_scale", "skipped_steps", "step", "captured_steps",
             "device_peak_bytes", "plan_seconds")


# ---- shared by the workers ----------------------------------------------------------------------

def load_batches(model_dir, name):
    """The model's synthetic data cut into full batches: [(inputs dict, label), ...] (numpy)."""
    import numpy as np

    with open(os.path.join(model_dir, name + ".json")) as f:
        meta = json.load(f)
    data = np.load(os.path.join(model_dir, name + ".npz"))
    b = meta["batch"]
    n = len(data["label"]) // b
    return meta, [({k: np.ascontiguousarray(data[k][i * b:(i + 1) * b]) for k in meta["inputs"]},
                   np.ascontiguousarray(data["label"][i * b:(i + 1) * b])) for i in range(n)]


def time_steps(step, warmup, reps, rep_seconds, min_steps):
    """The first step timed alone, then warmup-1 untimed steps, N from those so a repetition lasts
    about rep_seconds, then `reps` timed repetitions of N steps. Returns a dict (ms per step)."""
    t = time.perf_counter()
    first = step()
    first_s = time.perf_counter() - t
    last = first
    w = max(warmup - 1, 1)
    t = time.perf_counter()
    for _ in range(w):
        last = step()
    per_step = (time.perf_counter() - t) / w
    n = max(min_steps, int(math.ceil(rep_seconds / max(per_step, 1e-9))))
    ms = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(n):
            last = step()
        ms.append(1000.0 * (time.perf_counter() - t) / n)
    return {"ms_per_step": statistics.median(ms), "reps_ms": ms, "steps_per_rep": n, "first_step_s": first_s,
            "first_loss": first, "last_loss": last, "steps": 1 + w + n * reps}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def anon_rss_mb():
    """The process's anonymous resident memory (Linux RssAnon; None elsewhere): the memory it touched
    itself, without the mapped model file's page-cache pages that peak RSS also counts."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def emit(obj):
    print(json.dumps(obj), flush=True)


# ---- Otter worker (no torch in this process) -----------------------------------------------------

def import_otter():
    """Imports the bindings; a failed library load (e.g. build/libotter.so being relinked) is
    retried once after a pause."""
    try:
        import otter
        return otter
    except Exception as e:  # noqa: BLE001
        sys.stderr.write("otter import failed (%s); retrying once\n" % e)
        for k in [k for k in sys.modules if k == "otter" or k.startswith("otter.")]:
            del sys.modules[k]
        time.sleep(10)
        import otter
        return otter


def otter_session(otter, path, precision, extra_options=""):
    """extra_options: "key=value,..." (--otter-options), e.g. denormals=flush."""
    extra = dict(kv.split("=", 1) for kv in extra_options.split(",") if kv)
    return otter.TrainingSession(path, loss="cross_entropy", label="label", loss_output="logits",
                                 optimizer="adamw", precision=precision, device="cpu", **ADAMW, **extra)


def otter_stats(sess):
    out = {}
    for k in STAT_KEYS:
        try:
            out[k] = sess.stat(k)
        except Exception:  # noqa: BLE001 - absent or not yet available
            pass
    return out


def otter_worker(args):
    res = {"runtime": "otter", "precision": args.precision}
    try:
        otter = import_otter()
        res.update(version="otter %s" % otter.version(), library=otter.library_path)
    except Exception as e:  # noqa: BLE001
        res["error"] = "import: %s: %s" % (type(e).__name__, e)
        return emit(res)
    meta, data = load_batches(args.model_dir, args.name)
    path = os.path.join(args.model_dir, args.name + ".onnx")
    stage = "session creation"
    try:
        t = time.perf_counter()
        sess = otter_session(otter, path, args.precision, args.otter_options)
        res["create_s"] = time.perf_counter() - t
        res["anon_after_create_mb"] = anon_rss_mb()
        res["device"] = sess.device
        res["notes"] = [n[:300] for n in sess.notes][:10]
        res["n_parameters"] = len(sess.parameter_info)
        emit(dict(res, partial=True))  # what the driver keeps if the steps then time out
        k = [0]

        def step():
            x, y = data[k[0] % len(data)]
            k[0] += 1
            return sess.train_step(x, label=y)

        stage = "training step"
        if args.creation_only:
            if args.first_step:
                t = time.perf_counter()
                res["first_loss"] = step()
                res["first_step_s"] = time.perf_counter() - t
                t = time.perf_counter()
                res["second_loss"] = step()
                res["second_step_s"] = time.perf_counter() - t  # plan cached; planning is stats plan_seconds
        else:
            res.update(time_steps(step, args.warmup, args.reps, args.rep_seconds, args.min_steps))
        res["stats"] = otter_stats(sess)
        sess.close()
    except Exception as e:  # noqa: BLE001 - recorded in the row
        res["error"] = "%s: %s: %s" % (stage, getattr(e, "status", type(e).__name__), str(e)[:2000])
    res["peak_rss_mb"] = peak_rss_mb()
    emit(res)


# ---- PyTorch worker ------------------------------------------------------------------------------

def torch_worker(args):
    res = {"runtime": "torch", "precision": TORCH_PRECISIONS[args.precision]}
    import contextlib

    import torch
    import torch.nn.functional as F
    import make_torch_models as mtm

    if args.threads == "1":
        torch.set_num_threads(1)
    res.update(version="torch %s" % torch.__version__, torch_threads=torch.get_num_threads())
    meta, data = load_batches(args.model_dir, args.name)
    stage = "setup"
    try:
        t = time.perf_counter()
        model = mtm.build(args.name)
        model.load_state_dict(torch.load(os.path.join(args.model_dir, args.name + ".pt")))
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=ADAMW["lr"], betas=(ADAMW["beta1"], ADAMW["beta2"]),
                                eps=ADAMW["eps"], weight_decay=ADAMW["weight_decay"])
        res["create_s"] = time.perf_counter() - t
        batches = [([torch.from_numpy(x[k]) for k in meta["inputs"]], torch.from_numpy(y)) for x, y in data]
        if args.precision == "bf16":
            ctx = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
        else:
            ctx = contextlib.nullcontext
        k = [0]

        def step():
            xs, y = batches[k[0] % len(batches)]
            k[0] += 1
            opt.zero_grad(set_to_none=True)
            with ctx():
                out = model(*xs)
                loss = F.cross_entropy(out.float(), y)
            loss.backward()
            opt.step()
            return loss.item()

        stage = "training step"
        res.update(time_steps(step, args.warmup, args.reps, args.rep_seconds, args.min_steps))
    except Exception as e:  # noqa: BLE001
        res["error"] = "%s: %s: %s" % (stage, type(e).__name__, str(e)[:2000])
    res["peak_rss_mb"] = peak_rss_mb()
    emit(res)


# ---- driver --------------------------------------------------------------------------------------

def worker_env(threads, extra=None):
    extra = dict(extra or {})
    env = bt.thread_env(threads)
    env.pop("MKL_NUM_THREADS", None)
    if threads == "1":
        env["MKL_NUM_THREADS"] = "1"
    bindings = extra.pop("OTTER_BENCH_BINDINGS", os.path.join(REPO, "bindings", "python"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [bindings, HERE, os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_worker(cmd, env, what, tries, max_other=0.10, timeout=None):
    """bench_train.run_json, keeping the error: returns the worker's JSON (with "other_load", the
    CPU share other processes took meanwhile, and "attempt"), or {"error": ...} when it crashed.
    A run above max_other is repeated (up to `tries` in all); the least disturbed one is kept."""
    best = None
    for attempt in range(tries):
        b0, c0, t0 = bt._busy_seconds(), bt._children_cpu(), time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            part = [l for l in out.splitlines() if l.startswith("{")]
            res = json.loads(part[-1]) if part else {}
            res["error"] = "worker timed out after %s s (killed)%s" % (
                timeout, "; session creation had finished" if "create_s" in res else "")
            return res
        b1, c1, wall = bt._busy_seconds(), bt._children_cpu(), time.perf_counter() - t0
        lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-3:]
            sys.stderr.write("%s: worker exit %d\n%s\n" % (what, proc.returncode, proc.stderr[-3000:]))
            return {"error": "worker exit %d: %s" % (proc.returncode, " | ".join(tail)[:1000])}
        result = json.loads(lines[-1])
        result["wall_s"] = wall
        result["other_load"] = None if b0 is None else max(0.0, ((b1 - b0) - (c1 - c0)) / wall)
        result["attempt"] = attempt + 1
        if "error" in result:
            return result
        if best is None or (result["other_load"] is not None and result["other_load"] < best["other_load"]):
            best = result
        if result["other_load"] is None or result["other_load"] <= max_other:
            break
        if attempt + 1 < tries:
            print("    (%s: other processes used %.0f%% of a core meanwhile; retrying)"
                  % (what, 100 * result["other_load"]), flush=True)
            time.sleep(2.0)
    return best


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def snapshot_library(src, workdir, py):
    """Copies the Otter library (symlinks resolved) to WORKDIR/lib and the Python bindings to
    WORKDIR/lib/python (the two must match: a rebuild or a bindings change during the run must not
    mix versions), and checks that they load; retried once. Returns (library, bindings dir, version,
    info)."""
    libdir = os.path.join(workdir, "lib")
    pydir = os.path.join(libdir, "python")
    os.makedirs(libdir, exist_ok=True)
    dst = os.path.join(libdir, "libotter.so")
    for attempt in range(2):
        try:
            real = os.path.realpath(src)
            shutil.copy2(real, dst + ".tmp")
            os.replace(dst + ".tmp", dst)
            shutil.rmtree(pydir, ignore_errors=True)
            shutil.copytree(os.path.join(REPO, "bindings", "python", "otter"), os.path.join(pydir, "otter"),
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            env = dict(os.environ, OTTER_LIBRARY=dst, PYTHONPATH=pydir)
            out = subprocess.run([py, "-c", "import otter; print(otter.version())"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
            if out.returncode == 0:
                return dst, pydir, out.stdout.strip(), {"source": real, "mtime": time.strftime(
                    "%Y-%m-%d %H:%M:%S UTC", time.gmtime(os.path.getmtime(real))), "bytes": os.path.getsize(real)}
            err = out.stderr.strip()[-500:]
        except (OSError, subprocess.SubprocessError) as e:
            err = str(e)
        print("loading the Otter library failed (%s)%s" % (err, "; retrying in 20 s" if attempt == 0 else ""),
              flush=True)
        if attempt == 0:
            time.sleep(20)
    sys.exit("cannot load the Otter library %s" % src)


def fmt(x, f="%.1f", missing="n/a"):
    return missing if x is None else f % x


def mb(b):
    return None if b is None else b / 2 ** 20


def main():
    ap = argparse.ArgumentParser(description="CPU training benchmark: Otter FP32/BF16/FP16 vs PyTorch FP32/BF16")
    ap.add_argument("--worker", choices=["otter", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--name", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--precision", help=argparse.SUPPRESS)
    ap.add_argument("--first-step", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma list of %s (or 'none')" % ", ".join(MODELS))
    ap.add_argument("--precisions", default=",".join(PRECISIONS),
                    help="comma list of fp32, bf16, fp16 (Otter: all three; PyTorch: fp32 and bf16 autocast)")
    ap.add_argument("--threads", default=",".join(THREADS), help="comma list of 'all' and/or '1'")
    ap.add_argument("--runtimes", default=",".join(RUNTIMES), help="comma list of otter, torch")
    ap.add_argument("--creation-only", default="", metavar="MODELS",
                    help="comma list of models timed for Otter session creation only (e.g. gpt2-124m), "
                         "each precision, threads 'all'")
    ap.add_argument("--no-first-step", action="store_true",
                    help="with --creation-only: do not run the first two steps (Otter plans lazily, at the "
                         "first step, and its plan_seconds statistic is read after it)")
    ap.add_argument("--otter-options", default="", metavar="KEY=VALUE,...",
                    help="more Otter session options for every Otter measurement (e.g. denormals=flush; "
                         "PyTorch keeps its defaults)")
    ap.add_argument("--quick", action="store_true",
                    help="fewer steps: warmup 3, reps 3, rep-seconds 0.3, min-steps 3, tries 1 (unless given)")
    ap.add_argument("--warmup", type=int, help="untimed steps (default 10; quick 3)")
    ap.add_argument("--reps", type=int, help="timed repetitions (default 5; quick 3)")
    ap.add_argument("--rep-seconds", type=float, help="target seconds per repetition (default 1.0; quick 0.3)")
    ap.add_argument("--min-steps", type=int, help="minimum steps per repetition (default 5; quick 3)")
    ap.add_argument("--tries", type=int,
                    help="runs per measurement while other processes load the machine; the least disturbed "
                         "is kept (default 3; quick 1)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per worker before it is killed")
    ap.add_argument("--workdir", default=os.path.join(REPO, "build", "bench-cpu", "models"))
    ap.add_argument("--torch-python", default=None,
                    help="Python with torch (default build-torch-venv/bin/python, else this one)")
    ap.add_argument("--otter-library", default=os.environ.get("OTTER_LIBRARY", os.path.join(REPO, "build", "libotter.so")))
    ap.add_argument("--json", default=os.path.join(REPO, "build", "bench-cpu", "models.json"))
    args = ap.parse_args()

    if args.worker:
        sys.path.insert(0, HERE)
        return otter_worker(args) if args.worker == "otter" else torch_worker(args)

    q = args.quick
    for key, full, quick in (("warmup", 10, 3), ("reps", 5, 3), ("rep_seconds", 1.0, 0.3), ("min_steps", 5, 3),
                             ("tries", 3, 1)):
        if getattr(args, key) is None:
            setattr(args, key, quick if q else full)

    def clist(s, known, what):
        items = [x for x in s.split(",") if x and x != "none"]
        bad = [x for x in items if x not in known]
        if bad:
            sys.exit("unknown %s: %s (known: %s)" % (what, ", ".join(bad), ", ".join(known)))
        return items

    models = clist(args.models, MODELS + CREATION_MODELS, "model")
    precisions = clist(args.precisions, PRECISIONS, "precision")
    threads = clist(args.threads, THREADS, "thread setting")
    runtimes = clist(args.runtimes, RUNTIMES, "runtime")
    creation = clist(args.creation_only, MODELS + CREATION_MODELS, "model")
    torch_py = args.torch_python or next((p for p in (os.path.join(REPO, "build-torch-venv", "bin", "python"),)
                                          if os.path.exists(p)), sys.executable)
    if not os.path.exists(args.otter_library):
        sys.exit("no Otter library at %s: build it first (or set OTTER_LIBRARY)" % args.otter_library)

    os.makedirs(args.workdir, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    if models or creation:
        subprocess.run([torch_py, os.path.join(HERE, "make_torch_models.py"), "--outdir", args.workdir,
                        "--models", ",".join(models + [c for c in creation if c not in models])], check=True)
    lib, bindings, otter_version, lib_info = snapshot_library(args.otter_library, args.workdir, sys.executable)
    otter_env = {"OTTER_LIBRARY": lib, "OTTER_BENCH_BINDINGS": bindings}

    info = bt.machine_info()
    flags = cpu_flags()
    info["flags"] = {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16")}
    vers = subprocess.run([torch_py, "-c", "import torch, torchvision, numpy, onnx; print(torch.__version__, "
                           "torchvision.__version__, numpy.__version__, onnx.__version__); "
                           "print(torch.backends.cpu.get_cpu_capability())"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True).stdout.split()
    versions = {"otter": otter_version, "otter_library": lib_info, "python": platform.python_version()}
    if len(vers) >= 5:
        versions.update(torch=vers[0], torchvision=vers[1], numpy=vers[2], onnx=vers[3], torch_cpu_capability=vers[4])
    print("machine: %s, %s CPU(s) (%s core(s)/socket x %s socket(s), %s thread(s)/core); avx512_bf16 %s, "
          "amx_bf16 %s, avx512_fp16 %s" % (
              info["cpu"], info.get("CPU(s)", info["cores"]), info.get("Core(s) per socket", "?"),
              info.get("Socket(s)", "?"), info.get("Thread(s) per core", "?"),
              *("yes" if info["flags"][f] else "no" for f in ("avx512_bf16", "amx_bf16", "avx512_fp16"))))
    print("date: %s" % info["date_utc"])
    print("versions: otter %s (library %s, built %s); torch %s (CPU capability %s), torchvision %s, numpy %s, "
          "onnx %s; python %s" % (otter_version, lib_info["source"], lib_info["mtime"], versions.get("torch"),
                                  versions.get("torch_cpu_capability"), versions.get("torchvision"),
                                  versions.get("numpy"), versions.get("onnx"), versions["python"]))
    print("settings: warmup %d, reps %d, rep-seconds %.2f, min-steps %d, tries %d; AdamW %s%s" % (
        args.warmup, args.reps, args.rep_seconds, args.min_steps, args.tries,
        ", ".join("%s=%g" % kv for kv in ADAMW.items()),
        "; Otter options " + args.otter_options if args.otter_options else ""))
    load0 = os.getloadavg()
    print("load average before: %.2f %.2f %.2f" % load0, flush=True)
    if load0[0] > 0.5:
        print("warning: the machine is not idle (1-min load %.2f); other work skews these numbers" % load0[0])

    common = ["--model-dir", args.workdir, "--warmup", str(args.warmup), "--reps", str(args.reps),
              "--rep-seconds", str(args.rep_seconds), "--min-steps", str(args.min_steps),
              "--otter-options", args.otter_options]
    me = os.path.abspath(__file__)
    rows, t_start = [], time.perf_counter()
    for name in models:
        if name in CREATION_MODELS:
            print("%s is a creation-only model: use --creation-only %s" % (name, name))
            continue
        for th in threads:
            row = {"model": name, "threads": th, "runs": {}}
            for rt in runtimes:
                for p in precisions:
                    if rt == "torch" and p not in TORCH_PRECISIONS:
                        continue
                    key = "%s-%s" % (rt, p)
                    what = "%s threads=%s %s %s" % (name, th, rt, p)
                    env = worker_env(th, otter_env if rt == "otter" else None)
                    py = sys.executable if rt == "otter" else torch_py
                    r = run_worker([py, me, "--worker", rt, "--name", name, "--precision", p,
                                    "--threads", th] + common, env, what, args.tries, timeout=args.timeout)
                    row["runs"][key] = r
                    if "error" in r:
                        print("  %-34s FAILED: %s" % (what, r["error"][:400]), flush=True)
                        continue
                    r["loss_fell"] = bool(math.isfinite(r["last_loss"]) and r["last_loss"] < r["first_loss"])
                    st = r.get("stats", {})
                    print("  %-34s %9.2f ms/step  (N=%d; create %.2f s, first step %.2f s; loss %.4f -> %.4f;%s "
                          "peak RSS %.0f MB; other load %s)%s" % (
                              what, r["ms_per_step"], r["steps_per_rep"], r["create_s"], r["first_step_s"],
                              r["first_loss"], r["last_loss"],
                              " arena %.1f MB;" % mb(st["arena_bytes"]) if "arena_bytes" in st else "",
                              r["peak_rss_mb"], fmt(r["other_load"] and 100 * r["other_load"], "%.0f%%", "?"),
                              "" if r["loss_fell"] else "  LOSS DID NOT FALL"), flush=True)
            rows.append(row)

    creation_rows = []
    for name in creation:
        for p in precisions:
            what = "%s creation %s" % (name, p)
            env = worker_env("all", otter_env)
            r = run_worker([sys.executable, me, "--worker", "otter", "--name", name, "--precision", p,
                            "--threads", "all", "--creation-only", name,
                            "--first-step", "0" if args.no_first_step else "1"] + common,
                           env, what, 1, timeout=args.timeout)
            creation_rows.append({"model": name, "precision": p, "threads": "all", "otter": r})
            if "error" in r:
                print("  %-34s FAILED: %s" % (what, r["error"][:400]), flush=True)
            else:
                print("  %-34s create %.2f s%s; peak RSS %.0f MB; stats %s" % (
                    what, r["create_s"], "" if r.get("first_step_s") is None else
                    ", first step (plan + 1 step, batch 1) %.2f s, second step %.2f s" % (
                        r["first_step_s"], r["second_step_s"]), r["peak_rss_mb"], r.get("stats")), flush=True)

    load1 = os.getloadavg()
    print("\ntotal benchmark time: %.0f s; load average after: %.2f %.2f %.2f\n" % ((time.perf_counter() - t_start,) + load1))
    failed = False
    errors = []

    def ok(r):
        return r is not None and "error" not in r and r.get("loss_fell")

    def cell(r):
        nonlocal failed
        if r is None:
            return "-"
        if "error" in r:
            failed = True
            errors.append(r)
            return "FAIL[%d]" % len(errors)
        busy = (r.get("other_load") or 0) > 0.10
        if not r.get("loss_fell"):
            failed = True
        return "%.2f%s%s" % (r["ms_per_step"], " *" if busy else "", "" if r.get("loss_fell") else " (!)")

    def ratio(a, b):
        return "%.2f" % (a["ms_per_step"] / b["ms_per_step"]) if ok(a) and ok(b) else "-"

    if rows:
        print("Per-step time, ms (median); ratios are time ratios (below 1: the numerator is faster)\n")
        print("| model | threads | Otter FP32 | Otter BF16 | Otter FP16 | PyTorch FP32 | PyTorch BF16 autocast "
              "| Otter FP32 / PyTorch FP32 | Otter BF16 / PyTorch BF16 | Otter BF16 / Otter FP32 "
              "| Otter FP16 / Otter FP32 |")
        print("|---|---|" + "---:|" * 9)
        for row in rows:
            g = row["runs"].get
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                row["model"], row["threads"], cell(g("otter-fp32")), cell(g("otter-bf16")), cell(g("otter-fp16")),
                cell(g("torch-fp32")), cell(g("torch-bf16")),
                ratio(g("otter-fp32"), g("torch-fp32")), ratio(g("otter-bf16"), g("torch-bf16")),
                ratio(g("otter-bf16"), g("otter-fp32")), ratio(g("otter-fp16"), g("otter-fp32"))))

        print("\nSession creation, first step, memory, loss (per measurement)\n")
        print("| model | threads | run | create s | first step s | loss first -> last | Otter arena MB "
              "| Otter intermediates MB | peak RSS MB |")
        print("|---|---|---|---:|---:|---|---:|---:|---:|")
        for row in rows:
            for key, r in row["runs"].items():
                if "error" in r:
                    print("| %s | %s | %s | FAIL%s | | | | | |" % (row["model"], row["threads"], key,
                                                                 fmt(r.get("create_s"), " (created in %.2f s)", "")))
                    continue
                st = r.get("stats", {})
                print("| %s | %s | %s | %.2f | %.2f | %.4f -> %.4f%s | %s | %s | %.0f |" % (
                    row["model"], row["threads"], key, r["create_s"], r["first_step_s"], r["first_loss"],
                    r["last_loss"], "" if r["loss_fell"] else " (!)", fmt(mb(st.get("arena_bytes"))),
                    fmt(mb(st.get("intermediate_bytes"))), r["peak_rss_mb"]))

    if creation_rows:
        print("\nOtter session creation only (import + autodiff + autocast; Otter plans at the first step: "
              "plan s is its plan_seconds statistic)\n")
        print("| model | precision | create s | plan s | create + plan s | first step (plan + 1 step, batch 1) s "
              "| second step s | arena MB | anonymous MB after creation | peak RSS MB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in creation_rows:
            r = c["otter"]
            if "error" in r:
                failed = True
                errors.append(r)
                print("| %s | %s | FAIL[%d]%s | | | | | | | |" % (c["model"], c["precision"], len(errors),
                                                           fmt(r.get("create_s"), " (created in %.2f s)", "")))
                continue
            f1, f2 = r.get("first_step_s"), r.get("second_step_s")
            plan_s = r.get("stats", {}).get("plan_seconds") if f1 is not None else None
            print("| %s | %s | %.2f | %s | %s | %s | %s | %s | %s | %.0f |" % (
                c["model"], c["precision"], r["create_s"], fmt(plan_s, "%.3f"),
                fmt(None if plan_s is None else r["create_s"] + plan_s, "%.2f"), fmt(f1, "%.2f"), fmt(f2, "%.2f"),
                fmt(mb(r.get("stats", {}).get("arena_bytes"))), fmt(r.get("anon_after_create_mb"), "%.0f"),
                r["peak_rss_mb"]))

    if any((r.get("other_load") or 0) > 0.10 for row in rows for r in row["runs"].values()):
        print("\n* other processes used more than 10%% of a core during this measurement (after %d tries)" % args.tries)
    for i, r in enumerate(errors, 1):
        print("[%d] %s %s: %s" % (i, r.get("runtime", "?"), r.get("precision", "?"), r["error"][:1500]))

    first = [(row["model"], row["threads"], row["runs"]["otter-fp32"]["first_loss"], row["runs"]["torch-fp32"]["first_loss"])
             for row in rows if ok(row["runs"].get("otter-fp32")) and ok(row["runs"].get("torch-fp32"))]
    if first:
        print("\nfirst loss, Otter FP32 vs PyTorch FP32 (same weights, same batch): " + "; ".join(
            "%s/%s %.6f vs %.6f" % f for f in first))

    with open(args.json, "w") as fh:
        json.dump({"machine": info, "date_utc": info["date_utc"], "load_before": load0, "load_after": load1,
                   "versions": versions, "adamw": ADAMW,
                   "settings": {k: getattr(args, k) for k in ("warmup", "reps", "rep_seconds", "min_steps", "tries",
                                                              "quick")},
                   "results": rows, "creation": creation_rows}, fh, indent=1)
    print("\nraw results: %s" % args.json)
    if failed:
        print("some runs failed or their loss did not fall: see FAIL / (!) above", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
