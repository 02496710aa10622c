"""Build a TensorRT engine from an exported ONNX model (``ocrflow export --format tensorrt``).

The optimisation profile (min/opt/max input shapes) is derived from the model's embedded resize
policy by :func:`profile_shapes`, a pure function; :func:`build_engine` drives the TensorRT
Python API (``tensorrt`` module, or any object with the same surface, which is how it is tested
without a GPU).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from ocr_core.errors import OCRFlowError
from ocr_core.inference import metadata as md

EXIT_NO_TENSORRT = 3
Shape = tuple[int, ...]


class TensorRTUnavailable(OCRFlowError):
    """No NVIDIA GPU or no ``tensorrt`` module.

    With ``onnx_path`` the ONNX model was exported and is all we could produce (``ocrflow export``
    exits 3); without it nothing was exported (the pipeline's export step checks first, so a TensorRT
    request never ships an ONNX model alone).
    """

    def __init__(self, onnx_path: str | Path | None = None, reason: str = "") -> None:
        if onnx_path is not None:
            msg = f"TensorRT needs an NVIDIA GPU; ONNX exported to {onnx_path}"
        else:
            msg = (f"TensorRT needs an NVIDIA GPU and the tensorrt module ({reason or 'unavailable'}); "
                   "nothing was exported: run the export on the TensorRT image with a GPU, or export ONNX only")
        super().__init__(msg)
        self.onnx_path = None if onnx_path is None else str(onnx_path)
        self.reason = reason


def _r32(v: float) -> int:
    return max(32, int(round(v / 32)) * 32)


def _c32(v: float) -> int:
    return max(32, int(math.ceil(v / 32)) * 32)


def profile_shapes(
    meta: Mapping[str, Any],
    batch: tuple[int, int, int] | None = None,
    max_side: int = 2048,
    rec_max_width: int = 1280,
    min_side: int = 32,
) -> dict[str, tuple[Shape, Shape, Shape]]:
    """``{input_name: (min, opt, max)}`` from the ``ocrflow.*`` metadata.

    det (``[B, 3, H, W]``), by resize policy:

    - ``image_shape [H, W]``: fixed ``H x W``; with ``keep_ratio`` the width spans
      ``min_side..max_side`` (opt ``W``).
    - ``limit_type "max"`` (limit L): sides ``min_side..L`` rounded up to 32, opt ``L x L``.
    - ``limit_type "min"`` / default (L = 736): short side reaches L, long side up to
      ``max_side``; opt ``L x round32(L * 16 / 9)`` (a 16:9 page, e.g. 736 x 1312).
    - ``limit_type "resize_long"`` / ``resize_long`` R: sides up to R (ceil 32 / 128), opt R x R.

    rec (``[B, C, H, W]``): fixed ``C x H``, width ``min_side..max(W, rec_max_width)``, opt W.

    Args:
        meta: Decoded metadata (:func:`ocr_core.inference.metadata.read_metadata`).
        batch: ``(min, opt, max)`` batch sizes (default det (1, 1, 4), rec (1, 6, 16)).
        max_side: Largest det side in the profile.
        rec_max_width: Largest rec width in the profile.
        min_side: Smallest dynamic side.
    """
    mtype = md.validate_metadata(meta)
    name = meta[md.PREFIX + "io"]["input"]
    resize = meta[md.PREFIX + "resize"]
    if mtype == "rec":
        b = batch or (1, 6, 16)
        c, h, w = (int(v) for v in resize["image_shape"])
        return {name: ((b[0], c, h, min_side), (b[1], c, h, w), (b[2], c, h, max(w, rec_max_width)))}
    b = batch or (1, 1, 4)
    image_shape = resize.get("image_shape")
    limit = resize.get("limit_side_len")
    kind = resize.get("limit_type") or "min"
    if image_shape is not None:
        h, w = int(image_shape[0]), int(image_shape[1])
        if resize.get("keep_ratio"):
            lo, opt, hi = (h, min_side), (h, _c32(w)), (h, max(_c32(w), max_side))
        else:
            lo = opt = hi = (h, w)
    elif limit is None and resize.get("resize_long") is not None:
        r = -(-int(resize["resize_long"]) // 128) * 128
        lo, opt, hi = (128, 128), (r, r), (r, r)
    elif kind == "max" and limit is not None:
        side = _c32(int(limit))
        lo, opt, hi = (min_side, min_side), (side, side), (side, side)
    elif kind == "resize_long":
        side = _c32(int(limit))
        lo, opt, hi = (min_side, min_side), (side, side), (side, side)
    else:
        side = _r32(int(limit) if limit is not None else 736)
        top = max(side, max_side)
        lo, opt, hi = (min_side, min_side), (side, min(top, _r32(side * 16 / 9))), (top, top)
    return {name: ((b[0], 3, *lo), (b[1], 3, *opt), (b[2], 3, *hi))}


def merge_profiles(a: Mapping[str, tuple[Shape, Shape, Shape]], b: Mapping[str, tuple[Shape, Shape, Shape]]
                   ) -> dict[str, tuple[Shape, Shape, Shape]]:
    """One profile covering both: per input the elementwise min of the mins and max of the maxes; ``a``'s opt."""
    out = dict(a)
    for name, (lo, _, hi) in b.items():
        if name in out:
            alo, aopt, ahi = out[name]
            out[name] = (tuple(map(min, alo, lo)), aopt, tuple(map(max, ahi, hi)))
    return out


