"""Measurements behind ``bench/gpu_suite.py``: data, real batches, train steps, loader, eval, parity.

Every row function takes the shared :class:`Ctx` and an absolute ``deadline``
(``time.perf_counter()`` seconds) and returns a result dict (``img_s``, ``ms_step``, ``detail``,
...); it stops early (``partial``) when the deadline passes. Shared inputs (synthetic images, one
real batch per config, ONNX exports) are built once and cached on the context.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ocr_core.build import build_loss, build_metric, build_post_process, create_model
from ocr_core.config import load_charset, load_config, wire_rec_heads
from ocr_core.config.schema import OptimizerConfig
from ocr_core.data.icdar import convert_det_gt_dir
from ocr_core.data.loader import build_dataloader, collate_batch
from ocr_core.data.synth import synth_det, synth_rec
from ocr_core.engine.loop import StepSettings, StepState, evaluate, to_device, train_one_epoch
from ocr_core.engine.optim import build_optimizer
from ocr_core.registry import check_dataclass

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "det_mv3_db": "configs/det/det_mv3_db.yml",
    "ppocrv3_student": "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml",
    "ppocrv3_cml": "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_cml.yml",
    "rec_svtr": "configs/rec/PP-OCRv3/ch_PP-OCRv3_rec_finetune.yml",
}
VARIANTS = {  # name -> (amp, channels_last, compile)
    "fp32": (False, False, False),
    "amp": (True, False, False),
    "amp_cl": (True, True, False),
    "compile": (True, True, True),
}


class RowTimeout(Exception):
    """A row ran past its hard cap (raised from SIGALRM in the main thread)."""


@contextlib.contextmanager
def hard_cap(seconds: float) -> Iterator[None]:
    """Raise :class:`RowTimeout` in the main thread after ``seconds`` (no-op where SIGALRM is missing).

    Cooperative deadlines stop the timing loops; this catches what cannot be interrupted politely
    (an Inductor compile, a slow post-process).
    """
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise RowTimeout(f"hard cap of {seconds:.0f}s reached")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Ctx:
    """Settings and caches shared by all rows."""

    device: torch.device
    dry: bool
    work: Path
    amp_dtype: torch.dtype
    batch: dict[str, int]  # config key -> batch size
    steps: int = 10
    warmup: int = 3
    crop: int = 640
    det_image_size: tuple[int, int] = (1280, 720)
    rec_shape: tuple[int, int, int] = (3, 48, 320)
    eval_images: int = 32
    eval_limit: int = 736
    loader_workers: int = 1
    loader_batch: int = 8
    loader_seconds: float = 15.0
    build_workers: int = 0
    compile_backend: str = "inductor"
    phase: str = ""  # what the running row is doing (named in timeout/error notes)
    cache: dict[str, Any] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()`` once; a failure is remembered (except a timeout, which is retried)."""
        if key not in self.cache:
            try:
                self.cache[key] = (True, build())
            except RowTimeout:
                raise
            except Exception as exc:
                self.cache[key] = (False, exc)
                raise
        ok, value = self.cache[key]
        if not ok:
            raise RuntimeError(f"{key} failed earlier: {type(value).__name__}: {value}")
        return value


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def amp_name(ctx: Ctx) -> str:
    scaler = " + GradScaler" if ctx.amp_dtype == torch.float16 and ctx.device.type == "cuda" else ""
    return f"{'bf16' if ctx.amp_dtype == torch.bfloat16 else 'fp16'} autocast{scaler}"


# ------------------------------------------------------------------------------------------ data

def set_op(section: dict[str, Any], name: str, **kwargs: Any) -> None:
    """Update the kwargs of transform ``name`` in ``section.dataset.transforms`` (in place)."""
    for op in section["dataset"]["transforms"]:
        if isinstance(op, dict) and name in op:
            op[name] = {**(op[name] or {}), **kwargs}
            return
    raise KeyError(f"transform {name} not in the config")


def det_data(ctx: Ctx) -> Path:
    """Synthetic ``mixed`` det pages (ICDAR gt converted to ``label.txt``), made once."""

    def build() -> Path:
        root = ctx.work / "det"
        num = max(*(ctx.batch[k] for k in ("det_mv3_db", "ppocrv3_student", "ppocrv3_cml")), ctx.eval_images, 2)
        synth_det(str(root), num=num, seed=0, domain="mixed", size=ctx.det_image_size,
                  workers=max(1, ctx.build_workers), overwrite=True)
        convert_det_gt_dir(str(root / "gt"), str(root / "images"), str(root / "label.txt"), image_prefix="images")
        return root

    return ctx.cached("det_data", build)


