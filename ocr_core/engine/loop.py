"""``train_one_epoch`` and ``evaluate``: plain functions, no trainer class hierarchy.

Data time and step time are measured separately. Evaluation runs on every rank over a shard
of the eval set and the metric's summable counters are all-reduced, so no rank waits on a
rank-0-only evaluation.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ocr_core.config.schema import GlobalConfig
from ocr_core.engine import eval_speedups as speed
from ocr_core.engine.distributed import all_reduce_sum, unwrap
from ocr_core.errors import OCRFlowError
from ocr_core.progress import progress

log = logging.getLogger("ocrflow")


class NonFiniteLossError(OCRFlowError):
    """The loss became NaN/Inf; the message lists every loss term at that step."""


@dataclass
class SmoothedValues:
    """Windowed averages of logged scalars (PaddleOCR's ``log_smooth_window``)."""

    window: int = 20
    values: dict[str, deque] = field(default_factory=dict)

    def update(self, d: dict[str, float]) -> None:
        for k, v in d.items():
            self.values.setdefault(k, deque(maxlen=self.window)).append(float(v))

    def averages(self) -> dict[str, float]:
        return {k: sum(q) / len(q) for k, q in self.values.items() if q}


def to_device(batch: Iterable[Any], device: torch.device, channels_last: bool = False) -> list[Any]:
    """Move tensors of a collated batch to ``device``; lists (ragged polys) stay on the host."""
    out = []
    for i, item in enumerate(batch):
        if isinstance(item, torch.Tensor):
            item = item.to(device, non_blocking=True)
            if i == 0 and channels_last and item.dim() == 4:
                item = item.contiguous(memory_format=torch.channels_last)
        out.append(item)
    return out


def autocast_context(device: torch.device, enabled: bool, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def forward_model(model: nn.Module, batch: list[Any], model_type: str, training: bool) -> Any:
    """Call the model with the inputs its head needs (rec heads with SAR take the targets)."""
    images = batch[0]
    if model_type == "rec" and training and len(batch) > 1 and getattr(unwrap(model), "needs_targets", False):
        return model(images, targets=batch[1:])
    return model(images)


def check_finite(losses: dict[str, torch.Tensor], global_step: int, epoch: int) -> None:
    total = losses["loss"]
    if not torch.isfinite(total).all():
        terms = ", ".join(f"{k}={float(v.detach().float().mean()):.6g}" for k, v in losses.items())
        raise NonFiniteLossError(f"non-finite loss at epoch {epoch}, global_step {global_step}: {terms}")


@dataclass
class StepState:
    """Counters carried across epochs (saved in checkpoints)."""

    epoch: int = 1
    global_step: int = 0
    best_metric: dict[str, float] = field(default_factory=dict)
    batches_in_epoch: int = 0  # micro-batches consumed in the current epoch (mid-epoch checkpoints)


@dataclass(frozen=True)
class StepSettings:
    """How :func:`train_one_epoch` steps: device, precision, accumulation, clipping, logging, limits.

    ``freeze_bn`` keeps BatchNorm layers in eval mode (running statistics used and not updated;
    their weights still train): for fine-tuning with small batches.
    """

    device: torch.device
    model_type: str = "det"
    epoch_num: int = 1  # for the ETA in the log line
    print_batch_step: int = 10  # 0 = no log lines
    smooth_window: int = 20
    amp: bool = False
    amp_dtype: torch.dtype = torch.bfloat16
    channels_last: bool = False
    clip_norm: float | None = None
    grad_accum_steps: int = 1
    max_steps: int | None = None
    freeze_bn: bool = False

    @classmethod
    def from_global(cls, g: GlobalConfig, *, device: torch.device, model_type: str, amp_dtype: torch.dtype,
                    clip_norm: float | None) -> StepSettings:
        """The settings of a run: ``Global`` plus what is resolved elsewhere (device, AMP dtype, clip norm).

        ``g`` is the run's resolved ``Global`` (``engine.fast_path``): auto (None) counts as off here.
        """
        return cls(device=device, model_type=model_type, epoch_num=g.epoch_num, print_batch_step=g.print_batch_step,
                   smooth_window=g.log_smooth_window, amp=bool(g.use_amp), amp_dtype=amp_dtype,
                   channels_last=bool(g.channels_last), clip_norm=clip_norm, grad_accum_steps=g.grad_accum_steps,
                   max_steps=g.max_steps, freeze_bn=g.freeze_bn)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Any],
    loss_fn: Callable[[Any, list[Any]], dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: StepState,
    settings: StepSettings,
    *,
    scaler: torch.amp.GradScaler | None = None,
    after_step: Callable[[StepState, dict[str, float]], bool] | None = None,
    metrics_sink: Callable[[dict[str, float]], None] | None = None,
    skip_batches: int = 0,
    after_skip: Callable[[], None] | None = None,
    start_batch: int = 0,
) -> dict[str, float]:
    """Run one epoch of training; returns the epoch's average loss terms and throughput.

    ``after_step(state, logs)`` runs after every optimizer step (evaluation schedule,
    checkpoints); returning True stops the epoch early (as ``settings.max_steps`` does).
    ``metrics_sink`` receives each step's scalars (Prometheus / curves). ``skip_batches`` (a
    mid-epoch resume) draws and discards the epoch's first batches, so the loader's order and
    augmentation streams continue exactly where the interrupted run left them; ``after_skip``
    runs once they are drawn (the engine restores the step's RNG state there). ``start_batch``
    (a mid-epoch resume of a loader whose dataset seeked to its saved position) counts the epoch's
    first batches as done without drawing them: the loader already starts after them.
    """
    s = settings
    device, model_type, epoch_num, print_batch_step = s.device, s.model_type, s.epoch_num, s.print_batch_step
    amp, amp_dtype, channels_last, clip_norm = s.amp, s.amp_dtype, s.channels_last, s.clip_norm
    grad_accum_steps, max_steps = s.grad_accum_steps, s.max_steps
    model.train()
    if s.freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    smooth = SmoothedValues(s.smooth_window)
    totals: dict[str, float] = defaultdict(float)
    n_steps = 0
    n_samples = 0
    reader_cost = batch_cost = 0.0
    window_samples = 0
    epoch_start = t_end = time.perf_counter()
    try:
        steps_per_epoch = len(loader)  # type: ignore[arg-type]
    except TypeError:
        steps_per_epoch = 0
    opt_steps_per_epoch = -(-steps_per_epoch // max(1, grad_accum_steps))
    accum = max(1, grad_accum_steps)
    micro = 0
    step_scalars: dict[str, float] = defaultdict(float)
    step_samples = 0
    batches = iter(loader)
    for _ in range(skip_batches):
        if next(batches, None) is None:
            break
    if after_skip is not None:
        after_skip()
    first = skip_batches + start_batch
    state.batches_in_epoch = first
    t_end = time.perf_counter()
    for index, batch in enumerate(batches, start=first):
        t_data = time.perf_counter()
        reader_cost += t_data - t_end
        if micro == 0:
            optimizer.zero_grad(set_to_none=True)
            step_scalars.clear()
            step_samples = 0
        micro += 1
        last_micro = micro == accum or (steps_per_epoch and index + 1 == steps_per_epoch)
        state.batches_in_epoch = index + 1
        batch = to_device(batch, device, channels_last)
        step_samples += int(batch[0].shape[0])
        # DDP: only the last micro-batch of an accumulation group all-reduces gradients
        ddp = model if isinstance(model, nn.parallel.DistributedDataParallel) else None
        sync = ddp.no_sync() if ddp is not None and not last_micro else contextlib.nullcontext()
        with sync:
            with autocast_context(device, amp, amp_dtype):
                preds = forward_model(model, batch, model_type, training=True)
            # losses in float32: the DB dice/balance sums are precision-sensitive
            preds = _to_float(preds)
            losses = loss_fn(preds, batch)
            check_finite(losses, state.global_step + 1, state.epoch)
            loss = losses["loss"] / accum if accum > 1 else losses["loss"]
            if scaler is not None:
                scaler.scale(loss).backward()
            else:
                loss.backward()
        for k, v in losses.items():
            step_scalars[k] += float(v.detach().float().mean()) / accum
        t_end = time.perf_counter()
        batch_cost += t_end - t_data
        if not last_micro:
            continue
        micro = 0
        if scaler is not None:
            if clip_norm:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            if clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        state.global_step += 1
        n_steps += 1
        bs = step_samples
        n_samples += bs
        window_samples += bs
        t_now = time.perf_counter()
        batch_cost += t_now - t_end
        t_end = t_now
        scalars = dict(step_scalars)
        for k, value in scalars.items():
            totals[k] += value
        smooth.update(scalars)
        logs = {**scalars, "lr": lr, "epoch": state.epoch, "global_step": state.global_step,
                "data_time": reader_cost / n_steps,
                "step_time": batch_cost / n_steps}
        if metrics_sink is not None:
            metrics_sink({**scalars, "lr": lr, "samples": bs, "data_seconds": reader_cost, "step_seconds": batch_cost})
        if print_batch_step and (state.global_step % print_batch_step == 0 or n_steps == opt_steps_per_epoch):
            avg = smooth.averages()
            elapsed = t_end - epoch_start
            ips = window_samples / max(1e-9, elapsed)
            remaining = (opt_steps_per_epoch - n_steps) + opt_steps_per_epoch * (epoch_num - state.epoch)
            eta = remaining * (elapsed / max(1, n_steps))
            terms = ", ".join(f"{k}: {v:.5f}" for k, v in avg.items())
            log.info("epoch: [%d/%d], global_step: %d, lr: %.6f, %s, avg_reader_cost: %.4f s, "
                     "avg_batch_cost: %.4f s, avg_samples: %.1f, ips: %.3f samples/s, eta: %s",
                     state.epoch, epoch_num, state.global_step, lr, terms, reader_cost / n_steps,
                     (reader_cost + batch_cost) / n_steps, n_samples / n_steps, ips, _fmt_eta(eta))
        if after_step is not None and after_step(state, logs):
            break
        if max_steps is not None and state.global_step >= max_steps:
            break
    elapsed = time.perf_counter() - epoch_start
    out = {k: v / max(1, n_steps) for k, v in totals.items()}
    out.update(steps=n_steps, samples=n_samples, seconds=elapsed, ips=n_samples / max(1e-9, elapsed),
               data_time=reader_cost / max(1, n_steps), step_time=batch_cost / max(1, n_steps))
    return out


def _fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _to_float(preds: Any) -> Any:
    if isinstance(preds, torch.Tensor):
        return preds.float() if preds.is_floating_point() else preds
    if isinstance(preds, dict):
        return {k: _to_float(v) for k, v in preds.items()}
    if isinstance(preds, (list, tuple)):
        return type(preds)(_to_float(v) for v in preds)
    return preds


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    post_process: Callable[..., Any],
    metric: Any,
    *,
    device: torch.device,
    model_type: str = "det",
    amp: bool = False,
    amp_dtype: torch.dtype = torch.bfloat16,
    channels_last: bool = False,
    show_progress: bool = True,
    on_batch: Callable[[list[Any], Any], None] | None = None,
    fuse_bn: bool = True,
    overlap: bool | None = None,
) -> dict[str, float]:
    """Evaluate on this rank's shard, all-reduce the metric counters, return the metric dict.

    Runs under ``torch.inference_mode`` on a copy of the model with BatchNorm folded into the
    convolutions (``fuse_bn``; :func:`eval_speedups.fuse_conv_bn` checks the copy against the
    model on the first image and falls back to the model); the post-process, metric and
    ``on_batch`` of a batch run on one background thread while the next batch is read and
    forwarded (``overlap``; in order, so results are the same). ``overlap=None``: on for CUDA,
    and on CPU only when torch leaves a core free (a post-process thread competing with
    torch's intra-op threads makes both slower).

    Adds ``fps`` = images / seconds spent in the model forward (as PaddleOCR reports it),
    ``img_s`` = images / wall seconds of the whole evaluation loop (reading, forward,
    post-process, metric; summed over ranks), and ``skipped`` = samples of the eval set that could
    not be read (excluded from the metric, never replaced by another sample) when there are any.
    """

    modes = [(m, m.training) for m in model.modules()]  # restored per module (frozen BN stays frozen)
    model.eval()
    metric.reset()
    forward_time = 0.0
    frames = 0
    net: nn.Module | None = None
    if overlap is None:
        overlap = device.type == "cuda" or speed.spare_cores() > 0
    background = speed.OrderedBackground() if overlap else None
    t_start = time.perf_counter()
    bar = progress(loader, desc="eval", unit="batch", disable=not show_progress)
    try:
        for batch in bar:
            if batch is None:  # every sample of this batch was unreadable
                continue
            batch = to_device(batch, device, channels_last)
            if net is None:
                net = unwrap(model)
                if fuse_bn:
                    net = speed.fuse_conv_bn(net, speed.fusion_example(batch[0], model_type),
                                             lambda m, x: forward_model(m, [x], model_type, training=False))
                    if channels_last and net is not unwrap(model):
                        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            t0 = time.perf_counter()
            with autocast_context(device, amp, amp_dtype):
                preds = forward_model(net, batch, model_type, training=False)
            preds = _to_float(preds)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            forward_time += time.perf_counter() - t0
            frames += int(batch[0].shape[0])
            if background is not None:
                background.submit(speed.post_and_score, preds, batch, post_process, metric, model_type, on_batch)
            else:
                speed.post_and_score(preds, batch, post_process, metric, model_type, on_batch)
        if background is not None:
            background.drain()
            background = None
    finally:
        bar.close()
        if background is not None:  # the loop failed: stop the worker, keep the first error
            background.close()
    wall = time.perf_counter() - t_start
    sampler = getattr(loader, "sampler", None)
    if getattr(loader, "drop_last", False) or sampler is None or not hasattr(sampler, "__len__"):
        expected = frames  # no way to tell dropped-by-design from unreadable: report none
    else:
        expected = len(sampler)
    counters = all_reduce_sum({**metric.counters(), "_frames": frames, "_forward_time": forward_time,
                               "_expected": expected, "_img_s": frames / wall if wall > 0 else 0.0}, device)
    frames_all = counters.pop("_frames")
    forward_all = counters.pop("_forward_time")
    img_s = counters.pop("_img_s")
    skipped = int(counters.pop("_expected") - frames_all)
    metric.set_counters(counters)
    result = dict(metric.get_metric())
    result["fps"] = frames_all / forward_all if forward_all > 0 else 0.0
    result["img_s"] = img_s
    log.info("evaluation: %d images, %.2f img/s end to end (model forward %.2f img/s)",
             int(frames_all), img_s, result["fps"])
    if skipped > 0:
        result["skipped"] = float(skipped)
        log.warning("evaluation: %d sample(s) could not be read and were excluded from the metric", skipped)
    for m, mode in modes:
        m.training = mode
    return result
