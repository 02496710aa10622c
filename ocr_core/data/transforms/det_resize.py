"""DetResizeForTest: resize an eval/inference image to network-friendly sides.

Follows PaddleOCR's ``operators.py``. The first matching key picks the mode:

- ``image_shape: [H, W]`` (type 1): that fixed size; with ``keep_ratio`` the width becomes
  ``ceil(W_src * H / H_src / 32) * 32``.
- ``limit_side_len`` (type 0) with ``limit_type``: ``"min"`` scales up so the short side reaches
  the limit, ``"max"`` scales down so the long side fits, ``"resize_long"`` scales the long side to
  the limit; each side is then rounded to the nearest multiple of 32 (at least 32).
- ``resize_long`` (type 2): the long side scaled to ``resize_long``, each side rounded up to a
  multiple of 128.
- nothing: type 0 with ``limit_side_len`` 736 and ``limit_type`` "min" (a lone ``limit_type``
  is honoured here; PaddleOCR ignores it without ``limit_side_len``).

Images with ``h + w < 64`` are first zero-padded (bottom/right) to at least 32 per side.
``data["shape"] = [src_h, src_w, ratio_h, ratio_w]`` (float32) with the source size before padding.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from ocr_core.data import TRANSFORMS
from ocr_core.errors import ConfigError

DEFAULT_LIMIT_SIDE_LEN = 736
DEFAULT_LIMIT_TYPE = "min"
LIMIT_TYPES = ("min", "max", "resize_long")


def pad_small_image(img: np.ndarray) -> np.ndarray:
    """Zero-pad (bottom/right) an image with ``h + w < 64`` to at least 32x32; others unchanged."""
    h, w = img.shape[:2]
    if h + w >= 64:
        return img
    out = np.zeros((max(32, h), max(32, w), *img.shape[2:]), dtype=img.dtype)
    out[:h, :w] = img
    return out


def _round32(v: float) -> int:
    # Python's round (half to even) on purpose: it is what PaddleOCR uses.
    return max(int(round(v / 32) * 32), 32)


def det_resize_params(
    h: int,
    w: int,
    limit_side_len: int | None = None,
    limit_type: str | None = None,
    image_shape: list[int] | None = None,
    keep_ratio: bool = False,
    resize_long: int | None = None,
) -> tuple[int, int]:
    """Target ``(new_h, new_w)`` for an ``h x w`` image (already padded by :func:`pad_small_image`).

    Arguments mean what they mean for :class:`DetResizeForTest`; the precedence is
    ``image_shape`` > ``limit_side_len`` > ``resize_long`` > defaults (736, "min").
    """
    if image_shape is not None:
        new_h, new_w = int(image_shape[0]), image_shape[1]
        if keep_ratio:
            new_w = math.ceil(w * new_h / h / 32) * 32
        return new_h, int(new_w)
    if limit_side_len is None and resize_long is not None:
        ratio = float(resize_long) / max(h, w)
        new_h, new_w = int(h * ratio), int(w * ratio)
        stride = 128
        return max(stride, -(-new_h // stride) * stride), max(stride, -(-new_w // stride) * stride)

    limit = DEFAULT_LIMIT_SIDE_LEN if limit_side_len is None else limit_side_len
    kind = DEFAULT_LIMIT_TYPE if limit_type is None else limit_type
    if kind == "max":
        ratio = float(limit) / max(h, w) if max(h, w) > limit else 1.0
    elif kind == "min":
        ratio = float(limit) / min(h, w) if min(h, w) < limit else 1.0
    elif kind == "resize_long":
        ratio = float(limit) / max(h, w)
    else:
        raise ConfigError(f"limit_type must be one of {', '.join(LIMIT_TYPES)}, got {kind!r}", "limit_type")
    return _round32(int(h * ratio)), _round32(int(w * ratio))


@TRANSFORMS.register()
class DetResizeForTest:
    """Resize ``image`` for detection eval/inference and record ``shape``.

    Args:
        limit_side_len: Side limit for type 0 (default 736 when no mode is configured).
        limit_type: ``"min"`` (default), ``"max"`` or ``"resize_long"``.
        image_shape: Fixed ``[H, W]`` (type 1).
        keep_ratio: With ``image_shape``, derive the width from the aspect ratio (ceil to 32).
        resize_long: Long-side target for type 2 (sides rounded up to multiples of 128).
    """

    def __init__(
        self,
        limit_side_len: int | None = None,
        limit_type: str | None = None,
        image_shape: list[int] | None = None,
        keep_ratio: bool = False,
        resize_long: int | None = None,
    ) -> None:
        if limit_type is not None and limit_type not in LIMIT_TYPES:
            raise ConfigError(
                f"limit_type must be one of {', '.join(LIMIT_TYPES)}, got {limit_type!r}", "limit_type"
            )
        if image_shape is not None and len(image_shape) != 2:
            raise ConfigError(f"image_shape must be [H, W], got {image_shape!r}", "image_shape")
        self.limit_side_len = limit_side_len
        self.limit_type = limit_type
        self.image_shape = list(image_shape) if image_shape is not None else None
        self.keep_ratio = keep_ratio
        self.resize_long = resize_long

    def __call__(self, data: dict[str, Any]) -> dict[str, Any] | None:
        img = data["image"]
        src_h, src_w = img.shape[:2]
        img = pad_small_image(img)
        h, w = img.shape[:2]
        new_h, new_w = det_resize_params(
            h,
            w,
            limit_side_len=self.limit_side_len,
            limit_type=self.limit_type,
            image_shape=self.image_shape,
            keep_ratio=self.keep_ratio,
            resize_long=self.resize_long,
        )
        resized = cv2.resize(img, (new_w, new_h))
        if img.ndim == 3 and resized.ndim == 2:
            resized = resized[:, :, None]
        data["image"] = resized
        data["shape"] = np.array([src_h, src_w, new_h / h, new_w / w], dtype=np.float32)
        return data
