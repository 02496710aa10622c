"""The one factory: a resolved config in, the model / loss / post-processor / metric out.

Every consumer (training, evaluation, inference, export, the benches) resolves its config once
with :func:`ocr_core.config.resolve_config` (validated deep copy, rec heads wired to the
dictionary) and builds from it here. Nothing here modifies the config it is given.

Models never load files: :func:`create_model` builds the module tree and then applies what a
distillation config asks of each role (``pretrained``: load those weights, reported as in
``Global.pretrained_model``; ``freeze_params: true``: frozen, kept in eval mode).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ocr_core.losses import LOSSES
from ocr_core.metrics import METRICS
from ocr_core.modeling import build_model
from ocr_core.postprocess import POSTPROCESS
from ocr_core.registry import check_kwargs
from ocr_core.weights.checkpoint import load_role_pretrained

__all__ = ["GLOBAL_INJECT", "TrainBatchMetric", "build_loss", "build_metric", "build_post_process", "create_model", "with_globals"]

# Global keys a post-processor receives when its constructor takes them and its section does not set them
GLOBAL_INJECT = ("character_dict_path", "use_space_char", "max_text_length")


def create_model(cfg: dict[str, Any]) -> nn.Module:
    """Build ``cfg['Architecture']`` (plain or distillation), then load/freeze distillation roles.

    Args:
        cfg: A resolved config (at least ``Architecture``); not modified.

    Raises:
        ConfigError: an invalid Architecture, naming the key.
        CheckpointError: a role's ``pretrained`` file is missing or does not fit.
    """
    model = build_model(cfg["Architecture"])
    load_role_pretrained(model)
    for role, setup in getattr(model, "role_setup", {}).items():
        if setup.freeze:
            model.freeze(role)
    return model


def build_loss(cfg: dict[str, Any]) -> Any:
    """The loss named in ``cfg['Loss']``; with ``Global.cal_metric_during_train`` on a rec model,
    wrapped in :class:`TrainBatchMetric` so the training log carries each batch's accuracy."""
    loss = LOSSES.build(cfg["Loss"], "Loss")
    g = cfg.get("Global") or {}
    if g.get("cal_metric_during_train") and _model_type(cfg.get("Architecture") or {}) == "rec":
        return TrainBatchMetric(loss, build_post_process(cfg), build_metric(cfg))
    return loss


def _model_type(arch: dict[str, Any]) -> str | None:
    if "Models" in arch:
        return next((_model_type(sub) for sub in (arch["Models"] or {}).values()), None)
    return arch.get("model_type")


class TrainBatchMetric:
    """A loss that also scores the training batch it sees (PaddleOCR's ``cal_metric_during_train``).

    The rec post-process decodes the training outputs against ``batch[1]`` (the CTC labels) and the
    config's metric scores them; its entries (``acc``, ``norm_edit_dis``, ...) are added to the loss
    dict as gradient-free scalars, so they are logged and smoothed like the loss terms.
    """

    def __init__(self, loss: Any, post_process: Any, metric: Any) -> None:
        self.loss, self.post_process, self.metric = loss, post_process, metric

    def __call__(self, predicts: Any, batch: list[Any]) -> dict[str, Any]:
        import torch

        out = dict(self.loss(predicts, batch))
        with torch.no_grad():
            self.metric.reset()
            self.metric(self.post_process(_detached(predicts), batch[1]), batch)
            for key, value in self.metric.get_metric().items():
                if isinstance(value, (int, float)) and key not in out:
                    out[key] = torch.tensor(float(value))
        return out


def _detached(preds: Any) -> Any:
    if isinstance(preds, dict):
        return {k: _detached(v) for k, v in preds.items()}
    if isinstance(preds, (list, tuple)):
        return type(preds)(_detached(v) for v in preds)
    return preds.detach().float().cpu().numpy() if hasattr(preds, "detach") else preds


def with_globals(cls: Any, kwargs: dict[str, Any], global_cfg: dict[str, Any]) -> dict[str, Any]:
    """Inject Global dictionary keys into a constructor that takes them (local keys win)."""
    params = inspect.signature(cls.__init__).parameters
    out = dict(kwargs)
    for key in GLOBAL_INJECT:
        if key in params and key not in out and key in global_cfg:
            out[key] = global_cfg[key]
    return out


def build_post_process(cfg: dict[str, Any]) -> Any:
    """The post-processor named in ``cfg['PostProcess']``, with the Global dictionary keys it takes."""
    pp = dict(cfg["PostProcess"])
    cls = POSTPROCESS.get(pp.pop("name"), "PostProcess.name")
    kwargs = with_globals(cls, pp, cfg.get("Global") or {})
    check_kwargs(cls, kwargs, "PostProcess")
    return cls(**kwargs)


def build_metric(cfg: dict[str, Any]) -> Any:
    """The metric named in ``cfg['Metric']``."""
    return METRICS.build(cfg["Metric"], "Metric")
