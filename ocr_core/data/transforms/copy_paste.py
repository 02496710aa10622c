"""CopyPaste: paste text instances cut from a second image into free space of this one.

Follows PaddleOCR's ``copy_paste.py``: ``max(1, min(int(ratio * n_ext), 30))`` care boxes of the
extra image are rectified (perspective crop, turned upright when tall), rotated by a random whole
angle in [0, 360) with the canvas expanded, and pasted where their bounding box meets no existing
polygon (50 tries, when ``limit_paste``). Polygons are clipped to the image at the end.

The dataset provides ``data["ext_data"]``: ``ext_data_num`` extra samples already decoded and
label-encoded, with 4-point polygons. Randomness comes from numpy's global RNG (or ``rng``).

Differences from PaddleOCR, where it is broken: its overlap test passes the box's right edge as
the rectangle's left edge (so overlaps were missed); paste positions are drawn for the rotated
(expanded) patch so it stays inside the image; ``texts`` gets the pasted transcriptions so it
stays aligned with ``polys``.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ocr_core.data import TRANSFORMS
from ocr_core.data.transforms.det_crop import is_poly_outside_rect

_MAX_PASTE = 30
_PLACE_TRIES = 50


def get_rotate_crop_image(img: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Rectify the quad ``points`` (tl, tr, br, bl) of ``img``; turn it upright if tall (h/w >= 1.5)."""
    pts = np.asarray(points, dtype=np.float32)
    crop_w = int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3])))
    crop_h = int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2])))
    if crop_w < 1 or crop_h < 1:
        return np.zeros((0, 0, *img.shape[2:]), dtype=img.dtype)
    dst = np.array([[0, 0], [crop_w, 0], [crop_w, crop_h], [0, crop_h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(pts, dst)
    out = cv2.warpPerspective(
        img, m, (crop_w, crop_h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if out.shape[0] / out.shape[1] >= 1.5:
        out = np.ascontiguousarray(np.rot90(out))
    return out


def rotate_patch(patch: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotate ``patch`` by ``angle`` degrees (counter-clockwise) on an expanded canvas.

    Returns:
        The rotated patch, its coverage mask (uint8, 1 inside the patch) and the patch's corner
        quad in the rotated canvas (float32 [4, 2], clockwise from the original top-left).
    """
    h, w = patch.shape[:2]
    rad = np.deg2rad(angle)
    nw = abs(np.sin(rad) * h) + abs(np.cos(rad) * w)
    nh = abs(np.cos(rad) * h) + abs(np.sin(rad) * w)
    m = cv2.getRotationMatrix2D((w * 0.5, h * 0.5), angle, 1.0)
    m[0, 2] += (nw - w) * 0.5
    m[1, 2] += (nh - h) * 0.5
    out_w, out_h = int(np.ceil(nw)), int(np.ceil(nh))
    rotated = cv2.warpAffine(patch, m, (out_w, out_h), flags=cv2.INTER_LINEAR)
    if patch.ndim == 3 and rotated.ndim == 2:
        rotated = rotated[:, :, None]
    mask = cv2.warpAffine(np.ones((h, w), np.uint8), m, (out_w, out_h), flags=cv2.INTER_NEAREST)
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], dtype=np.float64)
    quad = (corners @ m.T).astype(np.float32)
    return rotated, mask, quad


def _pad_points(polys: np.ndarray, k: int) -> np.ndarray:
    if polys.shape[1] >= k:
        return polys
    pad = np.repeat(polys[:, -1:, :], k - polys.shape[1], axis=1)
    return np.concatenate([polys, pad], axis=1)


@TRANSFORMS.register()
class CopyPaste:
    """Paste care text instances from ``data["ext_data"][0]`` into the image.

    Args:
        objects_paste_ratio: Fraction of the extra image's boxes to paste (at least 1, at most 30).
        limit_paste: Only paste where the patch's bounding box touches no existing polygon.
    """

    def __init__(self, objects_paste_ratio: float = 0.2, limit_paste: bool = True) -> None:
        self.ext_data_num = 1
        self.objects_paste_ratio = objects_paste_ratio
        self.limit_paste = limit_paste
        # Optional explicit numpy Generator; None means numpy's global RNG.
        self.rng: np.random.Generator | None = None

    def _randint(self, lo: int, hi_inclusive: int) -> int:
        if self.rng is not None:
            return int(self.rng.integers(lo, hi_inclusive + 1))
        return int(np.random.randint(lo, hi_inclusive + 1))

    def __call__(self, data: dict[str, Any]) -> dict[str, Any] | None:
        ext_list = data.get("ext_data")
        if not ext_list:
            return data
        ext = ext_list[0]
        ext_polys = np.asarray(ext["polys"], dtype=np.float32)
        ext_tags = np.asarray(ext["ignore_tags"], dtype=bool)
        ext_texts = list(ext.get("texts", [""] * len(ext_polys)))
        if ext_polys.ndim != 3 or ext_polys.shape[1] != 4 or len(ext_polys) == 0:
            return data  # the dataset only supplies 4-point extras; anything else is skipped

        care = [i for i in range(len(ext_polys)) if not ext_tags[i]]
        select_num = max(1, min(int(self.objects_paste_ratio * len(ext_polys)), _MAX_PASTE))
        rng = self.rng if self.rng is not None else np.random
        order = rng.permutation(len(care)) if care else []
        chosen = [care[int(j)] for j in order][:select_num]

        img = data["image"].copy()
        src_polys = [p for p in np.asarray(data["polys"], dtype=np.float32)]
        src_tags = [bool(t) for t in np.asarray(data["ignore_tags"], dtype=bool)]
        src_texts = list(data.get("texts", [""] * len(src_polys)))
        for i in chosen:
            patch = get_rotate_crop_image(ext["image"], ext_polys[i])
            quad = self._paste(img, patch, src_polys)
            if quad is not None:
                src_polys.append(quad)
                src_tags.append(bool(ext_tags[i]))
                src_texts.append(ext_texts[i])

        h, w = img.shape[:2]
        k = max([len(p) for p in src_polys] + [4])
        if src_polys:
            polys = np.stack([_pad_points(p[None], k)[0] for p in src_polys])
        else:
            polys = np.zeros((0, k, 2), dtype=np.float32)
        polys[:, :, 0] = np.clip(polys[:, :, 0], 0, w)
        polys[:, :, 1] = np.clip(polys[:, :, 1], 0, h)
        data["image"] = img
        data["polys"] = polys.astype(np.float32)
        data["ignore_tags"] = np.array(src_tags, dtype=bool)
        data["texts"] = src_texts
        return data

    def _paste(self, img: np.ndarray, patch: np.ndarray, src_polys: list[np.ndarray]) -> np.ndarray | None:
        """Paste ``patch`` (rotated randomly) into ``img`` in place; return its quad or None."""
        src_h, src_w = img.shape[:2]
        if patch.size == 0 or patch.shape[1] > src_w or patch.shape[0] > src_h:
            return None
        angle = self._randint(0, 359)
        rotated, mask, quad = rotate_patch(patch, angle)
        rh, rw = rotated.shape[:2]
        if rw > src_w or rh > src_h:
            return None
        pos = self._select_coord(src_polys, quad, src_w - rw, src_h - rh)
        if pos is None:
            return None
        px, py = pos
        region = img[py : py + rh, px : px + rw]
        region[mask > 0] = rotated[mask > 0]
        return quad + np.array([px, py], dtype=np.float32)

    def _select_coord(
        self, src_polys: list[np.ndarray], quad: np.ndarray, end_x: int, end_y: int
    ) -> tuple[int, int] | None:
        if not self.limit_paste:
            return self._randint(0, end_x), self._randint(0, end_y)
        x0, y0 = quad.min(axis=0)
        x1, y1 = quad.max(axis=0)
        for _ in range(_PLACE_TRIES):
            px, py = self._randint(0, end_x), self._randint(0, end_y)
            rect = (x0 + px, y0 + py, x1 - x0, y1 - y0)
            if all(is_poly_outside_rect(p, *rect) for p in src_polys):
                return px, py
        return None
