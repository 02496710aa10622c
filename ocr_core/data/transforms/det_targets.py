"""DB training targets: threshold (border) map and shrink (probability) map.

Both follow PaddleOCR's ``make_border_map.py`` / ``make_shrink_map.py`` (from DBNet). For a
polygon with area ``A`` and perimeter ``L`` the offset distance is ``D = A * (1 - r**2) / L``
(``r`` = shrink_ratio) and polygons are offset with pyclipper (``JT_ROUND``, closed polygon).
Pixel ``(row i, col j)`` sits at coordinate ``(x=j, y=i)``.

In a config, MakeBorderMap comes before MakeShrinkMap: the border map is drawn from the
unclipped polygons, and MakeShrinkMap then clips polygons to the image and tags small text
ignore (it writes the clipped ``polys`` and updated ``ignore_tags`` back, as PaddleOCR does by
editing its arrays in place).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pyclipper
from shapely.geometry import Polygon

from ocr_core.data import TRANSFORMS


def _scheduled_ratio(shrink_ratio: float, total_epoch: int | None, epoch: int | None) -> float:
    # PaddleOCR's optional schedule: grows the ratio by up to 0.2 over training.
    if total_epoch is not None and epoch is not None:
        return shrink_ratio + 0.2 * epoch / float(total_epoch)
    return shrink_ratio


def offset_polygon(poly: np.ndarray, distance: float) -> list[np.ndarray]:
    """Offset a closed polygon by ``distance`` (> 0 grows, < 0 shrinks), round joins.

    Returns:
        The resulting pieces as int64 ``[M, 2]`` arrays (pyclipper works on integer coordinates).
    """
    pco = pyclipper.PyclipperOffset()
    pco.AddPath([tuple(p) for p in np.asarray(poly, dtype=np.float64).tolist()],
                pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return [np.asarray(piece, dtype=np.int64).reshape(-1, 2) for piece in pco.Execute(distance)]


def edge_distance_map(poly: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """Distance from every pixel of the window ``[x0, x0+w) x [y0, y0+h)`` to the polygon outline.

    Uses PaddleOCR's per-edge rule (written from its law-of-cosines form): for an edge ``AB`` and
    a pixel ``P``, when the angle at ``P`` is acute (``PA . PB > 0``) the distance is
    ``min(|PA|, |PB|)``, otherwise the distance to the line ``AB``. This equals the exact
    point-to-segment distance except for points far from a short edge (``d**2 > a*b`` with
    ``a + b = |AB|`` the foot's offsets), where it is slightly larger; it never underestimates.
    Zero-length edges (padded points) give the distance to the point.

    Returns:
        float32 ``[h, w]``: the minimum over edges.
    """
    p = np.asarray(poly, dtype=np.float32) - np.array([x0, y0], dtype=np.float32)
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    best = np.full((h, w), np.inf, dtype=np.float32)
    n = len(p)
    for i in range(n):
        ax, ay = p[i]
        bx, by = p[(i + 1) % n]
        pax, pay = ax - xs, ay - ys  # vector P->A: [1, w] and [h, 1]
        pbx, pby = bx - xs, by - ys
        d1 = pax * pax + pay * pay
        d2 = pbx * pbx + pby * pby
        dot = pax * pbx + pay * pby
        seg = max(float(np.hypot(bx - ax, by - ay)), 1e-12)
        line = np.abs(pax * pby - pay * pbx) / np.float32(seg)
        dist = np.where(dot > 0, np.sqrt(np.minimum(d1, d2)), line)
        np.minimum(best, dist, out=best)
    return best


def _offset_distance(poly: np.ndarray, ratio: float) -> float:
    shape = Polygon(poly)
    if shape.length <= 0:
        return 0.0
    return float(shape.area * (1.0 - ratio**2) / shape.length)


@TRANSFORMS.register()
class MakeBorderMap:
    """Threshold map: ``thresh_min + (thresh_max - thresh_min) * (1 - dist / D)`` near each outline.

    For every care polygon, the polygon grown by ``D`` is filled into ``threshold_mask``; inside
    its bounding box each pixel gets ``1 - min(dist_to_outline / D, 1)``, max-combined across
    polygons. Outputs float32 ``threshold_map`` and ``threshold_mask`` of the image's ``[H, W]``.

    Args:
        shrink_ratio: ``r`` in ``D = A (1 - r^2) / L``.
        thresh_min: Map value far from text.
        thresh_max: Map value on the outline.
        total_epoch: With ``epoch``, enables PaddleOCR's ratio schedule ``r + 0.2 * epoch/total``.
        epoch: Current epoch for the schedule.
    """

    def __init__(
        self,
        shrink_ratio: float = 0.4,
        thresh_min: float = 0.3,
        thresh_max: float = 0.7,
        total_epoch: int | None = None,
        epoch: int | None = None,
    ) -> None:
        self.shrink_ratio = _scheduled_ratio(shrink_ratio, total_epoch, epoch)
        self.base_ratio, self.total_epoch = shrink_ratio, total_epoch
        self.thresh_min = thresh_min
        self.thresh_max = thresh_max

    def set_epoch(self, epoch: int) -> None:
        """Follow the training epoch (``shrink_ratio + 0.2 * epoch / total_epoch``); a no-op
        without ``total_epoch``. The dataset calls it every epoch."""
        if self.total_epoch:
            self.shrink_ratio = _scheduled_ratio(self.base_ratio, self.total_epoch, epoch)

    def __call__(self, data: dict[str, Any]) -> dict[str, Any] | None:
        h, w = data["image"].shape[:2]
        canvas = np.zeros((h, w), dtype=np.float32)
        mask = np.zeros((h, w), dtype=np.float32)
        tags = data["ignore_tags"]
        for i, poly in enumerate(data["polys"]):
            if not tags[i]:
                self.draw_border_map(np.asarray(poly, dtype=np.float64), canvas, mask)
        data["threshold_map"] = canvas * np.float32(self.thresh_max - self.thresh_min) + np.float32(
            self.thresh_min
        )
        data["threshold_mask"] = mask
        return data

    def draw_border_map(self, poly: np.ndarray, canvas: np.ndarray, mask: np.ndarray) -> None:
        """Draw one polygon into ``canvas`` (max of ``1 - dist/D``) and ``mask`` (grown polygon)."""
        shape = Polygon(poly)
        if shape.area <= 0 or shape.length <= 0:
            return
        distance = shape.area * (1 - self.shrink_ratio**2) / shape.length
        pieces = offset_polygon(poly, distance)
        if not pieces:
            return
        grown = pieces[0]
        cv2.fillPoly(mask, [grown.astype(np.int32)], 1.0)
        xmin, ymin = grown.min(axis=0)
        xmax, ymax = grown.max(axis=0)
        # Only the part of the grown bbox that lies on the canvas is computed.
        cx0, cy0 = max(int(xmin), 0), max(int(ymin), 0)
        cx1, cy1 = min(int(xmax), canvas.shape[1] - 1), min(int(ymax), canvas.shape[0] - 1)
        if cx1 < cx0 or cy1 < cy0:
            return
        dist = edge_distance_map(poly, cx0, cy0, cx1 - cx0 + 1, cy1 - cy0 + 1)
        near = 1.0 - np.clip(dist / np.float32(distance), 0.0, 1.0)
        region = canvas[cy0 : cy1 + 1, cx0 : cx1 + 1]
        np.fmax(region, near, out=region)


def signed_area(poly: np.ndarray) -> float:
    """PaddleOCR's signed shoelace area (sum of ``p.x * q.y - p.y * q.x`` with ``q`` the previous point)."""
    prev = np.roll(poly, 1, axis=0)
    return float(0.5 * np.sum(poly[:, 0] * prev[:, 1] - poly[:, 1] * prev[:, 0]))


def validate_polygons(
    polys: np.ndarray, ignore_tags: np.ndarray, h: int, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """Clip polygons to the image, tag near-zero-area ones ignore, and normalise orientation.

    Returns new arrays (the inputs are not modified).
    """
    polys = np.array(polys, dtype=np.float32, copy=True)
    tags = np.array(ignore_tags, dtype=bool, copy=True)
    if len(polys) == 0:
        return polys, tags
    polys[:, :, 0] = np.clip(polys[:, :, 0], 0, w - 1)
    polys[:, :, 1] = np.clip(polys[:, :, 1], 0, h - 1)
    for i in range(len(polys)):
        area = signed_area(polys[i])
        if abs(area) < 1:
            tags[i] = True
        if area > 0:
            polys[i] = polys[i][::-1]
    return polys, tags


@TRANSFORMS.register()
class MakeShrinkMap:
    """Shrink map: each care polygon shrunk by ``D`` filled with 1; ``shrink_mask`` zeroes ignored text.

    A polygon that is tagged ignore, has a bbox side below ``min_text_size`` after clipping, or
    vanishes when shrunk, is filled with 0 in ``shrink_mask`` and tagged ignore. When shrinking
    splits a polygon into several pieces, the ratio is raised (``arange(r, 1, r)``: 0.4 then 0.8).

    Args:
        shrink_ratio: ``r`` in ``D = A (1 - r^2) / L``.
        min_text_size: Smallest bbox side (pixels) of text that is learned.
        total_epoch: With ``epoch``, enables PaddleOCR's ratio schedule ``r + 0.2 * epoch/total``.
        epoch: Current epoch for the schedule.
    """

    def __init__(
        self,
        shrink_ratio: float = 0.4,
        min_text_size: int = 8,
        total_epoch: int | None = None,
        epoch: int | None = None,
    ) -> None:
        self.shrink_ratio = _scheduled_ratio(shrink_ratio, total_epoch, epoch)
        self.base_ratio, self.total_epoch = shrink_ratio, total_epoch
        self.min_text_size = min_text_size

    def set_epoch(self, epoch: int) -> None:
        """Follow the training epoch (``shrink_ratio + 0.2 * epoch / total_epoch``); a no-op
        without ``total_epoch``. The dataset calls it every epoch."""
        if self.total_epoch:
            self.shrink_ratio = _scheduled_ratio(self.base_ratio, self.total_epoch, epoch)

    def __call__(self, data: dict[str, Any]) -> dict[str, Any] | None:
        h, w = data["image"].shape[:2]
        polys, tags = validate_polygons(data["polys"], data["ignore_tags"], h, w)
        gt = np.zeros((h, w), dtype=np.float32)
        mask = np.ones((h, w), dtype=np.float32)
        ratios = np.arange(self.shrink_ratio, 1, self.shrink_ratio)
        for i in range(len(polys)):
            poly = polys[i]
            bw = poly[:, 0].max() - poly[:, 0].min()
            bh = poly[:, 1].max() - poly[:, 1].min()
            pieces: list[np.ndarray] = []
            if not tags[i] and min(bh, bw) >= self.min_text_size:
                for ratio in ratios:
                    pieces = offset_polygon(poly, -_offset_distance(poly, float(ratio)))
                    if len(pieces) == 1:
                        break
            if not pieces:
                cv2.fillPoly(mask, [poly.astype(np.int32)], 0.0)
                tags[i] = True
                continue
            for piece in pieces:  # one call per piece: a multi-contour fill would punch overlaps out
                cv2.fillPoly(gt, [piece.astype(np.int32)], 1.0)
        data["shrink_map"] = gt
        data["shrink_mask"] = mask
        data["polys"] = polys
        data["ignore_tags"] = tags
        return data
