"""GPU benchmark suite: train-step throughput, data-loader ceiling, eval throughput, ONNX/TensorRT parity.

One table (printed, and written to ``--out`` as ``gpu_suite.md`` + ``gpu_suite.json``, the JSON
rewritten after every row so a killed session keeps what it measured):

* ``train/<model>/<variant>``: img/s and ms/step (median of >= 10 CUDA-synchronised timed steps
  after warm-up) of the engine's real training step (``train_one_epoch``: forward, loss, backward,
  the config's Adam + L2, scheduler) for det_mv3_db, the PP-OCRv3 det student (640x640 crops),
  CML (two students + the frozen teacher, 640x640) and the SVTR_LCNet CTC rec (3x48x320), at fp32,
  AMP (bf16 autocast on compute capability >= 8, fp16 + GradScaler below), AMP + channels_last and
  AMP + channels_last + torch.compile (det_mv3_db and rec only unless ``--compile-all``). Inputs:
  one real batch built by the config's own Train transforms from synthetic images, reused.
* ``loader/det_mv3_db``: img/s of det_mv3_db's Train pipeline through ``build_dataloader`` with
  ``os.cpu_count()`` workers and no model, against the fastest det_mv3_db train step measured in
  the same run (normally AMP + channels_last): "data-bound"/"GPU-bound".
* ``eval/ppocrv3_student``: ``ocr_core.engine.loop.evaluate`` img/s on synthetic 1280x720 pages
  (DetResizeForTest limit 736, min).
* ``parity/<model>/<runtime>``: max |eager torch - exported| for the PP-OCRv3 det student and the
  rec model through onnxruntime CPU, onnxruntime CUDA and TensorRT (skipped when not available).

Rows run in priority order (AMP rows, loader, parity, eval, fp32, channels_last, compile); a row
that would not fit in what is left of ``--budget-s`` is "skipped: budget", every row has a time
cap, and a failing row is reported as "error: <type>: <msg>" without stopping the suite. Exit code
0 unless the arguments are wrong.

On the GPU machine (repo root; nothing installed, wheels for pyclipper/shapely/albumentations/lmdb/
rapidfuzz on PYTHONPATH):

    python3 bench/gpu_suite.py --out $OUT/gpu_suite --budget-s 240

(``--dry-run --device cuda`` is a ~1-minute smoke test of the same code paths on the GPU; ``--list``
names the rows, ``--only 'train/*/amp,parity/*'`` selects some; the JSON keeps each error's traceback.)

CPU smoke test of every code path (what ``tests/unit/test_gpu_suite.py`` runs):

    python bench/gpu_suite.py --dry-run --device cpu --out /tmp/gpu_suite
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network there: skip albumentations' version check
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TQDM_STUB = '''"""No-op stand-in for tqdm, written by bench/gpu_suite.py because tqdm is not installed."""


class tqdm:
    def __init__(self, iterable=None, *args, **kwargs):
        self.iterable, self.n = iterable, 0

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else [])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        self.n += n

    def __getattr__(self, name):
        return lambda *args, **kwargs: None
'''

try:  # ocr_core's progress bars import tqdm; its absence must not cost the GPU session
    import tqdm  # noqa: F401
except ImportError:  # a real module file (dynamo and torch.hub look at __file__/__spec__)
    _stub_dir = Path(tempfile.mkdtemp(prefix="gpu_suite_tqdm_"))
    (_stub_dir / "tqdm.py").write_text(TQDM_STUB, encoding="utf-8")
    sys.path.append(str(_stub_dir))

import torch  # noqa: E402

from bench import gpu_suite_parts as parts  # noqa: E402

MODELS = ("det_mv3_db", "ppocrv3_student", "ppocrv3_cml", "rec_svtr")
COMPILE_DEFAULT = ("det_mv3_db", "rec_svtr")
PRIORITY = {"amp": 0, "loader": 1, "parity": 2, "eval": 3, "fp32": 4, "amp_cl": 5, "compile": 6}
COLUMNS = ("row", "status", "img/s", "ms/step", "peak MiB", "max abs diff", "verdict", "detail")
GRACE_S = 10.0  # past a row's cap before SIGALRM interrupts it


@dataclass
class Row:
    """One table row: ``fn(deadline) -> result dict``; ``est_s`` is what it needs to be started."""

    name: str
    priority: int
    est_s: float
    cap_s: float
    fn: Callable[[float], dict[str, Any]]
    skip: str | None = None


def build_rows(ctx: parts.Ctx, args: argparse.Namespace) -> list[Row]:
    """All rows in display order."""
    scale = 0.02 if args.dry_run else 1.0
    rows = []
    for key in MODELS:
        for variant in parts.VARIANTS:
            compiled = variant == "compile"
            skip = None
            if compiled and not (args.compile_all or key in COMPILE_DEFAULT):
                skip = "compile off for this model (enable with --compile-all)"
            est = (60.0 if compiled else 25.0 if key == "ppocrv3_cml" else 12.0) * scale
            rows.append(Row(f"train/{key}/{variant}", PRIORITY[variant], est,
                            args.compile_cap_s if compiled else args.row_cap_s,
                            lambda d, k=key, v=variant: parts.train_row(ctx, k, v, d), skip))
    rows.append(Row("loader/det_mv3_db", PRIORITY["loader"], 20.0 * scale, args.row_cap_s,
                    lambda d: parts.loader_row(ctx, d)))
    rows.append(Row("eval/ppocrv3_student", PRIORITY["eval"], 20.0 * scale, args.row_cap_s,
                    lambda d: parts.eval_row(ctx, d)))
    trt_missing = parts.tensorrt_importable()
    ort_cuda = "CUDAExecutionProvider" in parts.ort_providers()
    for which in ("det_student", "rec_svtr"):
        for runtime in ("ort_cpu", "ort_cuda", "tensorrt"):
            skip = None
            if runtime == "ort_cuda" and not ort_cuda:
                skip = f"onnxruntime CUDAExecutionProvider not available ({', '.join(parts.ort_providers())})"
            elif runtime == "ort_cuda" and ctx.device.type != "cuda":
                skip = "onnxruntime CUDA: --device is not cuda"
            elif runtime == "tensorrt" and trt_missing:
                skip = f"tensorrt not importable ({trt_missing})"
            elif runtime == "tensorrt" and ctx.device.type != "cuda":
                skip = "tensorrt: --device is not cuda"
            est = (30.0 if runtime == "tensorrt" else 10.0) * scale
            rows.append(Row(f"parity/{which}/{runtime}", PRIORITY["parity"], est, args.row_cap_s,
                            lambda d, w=which, r=runtime: parts.parity_row(ctx, w, r, d), skip))
    return rows


def run_rows(rows: list[Row], ctx: parts.Ctx, budget_s: float, t_start: float,
             on_result: Callable[[], None]) -> None:
    """Run rows by priority within the budget; every outcome lands in ``ctx.results``."""
    for row in sorted(rows, key=lambda r: r.priority):
        elapsed = time.perf_counter() - t_start
        remaining = budget_s - elapsed
        t0 = time.perf_counter()
        if row.skip:
            short, _, why = row.skip.partition(" (")
            res: dict[str, Any] = {"status": "skipped", "note": f"skipped: {short}",
                                   "detail": f"({why}" if why else ""}
        elif remaining < row.est_s:
            res = {"status": "skipped", "note": "skipped: budget",
                   "detail": f"{max(0.0, remaining):.0f}s of --budget-s left, row needs ~{row.est_s:.0f}s"}
        else:
            cap = min(row.cap_s, remaining)
            ctx.phase = ""
            try:
                with parts.hard_cap(cap + GRACE_S):
                    res = row.fn(t0 + cap)
                partial = bool(res.pop("partial", False))
                res["status"] = "partial" if partial else "ok"
                res["note"] = f"partial: stopped at the {cap:.0f}s cap" if partial else "ok"
            except parts.RowTimeout as exc:
                res = {"status": "timeout", "note": f"timeout: {exc} (cap {cap:.0f}s)",
                       "detail": f"during {ctx.phase or 'set-up'}"}
            except Exception as exc:  # noqa: BLE001 - one row must not end the suite
                msg = " ".join(str(exc).split())
                res = {"status": "error", "note": f"error: {type(exc).__name__}: {msg[:200]}",
                       "detail": f"during {ctx.phase or 'set-up'}", "error": f"{type(exc).__name__}: {msg}",
                       "traceback": traceback.format_exc(limit=8)}
            finally:
                cleanup(ctx.device, row.name.endswith("/compile"))
        res["name"] = row.name
        res["row_s"] = round(time.perf_counter() - t0, 2)
        ctx.results[row.name] = res
        loader = ctx.results.get("loader/det_mv3_db")
        if loader is not None and loader.get("status") in ("ok", "partial"):  # faster train rows come later
            loader.update(parts.loader_verdict(loader.get("img_s"), ctx.results, loader.get("loader_detail", "")))
        print(f"[{time.perf_counter() - t_start:6.1f}s] {row.name}: {res['note']}"
              + (f" ({res['img_s']:.1f} img/s)" if res.get("img_s") else ""), file=sys.stderr, flush=True)
        on_result()


def cleanup(device: torch.device, compiled: bool) -> None:
    if compiled:
        try:
            torch._dynamo.reset()
        except Exception:  # noqa: BLE001, S110 - best effort
            pass
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------ reporting

def git_commit() -> str:
    """``git rev-parse HEAD``, else .git/HEAD read by hand, else "unknown"."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        git = ROOT / ".git"
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = (ROOT / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head[4:].strip()
        bases = [git]
        if (git / "commondir").is_file():
            bases.append((git / (git / "commondir").read_text().strip()).resolve())
        for base in bases:
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
            if (base / "packed-refs").is_file():
                for line in (base / "packed-refs").read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
        return f"unknown ({ref})"
    except OSError:
        return "unknown"


def environment(ctx: parts.Ctx, args: argparse.Namespace) -> dict[str, Any]:
    env: dict[str, Any] = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "git_commit": args.commit or git_commit(), "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "device": str(ctx.device), "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(), "dry_run": bool(args.dry_run),
        "amp": parts.amp_name(ctx), "compile_backend": ctx.compile_backend, "budget_s": args.budget_s,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "tf32": f"cudnn conv {torch.backends.cudnn.allow_tf32}, matmul {torch.backends.cuda.matmul.allow_tf32} "
                "(torch defaults; parity rows turn both off)",
    }
    if ctx.device.type == "cuda":
        props = torch.cuda.get_device_properties(ctx.device)
        env.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                   gpu_memory_gib=round(props.total_memory / 2**30, 1))
    try:
        import onnxruntime as ort

        env["onnxruntime"] = f"{ort.__version__} ({', '.join(ort.get_available_providers())})"
    except Exception as exc:  # noqa: BLE001
        env["onnxruntime"] = f"not importable: {exc}"
    missing = parts.tensorrt_importable()
    env["tensorrt"] = "importable" if missing is None else "not importable"
    include = sysconfig.get_paths().get("include") or ""
    env["inductor_toolchain"] = (f"cc {shutil.which(os.environ.get('CC') or 'cc') or shutil.which('gcc') or 'MISSING'}, "
                                 f"Python.h {'ok' if Path(include, 'Python.h').is_file() else 'MISSING'}")
    shm = parts.shm_free_gib()
    env["dev_shm_free_gib"] = None if shm is None else round(shm, 1)
    env["tqdm"] = "stub (not installed)" if "gpu_suite_tqdm_" in str(getattr(sys.modules.get("tqdm"), "__file__", "")) \
        else "ok"
    return env