def tensorrt_available() -> tuple[bool, str]:
    """``(True, "")`` when ``tensorrt`` imports and an NVIDIA GPU is visible, else the reason."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "the tensorrt module is not installed"
    try:
        import torch

        if not torch.cuda.is_available():
            return False, "no CUDA device"
    except ImportError:
        return False, "cannot probe for a GPU"
    return True, ""


def require_tensorrt() -> None:
    """Raise :class:`TensorRTUnavailable` (nothing exported yet) unless TensorRT can build here."""
    ok, reason = tensorrt_available()
    if not ok:
        raise TensorRTUnavailable(reason=reason)


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    profiles: Mapping[str, tuple[Shape, Shape, Shape]],
    fp16: bool = True,
    workspace_bytes: int = 2 << 30,
    trt: Optional[Any] = None,
) -> Path:
    """Parse ``onnx_path``, add one optimisation profile, build and write the serialized engine.

    Args:
        onnx_path: The exported ONNX model.
        engine_path: Output ``.engine`` file.
        profiles: ``{input: (min, opt, max)}`` (see :func:`profile_shapes`).
        fp16: Set the FP16 builder flag (when the platform has fast FP16).
        workspace_bytes: Workspace memory pool limit.
        trt: The ``tensorrt`` module (injectable for tests).
    """
    if trt is None:
        import tensorrt

        trt = tensorrt
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt, "NetworkDefinitionCreationFlag") and hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise OCRFlowError(f"TensorRT cannot parse {onnx_path}: {'; '.join(errors)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if fp16 and getattr(builder, "platform_has_fast_fp16", True):
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profiles.items():
        profile.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise OCRFlowError(f"TensorRT failed to build an engine from {onnx_path}")
    out = Path(engine_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(engine))
    return out


def build_from_onnx(onnx_path: str | Path, engine_path: Optional[str | Path] = None, fp16: bool = True,
                    batch: tuple[int, int, int] | None = None, max_side: int = 2048,
                    rec_max_width: int = 1280, cover_resize: Optional[Mapping[str, Any]] = None) -> Path:
    """Check availability, derive the profile from the metadata and build.

    ``cover_resize``: det resize settings (``DetResizeForTest`` keys) whose shapes the profile must
    cover too, e.g. the Eval set's when the engine is gated on it (opt stays the deployed one).

    Raises:
        TensorRTUnavailable: without an NVIDIA GPU or the ``tensorrt`` module.
    """
    ok, _reason = tensorrt_available()
    if not ok:
        raise TensorRTUnavailable(onnx_path)
    meta = md.read_metadata(onnx_path)
    profiles = profile_shapes(meta, batch=batch, max_side=max_side, rec_max_width=rec_max_width)
    if cover_resize is not None and md.validate_metadata(meta) == "det":
        other = {**meta, md.PREFIX + "resize": {**meta[md.PREFIX + "resize"], **cover_resize}}
        profiles = merge_profiles(profiles, profile_shapes(other, batch=batch, max_side=max_side))
    engine_path = engine_path or Path(onnx_path).with_suffix(".engine")
    return build_engine(onnx_path, engine_path, profiles, fp16=fp16)


__all__ = ["EXIT_NO_TENSORRT", "TensorRTUnavailable", "build_engine", "build_from_onnx", "merge_profiles",
           "profile_shapes", "require_tensorrt", "tensorrt_available"]
