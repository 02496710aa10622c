"""What a config implies beyond its sections: the model type, the rec dictionary, the head sizes.

:func:`resolve_config` is the one step every consumer (training, evaluation, export, the weight
importers) takes before building anything: validate a deep copy and set the rec head sizes from
the dictionary, as PaddleOCR's ``tools/train.py`` does. The caller's mapping is never modified.
"""

from __future__ import annotations

import copy
from typing import Any

from ocr_core.config.schema import validate_config

__all__ = ["load_charset", "model_type_of", "num_classes", "resolve_config", "wire_rec_heads"]


def model_type_of(cfg: dict[str, Any]) -> str:
    """``Architecture.model_type`` (a distillation model's first role decides), default ``det``."""
    arch = cfg.get("Architecture") or {}
    if "Models" in arch:
        first = next(iter(arch["Models"].values()))
        return first.get("model_type", arch.get("model_type", "det"))
    return arch.get("model_type", "det")


def load_charset(cfg: dict[str, Any]) -> list[str] | None:
    """The rec dictionary (without blank) for rec configs, else None."""
    if model_type_of(cfg) != "rec":
        return None
    from ocr_core.data.dictionary import CharacterSet

    g = cfg.get("Global") or {}
    cs = CharacterSet.from_config(g.get("character_dict_path"), bool(g.get("use_space_char", False)))
    return list(cs.chars)


def num_classes(charset: list[str]) -> int:
    """CTC classes of a dictionary: its characters plus the blank."""
    return len(charset) + 1


def wire_rec_heads(cfg: dict[str, Any], n_classes: int) -> dict[str, Any]:
    """A copy of ``cfg`` with the rec head sizes (and the SAR loss ignore index) set for ``n_classes``.

    ``cfg`` needs an ``Architecture`` section; ``Loss`` is patched when present.
    """
    out = copy.deepcopy(cfg)

    def wire(arch: dict[str, Any]) -> None:
        head = arch.get("Head") or {}
        if head.get("name") == "MultiHead":
            head["out_channels_list"] = {"CTCLabelDecode": n_classes, "SARLabelDecode": n_classes + 2}
        elif head:
            head["out_channels"] = n_classes

    arch = out["Architecture"]
    if "Models" in arch:
        for sub in arch["Models"].values():
            wire(sub)
    else:
        wire(arch)

    def patch_sar(d: dict[str, Any]) -> None:
        for entry in d.get("loss_config_list") or []:
            for name, kw in entry.items():
                if name in ("SARLoss", "DistillationSARLoss") and (isinstance(kw, dict) or kw is None):
                    entry[name] = dict(kw or {})
                    entry[name]["ignore_index"] = n_classes + 1
                elif isinstance(kw, dict):
                    patch_sar(kw)

    patch_sar(out.get("Loss") or {})
    return out


def resolve_config(cfg: dict[str, Any], validate: bool = True) -> dict[str, Any]:
    """A validated deep copy of ``cfg`` with the rec heads wired to its dictionary.

    Args:
        cfg: A loaded config (``load_config``); it is not modified.
        validate: Run :func:`validate_config` on the copy (OpenOCR-style keys are normalized there).

    Raises:
        ConfigError: naming the key path (and the config file).
    """
    out = copy.deepcopy(cfg)
    if validate:
        validate_config(out)
    charset = load_charset(out)
    if charset is not None and out.get("Architecture"):
        out = wire_rec_heads(out, num_classes(charset))
    return out