def _fmt(v: Any, spec: str) -> str:
    return "" if v is None else format(v, spec)


def table_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in results:
        status = r["status"] if r["status"] in ("ok", "partial") else r["note"]
        out.append([r["name"], status, _fmt(r.get("img_s"), ".1f"), _fmt(r.get("ms_step"), ".2f"),
                    _fmt(r.get("peak_mib"), ".0f"), _fmt(r.get("max_abs_diff"), ".2e"), r.get("verdict", ""),
                    r.get("detail", "")])
    return out


def render_text(env: dict[str, Any], results: list[dict[str, Any]]) -> str:
    rows = table_rows(results)
    short = [row[:-1] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in short)) for i, c in enumerate(COLUMNS[:-1])]
    lines = [f"{k}: {v}" for k, v in env.items()] + [""]
    lines.append("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)) + "  detail")
    for row, full in zip(short, rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + full[-1])
    return "\n".join(lines)


def render_markdown(env: dict[str, Any], results: list[dict[str, Any]]) -> str:
    lines = ["# OCRFlow GPU suite", ""] + [f"- {k}: {v}" for k, v in env.items()] + [""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for row in table_rows(results):
        lines.append("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--out", default="bench_out/gpu_suite", help="directory for gpu_suite.md/.json")
    ap.add_argument("--device", choices=("cuda", "cpu"), default=None,
                    help="default: cuda when available (cpu with --dry-run)")
    ap.add_argument("--dry-run", action="store_true", help="every code path, tiny shapes, CPU-sized (< 60 s)")
    ap.add_argument("--budget-s", type=float, default=240.0, help="wall-clock budget of the whole suite")
    ap.add_argument("--row-cap-s", type=float, default=90.0, help="time cap of one row")
    ap.add_argument("--compile-cap-s", type=float, default=180.0, help="time cap of a torch.compile row")
    ap.add_argument("--only", default=None, help="comma-separated globs of row names, e.g. 'train/*/amp,parity/*'")
    ap.add_argument("--compile-all", action="store_true", help="torch.compile rows for every model")
    ap.add_argument("--compile-backend", default=None, help="default inductor (eager with --dry-run)")
    ap.add_argument("--det-batch", type=int, default=None, help="det_mv3_db and student batch (32)")
    ap.add_argument("--cml-batch", type=int, default=None, help="CML batch (16)")
    ap.add_argument("--rec-batch", type=int, default=None, help="rec batch (256)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per train row (10)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps (3)")
    ap.add_argument("--loader-workers", type=int, default=None, help="default os.cpu_count()")
    ap.add_argument("--loader-seconds", type=float, default=None, help="loader measuring window (15)")
    ap.add_argument("--commit", default=None, help="git commit to record when the copy has no .git")
    ap.add_argument("--list", action="store_true", help="print the row names and exit")
    args = ap.parse_args(argv)
    if args.device is None:
        args.device = "cpu" if args.dry_run or not torch.cuda.is_available() else "cuda"
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")
    for name in ("budget_s", "row_cap_s", "compile_cap_s"):
        if getattr(args, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be > 0")
    for name in ("det_batch", "cml_batch", "rec_batch", "steps", "warmup", "loader_workers"):
        v = getattr(args, name)
        if v is not None and v < (0 if name == "warmup" else 1):
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    args.parser = ap
    return args


def make_ctx(args: argparse.Namespace, work: Path) -> parts.Ctx:
    dry = args.dry_run
    device = torch.device(args.device)
    amp_dtype = torch.bfloat16
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] < 8:
        amp_dtype = torch.float16
    det = args.det_batch or (2 if dry else 32)
    return parts.Ctx(
        device=device, dry=dry, work=work, amp_dtype=amp_dtype,
        batch={"det_mv3_db": det, "ppocrv3_student": det, "ppocrv3_cml": args.cml_batch or (2 if dry else 16),
               "rec_svtr": args.rec_batch or (2 if dry else 256)},
        steps=args.steps or (2 if dry else 10), warmup=args.warmup if args.warmup is not None else (1 if dry else 3),
        crop=64 if dry else 640, det_image_size=(320, 192) if dry else (1280, 720),
        rec_shape=(3, 48, 160) if dry else (3, 48, 320), eval_images=2 if dry else 32, eval_limit=64 if dry else 736,
        loader_workers=args.loader_workers or parts.default_workers(), loader_batch=2 if dry else 8,
        loader_seconds=args.loader_seconds or (1.0 if dry else 15.0),
        build_workers=0 if dry else min(16, parts.default_workers()),
        compile_backend=args.compile_backend or ("eager" if dry else "inductor"))


def main(argv: list[str] | None = None) -> int:
    t_start = time.perf_counter()
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ocrflow").setLevel(logging.ERROR)  # "exporting random weights" etc. are expected
    if args.dry_run:
        torch.set_num_threads(1)  # a shared 2-core CI box: OpenMP spin-waits make 2 threads 100x slower
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as tmp:
        ctx = make_ctx(args, Path(tmp))
        rows = build_rows(ctx, args)
        if args.only:
            globs = [g.strip() for g in args.only.split(",") if g.strip()]
            rows = [r for r in rows if any(fnmatch.fnmatchcase(r.name, g) for g in globs)]
            if not rows:
                args.parser.error(f"--only {args.only!r} matches no row; see --list")
        if args.list:
            print("\n".join(r.name for r in rows))
            return 0
        env = environment(ctx, args)
        print(" | ".join(f"{k}={v}" for k, v in env.items()), file=sys.stderr, flush=True)
        out.mkdir(parents=True, exist_ok=True)

        def write() -> list[dict[str, Any]]:
            done = [ctx.results[r.name] for r in rows if r.name in ctx.results]
            payload = {"env": env, "wall_s": round(time.perf_counter() - t_start, 2),
                       "rows": done, "pending": [r.name for r in rows if r.name not in ctx.results]}
            (out / "gpu_suite.json").write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
            (out / "gpu_suite.md").write_text(render_markdown(env, done), encoding="utf-8")
            return done

        run_rows(rows, ctx, args.budget_s, t_start, write)
        env["wall_s"] = round(time.perf_counter() - t_start, 1)
        env["third_party_modules"] = ",".join(sorted(
            {m.split(".")[0] for m in list(sys.modules)} - set(sys.stdlib_module_names) - {"bench", "ocr_core"}
            - {m for m in {m.split(".")[0] for m in list(sys.modules)} if m.startswith("_")}))
        results = write()
    print(render_text(env, results))
    print(f"\nwrote {out / 'gpu_suite.md'} and {out / 'gpu_suite.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
