"""Model architectures: :class:`BaseModel`, :class:`DistillationModel` and :func:`build_model`."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from ocr_core.errors import ConfigError
from ocr_core.modeling.architectures.base_model import BaseModel
from ocr_core.modeling.architectures.distillation_model import DistillationModel

__all__ = ["BaseModel", "DistillationModel", "build_model"]


def build_model(arch_cfg: dict[str, Any], where: str = "Architecture") -> nn.Module:
    """Build a model from an ``Architecture`` mapping (the mapping is not modified).

    ``name: DistillationModel`` (or a ``Models`` key) builds a :class:`DistillationModel`;
    no name or ``name: BaseModel`` builds a :class:`BaseModel`.
    """
    if not isinstance(arch_cfg, dict):
        raise ConfigError("expected a mapping", where)
    cfg = copy.deepcopy(arch_cfg)
    name = cfg.get("name")
    if name == "DistillationModel" or "Models" in cfg:
        return DistillationModel(cfg, where)
    if name not in (None, "BaseModel"):
        raise ConfigError(f"unknown architecture {name!r}; choose BaseModel or DistillationModel",
                          f"{where}.name")
    return BaseModel(cfg, where)
