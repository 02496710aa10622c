"""Extract one role of a distillation checkpoint as a plain, self-describing checkpoint.

PaddleOCR does this by hand (``{k[len("Student."):]: v for k in params if "Student." in k}``,
docs/ppocr/model_train/PPOCRv3_det_train.en.md). Here the result is a full OCRFlow checkpoint:
the role's weights with plain keys (checked to load strictly into the non-distilled
architecture), the role's ``Architecture``, and the distillation config rewritten to the plain
model (``DistillationDBLoss`` -> ``DBLoss`` with the same parameters,
``DistillationDBPostProcess`` -> ``DBPostProcess`` with the same thresholds,
``DistillationMetric`` -> its base metric), so ``ocrflow eval/infer/export/train`` take it as is.

Extracting ``Student`` from a DML checkpoint gives the ``dml_teacher`` that CML loads with
``-o Architecture.Models.Teacher.pretrained=dml_teacher.pt``.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocr_core.build import create_model
from ocr_core.config.plain import ROLE_ONLY_KEYS, plain_config
from ocr_core.weights.checkpoint import (
    CheckpointError,
    file_sha256,
    load_checkpoint,
    load_weights,
    resolve_path,
    save_checkpoint,
)

log = logging.getLogger("ocrflow")

__all__ = ["ExtractResult", "extract_role", "plain_config", "role_metrics"]

@dataclass
class ExtractResult:
    """What :func:`extract_role` wrote (and, unless skipped, measured)."""

    path: Path
    role: str
    roles: list[str]
    source: Path
    source_sha256: str
    num_tensors: int
    recorded: dict[str, float] = field(default_factory=dict)
    evaluated: dict[str, float] | None = None
    main_indicator: str = "hmean"

    def summary(self) -> str:
        lines = [f"extracted {self.role} ({self.num_tensors} tensors) from {self.source} -> {self.path}"]
        m = self.main_indicator
        rec = self.recorded.get(m)
        where = ""
        if "best_step" in self.recorded:
            where = f" at step {int(self.recorded['best_step'])}"
        rec_txt = f"{rec:.4f}{where}" if rec is not None else "none recorded"
        if self.evaluated is not None:
            lines.append(f"{m}: re-evaluated {self.evaluated.get(m, float('nan')):.4f} | "
                         f"recorded in training {rec_txt}")
        else:
            lines.append(f"{m} recorded in training: {rec_txt}")
        return "\n".join(lines)


def _models(cfg: dict[str, Any] | None) -> dict[str, Any] | None:
    arch = (cfg or {}).get("Architecture") if cfg and "Architecture" in cfg else cfg
    if isinstance(arch, dict) and isinstance(arch.get("Models"), dict):
        return arch["Models"]
    return None


def _key_roles(state: dict[str, Any]) -> list[str]:
    roles: list[str] = []
    for key in state:
        head = key.split(".", 1)[0]
        if head not in roles:
            roles.append(head)
    return roles


def role_metrics(best: dict[str, Any], role: str, roles: list[str], key_role: str | None) -> dict[str, float]:
    """The part of a distillation ``best_metric`` that belongs to ``role``, un-prefixed.

    ``DistillationMetric`` reports the ``key`` role un-prefixed and the others as
    ``{role}_{name}``; ``best_epoch``/``best_step`` are shared; ``{role}_best_{main}`` (the
    per-role running best) is dropped because it may describe other weights.
    """
    shared = {k: v for k, v in best.items() if k in ("best_epoch", "best_step")}
    prefixes = tuple(f"{r}_" for r in roles)
    if role == key_role:
        own = {k: v for k, v in best.items() if not k.startswith(prefixes) and k not in shared}
    else:
        own = {k[len(role) + 1:]: v for k, v in best.items() if k.startswith(f"{role}_")}
    own = {k: v for k, v in own.items() if not k.startswith("best_")}
    return {**own, **shared} if own else {}


def extract_role(src: str | os.PathLike[str], role: str, out: str | os.PathLike[str],
                 config: dict[str, Any] | None = None, evaluate: bool = True,
                 overrides: list[str] | None = None) -> ExtractResult:
    """Write sub-model ``role`` of distillation checkpoint ``src`` as a plain checkpoint ``out``.

    Args:
        src: A distillation checkpoint (OCRFlow ``.pt``; keys prefixed ``{role}.``).
        role: ``Student``, ``Student2``, ``Teacher``, ... (case-sensitive, as in ``Models``).
        out: Where to write (``.pt`` appended if missing).
        config: A loaded config (``-c`` with ``-o``): its ``Architecture.Models`` is used when
            the checkpoint carries none, its Eval set for the re-evaluation; default: the
            config stored in the checkpoint.
        evaluate: Re-evaluate the extracted model on the config's Eval set.
        overrides: ``-o`` items applied to the checkpoint's stored config when ``config`` is
            None (e.g. ``Eval.dataset.data_dir=...``).

    Raises:
        CheckpointError: ``role`` is not in the checkpoint (the message lists the roles present),
            the checkpoint is not a distillation checkpoint, or the weights do not load strictly
            into the role's plain architecture.
    """
    src_path = resolve_path(src)
    ck = load_checkpoint(src_path)
    state = ck["model"]
    stored_cfg = ck.get("config") or {}
    models = _models(ck.get("architecture")) or _models(stored_cfg) or _models(config)
    if models is None:
        raise CheckpointError(f"{src_path} is not a distillation checkpoint (no Architecture.Models in it "
                              f"or in -c); its top-level keys start with {', '.join(_key_roles(state)[:8])}")
    roles = [r for r in models if any(k.startswith(f"{r}.") for k in state)]
    if role not in roles:
        raise CheckpointError(f"role {role!r} is not in {src_path}; roles present: {', '.join(roles) or 'none'}")
    role_arch = {k: v for k, v in copy.deepcopy(models[role]).items() if k not in ROLE_ONLY_KEYS}
    prefix = f"{role}."
    role_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    model = create_model({"Architecture": role_arch})
    load_weights(model, role_state, strict=True, source=f"{src_path} [{role}]")

    base_cfg = config if config is not None else stored_cfg
    if config is None and overrides:
        from ocr_core.config import load_config, validate_config

        base_cfg = validate_config(load_config(None, overrides, base=stored_cfg))
    cfg = plain_config(base_cfg, role, role_arch) if base_cfg else {"Architecture": role_arch}
    metric_cfg = (base_cfg or {}).get("Metric") or stored_cfg.get("Metric") or {}
    key_role = metric_cfg.get("key") if metric_cfg.get("name") == "DistillationMetric" else None
    main = metric_cfg.get("main_indicator") or "hmean"
    recorded = role_metrics(dict(ck.get("best_metric") or {}), role, list(models), key_role)
    sha = file_sha256(src_path)
    provenance = {
        "tool": "ocrflow extract", "extracted_from": str(src_path), "role": role, "sha256": sha,
        "source_provenance": ck.get("provenance"),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = save_checkpoint(out, {
        "model": model.state_dict(), "architecture": copy.deepcopy(role_arch),
        "model_type": role_arch.get("model_type", ck.get("model_type")), "config": cfg,
        "charset": ck.get("charset"), "epoch": ck.get("epoch", 0), "global_step": ck.get("global_step", 0),
        "best_metric": recorded, "provenance": provenance,
    })
    result = ExtractResult(path=path, role=role, roles=roles, source=src_path, source_sha256=sha,
                           num_tensors=len(role_state), recorded=recorded, main_indicator=main)
    log.info("extracted %s from %s -> %s", role, src_path, path)
    if evaluate:
        result.evaluated = evaluate_extracted(path, cfg)
    return result


def evaluate_extracted(path: str | os.PathLike[str], plain_cfg: dict[str, Any]) -> dict[str, float]:
    """Evaluate the extracted checkpoint ``path`` with ``plain_cfg`` (strict loading)."""
    from ocr_core.engine.run import evaluate_config

    if not plain_cfg.get("Eval"):
        raise CheckpointError("the config has no Eval section to re-evaluate on (use --no-eval, or -c CONFIG)")
    cfg = copy.deepcopy(plain_cfg)
    glob = cfg.setdefault("Global", {})
    glob["checkpoints"] = str(path)
    glob["save_model_dir"] = str(Path(path).parent)
    return evaluate_config(cfg)
