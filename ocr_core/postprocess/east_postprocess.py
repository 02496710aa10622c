"""EAST post-processing with locality-aware NMS (PaddleOCR ``east_postprocess.py`` and
``locality_aware_nms.py``), free of lanms and shapely: quad IoU uses OpenCV's convex-polygon
intersection, so quads are treated as convex (their convex hull), as EAST's rectangles are.

Pipeline per image: pixels with score > ``score_thresh`` each propose a quad (``4 * (x, y) - geo``),
scanned in row order; consecutive proposals overlapping by IoU > ``nms_thresh`` are merged with
score weights (locality-aware), then a standard NMS; each survivor is re-scored by the mean score
inside it and dropped below ``cover_thresh``; quads are mapped back to the source image, ordered
from the top-left vertex clockwise, and those with an edge under 5 px are dropped.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ocr_core.postprocess import POSTPROCESS


def _hull(quad: np.ndarray) -> np.ndarray:
    return cv2.convexHull(np.asarray(quad, np.float32).reshape(-1, 1, 2))


def quad_iou(g: np.ndarray, p: np.ndarray) -> float:
    """IoU of two quads (first 8 values of each row: x1, y1, ..., x4, y4)."""
    a, b = _hull(g[:8].reshape(4, 2)), _hull(p[:8].reshape(4, 2))
    area_a, area_b = abs(cv2.contourArea(a)), abs(cv2.contourArea(b))
    if area_a <= 0 or area_b <= 0:
        return 0.0
    inter, _ = cv2.intersectConvexConvex(a, b)
    inter = max(float(inter), 0.0)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def weighted_merge(g: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Score-weighted average of two quads; the merged score is the sum."""
    out = g.copy()
    out[:8] = (g[8] * g[:8] + p[8] * p[:8]) / (g[8] + p[8])
    out[8] = g[8] + p[8]
    return out


def standard_nms(boxes: np.ndarray, thresh: float) -> np.ndarray:
    """Greedy NMS on [N, 9] quads by score (column 8)."""
    order = np.argsort(boxes[:, 8])[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        ovr = np.array([quad_iou(boxes[i], boxes[t]) for t in order[1:]])
        order = order[1:][ovr <= thresh] if ovr.size else order[1:]
    return boxes[keep]


def nms_locality(polys: np.ndarray, thresh: float = 0.3) -> np.ndarray:
    """Locality-aware NMS of EAST: merge row-adjacent overlapping quads, then standard NMS."""
    merged: list[np.ndarray] = []
    p: np.ndarray | None = None
    for g in polys:
        if p is not None and quad_iou(g, p) > thresh:
            p = weighted_merge(g, p)
        else:
            if p is not None:
                merged.append(p)
            p = g
    if p is not None:
        merged.append(p)
    if not merged:
        return np.zeros((0, 9), np.float64)
    return standard_nms(np.array(merged), thresh)


def sort_poly(p: np.ndarray) -> np.ndarray:
    """Start at the vertex with the smallest x + y; go along the more horizontal edge first."""
    i = int(np.argmin(p.sum(axis=1)))
    p = p[[i, (i + 1) % 4, (i + 2) % 4, (i + 3) % 4]]
    if abs(p[0, 0] - p[1, 0]) > abs(p[0, 1] - p[1, 1]):
        return p
    return p[[0, 3, 2, 1]]


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
        score = score_map[0]
        geo = np.transpose(geo_map, (1, 2, 0))
        yx = np.argwhere(score > self.score_thresh)
        if len(yx) == 0:
            return np.zeros((0, 9), np.float64)
        yx = yx[np.argsort(yx[:, 0], kind="stable")]
        origin = np.tile(yx[:, ::-1] * 4, (1, 4)).astype(np.float64)
        boxes = np.zeros((len(yx), 9), np.float64)
        boxes[:, :8] = origin - geo[yx[:, 0], yx[:, 1], :8]
        boxes[:, 8] = score[yx[:, 0], yx[:, 1]]
        boxes = nms_locality(boxes, self.nms_thresh)
        if boxes.shape[0] == 0:
            return boxes
        for i, box in enumerate(boxes):
            mask = np.zeros(score.shape, np.uint8)
            cv2.fillPoly(mask, box[:8].reshape(-1, 4, 2).astype(np.int32) // 4, 1)
            boxes[i, 8] = cv2.mean(score.astype(np.float32), mask)[0]
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
            polys, scores = [], []
            for box in boxes:
                quad = box[:8].reshape(4, 2).copy()
                quad[:, 0] = np.clip(quad[:, 0] / ratio_w, 0, src_w - 1)
                quad[:, 1] = np.clip(quad[:, 1] / ratio_h, 0, src_h - 1)
                quad = sort_poly(quad.astype(np.int32))
                if np.linalg.norm(quad[0] - quad[1]) < 5 or np.linalg.norm(quad[3] - quad[0]) < 5:
                    continue
                polys.append(quad)
                scores.append(float(box[8]))
            results.append({"points": np.array(polys, np.int32).reshape(-1, 4, 2),
                            "scores": np.array(scores, np.float32)})
        return results


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, np.float32)
