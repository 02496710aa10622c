"""Optimizers and per-iteration learning-rate schedules with PaddleOCR's semantics.

* ``Optimizer.regularizer: {name: L2, factor: f}`` is *coupled* L2 (added to the gradient),
  which is what ``torch.optim.Adam(weight_decay=f)`` does; ``AdamW`` keeps decoupled decay.
* Every schedule is stepped once per iteration. ``Cosine`` wraps cosine annealing with
  ``T_max = epochs * steps_per_epoch`` in a linear warm-up of ``round(warmup_epoch * steps)``
  iterations from 0, and the cosine is evaluated at ``step - warmup_steps`` (so, as in
  PaddleOCR, it never quite reaches 0).
* ``Optimizer.lr.reference_batch_size: R`` scales every rate linearly by ``global_batch / R``
  (the fine-tune guide's rule: det 1e-3 is for 8 GPUs x 8 = 64 images per step, so one GPU x 8
  trains at 1e-4). Off unless set, so PaddleOCR configs load unchanged.
* A module may set ``weight_decay_override`` (float) to give its own parameters a different
  L2 factor (PaddleOCR's per-layer ``L2Decay``: 0 for the rec backbone's BN, ``fc_decay`` for
  the CTC head).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ocr_core.config.schema import LR_SCHEDULES, OPTIMIZERS, LRConfig, OptimizerConfig, RegularizerConfig
from ocr_core.errors import ConfigError
from ocr_core.registry import check_dataclass

log = logging.getLogger("ocrflow")


def _param_groups(model: nn.Module, default_decay: float, no_decay_names: tuple[str, ...] = (),
                  one_dim_no_decay: bool = False) -> list[dict[str, Any]]:
    """Group trainable parameters by effective weight decay.

    Module overrides win; then a parameter whose name contains one of ``no_decay_names``
    (``Optimizer.no_weight_decay_name``, space-separated) or, with ``one_dim_no_decay``
    (``one_dim_param_no_weight_decay``, OpenOCR's ``filter_bias_and_bn``), any 1-D parameter
    (biases, norm scales) gets no decay.
    """
    decay_of: dict[int, float] = {}
    for module in model.modules():
        override = getattr(module, "weight_decay_override", None)
        if override is not None:
            for p in module.parameters(recurse=False):
                decay_of[id(p)] = float(override)
    groups: dict[float, list[nn.Parameter]] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        no_decay = any(n in name for n in no_decay_names) or (one_dim_no_decay and p.ndim == 1)
        groups.setdefault(0.0 if no_decay else decay_of.get(id(p), default_decay), []).append(p)
    return [{"params": ps, "weight_decay": wd} for wd, ps in groups.items()]


def scale_lr(lr: LRConfig, global_batch: int | None) -> tuple[LRConfig, str | None]:
    """``lr`` with every rate scaled by ``global_batch / lr.reference_batch_size``, and a log line.

    Returns ``(lr, None)`` unchanged when no reference batch is set. ``global_batch`` is the number
    of images per optimizer step: batch_size_per_card x world_size x grad_accum_steps.
    """
    ref = lr.reference_batch_size
    if ref is None:
        return lr, None
    if ref <= 0:
        raise ConfigError(f"must be a positive number of images, got {ref}", "Optimizer.lr.reference_batch_size")
    if not global_batch or global_batch <= 0:
        raise ConfigError("reference_batch_size needs the run's global batch (batch_size_per_card x world "
                          "size x grad_accum_steps)", "Optimizer.lr.reference_batch_size")
    k = global_batch / ref
    scaled = dataclasses.replace(lr, learning_rate=lr.learning_rate * k, end_lr=lr.end_lr * k,
                                 values=[v * k for v in lr.values] if lr.values else lr.values)
    if lr.name == "Piecewise" and lr.values:
        old = "[" + ", ".join(f"{v:g}" for v in lr.values) + "]"
        new = "[" + ", ".join(f"{v:.3g}" for v in scaled.values or []) + "]"
    else:
        old, new = f"{lr.learning_rate:g}", f"{scaled.learning_rate:.3g}"
    return scaled, f"lr {new} = {old} x {global_batch}/{ref} (global batch / Optimizer.lr.reference_batch_size)"


def build_optimizer(opt_cfg: dict[str, Any] | None, model: nn.Module, epochs: int, steps_per_epoch: int,
                    global_batch: int | None = None,
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Build ``(optimizer, per-iteration scheduler)`` from an ``Optimizer`` section.

    Args:
        opt_cfg: The ``Optimizer`` section.
        model: Its trainable parameters are optimised (grouped by weight decay).
        epochs: ``Global.epoch_num`` (schedule length).
        steps_per_epoch: Optimizer steps per epoch.
        global_batch: Images per optimizer step; needed when ``lr.reference_batch_size`` is set.
    """
    opt = check_dataclass(OptimizerConfig, opt_cfg or {}, "Optimizer")
    lr_cfg, note = scale_lr(check_dataclass(LRConfig, opt.lr or {}, "Optimizer.lr"), global_batch)
    if note:
        log.info("%s", note)
    reg = check_dataclass(RegularizerConfig, opt.regularizer or {}, "Optimizer.regularizer")
    if reg.name not in ("L2", "L1"):
        raise ConfigError(f"unsupported regularizer {reg.name!r} (L2)", "Optimizer.regularizer.name")
    if reg.name == "L1" and reg.factor:
        raise ConfigError("L1 regularization is not supported; use L2", "Optimizer.regularizer.name")
    decay = opt.weight_decay if opt.weight_decay is not None else reg.factor
    groups = _param_groups(model, decay, tuple((opt.no_weight_decay_name or "").split()),
                           opt.one_dim_param_no_weight_decay)
    if not groups:
        raise ConfigError("the model has no trainable parameters", "Architecture")
    base_lr = lr_cfg.learning_rate
    name = opt.name
    if name == "Adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(
            groups, lr=base_lr, betas=(opt.beta1, opt.beta2), eps=opt.epsilon)
    elif name == "AdamW":
        optimizer = torch.optim.AdamW(groups, lr=base_lr, betas=(opt.beta1, opt.beta2), eps=opt.epsilon)
    elif name in ("Momentum", "SGD"):
        optimizer = torch.optim.SGD(groups, lr=base_lr, momentum=opt.momentum if name == "Momentum" else 0.0)
    else:
        raise ConfigError(f"unsupported {name!r}; choose {', '.join(OPTIMIZERS)}", "Optimizer.name")
    fn = lr_lambda(lr_cfg, epochs, steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: fn(step) / base_lr if base_lr else 0.0)
    return optimizer, scheduler


