"""DistillationModel: named sub-models (``Teacher``, ``Student``, ``Student2``) run side by side."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ocr_core.errors import ConfigError
from ocr_core.modeling.architectures.base_model import BaseModel

__all__ = ["DistillationModel", "RoleSetup"]

DISTILL_KEYS = {"name", "algorithm", "model_type", "Models"}


@dataclass(frozen=True)
class RoleSetup:
    """What a role's config asks of the builder after construction."""

    pretrained: str | None = None  # weights to load into the role (a path)
    freeze: bool = False  # ``freeze_params``: no gradients, always in eval mode


def distillation_roles(arch: dict[str, Any], where: str) -> dict[str, Any]:
    """The ``Models`` mapping (role -> sub-model config) of a DistillationModel section.

    Raises:
        ConfigError: On a key other than :data:`DISTILL_KEYS` or a missing/empty ``Models``.
    """
    for key in arch:
        if key not in DISTILL_KEYS:
            raise ConfigError(f"unknown key {key!r} for DistillationModel", f"{where}.{key}")
    models = arch.get("Models")
    if not isinstance(models, dict) or not models:
        raise ConfigError("DistillationModel needs a non-empty 'Models' mapping", f"{where}.Models")
    return models


class DistillationModel(nn.ModuleDict):
    """A :class:`~torch.nn.ModuleDict` of :class:`BaseModel` roles, in ``Models`` order.

    State-dict keys are prefixed by role (``Student.backbone...``) as in PaddleOCR checkpoints;
    :meth:`role_state_dict` returns one role's weights with plain keys, loadable into the
    non-distilled architecture.

    Per role, ``pretrained`` (a path; empty/None skips) and ``freeze_params`` are checked and kept
    in :attr:`role_setup`; the model loads no file. :func:`ocr_core.build.create_model` loads each
    role's ``pretrained`` weights and then calls :meth:`freeze` for ``freeze_params: true``.

    Decision on frozen roles (deliberately unlike PaddleOCR): a frozen sub-model is kept in
    eval mode even when the DistillationModel is put in train mode, so its BatchNorm uses and
    never updates its running statistics, and its forward runs under ``torch.no_grad()``. Its
    output is therefore the eval-mode head dict (a DB teacher's ``maps`` has 1 channel, the
    shrink map; the CML dilation loss only reads channel 0). Reason: a frozen teacher should be
    a fixed function. PaddleOCR leaves it in train mode, so its BN statistics drift toward the
    student's data and it keeps activations for a backward pass that never comes.

    Args:
        arch_cfg: ``Architecture`` mapping with ``Models: {role: BaseModel config}``.
        where: Key path of ``arch_cfg`` for error messages.
    """

    def __init__(self, arch_cfg: dict[str, Any], where: str = "Architecture") -> None:
        super().__init__()
        models = distillation_roles(arch_cfg, where)
        self.model_type: str | None = arch_cfg.get("model_type")
        self.algorithm: str = arch_cfg.get("algorithm") or "Distillation"
        self.frozen_roles: list[str] = []
        self.role_setup: dict[str, RoleSetup] = {}
        for role, sub_cfg in models.items():
            sub_where = f"{where}.Models.{role}"
            if not isinstance(sub_cfg, dict):
                raise ConfigError("expected a mapping", sub_where)
            if not isinstance(role, str) or not role.isidentifier() or hasattr(self, role):
                raise ConfigError(f"invalid sub-model name {role!r}", sub_where)
            sub_cfg = copy.deepcopy(sub_cfg)
            pretrained = sub_cfg.pop("pretrained", None)
            freeze = sub_cfg.pop("freeze_params", False)
            if not isinstance(freeze, bool):
                raise ConfigError(f"expected bool, got {freeze!r}", f"{sub_where}.freeze_params")
            model = BaseModel(sub_cfg, sub_where)
            if pretrained and not isinstance(pretrained, str):
                raise ConfigError(f"expected a path, got {pretrained!r}", f"{sub_where}.pretrained")
            self[role] = model
            self.role_setup[role] = RoleSetup(pretrained=pretrained or None, freeze=freeze)
        self.train(True)

    def freeze(self, role: str) -> None:
        """Freeze sub-model ``role``: ``requires_grad=False`` and eval mode from now on."""
        self[role].requires_grad_(False)
        if role not in self.frozen_roles:
            self.frozen_roles.append(role)
        self[role].train(False)

    @property
    def roles(self) -> list[str]:
        """Sub-model names in config order."""
        return list(self.keys())

    def train(self, mode: bool = True) -> DistillationModel:
        """Set train/eval mode; frozen roles always stay in eval mode (see the class docstring)."""
        super().train(mode)
        for role in self.frozen_roles:
            self[role].train(False)
        return self

    @property
    def needs_targets(self) -> bool:
        """True when any role's head consumes training targets."""
        return any(getattr(m, "needs_targets", False) for m in self.values())

    def forward(self, x: torch.Tensor, targets: Any = None) -> dict[str, Any]:
        """Return ``{role: head_dict}`` for every role, frozen ones computed without autograd."""
        out: dict[str, Any] = {}
        for role, model in self.items():
            if role in self.frozen_roles:
                with torch.no_grad():
                    out[role] = model(x, targets)
            else:
                out[role] = model(x, targets)
        return out

    def role_state_dict(self, role: str) -> dict[str, torch.Tensor]:
        """The state dict of sub-model ``role`` with plain (un-prefixed) keys."""
        if role not in self:
            raise ConfigError(f"unknown role {role!r}; roles: {', '.join(self.roles)}", "role")
        return self[role].state_dict()