def rec_data(ctx: Ctx) -> Path:
    """Synthetic ``mixed`` word crops with ``rec_gt.txt``, made once."""

    def build() -> Path:
        synth_rec(str(ctx.work / "rec"), num=max(ctx.batch["rec_svtr"], 2), seed=0, domain="mixed",
                  workers=max(1, ctx.build_workers), overwrite=True)
        return ctx.work / "rec"

    return ctx.cached("rec_data", build)


def det_config(ctx: Ctx, key: str, label_file: Path | None = None) -> dict[str, Any]:
    """``key``'s det config on the synthetic images, crops ``ctx.crop`` square."""
    data = det_data(ctx)
    cfg = load_config(ROOT / CONFIGS[key])
    for section in ("Train", "Eval"):
        cfg[section]["dataset"]["data_dir"] = str(data)
        cfg[section]["dataset"]["label_file_list"] = [str(label_file or data / "label.txt")]
    set_op(cfg["Train"], "EastRandomCropData", size=[ctx.crop, ctx.crop])
    return cfg


def rec_config(ctx: Ctx) -> dict[str, Any]:
    """The SVTR_LCNet CTC config on synthetic word crops, head sized from its dictionary."""
    data = rec_data(ctx)
    cfg = load_config(ROOT / CONFIGS["rec_svtr"])
    for section in ("Train", "Eval"):
        cfg[section]["dataset"]["data_dir"] = str(data)
        cfg[section]["dataset"]["label_file_list"] = [str(data / "rec_gt.txt")]
        set_op(cfg[section], "RecResizeImg", image_shape=list(ctx.rec_shape))
    return wire_rec_heads(cfg, len(load_charset(cfg) or []) + 1)


_POOL_DATASET: Any = None  # the dataset forked pool workers read (set around the pool's life)


def _sample(i: int) -> Any:
    random.seed(i)
    np.random.seed(i)
    return _POOL_DATASET[i]


def real_batch(cfg: dict[str, Any], n: int, workers: int) -> list[Any]:
    """``n`` samples through the config's Train dataset + transforms, collated as the loader does.

    Built by a forked process pool (results come back through pipes, not /dev/shm, which may be
    tiny in a container), one sample per task.
    """
    global _POOL_DATASET
    dataset, _, _ = build_dataloader(cfg, "Train")
    _POOL_DATASET = dataset
    try:
        idx = [i % len(dataset) for i in range(n)]
        if workers > 1:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                samples = list(pool.map(_sample, idx))
        else:
            samples = [_sample(i) for i in idx]
    finally:
        _POOL_DATASET = None
    return collate_batch(samples)


def train_inputs(ctx: Ctx, key: str) -> tuple[dict[str, Any], list[Any]]:
    def build() -> tuple[dict[str, Any], list[Any]]:
        cfg = rec_config(ctx) if key == "rec_svtr" else det_config(ctx, key)
        return cfg, real_batch(cfg, ctx.batch[key], ctx.build_workers)

    return ctx.cached(f"batch:{key}", build)


# ------------------------------------------------------------------------------------ train steps

