"""Weighted sum of several registered losses (PaddleOCR ``CombinedLoss``).

Config::

    Loss:
      name: CombinedLoss
      loss_config_list:
        - DistillationDMLLoss: {weight: 1.0, model_name_pairs: [Student, Student2], ...}
        - DistillationDBLoss: {weight: 1.0, model_name_list: [Student, Student2], ...}

Every term of every sub-loss is multiplied by its weight and merged into the output (later
entries overwrite equal keys, as in PaddleOCR); ``loss`` = sum of the weighted sub-totals.

PaddleOCR's map DML term is a per-sample [B] vector, so its total ``loss`` is a [B] vector and
``backward()`` on it equals backward on its sum: B * (mean DML + DB terms). Our DML term is
already the batch mean, so our total is the scalar ``mean DML + DB terms``. Under Adam the
constant factor B does not change the update (apart from Adam's eps and the coupled L2 weight
decay, which Paddle effectively divides by B).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ocr_core.errors import ConfigError
from ocr_core.losses import LOSSES
from ocr_core.registry import check_kwargs


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@LOSSES.register()
class CombinedLoss(nn.Module):
    """Build sub-losses from ``[{LossName: {weight: w, **kwargs}}, ...]`` and sum them.

    Raises:
        ConfigError: naming ``Loss.loss_config_list[i].LossName.key`` for malformed entries,
            unknown loss names, unknown keys, wrong types or a missing ``weight``.
    """

    def __init__(self, loss_config_list: list) -> None:
        super().__init__()
        if not isinstance(loss_config_list, list) or not loss_config_list:
            raise ConfigError("must be a non-empty list of {LossName: {weight: ..}}", "Loss.loss_config_list")
        self.loss_func = nn.ModuleList()
        self.loss_weight: list[float] = []
        for i, entry in enumerate(loss_config_list):
            where = f"Loss.loss_config_list[{i}]"
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ConfigError("each entry must be a mapping with exactly one loss name", where)
            (name, params), = entry.items()
            params = dict(params or {})
            cls = LOSSES.get(name, where)
            where = f"{where}.{name}"
            if name == "CombinedLoss":
                raise ConfigError("CombinedLoss cannot be nested", where)
            if "weight" not in params:
                raise ConfigError("missing required key 'weight'", f"{where}.weight")
            weight = params.pop("weight")
            if not _is_number(weight):
                raise ConfigError(f"expected float, got {type(weight).__name__} {weight!r}", f"{where}.weight")
            check_kwargs(cls, params, where)
            try:
                self.loss_func.append(cls(**params))
            except ConfigError as exc:
                raise ConfigError(exc.message, f"{where}.{exc.key_path}" if exc.key_path else where) from exc
            self.loss_weight.append(float(weight))

    def forward(self, predicts: Any, batch: list[Tensor]) -> dict[str, Tensor]:
        loss_dict: dict[str, Tensor] = {}
        total: Tensor | None = None
        for idx, (loss_func, weight) in enumerate(zip(self.loss_func, self.loss_weight)):
            sub = loss_func(predicts, batch)
            if isinstance(sub, Tensor):
                sub = {f"loss_{type(loss_func).__name__}_{idx}": sub}
            sub = {k: v * weight for k, v in sub.items()}
            part = sub["loss"] if "loss" in sub else torch.stack([v.reshape(()) for v in sub.values()]).sum()
            total = part if total is None else total + part
            loss_dict.update(sub)
        assert total is not None
        loss_dict["loss"] = total
        return loss_dict


__all__ = ["CombinedLoss"]
