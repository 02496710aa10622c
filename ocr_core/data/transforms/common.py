"""Generic transforms: DecodeImage, NormalizeImage, ToCHWImage, KeepKeys (PaddleOCR operators.py)."""

from __future__ import annotations

import re
from typing import Any, Optional, Union

import cv2
import numpy as np

from ocr_core.data import TRANSFORMS, image_io
from ocr_core.errors import ConfigError, DataError

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_SCALE_RE = re.compile(rf"^\s*({_NUMBER})\s*(?:/\s*({_NUMBER})\s*)?$")


def parse_scale(scale: Union[str, float, int, None]) -> float:
    """Parse NormalizeImage's ``scale``: a number, or a string ``"a"``, ``"a/b"``, ``"1./255."``.

    PaddleOCR ``eval()``s the string; we accept only a number or a quotient of two numbers.

    Raises:
        ConfigError: for anything else, or a zero divisor.
    """
    if scale is None:
        return 1.0 / 255.0
    if isinstance(scale, bool):
        raise ConfigError(f"scale must be a number or a string like '1./255.', got {scale!r}", "scale")
    if isinstance(scale, (int, float)):
        return float(scale)
    m = _SCALE_RE.match(str(scale))
    if not m:
        raise ConfigError(f"scale must be a number or a string like '1./255.', got {scale!r}", "scale")
    num = float(m.group(1))
    if m.group(2) is None:
        return num
    den = float(m.group(2))
    if den == 0.0:
        raise ConfigError(f"scale {scale!r} divides by zero", "scale")
    return num / den


@TRANSFORMS.register()
class DecodeImage:
    """Decode ``data["image"]`` (encoded bytes) into an HWC uint8 array.

    Args:
        img_mode: ``"BGR"`` (OpenCV order), ``"RGB"`` (channels reversed) or ``"GRAY"`` (decoded
            as grayscale, then expanded to 3 BGR channels, as PaddleOCR does).
        channel_first: Return CHW instead of HWC.
        ignore_orientation: Ignore the EXIF orientation tag.

    Returns None (sample rejected) for empty or undecodable bytes.
    """

    def __init__(self, img_mode: str = "RGB", channel_first: bool = False, ignore_orientation: bool = False) -> None:
        if img_mode not in ("RGB", "BGR", "GRAY"):
            raise ConfigError(f"img_mode must be RGB, BGR or GRAY, got {img_mode!r}", "img_mode")
        self.img_mode = img_mode
        self.channel_first = channel_first
        self.ignore_orientation = ignore_orientation

    def __call__(self, data: dict[str, Any]) -> Optional[dict[str, Any]]:
        raw = data["image"]
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise TypeError(f"DecodeImage expects encoded image bytes, got {type(raw).__name__}")
        if len(raw) == 0:
            return None
        flag = cv2.IMREAD_GRAYSCALE if self.img_mode == "GRAY" else cv2.IMREAD_COLOR
        if self.ignore_orientation:
            flag |= cv2.IMREAD_IGNORE_ORIENTATION
        try:
            img = image_io.decode(raw, flag, where=str(data.get("img_path") or ""))
        except image_io.ImageTooLarge as exc:  # the dataset counts it as a rejected sample
            raise DataError(str(exc)) from exc
        if img is None:
            return None
        if self.img_mode == "GRAY":
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        elif self.img_mode == "RGB":
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if self.channel_first:
            img = np.ascontiguousarray(img.transpose((2, 0, 1)))
        data["image"] = img
        return data


@TRANSFORMS.register()
class NormalizeImage:
    """``(image * scale - mean) / std`` in float32.

    The statistics are applied in the listed channel order to whatever channel order the image
    has: PaddleOCR's det configs normalize BGR images with the RGB-ordered ImageNet mean/std, and
    pretrained weights expect exactly that.

    Args:
        scale: Number or ``"a/b"`` string (default 1/255).
        mean: Per-channel mean (default ImageNet ``[0.485, 0.456, 0.406]``).
        std: Per-channel std (default ImageNet ``[0.229, 0.224, 0.225]``).
        order: Layout of the incoming image, ``"hwc"`` or ``"chw"``.
    """

    def __init__(
        self,
        scale: Optional[Union[str, float]] = None,
        mean: Optional[list[float]] = None,
        std: Optional[list[float]] = None,
        order: str = "chw",
    ) -> None:
        if order not in ("chw", "hwc"):
            raise ConfigError(f"order must be 'chw' or 'hwc', got {order!r}", "order")
        self.scale = np.float32(parse_scale(scale))
        mean = [0.485, 0.456, 0.406] if mean is None else mean
        std = [0.229, 0.224, 0.225] if std is None else std
        if len(mean) != len(std):
            raise ConfigError(f"mean ({len(mean)} values) and std ({len(std)} values) differ in length", "std")
        if any(s == 0 for s in std):
            raise ConfigError("std values must be non-zero", "std")
        shape = (len(mean), 1, 1) if order == "chw" else (1, 1, len(mean))
        self.order = order
        self.mean = np.asarray(mean, dtype=np.float32).reshape(shape)
        self.std = np.asarray(std, dtype=np.float32).reshape(shape)

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        img = np.asarray(data["image"])
        data["image"] = (img.astype(np.float32) * self.scale - self.mean) / self.std
        return data


@TRANSFORMS.register()
class ToCHWImage:
    """HWC -> CHW."""

    def __init__(self) -> None:
        pass

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        data["image"] = np.ascontiguousarray(np.asarray(data["image"]).transpose((2, 0, 1)))
        return data


@TRANSFORMS.register()
class KeepKeys:
    """Turn the sample dict into the list ``[data[k] for k in keep_keys]`` (the dataset output)."""

    def __init__(self, keep_keys: list[str]) -> None:
        self.keep_keys = list(keep_keys)

    def __call__(self, data: dict[str, Any]) -> list[Any]:
        missing = [k for k in self.keep_keys if k not in data]
        if missing:
            raise ConfigError(
                f"KeepKeys: key(s) {missing} not produced by the earlier transforms "
                f"(available: {sorted(data)})", "KeepKeys.keep_keys"
            )
        return [data[k] for k in self.keep_keys]


__all__ = ["DecodeImage", "KeepKeys", "NormalizeImage", "ToCHWImage", "parse_scale"]
