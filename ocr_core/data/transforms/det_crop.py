"""EastRandomCropData: random text-preserving crop, resized onto a fixed-size canvas.

Follows PaddleOCR's ``random_crop_data.py`` (itself from DBNet). Crop edges are drawn only from
rows/columns that no care (non-ignored) polygon covers, so no such text is cut. Randomness comes
from numpy's global RNG (or the op's ``rng`` attribute when set).

Deliberate differences from PaddleOCR, all in cases where PaddleOCR is broken:

- ``int(np.random.choice(axis, size=1))`` fails on numpy >= 2.4; we draw scalars.
- Polygons that stick out past the left/top border gave negative slice starts (which wrap
  around in numpy) when marking occupied columns/rows; we clip them to the image first.
- With ``keep_ratio: false`` PaddleOCR stretches the image to ``size`` but scales the polygons
  by the keep-ratio factor; we scale them per axis so they stay on the text.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ocr_core.data import TRANSFORMS


def is_poly_outside_rect(poly: np.ndarray, x: float, y: float, w: float, h: float) -> bool:
    """True when ``poly`` lies entirely left/right/above/below the rectangle (touching is inside)."""
    p = np.asarray(poly)
    if p[:, 0].max() < x or p[:, 0].min() > x + w:
        return True
    return bool(p[:, 1].max() < y or p[:, 1].min() > y + h)


def split_regions(axis: np.ndarray) -> list[np.ndarray]:
    """Split sorted free indices into runs of consecutive values.

    As in PaddleOCR, a run is closed only when a gap follows it, so the last run is never
    returned; ``crop_area`` only uses region-wise sampling when more than one run is returned.
    Keeping this quirk keeps the crop distribution PaddleOCR's models were trained with.
    """
    breaks = np.nonzero(np.diff(axis) != 1)[0] + 1
    bounds = [0, *breaks.tolist()]
    return [axis[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]


def _random_select(rng: Any, axis: np.ndarray, max_size: int) -> tuple[int, int]:
    xx = rng.choice(axis, size=2)
    lo = int(np.clip(xx.min(), 0, max_size - 1))
    hi = int(np.clip(xx.max(), 0, max_size - 1))
    return lo, hi


def _region_wise_random_select(rng: Any, regions: list[np.ndarray]) -> tuple[int, int]:
    picks = rng.choice(len(regions), size=2)
    values = [int(rng.choice(regions[int(i)])) for i in picks]
    return min(values), max(values)


def crop_area(
    h: int,
    w: int,
    care_polys: list[np.ndarray],
    min_crop_side_ratio: float,
    max_tries: int,
    rng: Any = None,
) -> tuple[int, int, int, int]:
    """Choose a crop ``(x, y, w, h)`` whose edges cross no care polygon.

    The crop must be at least ``min_crop_side_ratio`` of each side and must not leave every care
    polygon outside; after ``max_tries`` failures the whole image is returned.
    """
    rng = np.random if rng is None else rng
    h_used = np.zeros(h, dtype=bool)
    w_used = np.zeros(w, dtype=bool)
    for poly in care_polys:
        pts = np.round(poly).astype(np.int64)
        x0, x1 = np.clip([pts[:, 0].min(), pts[:, 0].max()], 0, w)
        y0, y1 = np.clip([pts[:, 1].min(), pts[:, 1].max()], 0, h)
        w_used[x0:x1] = True
        h_used[y0:y1] = True
    h_axis = np.nonzero(~h_used)[0]
    w_axis = np.nonzero(~w_used)[0]
    if len(h_axis) == 0 or len(w_axis) == 0:
        return 0, 0, w, h
    h_regions = split_regions(h_axis)
    w_regions = split_regions(w_axis)
    for _ in range(max_tries):
        if len(w_regions) > 1:
            xmin, xmax = _region_wise_random_select(rng, w_regions)
        else:
            xmin, xmax = _random_select(rng, w_axis, w)
        if len(h_regions) > 1:
            ymin, ymax = _region_wise_random_select(rng, h_regions)
        else:
            ymin, ymax = _random_select(rng, h_axis, h)
        if xmax - xmin < min_crop_side_ratio * w or ymax - ymin < min_crop_side_ratio * h:
            continue
        if any(not is_poly_outside_rect(p, xmin, ymin, xmax - xmin, ymax - ymin) for p in care_polys):
            return xmin, ymin, xmax - xmin, ymax - ymin
    return 0, 0, w, h


@TRANSFORMS.register()
class EastRandomCropData:
    """Random crop that keeps text whole, resized into a ``size`` canvas.

    Args:
        size: Output ``[width, height]`` (default ``[640, 640]``).
        max_tries: Crop attempts before falling back to the whole image.
        min_crop_side_ratio: Minimum crop side as a fraction of the image side.
        keep_ratio: Scale by ``min(W/cw, H/ch)`` and paste at the top-left of a zero canvas;
            otherwise stretch the crop to ``size``.
    """

    def __init__(
        self,
        size: list[int] | None = None,
        max_tries: int = 10,
        min_crop_side_ratio: float = 0.1,
        keep_ratio: bool = True,
    ) -> None:
        self.size = [640, 640] if size is None else [int(s) for s in size]
        self.max_tries = max_tries
        self.min_crop_side_ratio = min_crop_side_ratio
        self.keep_ratio = keep_ratio
        # Optional explicit numpy Generator; None means numpy's global RNG.
        self.rng: np.random.Generator | None = None

    def __call__(self, data: dict[str, Any]) -> dict[str, Any] | None:
        img = data["image"]
        polys = np.asarray(data["polys"], dtype=np.float32)
        tags = np.asarray(data["ignore_tags"], dtype=bool)
        texts = list(data.get("texts", [""] * len(polys)))
        ih, iw = img.shape[:2]
        care = [polys[i] for i in range(len(polys)) if not tags[i]]
        cx, cy, cw, ch = crop_area(ih, iw, care, self.min_crop_side_ratio, self.max_tries, self.rng)

        out_w, out_h = self.size
        crop = img[cy : cy + ch, cx : cx + cw]
        if self.keep_ratio:
            scale = min(out_w / cw, out_h / ch)
            sx = sy = scale
            w, h = max(1, int(cw * scale)), max(1, int(ch * scale))
            canvas = np.zeros((out_h, out_w, *img.shape[2:]), dtype=img.dtype)
            canvas[:h, :w] = cv2.resize(crop, (w, h)).reshape(h, w, *img.shape[2:])
            img = canvas
        else:
            sx, sy = out_w / cw, out_h / ch
            w, h = out_w, out_h
            img = cv2.resize(crop, (out_w, out_h)).reshape(out_h, out_w, *img.shape[2:])

        moved = (polys - np.array([cx, cy], dtype=np.float32)) * np.array([sx, sy], dtype=np.float32)
        keep = [i for i in range(len(moved)) if not is_poly_outside_rect(moved[i], 0, 0, w, h)]
        k = polys.shape[1] if polys.ndim == 3 else 4
        data["image"] = img
        data["polys"] = moved[keep] if keep else np.zeros((0, k, 2), dtype=np.float32)
        data["ignore_tags"] = tags[keep]
        data["texts"] = [texts[i] for i in keep]
        return data
