"""BaseModel: Backbone -> (Neck) -> Head, built from a PaddleOCR ``Architecture`` mapping."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from ocr_core.errors import ConfigError
from ocr_core.registry import Registry

__all__ = ["BaseModel", "build_component"]

# Keys a single-model Architecture (or one entry of DistillationModel.Models) may hold;
# ``pretrained`` / ``freeze_params`` are acted on by DistillationModel only.
ARCH_KEYS = {"name", "model_type", "algorithm", "Transform", "Backbone", "Neck", "Head",
             "return_all_feats", "pretrained", "freeze_params"}


def build_component(registry: Registry, cfg: Any, where: str, **wired: Any) -> nn.Module:
    """Build one registered component; errors raised by its constructor get ``where`` prefixed."""
    try:
        return registry.build(cfg, where, **wired)
    except ConfigError as exc:
        if not exc.key_path.startswith(where):
            exc.key_path = f"{where}.{exc.key_path}" if exc.key_path else where
            exc.args = (exc._render(),)
        raise


def backbone_cfg(arch_cfg: dict[str, Any]) -> dict[str, Any]:
    """The Backbone section, with rec variants resolved.

    PaddleOCR names both the det and the rec MobileNetV3 ``MobileNetV3``; the rec one is
    registered as ``rec:MobileNetV3`` and chosen when ``model_type`` is ``rec``.
    """
    from ocr_core.modeling import BACKBONES

    cfg = arch_cfg["Backbone"]
    if isinstance(cfg, dict) and arch_cfg.get("model_type") == "rec":
        rec_name = f"rec:{cfg.get('name')}"
        if rec_name in BACKBONES:
            cfg = {**cfg, "name": rec_name}
    return cfg


def _accepts_targets(module: nn.Module) -> bool:
    params = inspect.signature(module.forward).parameters
    return "targets" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class BaseModel(nn.Module):
    """A detection or recognition model: ``Backbone``, optional ``Neck``, optional ``Head``.

    ``in_channels`` is wired, not configured: the neck gets ``backbone.out_channels`` and the
    head gets ``neck.out_channels`` (or the backbone's when there is no neck).

    Args:
        arch_cfg: The ``Architecture`` mapping (``model_type``, ``algorithm``, ``Backbone``, ...).
        where: Key path of ``arch_cfg`` for error messages.
    """

    def __init__(self, arch_cfg: dict[str, Any], where: str = "Architecture") -> None:
        super().__init__()
        from ocr_core.modeling import BACKBONES, HEADS, NECKS

        if not isinstance(arch_cfg, dict):
            raise ConfigError("expected a mapping", where)
        for key in arch_cfg:
            if key not in ARCH_KEYS:
                raise ConfigError(f"unknown key {key!r}; known keys: {', '.join(sorted(ARCH_KEYS))}",
                                  f"{where}.{key}")
        if arch_cfg.get("Transform") not in (None, {}):
            raise ConfigError("input Transform modules are not supported", f"{where}.Transform")
        if arch_cfg.get("Backbone") is None:
            raise ConfigError("missing Backbone section", f"{where}.Backbone")
        self.model_type: str | None = arch_cfg.get("model_type")
        self.algorithm: str | None = arch_cfg.get("algorithm")
        self.return_all_feats = bool(arch_cfg.get("return_all_feats", False))
        self._export_mode = False

        self.backbone = build_component(BACKBONES, backbone_cfg(arch_cfg), f"{where}.Backbone")
        channels = self.backbone.out_channels
        self.neck: nn.Module | None = None
        if arch_cfg.get("Neck") is not None:
            self.neck = build_component(NECKS, arch_cfg["Neck"], f"{where}.Neck", in_channels=channels)
            channels = self.neck.out_channels
        self.head: nn.Module | None = None
        self._head_takes_targets = False
        if arch_cfg.get("Head") is not None:
            self.head = build_component(HEADS, arch_cfg["Head"], f"{where}.Head", in_channels=channels)
            self._head_takes_targets = _accepts_targets(self.head)

    @property
    def needs_targets(self) -> bool:
        """True when the head consumes training targets (e.g. the SAR branch of MultiHead)."""
        return self._head_takes_targets

    @property
    def export_mode(self) -> bool:
        """When True, forward returns raw tensors (propagated to sub-modules that have the flag)."""
        return self._export_mode

    @export_mode.setter
    def export_mode(self, value: bool) -> None:
        self._export_mode = bool(value)
        for m in self.modules():
            if m is not self and hasattr(m, "export_mode"):
                # setattr: mypy types Module attribute writes as Tensor | Module
                setattr(m, "export_mode", bool(value))  # noqa: B010

    def forward(self, x: torch.Tensor, targets: Any = None) -> Any:
        """Run the model.

        Returns:
            The head's dict (e.g. ``{"maps": ...}``). In export mode, the raw tensor (a
            single-entry head dict is unwrapped). With ``return_all_feats`` in training, a dict
            with ``backbone_out``, ``neck_out`` (if any), ``head_out`` and the head's own keys.
        """
        feats: dict[str, Any] = {}
        x = self.backbone(x)
        final = "backbone_out"
        feats[final] = x
        if self.neck is not None:
            x = self.neck(x)
            final = "neck_out"
            feats[final] = x
        if self.head is not None:
            x = self.head(x, targets=targets) if self._head_takes_targets else self.head(x)
            final = "head_out"
            feats[final] = x
            if isinstance(x, dict):
                # Multi-head rec models expose their CTC neck output for feature distillation.
                if "ctc_neck" in x:
                    feats["neck_out"] = x["ctc_neck"]
                else:
                    feats.update(x)
        if self._export_mode:
            if isinstance(x, dict) and len(x) == 1:
                return next(iter(x.values()))
            return x
        if self.return_all_feats and self.training:
            return feats
        return x if isinstance(x, dict) else {final: x}
