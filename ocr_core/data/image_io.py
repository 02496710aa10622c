"""Image decoding with a pixel limit read from the header first (no decompression bombs).

A 1 MB PNG or an 11 KB JPEG may declare 20000 x 20000 pixels: decoded, that is 1.2 GB of BGR per
copy, and the augmentations make several. Every place OCRFlow decodes an image asks
:func:`decode` (or :func:`check_pixels` on a file), which reads only the header (Pillow, lazily)
and refuses images above :func:`max_pixels`: ``OCRFLOW_MAX_IMAGE_PIXELS`` (default 40 MP, about
7300 x 5500; 0 turns the check off), which the image verbs' ``--max-image-pixels`` sets for one run. Formats Pillow cannot identify go to OpenCV unchecked.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

DEFAULT_MAX_PIXELS = 40_000_000
ENV = "OCRFLOW_MAX_IMAGE_PIXELS"


class ImageTooLarge(ValueError):
    """The image's header declares more pixels than the limit allows."""

    def __init__(self, width: int, height: int, limit: int, where: str = "") -> None:
        self.width, self.height, self.limit = width, height, limit
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}image is {width}x{height} = {width * height / 1e6:.1f} MP, above the "
                         f"{limit / 1e6:g} MP limit (--max-image-pixels / {ENV}; 0 disables the check)")


def max_pixels() -> int:
    """The current limit (``OCRFLOW_MAX_IMAGE_PIXELS``, default 40 MP; 0 = no limit)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        return max(0, int(float(raw)))
    except ValueError:
        raise ValueError(f"{ENV} must be a number of pixels, got {raw!r}") from None


def header_size(data: Union[bytes, bytearray, memoryview, str, Path]) -> Optional[tuple[int, int]]:
    """``(width, height)`` from the header only, or None when Pillow cannot identify the format."""
    from PIL import Image

    src = io.BytesIO(bytes(data)) if isinstance(data, (bytes, bytearray, memoryview)) else str(data)
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # Pillow's own bomb check raises without the size: we decide
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(src) as im:
                return int(im.size[0]), int(im.size[1])
    except Exception:  # noqa: BLE001 - unknown format or a truncated header: OpenCV decides
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def check_pixels(data: Union[bytes, bytearray, memoryview, str, Path], where: str = "") -> None:
    """Raise :class:`ImageTooLarge` when the header declares more than :func:`max_pixels`."""
    limit = max_pixels()
    if not limit:
        return
    size = header_size(data)
    if size is not None and size[0] * size[1] > limit:
        raise ImageTooLarge(size[0], size[1], limit, where)


def decode(data: Union[bytes, bytearray, memoryview, np.ndarray], flag: int = cv2.IMREAD_COLOR,
           where: str = "") -> Optional[np.ndarray]:
    """``cv2.imdecode`` after the header check; None when OpenCV cannot decode it."""
    raw = data.tobytes() if isinstance(data, np.ndarray) else data
    if len(raw) == 0:
        return None
    check_pixels(raw, where)
    buf = data if isinstance(data, np.ndarray) else np.frombuffer(raw, dtype=np.uint8)
    return cv2.imdecode(buf, flag)


def read(path: Union[str, Path], flag: int = cv2.IMREAD_COLOR) -> Optional[np.ndarray]:
    """Decode a file (any path, unicode included) after the header check; None if undecodable."""
    return decode(np.fromfile(str(path), dtype=np.uint8), flag, where=str(path))


__all__ = ["DEFAULT_MAX_PIXELS", "ENV", "ImageTooLarge", "check_pixels", "decode", "header_size", "max_pixels",
           "read"]
