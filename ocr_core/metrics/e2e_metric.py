"""End-to-end (det + rec) precision / recall / hmean of a whole OCR system on detection ground truth.

A prediction (``{"points": polygon, "text": str}``, what ``TextSystem`` returns per box) is a true
positive when its polygon overlaps an unmatched ground-truth box with IoU >= ``iou`` and its text
equals that box's transcription (case-insensitive, surrounding spaces ignored). ``###`` boxes are
don't-care: predictions matching them are not counted. precision = TP / counted predictions,
recall = TP / cared-for GT boxes, hmean their harmonic mean; micro-averaged over images.

Pure Python + shapely: no torch, no onnxruntime. The pipeline's system eval feeds
:class:`E2EMetric` image by image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shapely.geometry import Polygon

DONT_CARE = "###"

GroundTruth = tuple[list[list[float]], str]  # (polygon, transcription)


def polygon_iou(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float:
    """IoU of two polygons (self-intersecting ones repaired with ``buffer(0)``); 0 for empty unions."""
    pa, pb = Polygon(a).buffer(0), Polygon(b).buffer(0)
    union = pa.union(pb).area
    return float(pa.intersection(pb).area / union) if union > 0 else 0.0


def match_e2e(preds: list[dict[str, Any]], gts: list[GroundTruth], iou: float = 0.5) -> tuple[int, int, int]:
    """``(true positives, counted predictions, cared-for GT)`` for one image.

    Each prediction takes the unmatched GT box of highest IoU (>= ``iou``); one that lands on a
    don't-care box consumes it and is not counted.
    """
    used: set[int] = set()
    tp = counted = 0
    for p in preds:
        best, best_iou = -1, iou
        for i, (poly, _) in enumerate(gts):
            if i not in used and (v := polygon_iou(p["points"], poly)) >= best_iou:
                best, best_iou = i, v
        if best >= 0 and gts[best][1] == DONT_CARE:
            used.add(best)
            continue  # don't-care region
        counted += 1
        if best >= 0 and p["text"].strip().lower() == gts[best][1].strip().lower():
            used.add(best)
            tp += 1
    return tp, counted, sum(t != DONT_CARE for _, t in gts)


def prf(tp: int, n_pred: int, n_gt: int) -> dict[str, float]:
    """Precision, recall and hmean from counts (0 where a denominator is 0)."""
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gt if n_gt else 0.0
    return {"precision": p, "recall": r, "hmean": 2 * p * r / (p + r) if p + r else 0.0}


class E2EMetric:
    """Accumulates :func:`match_e2e` over images; :meth:`get_metric` gives the micro-averaged P/R/H.

    Args:
        iou: Minimum IoU between a prediction and a GT box to match.
    """

    def __init__(self, iou: float = 0.5) -> None:
        self.iou = iou
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self.tp = self.predictions = self.gt_boxes = self.images = 0

    def update(self, preds: list[dict[str, Any]], gts: list[GroundTruth]) -> None:
        """Add one image: the system's predictions and the image's ``(polygon, text)`` ground truth."""
        tp, counted, cared = match_e2e(preds, gts, self.iou)
        self.tp += tp
        self.predictions += counted
        self.gt_boxes += cared
        self.images += 1

    def counters(self) -> dict[str, int]:
        """Summable state (e.g. to combine shards)."""
        return {"tp": self.tp, "predictions": self.predictions, "gt_boxes": self.gt_boxes, "images": self.images}

    def get_metric(self) -> dict[str, float]:
        """``precision``, ``recall``, ``hmean`` plus the ``images``, ``gt_boxes`` and ``predictions`` counted."""
        return {**prf(self.tp, self.predictions, self.gt_boxes), "images": float(self.images),
                "gt_boxes": float(self.gt_boxes), "predictions": float(self.predictions)}


__all__ = ["DONT_CARE", "E2EMetric", "match_e2e", "polygon_iou", "prf"]