def train_row(ctx: Ctx, key: str, variant: str, deadline: float) -> dict[str, Any]:
    """Median time of the engine's training step (``train_one_epoch``) on one real batch, reused."""
    amp, channels_last, compiled = VARIANTS[variant]
    ctx.phase = "building inputs"
    cfg, batch_cpu = train_inputs(ctx, key)
    ctx.phase = "building the model"
    model_type = "rec" if key == "rec_svtr" else "det"
    torch.manual_seed(0)
    model = create_model(cfg).to(ctx.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    batch = to_device(batch_cpu, ctx.device, channels_last)
    bs = int(batch[0].shape[0])
    n_steps = ctx.warmup + ctx.steps
    epochs = int((cfg.get("Global") or {}).get("epoch_num") or 1)
    optimizer, scheduler = build_optimizer(cfg.get("Optimizer"), model, epochs, n_steps, global_batch=bs)
    clip = check_dataclass(OptimizerConfig, cfg.get("Optimizer") or {}, "Optimizer").clip_norm
    scaler = None
    if amp and ctx.amp_dtype == torch.float16 and ctx.device.type == "cuda":
        scaler = torch.amp.GradScaler("cuda")
    net = torch.compile(model, backend=ctx.compile_backend) if compiled else model
    loss_fn = build_loss(cfg)
    reset_peak(ctx.device)

    def run(n: int) -> tuple[list[float], dict[str, float]]:
        times: list[float] = []
        last = [time.perf_counter()]

        def after_step(state: StepState, logs: dict[str, float]) -> bool:
            sync(ctx.device)
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now
            return now > deadline

        sync(ctx.device)
        last[0] = time.perf_counter()
        settings = StepSettings(device=ctx.device, model_type=model_type, print_batch_step=0, amp=amp,
                                amp_dtype=ctx.amp_dtype, channels_last=channels_last, clip_norm=clip)
        out = train_one_epoch(net, [batch] * n, loss_fn, optimizer, scheduler, StepState(), settings, scaler=scaler,
                              after_step=after_step)
        return times, out

    t0 = time.perf_counter()
    ctx.phase = "warm-up" + (" (torch.compile)" if compiled else "")
    warm, _ = run(ctx.warmup)
    warm_s = time.perf_counter() - t0
    if time.perf_counter() > deadline:
        raise RowTimeout(f"warm-up alone took {warm_s:.1f}s ({len(warm)}/{ctx.warmup} steps)")
    ctx.phase = "timed steps"
    times, out = run(ctx.steps)
    med = statistics.median(times)
    parts = [amp_name(ctx) if amp else "fp32"]
    if channels_last:
        parts.append("channels_last")
    if compiled:
        parts.append(f"torch.compile({ctx.compile_backend})")
    shape = "x".join(str(v) for v in batch[0].shape[1:])
    detail = (f"{' + '.join(parts)}, batch {bs}x{shape}, {len(times)} timed steps after {len(warm)} warm-up "
              f"({warm_s:.1f}s), loss {out.get('loss', float('nan')):.3f}")
    if key == "ppocrv3_cml":
        frozen = getattr(model, "frozen_roles", [])
        detail += f", frozen {','.join(frozen) or 'none'}"
    return {"img_s": bs / med, "ms_step": med * 1000, "peak_mib": peak_mib(ctx.device), "detail": detail,
            "steps": len(times), "step_ms_all": [t * 1000 for t in times], "loss": out.get("loss"),
            "partial": len(times) < ctx.steps, "warmup_s": warm_s}


# ---------------------------------------------------------------------------------- data loader

def loader_row(ctx: Ctx, deadline: float) -> dict[str, Any]:
    """img/s of det_mv3_db's Train pipeline through ``build_dataloader`` with all CPU cores, no model."""
    ctx.phase = "building inputs"
    data = det_data(ctx)
    ctx.phase = "loading"
    lines = [ln for ln in (data / "label.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
    need = ctx.loader_batch * max(1, ctx.loader_workers) * 40
    repeated = data / "label_loader.txt"
    repeated.write_text("\n".join(lines * max(1, -(-need // len(lines)))) + "\n", encoding="utf-8")
    cfg = det_config(ctx, "det_mv3_db", repeated)
    cfg["Train"]["loader"].update(batch_size_per_card=ctx.loader_batch, num_workers=ctx.loader_workers,
                                  drop_last=True, shuffle=True, persistent_workers=False)
    _, loader, sampler = build_dataloader(cfg, "Train")
    sampler.set_epoch(1)
    wave = max(1, ctx.loader_workers)  # the first batch of every worker arrives together: skip it
    t_start = time.perf_counter()
    t_wave = None
    n_wave = n_total = 0
    it = iter(loader)
    try:
        for i, b in enumerate(it):
            now = time.perf_counter()
            n_total += int(b[0].shape[0])
            if i + 1 == wave:
                t_wave = now
            elif t_wave is not None:
                n_wave += int(b[0].shape[0])
                if now - t_wave >= ctx.loader_seconds and n_wave >= 2 * ctx.loader_batch:
                    break
            if now > deadline:
                break
    finally:
        del it
    t_end = time.perf_counter()
    if t_wave is not None and n_wave > 0:
        ips, how = n_wave / (t_end - t_wave), f"{n_wave} images after the first wave of {wave} batches"
    else:
        ips, how = n_total / (t_end - t_start), f"{n_total} images incl. worker start-up"
    detail = (f"{ctx.loader_workers} workers, batch {ctx.loader_batch}, crop {ctx.crop}, "
              f"{ctx.det_image_size[0]}x{ctx.det_image_size[1]} images; {how}")
    res = {"img_s": ips, "ms_step": 1000 * ctx.loader_batch / ips if ips else None, "loader_detail": detail,
           "partial": n_wave == 0}
    return {**res, **loader_verdict(ips, ctx.results, detail)}


def loader_verdict(loader_ips: float | None, results: dict[str, dict], detail: str) -> dict[str, Any]:
    """Compare the loader with the FASTEST det_mv3_db train step measured so far (what a run at
    the default fast path needs fed: AMP + channels_last, or compile when it wins), not a fixed
    variant. The suite calls this again after every row, since the faster variants run later."""
    done = [(r["img_s"], name) for name, r in results.items()
            if name.startswith("train/det_mv3_db/") and r.get("status") in ("ok", "partial") and r.get("img_s")]
    if not loader_ips or not done:
        return {"verdict": "n/a", "train_img_s": None, "train_row": None,
                "detail": f"{detail}; no det_mv3_db train row has a result"}
    train_ips, name = max(done)
    verdict = "data-bound" if loader_ips < train_ips else "GPU-bound"
    return {"verdict": verdict, "train_img_s": train_ips, "train_row": name,
            "detail": f"{detail}; vs the fastest det_mv3_db train step, {name} at {train_ips:.1f} img/s "
                      f"(loader/train {loader_ips / train_ips:.2f})"}


# ----------------------------------------------------------------------------------------- eval

def eval_row(ctx: Ctx, deadline: float) -> dict[str, Any]:
    """``ocr_core.engine.loop.evaluate`` of the PP-OCRv3 student (random weights) on synthetic pages."""
    ctx.phase = "building inputs"
    data = det_data(ctx)
    ctx.phase = "evaluating"
    lines = [ln for ln in (data / "label.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
    label = data / "label_eval.txt"
    label.write_text("\n".join(lines[: ctx.eval_images]) + "\n", encoding="utf-8")
    cfg = det_config(ctx, "ppocrv3_student", label)
    set_op(cfg["Eval"], "DetResizeForTest", limit_side_len=ctx.eval_limit, limit_type="min")
    shm = shm_free_gib()
    workers = min(8, ctx.loader_workers) if shm is None or shm >= 2 else 0  # 16 pages in flight ~ 0.2 GiB
    cfg["Eval"]["loader"].update(batch_size_per_card=1, num_workers=workers)
    torch.manual_seed(0)
    model = create_model(cfg).to(ctx.device).eval()
    post, metric = build_post_process(cfg), build_metric(cfg)
    dataset, loader, _ = build_dataloader(cfg, "Eval")
    first = next(iter(loader))[0]  # decoded in a worker: the main process never runs cv2 before forking
    chw = tuple(first.shape[1:])
    with torch.no_grad():  # warm-up: cuDNN set-up for this shape
        for _ in range(2):
            model(first.to(ctx.device))
    sync(ctx.device)
    reset_peak(ctx.device)
    t0 = time.perf_counter()
    res = evaluate(model, loader, post, metric, device=ctx.device, model_type="det", show_progress=False)
    wall = time.perf_counter() - t0
    n = len(dataset)
    detail = (f"fp32, batch 1, {workers} loader workers, {n} images {ctx.det_image_size[0]}x{ctx.det_image_size[1]} -> "
              f"{chw[1]}x{chw[2]} (DetResizeForTest limit {ctx.eval_limit} min), model-only fps "
              f"{res.get('fps', 0.0):.1f}; end-to-end incl. loader + DB post-process; random weights "
              f"(hmean {res.get('hmean', 0.0):.3f} meaningless)")
    return {"img_s": n / wall, "ms_step": 1000 * wall / n, "peak_mib": peak_mib(ctx.device),
            "model_fps": res.get("fps"), "detail": detail}


# --------------------------------------------------------------------------------------- parity

@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """TF32 off for cuDNN convs and matmuls (parity compares fp32 to fp32)."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def calibrate_bn(model: torch.nn.Module, x: torch.Tensor) -> None:
    """BatchNorm running statistics from ``x`` (random weights otherwise give unnormalised activations
    whose scale, not the export, dominates the parity difference)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


def exported(ctx: Ctx, which: str) -> dict[str, Any]:
    """Export ``which`` (``det_student`` / ``rec_svtr``) with the project's exporter; eager reference."""

    def build() -> dict[str, Any]:
        from ocr_core.export.onnx_export import export_onnx, load_export_model

        key = "ppocrv3_student" if which == "det_student" else "rec_svtr"
        cfg = load_config(ROOT / CONFIGS[key])
        if key == "rec_svtr":
            for section in ("Train", "Eval"):
                set_op(cfg[section], "RecResizeImg", image_shape=list(ctx.rec_shape))
        torch.manual_seed(0)
        exp = load_export_model(cfg)  # random weights (nothing is downloaded)
        gen = torch.Generator().manual_seed(1)
        shape = (4, *ctx.rec_shape) if key == "rec_svtr" else (1, 3, ctx.crop, ctx.crop)
        if ctx.dry:
            shape = (2, *shape[1:])
        calibrate_bn(exp.model, torch.randn(max(2, shape[0]), *shape[1:], generator=gen))
        t0 = time.perf_counter()
        res = export_onnx(cfg, ctx.work / f"onnx_{which}", exported=exp)
        export_s = time.perf_counter() - t0
        x = torch.randn(*shape, generator=gen)
        model = exp.model.to(ctx.device).eval()
        with torch.no_grad(), exact_fp32():
            ref = model(x.to(ctx.device)).float().cpu().numpy()
        return {"onnx": res.onnx_path, "x": x, "ref": ref, "export_s": export_s}

    return ctx.cached(f"onnx:{which}", build)


def ort_providers() -> list[str]:
    """onnxruntime's available providers ([] when it does not import: the ort rows then error, alone)."""
    try:
        import onnxruntime as ort

        return list(ort.get_available_providers())
    except Exception:  # noqa: BLE001
        return []


def parity_row(ctx: Ctx, which: str, runtime: str, deadline: float) -> dict[str, Any]:
    """max |eager torch (ctx.device, fp32) - runtime| on one seeded random input."""
    ctx.phase = "exporting"
    exp = exported(ctx, which)
    ctx.phase = runtime
    x = exp["x"]
    if runtime == "tensorrt":
        out, how = tensorrt_output(exp, x), "TensorRT fp32 engine"
    else:
        import onnxruntime as ort

        provider = {"ort_cpu": "CPUExecutionProvider", "ort_cuda": "CUDAExecutionProvider"}[runtime]
        sess = ort.InferenceSession(str(exp["onnx"]), providers=[provider])
        if sess.get_providers()[0] != provider:
            raise RuntimeError(f"onnxruntime fell back to {sess.get_providers()} instead of {provider}")
        out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        how = f"onnxruntime {ort.__version__} {provider}"
    ref = exp["ref"]
    if out.shape != ref.shape:
        raise RuntimeError(f"output shape {out.shape} != eager {ref.shape}")
    diff = float(np.abs(out.astype(np.float32) - ref).max())
    detail = (f"{how} vs eager torch on {ctx.device.type} (fp32, TF32 off), input "
              f"{'x'.join(map(str, x.shape))}, output {'x'.join(map(str, ref.shape))}, "
              f"export {exp['export_s']:.1f}s")
    return {"max_abs_diff": diff, "detail": detail}


def tensorrt_output(exp: dict[str, Any], x: torch.Tensor) -> np.ndarray:
    """Build an fp32 engine with ``ocr_core.export.tensorrt_build`` and run ``x`` (TensorRT >= 8.5 API)."""
    import tensorrt as trt

    from ocr_core.export.tensorrt_build import build_from_onnx

    engine_path = build_from_onnx(exp["onnx"], Path(exp["onnx"]).with_suffix(".engine"), fp16=False)
    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if n not in inputs]
    xd = x.to("cuda").contiguous().float()
    context.set_input_shape(inputs[0], tuple(xd.shape))
    context.set_tensor_address(inputs[0], xd.data_ptr())
    out = torch.empty(tuple(context.get_tensor_shape(outputs[0])), dtype=torch.float32, device="cuda")
    context.set_tensor_address(outputs[0], out.data_ptr())
    stream = torch.cuda.current_stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeError("TensorRT execute_async_v3 returned False")
    stream.synchronize()
    return out.cpu().numpy()


def tensorrt_importable() -> str | None:
    """None when ``tensorrt`` imports, else why not."""
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "skip"
        return f"{type(exc).__name__}: {exc}"
    return None


def default_workers() -> int:
    return os.cpu_count() or 1


def shm_free_gib() -> float | None:
    """Free space of /dev/shm (DataLoader workers hand batches over through it), None if absent."""
    try:
        return shutil.disk_usage("/dev/shm").free / 2**30
    except OSError:
        return None
