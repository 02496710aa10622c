"""Run orchestration: build everything a run needs from a resolved config, then train or evaluate.

Order (as PaddleOCR's ``tools/train.py``): resolve the config (rec: head sizes from the
dictionary) -> model -> post-process -> metric -> loaders -> loss -> optimizer/scheduler -> AMP ->
checkpoint/pretrained (:mod:`ocr_core.engine.resume`) -> DDP -> the epoch loop. The step loop is
:func:`ocr_core.engine.loop.train_one_epoch`.

Code outside the engine reacts to steps, evaluations and saves through :class:`TrainHooks`
(``train(cfg, hooks=...)``), not by patching this module.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ocr_core.build import build_loss, build_metric, build_post_process, create_model
from ocr_core.config import dump_config, load_charset, model_type_of, parse_global, resolve_config
from ocr_core.config.schema import GlobalConfig, OptimizerConfig
from ocr_core.data.label_quality import report_label_quality
from ocr_core.data.loader import build_dataloader, set_loader_epoch
from ocr_core.engine.distributed import DistInfo, barrier, cleanup, init_distributed, unwrap
from ocr_core.engine.fast_path import apply_fast_path
from ocr_core.engine.loop import StepSettings, StepState, evaluate, train_one_epoch
from ocr_core.engine.optim import build_optimizer
from ocr_core.engine.resume import adapt_pretrained_state, load_for_run, save, start_epoch
from ocr_core.engine.stopping import agreed, on_sigterm, time_budget
from ocr_core.errors import ConfigError, Preempted
from ocr_core.observability.logging import drop_held_records, hold_records, open_held_log, setup_logger
from ocr_core.observability.metrics import TrainingMetrics
from ocr_core.observability.visualize import make_eval_visualizer
from ocr_core.registry import check_dataclass
from ocr_core.weights import checkpoint as ckpt_mod

log = logging.getLogger("ocrflow")

__all__ = ["Run", "TrainHooks", "evaluate_config", "global_batch_size", "prepare", "run_eval_and_track", "train"]


@dataclass
class TrainHooks:
    """Optional callbacks of a training run (every rank calls them, at the same points).

    Attributes:
        after_step: ``(run, state) -> bool`` after every optimizer step (after a scheduled
            evaluation); True stops training at this step (the run then evaluates and saves as
            at its end, as ``Global.max_train_seconds`` does).
        after_eval: ``(run, metrics)`` after every evaluation, once the best checkpoints are saved.
        after_save: ``(run, name, path)`` after every checkpoint save (``latest``, ``best_accuracy``,
            ``best_accuracy_<role>``, ``iter_epoch_<n>``); ``path`` is None on ranks other than 0.
    """

    after_step: Callable[[Run, StepState], bool] | None = None
    after_eval: Callable[[Run, dict[str, float]], None] | None = None
    after_save: Callable[[Run, str, Path | None], None] | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class Run:
    """Everything built for one training or evaluation run."""

    cfg: dict[str, Any]
    g: GlobalConfig
    dist: DistInfo
    model: nn.Module
    model_type: str
    charset: list[str] | None = None
    train_loader: Any = None
    train_sampler: Any = None
    train_dataset: Any = None
    eval_loader: Any = None
    loss_fn: Any = None
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None
    post_process: Any = None
    metric: Any = None
    state: StepState = field(default_factory=StepState)
    amp_dtype: torch.dtype = torch.bfloat16
    save_dir: Path = Path(".")
    history: list[dict[str, Any]] = field(default_factory=list)
    telemetry: TrainingMetrics | None = None  # Prometheus metrics + curves/report record (training)
    hooks: TrainHooks = field(default_factory=TrainHooks)
    epoch_start_rng: dict[str, Any] | None = None  # this rank's RNG as the current epoch began
    resume_progress: dict[str, Any] | None = None  # a mid-epoch checkpoint's position (resume.py)
    preempted: bool = False  # SIGTERM seen: stop at the next step boundary, save, exit 143
    global_batch: int = 0  # images per optimizer step (all ranks, accumulation included)
    steps_per_epoch: int = 0  # optimizer steps per epoch on each rank


def prepare(cfg: dict[str, Any], mode: str = "train", open_log: bool = True) -> Run:
    """Validate, set up logging/distributed/devices and build the model and data.

    ``open_log=False`` (``train``): ``train.log`` (and save_model_dir) is created once the run's
    checks pass (:func:`~ocr_core.observability.logging.open_held_log`); its records are held until then.
    """
    cfg = resolve_config(cfg)
    g = parse_global(cfg)
    dist_info = init_distributed(g.device, g.use_gpu, timeout_s=g.dist_timeout_s)
    save_dir = Path(g.save_model_dir)
    log_name = "train.log" if mode == "train" else f"{mode}.log"  # eval/infer never create save_model_dir
    opens = (mode == "train" and open_log) or (mode != "train" and save_dir.is_dir())
    setup_logger(save_dir / log_name if opens else None, dist_info.rank)
    if mode == "train" and not open_log:
        hold_records()
    if g.num_threads:
        torch.set_num_threads(g.num_threads)
    seed_everything(g.seed + dist_info.rank)
    model_type = model_type_of(cfg)
    charset = load_charset(cfg)
    g, fast = apply_fast_path(g, dist_info.device, model_type)  # use_amp/channels_last: auto -> concrete
    model = create_model(cfg).to(dist_info.device)
    if g.channels_last:
        # Module.to(memory_format=...) is documented; torch's overloads omit it
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    run = Run(cfg=cfg, g=g, dist=dist_info, model=model, model_type=model_type, charset=charset,
              amp_dtype=fast.amp_dtype, save_dir=save_dir)
    if cfg.get("PostProcess"):
        run.post_process = build_post_process(cfg)
    if cfg.get("Metric"):
        run.metric = build_metric(cfg)
    return run


def _build_loaders(run: Run, with_train: bool) -> None:
    seed, cuda = run.g.seed, run.dist.device.type == "cuda"  # CUDA: pinned batches, eval workers kept
    if with_train:
        run.train_dataset, run.train_loader, run.train_sampler = build_dataloader(
            run.cfg, "Train", distributed=run.dist.enabled, seed=seed, pin_memory=cuda)
        if len(run.train_loader) == 0:
            raise ConfigError("the training set yields no batch (too few samples for batch size with "
                              "drop_last?)", "Train.loader")
    if run.cfg.get("Eval"):
        _, run.eval_loader, _ = build_dataloader(run.cfg, "Eval", distributed=run.dist.enabled, seed=seed,
                                                 pin_memory=cuda, persistent_workers=True if cuda else None)


def _eval_due(g: GlobalConfig, step: int) -> bool:
    ebs = g.eval_batch_step
    start, every = (ebs[0], ebs[1]) if isinstance(ebs, list) and len(ebs) >= 2 else (0, int(ebs if not isinstance(ebs, list) else ebs[0]))
    return every > 0 and step > start and (step - start) % every == 0


def _save(run: Run, name: str, best: dict[str, float] | None = None, mid_epoch: bool = False) -> Path | None:
    """:func:`ocr_core.engine.resume.save`, then the ``after_save`` hook."""
    path = save(run, name, best, mid_epoch=mid_epoch)
    if run.hooks.after_save is not None:
        run.hooks.after_save(run, name, path)
    return path


def run_eval_and_track(run: Run, show_progress: bool = True) -> dict[str, float]:
    """Evaluate, update the best metric (``>=`` as PaddleOCR) and save best checkpoints."""
    n_vis = run.g.eval_visualize if run.dist.is_main else 0  # pictures of rank 0's shard
    vis = make_eval_visualizer(run.cfg, run.model_type, n_vis, run.metric)
    metrics = evaluate(run.model, run.eval_loader, run.post_process, run.metric, device=run.dist.device,
                       model_type=run.model_type, amp=bool(run.g.use_amp), amp_dtype=run.amp_dtype,
                       channels_last=bool(run.g.channels_last), show_progress=show_progress and run.dist.is_main,
                       on_batch=vis)
    if vis is not None:
        vis.save(run.save_dir / "eval_vis")
    main = run.metric.main_indicator
    cur = metrics.get(main, 0.0)
    best = run.state.best_metric
    log.info("eval @ epoch %d step %d: %s", run.state.epoch, run.state.global_step,
             ", ".join(f"{k}: {v:.4f}" for k, v in metrics.items()))
    at = {"best_epoch": run.state.epoch, "best_step": run.state.global_step}
    if not best or cur >= best.get(main, -1.0):
        # keep the per-role bests ({role}_best_{main}) across a new overall best
        role_bests = {k: v for k, v in best.items() if k.endswith(f"_best_{main}")}
        run.state.best_metric = {**role_bests, **metrics, **at}
        _save(run, "best_accuracy")
    # distillation: keep the best checkpoint of every role that reports the main indicator
    for key, val in metrics.items():
        if key.endswith(f"_{main}") and key != main:
            role = key[: -len(main) - 1]
            rkey = f"{role}_best_{main}"
            if val >= run.state.best_metric.get(rkey, -1.0):
                run.state.best_metric[rkey] = val
                # its best_metric describes the weights it holds: this evaluation's metrics
                _save(run, f"best_accuracy_{role}", best={**metrics, **at, rkey: val})
    run.history.append({"epoch": run.state.epoch, "global_step": run.state.global_step, **metrics})
    if run.telemetry is not None:
        run.telemetry.on_eval(metrics)
    if run.hooks.after_eval is not None:
        run.hooks.after_eval(run, metrics)
    return metrics


def train(cfg: dict[str, Any], hooks: TrainHooks | None = None) -> dict[str, Any]:
    """Train per ``cfg`` (not modified); returns the final state and metrics. Entry of ``ocrflow train``."""
    try:
        run = prepare(cfg, "train", open_log=False)  # a run its checks refuse leaves no file behind
    except BaseException:
        drop_held_records()  # refused: nothing was written, the held records go
        raise
    if hooks is not None:
        run.hooks = hooks
    restore = on_sigterm(run)
    try:
        return _train(run)
    finally:
        drop_held_records()  # refused before train.log opened: the held records go
        restore()
        if run.telemetry is not None:
            run.telemetry.close()
        cleanup()


def _train(run: Run) -> dict[str, Any]:
    g = run.g  # its numeric keys' ranges are checked by parse_global
    _build_loaders(run, with_train=True)  # batch size and data checks
    open_held_log(run.save_dir / "train.log", run.dist.rank)  # the checks passed: save_model_dir and train.log (with the lines so far)
    if run.dist.is_main:
        dump_config(run.cfg, run.save_dir / "config.yml")
        report_label_quality(run.train_dataset, run.save_dir, log)  # into train.log and the report
    run.loss_fn = build_loss(run.cfg)
    steps = -(-len(run.train_loader) // max(1, g.grad_accum_steps))
    global_batch = global_batch_size(run.cfg, run.dist.world_size, g.grad_accum_steps)
    run.global_batch, run.steps_per_epoch = global_batch, steps
    run.optimizer, run.scheduler = build_optimizer(run.cfg.get("Optimizer"), run.model, g.epoch_num, steps,
                                                   global_batch=global_batch)
    clip = check_dataclass(OptimizerConfig, run.cfg.get("Optimizer") or {}, "Optimizer").clip_norm
    settings = StepSettings.from_global(g, device=run.dist.device, model_type=run.model_type,
                                        amp_dtype=run.amp_dtype, clip_norm=clip)
    if g.use_amp and run.amp_dtype == torch.float16 and run.dist.device.type == "cuda":
        run.scaler = torch.amp.GradScaler("cuda", init_scale=g.scale_loss,
                                          enabled=True, growth_interval=2000 if g.use_dynamic_loss_scaling else 10**9)
    load_for_run(run)
    if run.dist.enabled:
        if g.use_sync_bn and run.dist.device.type == "cuda":
            run.model = nn.SyncBatchNorm.convert_sync_batchnorm(run.model)
        run.model = nn.parallel.DistributedDataParallel(
            run.model, device_ids=[run.dist.device.index] if run.dist.device.type == "cuda" else None,
            find_unused_parameters=_has_unused(run))
    log.info("training %s: %d epochs x %d steps, batch %d/rank, world %d, global batch %d, device %s, amp %s",
             run.model_type, g.epoch_num, steps, run.cfg["Train"]["loader"].get("batch_size_per_card", 1),
             run.dist.world_size, global_batch, run.dist.device, g.use_amp)
    run.telemetry = TrainingMetrics.for_run(run)  # serves /metrics when a port is configured
    last_eval_step = -1
    stop = False
    out_of_time = time_budget(g.max_train_seconds, run.dist)

    def after_step(state: StepState, logs: dict[str, float]) -> bool:
        nonlocal last_eval_step, stop
        if run.eval_loader is not None and _eval_due(g, state.global_step):
            run_eval_and_track(run)
            last_eval_step = state.global_step
        if agreed(run, run.preempted):
            _save(run, "latest", mid_epoch=True)
            barrier()
            raise Preempted(f"SIGTERM at epoch {state.epoch}, global_step {state.global_step}: saved "
                            f"{run.save_dir / 'latest.pt'}; run again with Global.checkpoints=<it> to resume")
        if g.save_step_interval and state.global_step % g.save_step_interval == 0:
            _save(run, "latest", mid_epoch=True)
        if out_of_time():
            stop = True
        if run.hooks.after_step is not None and run.hooks.after_step(run, state):
            stop = True
        return stop or (g.max_steps is not None and state.global_step >= g.max_steps)

    epoch_logs: dict[str, float] = {}
    for epoch in range(run.state.epoch, g.epoch_num + 1):
        run.state.epoch = epoch
        if run.train_sampler is not None and hasattr(run.train_sampler, "set_epoch"):
            run.train_sampler.set_epoch(epoch)
        if hasattr(run.train_dataset, "set_epoch"):
            run.train_dataset.set_epoch(epoch)
        set_loader_epoch(run.train_loader, epoch)
        begin = start_epoch(run, epoch)  # a mid-epoch resume: seek (dataset position) or replay
        epoch_logs = train_one_epoch(run.model, run.train_loader, run.loss_fn, run.optimizer, run.scheduler,
                                     run.state, settings, scaler=run.scaler, after_step=after_step,
                                     metrics_sink=run.telemetry.on_step, skip_batches=begin.replay,
                                     after_skip=begin.after_replay, start_batch=begin.seeked)
        run.telemetry.on_epoch_end(epoch_logs)
        stop = stop or (g.max_steps is not None and run.state.global_step >= g.max_steps)
        if run.eval_loader is not None and g.eval_batch_epoch and epoch % g.eval_batch_epoch == 0 \
                and last_eval_step != run.state.global_step:
            run_eval_and_track(run)
            last_eval_step = run.state.global_step
        _save(run, "latest")
        if g.saves_epoch(epoch):  # save_epoch_step: N, or OpenOCR's [start, step]
            _save(run, f"iter_epoch_{epoch}")
        barrier()
        if stop:
            break
    if run.eval_loader is not None and g.eval_at_end and last_eval_step != run.state.global_step:
        run_eval_and_track(run)
    barrier()
    # push; rank 0 writes training_summary.json, curves.png and report.html
    run.telemetry.finish(run.save_dir if run.dist.is_main else None, run.history, run.state.best_metric)
    log.info("done: global_step %d, best %s", run.state.global_step, run.state.best_metric)
    return {"global_step": run.state.global_step, "epoch": run.state.epoch, "best_metric": run.state.best_metric,
            "last_epoch": epoch_logs, "history": run.history, "save_dir": str(run.save_dir)}


def global_batch_size(cfg: dict[str, Any], world_size: int, grad_accum_steps: int = 1) -> int:
    """Images per optimizer step: ``batch_size_per_card x world_size x grad_accum_steps``."""
    per_card = int(((cfg.get("Train") or {}).get("loader") or {}).get("batch_size_per_card", 1))
    return per_card * max(1, world_size) * max(1, grad_accum_steps)


def _has_unused(run: Run) -> bool:
    """Frozen sub-models or heads not used by the loss need ``find_unused_parameters``."""
    return run.model_type == "rec" or "Models" in run.cfg["Architecture"]


def evaluate_config(cfg: dict[str, Any]) -> dict[str, float]:
    """Evaluate ``Global.checkpoints`` (or ``pretrained_model``) on the Eval set."""
    run = prepare(cfg, "eval")
    try:
        if not run.cfg.get("Eval"):
            raise ConfigError("no Eval section to evaluate on", "Eval")
        _build_loaders(run, with_train=False)
        src = run.g.checkpoints or run.g.pretrained_model
        if not src:
            raise ConfigError("set Global.checkpoints (or Global.pretrained_model) to the model to evaluate",
                              "Global.checkpoints")
        ck = ckpt_mod.load_checkpoint(src, map_location=run.dist.device)
        # every tensor inference uses must load (require_inference_weights names what is missing)
        report = ckpt_mod.load_weights(unwrap(run.model), adapt_pretrained_state(run, ck),
                                       strict=run.g.pretrained_strict, max_missing_ratio=1.0, source=src)
        log.info("loaded %s: %s", src, report.summary())
        ckpt_mod.require_inference_weights(report, unwrap(run.model), ck, src, run.cfg["Architecture"])
        metrics = evaluate(run.model, run.eval_loader, run.post_process, run.metric, device=run.dist.device,
                           model_type=run.model_type, amp=bool(run.g.use_amp), amp_dtype=run.amp_dtype,
                           channels_last=bool(run.g.channels_last), show_progress=run.dist.is_main)
        log.info("metric eval ***************")
        for k, v in metrics.items():
            log.info("%s: %s", k, v)
        return metrics
    finally:
        cleanup()
