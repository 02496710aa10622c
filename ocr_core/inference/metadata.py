"""Inference settings embedded in exported ONNX models (``metadata_props``).

Every value is a JSON string under an ``ocrflow.*`` key, so an exported model carries all it
needs to pre-process an image and post-process its output; the predictors read nothing else.
Trained-vs-exported results therefore cannot drift (ARCHITECTURE.md).

Keys (``REQUIRED_KEYS[model_type]`` are mandatory):

- ``ocrflow.format``: metadata format version (``1``).
- ``ocrflow.model_type``: ``"det"`` or ``"rec"``; ``ocrflow.algorithm``: e.g. ``"DB"``, ``"SVTR_LCNet"``.
- ``ocrflow.normalize``: ``{"scale", "mean", "std", "channel_order": "BGR"}``.
- ``ocrflow.resize``: det ``{"op": "DetResizeForTest", "limit_side_len", "limit_type",
  "image_shape", "keep_ratio", "resize_long"}``; rec ``{"op": "RecResizeImg", "image_shape",
  "padding"}``.
- ``ocrflow.postprocess``: det ``{"name": "DBPostProcess", "thresh", "box_thresh",
  "max_candidates", "unclip_ratio", "score_mode", "box_type", "use_dilation"}``; rec
  ``{"name": "CTCLabelDecode", "reverse"}``.
- rec only: ``ocrflow.character`` (the dictionary, without the CTC blank),
  ``ocrflow.use_space_char``.
- ``ocrflow.io``: ``{"input": name, "output": name}``.
- ``ocrflow.config_sha256``, ``ocrflow.checkpoint_sha256``, ``ocrflow.version``,
  ``ocrflow.exported_at``; optional ``ocrflow.role``, ``ocrflow.opset``.

This module imports neither torch nor the model code (the predictors use it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from ocr_core.data.transforms.common import parse_scale
from ocr_core.errors import OCRFlowError

PREFIX = "ocrflow."
FORMAT_VERSION = 1
DET_RESIZE_KEYS = ("limit_side_len", "limit_type", "image_shape", "keep_ratio", "resize_long")
DB_KEYS = ("thresh", "box_thresh", "max_candidates", "unclip_ratio", "score_mode", "box_type", "use_dilation")
DB_DEFAULTS: dict[str, Any] = {"thresh": 0.3, "box_thresh": 0.7, "max_candidates": 1000, "unclip_ratio": 2.0,
                               "score_mode": "fast", "box_type": "quad", "use_dilation": False}
DEFAULT_REC_SHAPE = [3, 48, 320]
# tools/infer/utility.py defaults (--det_limit_side_len 960, --det_limit_type max)
DEPLOY_DET_RESIZE: dict[str, Any] = {"limit_side_len": 960, "limit_type": "max"}
REC_NORMALIZE: dict[str, Any] = {"scale": 1.0 / 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                                 "channel_order": "BGR"}
IMAGENET_NORMALIZE: dict[str, Any] = {"scale": 1.0 / 255.0, "mean": [0.485, 0.456, 0.406],
                                      "std": [0.229, 0.224, 0.225], "channel_order": "BGR"}

_COMMON = ("format", "model_type", "algorithm", "normalize", "resize", "postprocess", "io",
           "config_sha256", "checkpoint_sha256", "version", "exported_at")
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "det": tuple(PREFIX + k for k in _COMMON),
    "rec": tuple(PREFIX + k for k in (*_COMMON, "character", "use_space_char")),
}
HOW_TO_EXPORT = ("export one with `ocrflow export -c CONFIG -o Global.pretrained_model=CKPT --format onnx "
                 "--out DIR` (it embeds the pre/post-processing settings)")


class MetadataError(OCRFlowError):
    """An ONNX model lacks (or has invalid) OCRFlow inference metadata."""


def _transforms(cfg: Mapping[str, Any], section: str) -> list[tuple[str, dict[str, Any]]]:
    ops = (((cfg.get(section) or {}).get("dataset") or {}).get("transforms")) or []
    out = []
    for op in ops:
        if isinstance(op, Mapping) and len(op) == 1:
            name, kw = next(iter(op.items()))
            out.append((str(name), dict(kw or {})))
    return out


def _find_op(cfg: Mapping[str, Any], name: str) -> Optional[dict[str, Any]]:
    """Kwargs of op ``name`` in the Eval transforms (else Train), or None."""
    for section in ("Eval", "Train"):
        for op, kw in _transforms(cfg, section):
            if op == name:
                return kw
    return None


def eval_det_resize(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config's own ``DetResizeForTest`` settings (unset keys None, ``keep_ratio`` False)."""
    kw = _find_op(cfg, "DetResizeForTest") or {}
    return {key: kw.get(key, False if key == "keep_ratio" else None) for key in DET_RESIZE_KEYS}


