"""ICDAR-2015 style detection precision / recall / hmean (PaddleOCR ``DetMetric``, SPEC §1.6).

Rules (from MhLiao/DB's ``iou.py`` as used by PaddleOCR's ``eval_det_iou.py``):

* GT and detected polygons that shapely says are not valid (or not simple) are skipped.
* A GT with ignore tag (``###`` / ``*``) is don't-care; a detection is don't-care when
  ``area(det ∩ dont_care_gt) / area(det) > 0.5`` for some don't-care GT.
* Matching is greedy in GT-index × det-index order (not best-IoU first), one-to-one, strict
  ``IoU > 0.5``, between care items only.
* Results are micro-averaged over images: recall = Σmatched/ΣgtCare, precision =
  Σmatched/ΣdetCare, hmean = 2PR/(P+R); 0 where a denominator is 0.

Framework-free: tensors are converted by duck typing, torch is never imported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from shapely.geometry import Polygon

from ocr_core.metrics import METRICS

_COUNTERS = ("gt_care", "det_care", "det_matched")


def _to_numpy(x: Any) -> Any:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return x


def _valid_polygon(points: Any) -> Polygon | None:
    try:
        pts = np.asarray(_to_numpy(points), dtype=np.float64).reshape(-1, 2)
        poly = Polygon(pts)
    except (ValueError, TypeError):  # fewer than 3 points, ragged input
        return None
    if not poly.is_valid or not poly.is_simple:
        return None
    return poly


def _prf(matched: float, gt_care: float, det_care: float) -> dict[str, float]:
    recall = 0.0 if gt_care == 0 else matched / gt_care
    precision = 0.0 if det_care == 0 else matched / det_care
    hmean = 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)
    return {"precision": precision, "recall": recall, "hmean": hmean}


class DetectionIoUEvaluator:
    """Per-image IoU evaluation with don't-care handling."""

    def __init__(self, iou_constraint: float = 0.5, area_precision_constraint: float = 0.5) -> None:
        self.iou_constraint = iou_constraint
        self.area_precision_constraint = area_precision_constraint

    def evaluate_image(self, gt_polys: Any, gt_ignore: Any, det_polys: Any) -> dict[str, Any]:
        """Evaluate one image.

        Args:
            gt_polys: Sequence of GT polygons (each ``[K, 2]``).
            gt_ignore: Sequence of bools, True = don't care.
            det_polys: Sequence of detected polygons (each ``[K, 2]``).

        Returns:
            ``gt_care``, ``det_care``, ``det_matched`` (ints), ``pairs`` [(gt_idx, det_idx)],
            ``ious`` (IoU of each pair), and index lists ``matched_gt``, ``matched_det``,
            ``missed`` (care GTs not matched), ``false_positive`` (care dets not matched),
            ``gt_dont_care``, ``det_dont_care``, ``gt_invalid``, ``det_invalid``. All indices
            refer to positions in the input sequences.
        """
        gt_polys = [] if gt_polys is None else list(_to_numpy(gt_polys))
        gt_ignore = [] if gt_ignore is None else [bool(t) for t in np.asarray(_to_numpy(gt_ignore)).reshape(-1)]
        det_polys = [] if det_polys is None else list(_to_numpy(det_polys))

        gts: list[tuple[int, Polygon]] = []
        gt_invalid, gt_dont_care = [], []
        for i, pts in enumerate(gt_polys):
            poly = _valid_polygon(pts)
            if poly is None:
                gt_invalid.append(i)
                continue
            gts.append((i, poly))
            if i < len(gt_ignore) and gt_ignore[i]:
                gt_dont_care.append(i)
        dont_care_polys = [p for i, p in gts if i in set(gt_dont_care)]

        dets: list[tuple[int, Polygon]] = []
        det_invalid, det_dont_care = [], []
        for j, pts in enumerate(det_polys):
            poly = _valid_polygon(pts)
            if poly is None:
                det_invalid.append(j)
                continue
            dets.append((j, poly))
            for dc in dont_care_polys:
                area = poly.area
                precision = 0.0 if area == 0 else dc.intersection(poly).area / area
                if precision > self.area_precision_constraint:
                    det_dont_care.append(j)
                    break

        pairs: list[tuple[int, int]] = []
        ious: list[float] = []
        gt_used: set[int] = set()
        det_used: set[int] = set()
        dc_gt, dc_det = set(gt_dont_care), set(det_dont_care)
        for gi, gpoly in gts:
            if gi in dc_gt:
                continue
            for dj, dpoly in dets:
                if dj in dc_det or dj in det_used or gi in gt_used:
                    continue
                union = dpoly.union(gpoly).area
                iou = 0.0 if union == 0 else dpoly.intersection(gpoly).area / union
                if iou > self.iou_constraint:
                    gt_used.add(gi)
                    det_used.add(dj)
                    pairs.append((gi, dj))
                    ious.append(iou)

        care_gt = [i for i, _ in gts if i not in dc_gt]
        care_det = [j for j, _ in dets if j not in dc_det]
        return {
            "gt_care": len(care_gt),
            "det_care": len(care_det),
            "det_matched": len(pairs),
            "pairs": pairs,
            "ious": ious,
            "matched_gt": [g for g, _ in pairs],
            "matched_det": [d for _, d in pairs],
            "missed": [i for i in care_gt if i not in gt_used],
            "false_positive": [j for j in care_det if j not in det_used],
            "gt_dont_care": gt_dont_care,
            "det_dont_care": det_dont_care,
            "gt_invalid": gt_invalid,
            "det_invalid": det_invalid,
        }

    @staticmethod
    def combine_results(results: list[dict[str, Any]]) -> dict[str, float]:
        """Micro-average per-image results into precision / recall / hmean."""
        return _prf(
            float(sum(r["det_matched"] for r in results)),
            float(sum(r["gt_care"] for r in results)),
            float(sum(r["det_care"] for r in results)),
        )


