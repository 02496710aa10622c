"""EAST post-processing (PaddleOCR ``east_postprocess.py``) on whole arrays.

Pipeline per image: pixels with score > ``score_thresh`` each propose a quad (``4 * (x, y) - geo``,
held in float32 as PaddleOCR's proposals are), scanned in row order; consecutive proposals
overlapping by IoU > ``nms_thresh`` are merged with score weights (locality-aware), then a
standard NMS (both in :mod:`ocr_core.postprocess.east_nms`, no lanms); each survivor is re-scored
by the mean score inside it and dropped unless above ``cover_thresh``; quads are mapped back to the
source image and clipped to it, ordered from the top-left vertex clockwise, and those with an edge
under 5 px are dropped.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ocr_core.postprocess import POSTPROCESS
from ocr_core.postprocess.east_nms import nms_locality, quad_iou, standard_nms, weighted_merge

__all__ = ["EASTPostProcess", "nms_locality", "quad_iou", "sort_poly", "sort_polys", "standard_nms",
           "weighted_merge"]


def sort_poly(p: np.ndarray) -> np.ndarray:
    """Start at the vertex with the smallest x + y; go along the more horizontal edge first."""
    return sort_polys(p[None])[0]


def sort_polys(quads: np.ndarray) -> np.ndarray:
    """:func:`sort_poly` for ``[N, 4, 2]`` integer quads at once."""
    first = np.argmin(quads.sum(axis=2), axis=1)
    p = np.take_along_axis(quads, ((first[:, None] + np.arange(4)) % 4)[:, :, None], axis=1)
    edge = np.abs(p[:, 0] - p[:, 1])
    horizontal = edge[:, 0] > edge[:, 1]
    return np.where(horizontal[:, None, None], p, p[:, [0, 3, 2, 1]])


@POSTPROCESS.register()
class EASTPostProcess:
    """Score/geometry maps -> quads.

    Args:
        score_thresh: Pixels scoring above this propose a quad.
        cover_thresh: Minimum mean score inside a kept quad.
        nms_thresh: IoU above which quads are merged / suppressed.
    """

    def __init__(self, score_thresh: float = 0.8, cover_thresh: float = 0.1, nms_thresh: float = 0.2) -> None:
        self.score_thresh = score_thresh
        self.cover_thresh = cover_thresh
        self.nms_thresh = nms_thresh

    def detect(self, score_map: np.ndarray, geo_map: np.ndarray) -> np.ndarray:
        """One image: score [1,h,w], geo [8,h,w] -> [N, 9] quads (input-image pixels) + cover score."""
        score = np.ascontiguousarray(score_map[0], np.float32)
        ys, xs = np.nonzero(score > self.score_thresh)  # row-major: sorted by y, then x
        if len(ys) == 0:
            return np.zeros((0, 9), np.float64)
        boxes = np.zeros((len(ys), 9), np.float32)
        boxes[:, 0:8:2] = (xs * 4)[:, None] - geo_map[0:8:2, ys, xs].T
        boxes[:, 1:8:2] = (ys * 4)[:, None] - geo_map[1:8:2, ys, xs].T
        boxes[:, 8] = score[ys, xs]
        boxes = nms_locality(boxes.astype(np.float64), self.nms_thresh)
        if boxes.shape[0] == 0:
            return boxes
        boxes[:, 8] = _cover_scores(score, boxes)
        return boxes[boxes[:, 8] > self.cover_thresh]

    def __call__(self, preds: Any, shape_list: Any) -> list[dict[str, Any]]:
        if isinstance(preds, dict) and "f_score" in preds:
            score_all, geo_all = _np(preds["f_score"]), _np(preds["f_geo"])
        else:  # export form: [B, 9, h, w] = score + 8 geometry channels
            maps = _np(preds["maps"] if isinstance(preds, dict) else preds)
            score_all, geo_all = maps[:, :1], maps[:, 1:9]
        shapes = np.asarray(shape_list, np.float64).reshape(-1, 4)
        results = []
        for i in range(len(shapes)):
            boxes = self.detect(score_all[i], geo_all[i])
            src_h, src_w, ratio_h, ratio_w = shapes[i]
            quads = boxes[:, :8].reshape(-1, 4, 2) / [ratio_w, ratio_h]
            quads = np.clip(quads, 0, [src_w - 1, src_h - 1])
            quads = sort_polys(quads.astype(np.int32))
            sides = quads[:, [1, 3]].astype(np.int64) - quads[:, :1]
            keep = ((sides ** 2).sum(axis=2) >= 25).all(axis=1)  # both edges from vertex 0 at least 5 px
            results.append({"points": np.ascontiguousarray(quads[keep], np.int32).reshape(-1, 4, 2),
                            "scores": boxes[keep, 8].astype(np.float32)})
        return results


def _cover_scores(score: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mean score inside each quad drawn at map scale (``int32(coords) // 4``), as ``cv2.mean``
    over a full-size mask gives it, computed on the quad's bounding-box crop."""
    h, w = score.shape
    pts = boxes[:, :8].reshape(-1, 4, 2).astype(np.int32) // 4
    lo = np.clip(pts.min(axis=1), 0, [w - 1, h - 1]).astype(np.int32)
    hi = np.clip(pts.max(axis=1) + 1, 1, [w, h]).astype(np.int32)
    out = np.zeros(len(boxes))
    for i in range(len(boxes)):
        (x0, y0), (x1, y1) = lo[i], hi[i]
        if x1 <= x0 or y1 <= y0:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [pts[i] - lo[i]], 1)
        out[i] = cv2.mean(score[y0:y1, x0:x1], mask)[0]
    return out


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, np.float32)
