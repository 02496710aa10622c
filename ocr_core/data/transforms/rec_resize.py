"""Recognition resize + normalisation (PaddleOCR ``RecResizeImg`` / ``resize_norm_img``).

The pure functions here are shared by the training transforms and the ONNX/TensorRT predictors,
so a crop is preprocessed identically everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import cv2
import numpy as np

from ocr_core.data import TRANSFORMS
from ocr_core.errors import ConfigError


def _normalize_chw(resized: np.ndarray, channels: int) -> np.ndarray:
    """uint8 HWC (or HW) BGR -> float32 CHW in [-1, 1]: (x / 255 - 0.5) / 0.5."""
    img: np.ndarray = resized.astype(np.float32)
    if channels == 1:
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        img = img[np.newaxis, :, :]
    else:
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], channels, axis=2)
        img = img.transpose(2, 0, 1)
    return (img / 255.0 - 0.5) / 0.5


def _fit_width(h: int, w: int, img_h: int, img_w: int) -> int:
    # w' = ceil(H * w / h), capped at W (PaddleOCR computes the ratio in float64).
    return min(int(math.ceil(img_h * (w / float(h)))), img_w)


def resize_norm_img(
    img: np.ndarray, image_shape: Sequence[int], padding: bool = True
) -> tuple[np.ndarray, float]:
    """Resize a text crop to height H keeping its aspect ratio, normalise, right-pad with zeros.

    Args:
        img: HWC uint8 BGR image (HW for grey).
        image_shape: ``[C, H, W]`` of the output.
        padding: If False, stretch to exactly ``W`` instead of keeping the aspect ratio.

    Returns:
        ``(chw, valid_ratio)``: float32 ``[C, H, W]`` with values ``(x/255 - 0.5)/0.5`` in the
        first ``w'`` columns and 0 after, and ``valid_ratio = min(1, w'/W)``.
    """
    img_c, img_h, img_w = (int(v) for v in image_shape)
    h, w = img.shape[:2]
    resized_w = img_w if not padding else _fit_width(h, w, img_h, img_w)
    resized = cv2.resize(img, (resized_w, img_h), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((img_c, img_h, img_w), dtype=np.float32)
    out[:, :, :resized_w] = _normalize_chw(resized, img_c)
    return out, min(1.0, float(resized_w / img_w))


def resize_norm_img_chinese(img: np.ndarray, image_shape: Sequence[int]) -> tuple[np.ndarray, float]:
    """Like :func:`resize_norm_img`, but the output width grows to fit wide crops.

    The output width is ``int(H * max(W / H, w / h))``, so nothing is squeezed (PaddleOCR's
    eval/infer path for PP-OCR models).
    """
    img_c, img_h, img_w = (int(v) for v in image_shape)
    h, w = img.shape[:2]
    ratio = w * 1.0 / h
    out_w = int(img_h * max(img_w * 1.0 / img_h, ratio))
    resized_w = _fit_width(h, w, img_h, out_w)
    resized = cv2.resize(img, (resized_w, img_h), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((img_c, img_h, out_w), dtype=np.float32)
    out[:, :, :resized_w] = _normalize_chw(resized, img_c)
    return out, min(1.0, float(resized_w / out_w))


@TRANSFORMS.register()
class RecResizeImg:
    """Resize + normalise a recognition crop; sets ``image`` (float32 CHW) and ``valid_ratio``.

    Args:
        image_shape: ``[C, H, W]``, e.g. ``[3, 48, 320]``.
        infer_mode: With a ``character_dict_path``, use :func:`resize_norm_img_chinese`.
        eval_mode: Use :func:`resize_norm_img_chinese`.
        character_dict_path: Only consulted together with ``infer_mode`` (PaddleOCR semantics).
        padding: Keep the aspect ratio and right-pad (True) or stretch to ``W`` (False).
    """

    def __init__(
        self,
        image_shape: list[int],
        infer_mode: bool = False,
        eval_mode: bool = False,
        character_dict_path: Optional[str] = None,
        padding: bool = True,
    ) -> None:
        if len(image_shape) != 3:
            raise ConfigError(f"must be [C, H, W], got {image_shape}", "image_shape")
        self.image_shape = [int(v) for v in image_shape]
        self.infer_mode = infer_mode
        self.eval_mode = eval_mode
        self.character_dict_path = character_dict_path
        self.padding = padding

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        img = data["image"]
        if self.eval_mode or (self.infer_mode and self.character_dict_path is not None):
            norm, valid_ratio = resize_norm_img_chinese(img, self.image_shape)
        else:
            norm, valid_ratio = resize_norm_img(img, self.image_shape, self.padding)
        data["image"] = norm
        # float32 so that batching yields a float32 tensor, like the images.
        data["valid_ratio"] = np.float32(valid_ratio)
        return data


__all__ = ["RecResizeImg", "resize_norm_img", "resize_norm_img_chinese"]
