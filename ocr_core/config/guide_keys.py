"""Checks for keys the PaddleOCR/OpenOCR guides print whose meaning needs more than a type check.

Each key either does what the guides say or is refused with the reason and the fix:

- ``Optimizer.base_lr`` (printed by PaddleOCR's detection fine-tune guide) is not a key of ours nor
  of PaddleOCR 2.x's optimizer builder: refused, pointing at ``Optimizer.lr.learning_rate``.
- ``Optimizer.lr`` ``Piecewise``: ``values`` must be one longer than ``decay_epochs``.
- ``Global.save_epoch_step``: an int ``N`` (PaddleOCR: epochs divisible by N) or OpenOCR's
  ``[start, step]`` (epochs ``start + k*step``, k >= 1); see :func:`save_epoch_due`.
- ``Global.amp_level``: ``O1`` is autocast; ``O2`` (PaddleOCR's float16 weights with float32
  master copies) runs as ``O1`` with a WARNING, since torch autocast keeps float32 weights anyway.
- ``Global.cal_metric_during_train``: works for rec (training-batch accuracy in the log); a det
  training batch holds target maps, not polygons, so ``true`` on a det model is refused.
"""

from __future__ import annotations

import logging
from typing import Any

from ocr_core.errors import ConfigError

log = logging.getLogger("ocrflow")
AMP_LEVELS = ("O1", "O2")


def save_epoch_due(save_epoch_step: Any, epoch: int) -> bool:
    """Whether epoch ``epoch`` (1-based) saves ``iter_epoch_<epoch>``.

    ``N``: every N-th epoch (PaddleOCR); ``[start, step]``: epochs after ``start`` that are a
    multiple of ``step`` past it (OpenOCR's trainer); 0 / None: never.
    """
    if isinstance(save_epoch_step, (list, tuple)):
        start, step = (int(v) for v in save_epoch_step)
        return step > 0 and epoch > start and (epoch - start) % step == 0
    return bool(save_epoch_step) and epoch % int(save_epoch_step) == 0


def _model_types(arch: Any) -> set[str]:
    if not isinstance(arch, dict):
        return set()
    types = {arch["model_type"]} if isinstance(arch.get("model_type"), str) else set()
    for sub in (arch.get("Models") or {}).values() if isinstance(arch.get("Models"), dict) else []:
        types |= _model_types(sub)
    return types


def _check_optimizer(opt: Any) -> None:
    if not isinstance(opt, dict):
        return
    if "base_lr" in opt:
        raise ConfigError(f"there is no base_lr key; the learning rate is Optimizer.lr.learning_rate "
                          f"(-o Optimizer.lr.learning_rate={opt['base_lr']})", "Optimizer.base_lr")
    lr = opt.get("lr")
    if isinstance(lr, dict) and lr.get("name") == "Piecewise":
        epochs, values = lr.get("decay_epochs"), lr.get("values")
        if not isinstance(epochs, list) or not isinstance(values, list) or len(values) != len(epochs) + 1:
            n_e = len(epochs) if isinstance(epochs, list) else 0
            n_v = len(values) if isinstance(values, list) else 0
            raise ConfigError(f"Piecewise needs one more value than decay epochs: {n_e} decay_epochs, "
                              f"{n_v} values (expected {n_e + 1})", "Optimizer.lr.values")


def _check_global(g: dict[str, Any], model_types: set[str]) -> None:
    step = g.get("save_epoch_step")
    if isinstance(step, list):
        if len(step) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in step) or step[1] < 1:
            raise ConfigError(f"expected an int N or [start, step] with step >= 1, got {step!r}",
                              "Global.save_epoch_step")
    if g.get("backend", "torch") not in ("torch", "onnx"):
        raise ConfigError(f"expected torch or onnx, got {g.get('backend')!r}", "Global.backend")
    level = g.get("amp_level", "O1")
    if level not in AMP_LEVELS:
        raise ConfigError(f"expected one of {', '.join(AMP_LEVELS)}, got {level!r}", "Global.amp_level")
    if level == "O2" and g.get("use_amp"):
        log.warning("Global.amp_level O2 runs as O1: torch autocast computes in reduced precision and keeps "
                    "float32 weights (PaddleOCR's O2 master weights) ")
    if g.get("cal_metric_during_train") and "det" in model_types:
        raise ConfigError("a det training batch holds target maps, not polygons, so there is no training "
                          "metric to compute (PaddleOCR's det configs set false); the Eval metric is logged "
                          "at every evaluation", "Global.cal_metric_during_train")


def check_guide_keys(cfg: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for a guide key that cannot do what it says (see the module doc)."""
    g = cfg.get("Global")
    if isinstance(g, dict):
        _check_global(g, _model_types(cfg.get("Architecture")))
    _check_optimizer(cfg.get("Optimizer"))


__all__ = ["check_guide_keys", "save_epoch_due"]