def lr_lambda(lr: LRConfig, epochs: int, steps_per_epoch: int) -> Callable[[int], float]:
    """Absolute learning rate as a function of the iteration index (0-based)."""
    steps_per_epoch = max(1, steps_per_epoch)
    warmup = int(round(lr.warmup_epoch * steps_per_epoch))
    base = lr.learning_rate

    if lr.name == "Const":
        def inner(step: int) -> float:
            return base
    elif lr.name == "Cosine":
        t_max = max(1, epochs * steps_per_epoch)

        def inner(step: int) -> float:
            return lr.end_lr + (base - lr.end_lr) * 0.5 * (1.0 + math.cos(math.pi * step / t_max))
    elif lr.name == "Piecewise":
        if not lr.decay_epochs or not lr.values or len(lr.values) != len(lr.decay_epochs) + 1:
            raise ConfigError("Piecewise needs decay_epochs and len(values) == len(decay_epochs) + 1",
                              "Optimizer.lr")
        bounds = [e * steps_per_epoch for e in lr.decay_epochs]
        values = list(lr.values)
        base = values[0]

        def inner(step: int) -> float:
            for b, v in zip(bounds, values):
                if step < b:
                    return v
            return values[-1]
    elif lr.name == "Step":
        if not lr.step_size:
            raise ConfigError("Step needs step_size (epochs)", "Optimizer.lr.step_size")
        gamma = lr.gamma if lr.gamma is not None else 0.1
        period = lr.step_size * steps_per_epoch

        def inner(step: int) -> float:
            return base * gamma ** (step // period)
    elif lr.name in ("Linear", "Polynomial"):
        total = max(1, epochs * steps_per_epoch)
        power = 1.0 if lr.name == "Linear" else lr.power

        def inner(step: int) -> float:
            frac = min(step, total) / total
            return (base - lr.end_lr) * (1 - frac) ** power + lr.end_lr
    else:
        raise ConfigError(f"unsupported {lr.name!r}; choose {', '.join(LR_SCHEDULES)}", "Optimizer.lr.name")

    if warmup <= 0:
        return inner
    target = base

    def with_warmup(step: int) -> float:
        if step < warmup:
            return target * step / warmup
        return inner(step - warmup)

    return with_warmup
