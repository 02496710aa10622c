"""A distillation config seen as one of its roles' plain configs.

``role_architecture`` picks ``Architecture.Models[role]`` (what ``export`` builds); ``plain_config``
rewrites the whole config to that plain model (``DistillationDBLoss`` -> ``DBLoss``,
``DistillationDBPostProcess`` -> ``DBPostProcess``, ``DistillationMetric`` -> its base metric), as
``extract`` stores it and the export parity gate evaluates it. One definition for both.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any, Optional

from ocr_core.config.schema import normalize_openocr
from ocr_core.errors import ConfigError

log = logging.getLogger("ocrflow")

# keys a DistillationModel role may carry that mean nothing to a plain model
ROLE_ONLY_KEYS = ("pretrained", "freeze_params")
# Distillation* section -> plain section, with the keys that carry over
_PLAIN_LOSS = {
    "DistillationDBLoss": ("DBLoss", ("balance_loss", "main_loss_type", "alpha", "beta", "ohem_ratio", "eps")),
}
_PLAIN_POSTPROCESS = {
    "DistillationDBPostProcess": ("DBPostProcess", ("thresh", "box_thresh", "max_candidates", "unclip_ratio",
                                                    "use_dilation", "score_mode", "box_type")),
}
_DEFAULT_METRIC = {"det": "DetMetric", "rec": "RecMetric"}
_DEFAULT_LOSS = {"det": {"name": "DBLoss", "balance_loss": True, "main_loss_type": "DiceLoss", "alpha": 5,
                         "beta": 10, "ohem_ratio": 3}}


def role_architecture(cfg: dict[str, Any], role: Optional[str]) -> tuple[dict[str, Any], Optional[str]]:
    """The single-model ``Architecture`` to export: ``Models[role]`` of a distillation config.

    OpenOCR-style keys are normalized first (on a copy), so an OpenOCR config exports the model it
    trains (e.g. ``se_gate: torch`` on RepViT's RSEFPN) whether or not the caller validated ``cfg``.
    """
    arch = normalize_openocr(copy.deepcopy(cfg))["Architecture"]
    if "Models" not in arch:
        return arch, role
    models = arch["Models"]
    if role is None:
        if "Student" not in models:
            raise ConfigError(f"a DistillationModel export needs --role (one of {', '.join(models)})",
                              "Architecture.Models")
        role = "Student"
    if role not in models:
        raise ConfigError(f"unknown role {role!r}; roles: {', '.join(models)}", "Architecture.Models")
    sub = dict(models[role])
    for key in ROLE_ONLY_KEYS:
        sub.pop(key, None)
    for key in ("model_type", "algorithm"):
        if not sub.get(key) and arch.get(key):
            sub[key] = arch[key]
    return sub, role


def _plain_section(section: Any, table: Mapping[str, tuple[str, tuple[str, ...]]]) -> Any:
    """Map a ``Distillation*`` section (or the first mappable entry of a CombinedLoss) to its plain form."""
    if not isinstance(section, dict):
        return section
    name = section.get("name")
    if isinstance(name, str) and name in table:
        plain, keys = table[name]
        return {"name": plain, **{k: section[k] for k in keys if k in section}}
    if name == "CombinedLoss":
        for entry in section.get("loss_config_list") or []:
            (sub_name, params), = entry.items()
            if sub_name in table:
                return _plain_section({**(params or {}), "name": sub_name}, table)
        return None
    return section


def plain_config(cfg: dict[str, Any], role: Optional[str] = None,
                 role_arch: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Rewrite a distillation config to the plain model of ``role`` (a plain config keeps its sections).

    ``Architecture`` becomes ``role_arch`` (default: :func:`role_architecture`, ``Student`` when
    ``role`` is None); ``Loss``, ``PostProcess`` and ``Metric`` their non-distilled forms with the
    same parameters (``DistillationMetric`` -> its ``base_metric_name``, else the model type's
    metric); ``Global.pretrained_model``/``checkpoints`` are cleared (they pointed at distillation
    weights). Used by ``extract`` (the extracted checkpoint's config) and the export parity gate.
    """
    if role_arch is None:
        role_arch, role = role_architecture(cfg, role)
    out = copy.deepcopy(cfg)
    out["Architecture"] = copy.deepcopy(role_arch)
    model_type = role_arch.get("model_type", "det")
    loss = _plain_section(out.get("Loss"), _PLAIN_LOSS)
    if loss is None or (isinstance(loss, dict) and str(loss.get("name", "")).startswith(("Distillation",
                                                                                           "Combined"))):
        loss = copy.deepcopy(_DEFAULT_LOSS.get(model_type))
        if loss is None:
            log.warning("no plain loss known for %s; the plain config has no Loss", cfg.get("Loss"))
    out["Loss"] = loss
    post = _plain_section(out.get("PostProcess"), _PLAIN_POSTPROCESS)
    if isinstance(post, dict) and str(post.get("name", "")).startswith("Distillation"):
        log.warning("no plain post-process known for %s; dropped", post.get("name"))
        post = None
    out["PostProcess"] = post
    metric = out.get("Metric")
    if isinstance(metric, dict) and metric.get("name") == "DistillationMetric":
        base = metric.get("base_metric_name") or _DEFAULT_METRIC.get(model_type, "DetMetric")
        out["Metric"] = {"name": base, **({"main_indicator": metric["main_indicator"]}
                                          if metric.get("main_indicator") else {})}
    glob = out.setdefault("Global", {})
    glob["pretrained_model"] = None
    glob["checkpoints"] = None
    for key in [k for k in glob if str(k).startswith("_")]:
        glob.pop(key)
    return {k: v for k, v in out.items() if v is not None}


__all__ = ["ROLE_ONLY_KEYS", "plain_config", "role_architecture"]