_DEFAULT_EVALUATOR = DetectionIoUEvaluator()


def evaluate_image(gt_polys: Any, gt_ignore: Any, det_polys: Any) -> dict[str, Any]:
    """:meth:`DetectionIoUEvaluator.evaluate_image` with the standard 0.5 / 0.5 constraints."""
    return _DEFAULT_EVALUATOR.evaluate_image(gt_polys, gt_ignore, det_polys)


def _per_image(x: Any, batch_size: int, item_ndim: int) -> list[Any]:
    """Split ``batch[2]`` / ``batch[3]`` into one entry per image.

    A list/tuple is one entry per image (a batch of 1 may also pass the image's own list of
    polygons); an array/tensor with ``item_ndim + 1`` dims is split along axis 0; anything
    else is the single image's entry.
    """
    x = _to_numpy(x)
    if isinstance(x, (list, tuple)):
        if len(x) == batch_size and (batch_size != 1 or len(x) == 0 or np.ndim(_to_numpy(x[0])) == item_ndim):
            return [_to_numpy(v) for v in x]
        if batch_size == 1:
            return [x]
        raise ValueError(f"expected {batch_size} per-image entries, got {len(x)}")
    arr = np.asarray(x)
    if arr.ndim == item_ndim + 1 and arr.shape[0] == batch_size:
        return list(arr)
    if batch_size == 1:
        return [arr]
    raise ValueError(f"cannot split an array of shape {arr.shape} into {batch_size} images")


@METRICS.register()
class DetMetric:
    """Accumulating detection metric; ``batch[2]`` = GT polygons, ``batch[3]`` = ignore tags."""

    def __init__(self, main_indicator: str = "hmean") -> None:
        self.main_indicator = main_indicator
        self.evaluator = DetectionIoUEvaluator()
        self.reset()

    def __call__(self, post_result: list[dict[str, Any]], batch: list[Any]) -> None:
        n = len(post_result)
        gt_batch = _per_image(batch[2], n, item_ndim=3)
        ignore_batch = _per_image(batch[3], n, item_ndim=1)
        for pred, gt_polys, ignore in zip(post_result, gt_batch, ignore_batch):
            result = self.evaluator.evaluate_image(gt_polys, ignore, pred["points"])
            for k in _COUNTERS:
                self._counters[k] += float(result[k])

    def counters(self) -> dict[str, float]:
        """Summable state (all-reduce these across ranks, then :meth:`set_counters`)."""
        return dict(self._counters)

    def set_counters(self, counters: dict[str, float]) -> None:
        self._counters = {k: float(counters.get(k, 0.0)) for k in _COUNTERS}

    def get_metric(self) -> dict[str, float]:
        """Micro-averaged precision / recall / hmean of everything seen; then reset."""
        c = self._counters
        metric = _prf(c["det_matched"], c["gt_care"], c["det_care"])
        self.reset()
        return metric

    def reset(self) -> None:
        self._counters = {k: 0.0 for k in _COUNTERS}


__all__ = ["DetMetric", "DetectionIoUEvaluator", "evaluate_image"]