def det_settings(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(normalize, resize, postprocess)`` for a det config (Eval DetResizeForTest/NormalizeImage)."""
    norm_kw = _find_op(cfg, "NormalizeImage") or {}
    normalize = {
        "scale": parse_scale(norm_kw.get("scale")),
        "mean": [float(v) for v in norm_kw.get("mean") or IMAGENET_NORMALIZE["mean"]],
        "std": [float(v) for v in norm_kw.get("std") or IMAGENET_NORMALIZE["std"]],
        "channel_order": "BGR",
    }
    resize: dict[str, Any] = {"op": "DetResizeForTest", **eval_det_resize(cfg)}
    if all(resize[k] is None for k in ("limit_side_len", "image_shape", "resize_long")):
        # nothing set (PP-OCRv3 configs): deploy with PaddleOCR's inference defaults, not eval's 736/min
        resize.update(DEPLOY_DET_RESIZE)
    pp_cfg = dict(cfg.get("PostProcess") or {})
    if pp_cfg.get("name") == "EASTPostProcess":
        east = {"score_thresh": 0.8, "cover_thresh": 0.1, "nms_thresh": 0.2}
        return normalize, resize, {"name": "EASTPostProcess", **{k: pp_cfg.get(k, v) for k, v in east.items()}}
    post: dict[str, Any] = {"name": "DBPostProcess"}
    for key in DB_KEYS:
        post[key] = pp_cfg.get(key, DB_DEFAULTS[key])
    return normalize, resize, post


def rec_settings(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(normalize, resize, postprocess)`` for a rec config (RecResizeImg image_shape)."""
    kw = _find_op(cfg, "RecResizeImg") or {}
    resize = {"op": "RecResizeImg", "image_shape": [int(v) for v in kw.get("image_shape") or DEFAULT_REC_SHAPE],
              "padding": bool(kw.get("padding", True))}
    dict_path = (cfg.get("Global") or {}).get("character_dict_path")
    post = {"name": "CTCLabelDecode", "reverse": bool(dict_path and "arabic" in str(dict_path))}
    return dict(REC_NORMALIZE), resize, post


def build_metadata(
    cfg: Mapping[str, Any],
    model_type: str,
    algorithm: str,
    config_sha256: str,
    checkpoint_sha256: str,
    character: Optional[list[str]] = None,
    io_names: tuple[str, str] = ("x", "maps"),
    role: Optional[str] = None,
    opset: Optional[int] = None,
) -> dict[str, Any]:
    """All ``ocrflow.*`` entries (as Python values) for a model exported from ``cfg``."""
    from ocr_core import __version__

    if model_type == "det":
        normalize, resize, post = det_settings(cfg)
    elif model_type == "rec":
        normalize, resize, post = rec_settings(cfg)
    else:
        raise MetadataError(f"cannot export model_type {model_type!r} (det or rec)")
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "model_type": model_type,
        "algorithm": algorithm,
        "normalize": normalize,
        "resize": resize,
        "postprocess": post,
        "io": {"input": io_names[0], "output": io_names[1]},
        "config_sha256": config_sha256,
        "checkpoint_sha256": checkpoint_sha256,
        "version": __version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if model_type == "rec":
        if character is None:
            raise MetadataError("a rec export needs its character dictionary")
        meta["character"] = list(character)
        meta["use_space_char"] = bool((cfg.get("Global") or {}).get("use_space_char", False))
    if role:
        meta["role"] = role
    if opset is not None:
        meta["opset"] = int(opset)
    return {PREFIX + k: v for k, v in meta.items()}


def encode(meta: Mapping[str, Any]) -> dict[str, str]:
    """Python values -> JSON strings (the form stored in ``metadata_props``)."""
    return {k: json.dumps(v, ensure_ascii=False) for k, v in meta.items()}


def decode(props: Mapping[str, str]) -> dict[str, Any]:
    """``metadata_props`` -> Python values (``ocrflow.*`` keys only; the prefix is kept)."""
    out: dict[str, Any] = {}
    for k, v in props.items():
        if not k.startswith(PREFIX):
            continue
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError as exc:
            raise MetadataError(f"metadata {k} is not valid JSON: {exc}") from None
    return out


def write_metadata(model: Any, meta: Mapping[str, Any]) -> None:
    """Replace the ``ocrflow.*`` entries of an ``onnx.ModelProto`` in place."""
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for k, v in [*keep, *encode(meta).items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def read_metadata(source: Any) -> dict[str, Any]:
    """Decoded ``ocrflow.*`` metadata of an ONNX file path, ``onnx.ModelProto`` or ORT session."""
    if hasattr(source, "get_modelmeta"):
        return decode(source.get_modelmeta().custom_metadata_map)
    if hasattr(source, "metadata_props"):
        return decode({p.key: p.value for p in source.metadata_props})
    import onnx

    try:
        model = onnx.load(str(source), load_external_data=False)
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends: not an ONNX file
        reason = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise MetadataError(f"not an ONNX model: {source} ({reason})") from None
    return decode({p.key: p.value for p in model.metadata_props})


def validate_metadata(meta: Mapping[str, Any], where: str = "model", model_type: Optional[str] = None) -> str:
    """Check the required keys (and the model type); return the model type.

    Raises:
        MetadataError: naming the missing keys and how to export a model that has them.
    """
    mtype = meta.get(PREFIX + "model_type")
    if mtype not in REQUIRED_KEYS:
        missing = [k for k in REQUIRED_KEYS["det"] if k not in meta]
        raise MetadataError(
            f"{where} has no OCRFlow inference metadata (missing {', '.join(missing) or PREFIX + 'model_type'}; "
            f"got model_type {mtype!r}); {HOW_TO_EXPORT}")
    missing = [k for k in REQUIRED_KEYS[mtype] if k not in meta]
    if missing:
        raise MetadataError(f"{where} lacks OCRFlow metadata keys: {', '.join(missing)}; {HOW_TO_EXPORT}")
    if int(meta[PREFIX + "format"]) > FORMAT_VERSION:
        raise MetadataError(f"{where} has metadata format {meta[PREFIX + 'format']}, newer than this "
                            f"ocrflow understands ({FORMAT_VERSION}); upgrade ocrflow")
    if model_type is not None and mtype != model_type:
        raise MetadataError(f"{where} is a {mtype} model, expected a {model_type} model")
    return str(mtype)


def resolve_model_path(path: str | Path) -> Path:
    """Accept an ONNX file or an export directory holding ``model.onnx``."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.onnx"
    if not p.is_file():
        raise MetadataError(f"ONNX model not found: {p}")
    return p


__all__ = [
    "HOW_TO_EXPORT",
    "PREFIX",
    "REQUIRED_KEYS",
    "MetadataError",
    "build_metadata",
    "decode",
    "det_settings",
    "encode",
    "read_metadata",
    "rec_settings",
    "resolve_model_path",
    "validate_metadata",
    "write_metadata",
]
