"""End-to-end system evaluation: exported det + rec (ONNX, ``TextSystem``) on the det Eval images.

A prediction is a true positive when its polygon overlaps an unmatched ground-truth box with
IoU >= ``iou`` and its text equals that box's transcription (case-insensitive, surrounding
spaces ignored). ``###`` boxes are don't-care: predictions matching them are not counted.
precision = TP / counted predictions, recall = TP / cared-for GT boxes, hmean their harmonic mean.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from components._steps import DET_LABEL, scratch
from ocr_core.storage.manifest import sync_down


def _iou(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float:
    from shapely.geometry import Polygon

    pa, pb = Polygon(a).buffer(0), Polygon(b).buffer(0)
    union = pa.union(pb).area
    return float(pa.intersection(pb).area / union) if union > 0 else 0.0


def match_e2e(preds: list[dict[str, Any]], gts: list[tuple[list[list[float]], str]],
              iou: float = 0.5) -> tuple[int, int, int]:
    """``(true positives, counted predictions, cared-for GT)`` for one image."""
    used: set[int] = set()
    tp = counted = 0
    for p in preds:
        best, best_iou = -1, iou
        for i, (poly, _) in enumerate(gts):
            if i not in used and (v := _iou(p["points"], poly)) >= best_iou:
                best, best_iou = i, v
        if best >= 0 and gts[best][1] == "###":
            used.add(best)
            continue  # don't-care region
        counted += 1
        if best >= 0 and p["text"].strip().lower() == gts[best][1].strip().lower():
            used.add(best)
            tp += 1
    return tp, counted, sum(t != "###" for _, t in gts)


def prf(tp: int, n_pred: int, n_gt: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gt if n_gt else 0.0
    return {"precision": p, "recall": r, "hmean": 2 * p * r / (p + r) if p + r else 0.0}


def system_eval(det_onnx: str | Path, rec_onnx: str | Path, label_file: str | Path, data_dir: str | Path,
                drop_score: float = 0.0) -> dict[str, float]:
    """Run ``TextSystem`` on every image of a det label file; end-to-end P/R/H (see module doc)."""
    import cv2

    from ocr_core.data.label_io import parse_det_label, read_label_lines, split_label_line
    from ocr_core.export.predictors import DetPredictor, RecPredictor, TextSystem

    system = TextSystem(DetPredictor(det_onnx), RecPredictor(rec_onnx), drop_score=drop_score)
    tp = n_pred = n_gt = images = 0
    for _, line in read_label_lines(str(label_file)):
        if not line:
            continue
        paths, label = split_label_line(line)
        img = cv2.imread(str(Path(data_dir) / paths[0]))
        gts = [(b.points, b.transcription) for b in parse_det_label(label)]
        a, b, c = match_e2e(system(img), gts)
        tp, n_pred, n_gt, images = tp + a, n_pred + b, n_gt + c, images + 1
    return {**prf(tp, n_pred, n_gt), "images": float(images), "gt_boxes": float(n_gt), "predictions": float(n_pred)}


def system_eval_uris(det_uri: str, rec_uri: str, dataset_uri: str) -> dict[str, float]:
    """:func:`system_eval` on exported model prefixes and a dataset prefix (staged locally)."""
    work = scratch("system-eval")
    sync_down(dataset_uri, work / "data", quiet=True)
    det = sync_down(det_uri, work / "det", quiet=True)
    rec = sync_down(rec_uri, work / "rec", quiet=True)
    out = system_eval(work / "det" / det.extra.get("onnx", "model.onnx"), work / "rec" / rec.extra.get("onnx", "model.onnx"),
                      work / "data" / DET_LABEL.format(split="test"), work / "data")
    shutil.rmtree(work, ignore_errors=True)
    return out
