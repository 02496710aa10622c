"""PaddleOCR's inference-side box clean-up (``TextDetector.filter_tag_det_res`` in predict_det).

After DB/EAST post-processing, PaddleOCR's ``tools/infer/predict_det.py`` re-orders each quad's
corners (top-left first, clockwise, chosen by coordinate sum and difference), clips every corner
into the image (truncating to whole pixels) and drops quads whose first edge or left edge is
3 px or shorter. Polygon output (``det_box_type poly``) is only clipped. Our predictors do the
same so that exported models report the boxes PaddleOCR's inference reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MIN_SIDE = 3  # a quad with an edge of this length or less is dropped


def order_points_clockwise(pts: np.ndarray) -> np.ndarray:
    """Quad corners as (TL, TR, BR, BL): TL/BR have the smallest/largest x+y, TR/BL the
    smallest/largest y-x of the remaining two."""
    pts = np.asarray(pts, dtype=np.float32).reshape(4, 2)
    s = pts.sum(axis=1)
    first, last = int(np.argmin(s)), int(np.argmax(s))
    rest = np.delete(pts, (first, last), axis=0)
    diff = (rest[:, 1] - rest[:, 0])
    out = np.zeros((4, 2), dtype=np.float32)
    out[0], out[2] = pts[first], pts[last]
    out[1], out[3] = rest[int(np.argmin(diff))], rest[int(np.argmax(diff))]
    return out


def clip_points(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Each point clamped into ``[0, width-1] x [0, height-1]`` and truncated toward zero."""
    pts = np.asarray(points, dtype=np.float32).copy()
    pts[:, 0] = np.trunc(np.clip(pts[:, 0], 0, width - 1))
    pts[:, 1] = np.trunc(np.clip(pts[:, 1], 0, height - 1))
    return pts


def filter_quads(boxes: Sequence[Any], image_shape: Sequence[int]) -> np.ndarray:
    """Ordered, clipped quads without the degenerate ones: float32 ``[M, 4, 2]``."""
    h, w = int(image_shape[0]), int(image_shape[1])
    kept = []
    for box in boxes:
        quad = clip_points(order_points_clockwise(np.asarray(box)), h, w)
        width = int(np.linalg.norm(quad[0] - quad[1]))
        height = int(np.linalg.norm(quad[0] - quad[3]))
        if width <= MIN_SIDE or height <= MIN_SIDE:
            continue
        kept.append(quad)
    return np.asarray(kept, dtype=np.float32).reshape(-1, 4, 2)


def filter_det_result(result: dict[str, Any], image_shape: Sequence[int], box_type: str = "quad") -> dict[str, Any]:
    """Apply PaddleOCR's filter to one post-processed result ``{"points", "scores"}``.

    Scores follow their boxes. ``box_type`` ``"poly"`` (or non-quad points) only clips.
    """
    points = list(result.get("points", []))
    scores = list(result.get("scores", [])) or [None] * len(points)
    h, w = int(image_shape[0]), int(image_shape[1])
    if box_type == "poly" or any(np.asarray(p).shape != (4, 2) for p in points):
        return {"points": [clip_points(np.asarray(p).reshape(-1, 2), h, w) for p in points],
                "scores": np.asarray([s for s in scores if s is not None], dtype=np.float32)}
    kept_pts, kept_scores = [], []
    for box, score in zip(points, scores):
        quad = filter_quads([box], (h, w))
        if len(quad):
            kept_pts.append(quad[0])
            kept_scores.append(score)
    return {"points": np.asarray(kept_pts, dtype=np.float32).reshape(-1, 4, 2),
            "scores": np.asarray([s for s in kept_scores if s is not None], dtype=np.float32)}


__all__ = ["clip_points", "filter_det_result", "filter_quads", "order_points_clockwise"]
