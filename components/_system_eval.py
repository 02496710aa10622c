"""End-to-end system evaluation: exported det + rec (ONNX, ``TextSystem``) on the det Eval images.

A prediction is a true positive when its polygon overlaps an unmatched ground-truth box with
IoU >= ``iou`` and its text equals that box's transcription (case-insensitive, surrounding
spaces ignored). ``###`` boxes are don't-care: predictions matching them are not counted.
precision = TP / counted predictions, recall = TP / cared-for GT boxes, hmean their harmonic mean.

Pictures for people (the system eval's KFP report, ``make demo``): :func:`detection_pairs` draws
two det models' boxes on the same Eval images side by side (green matched, red false positive,
blue missed, grey don't care).
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


def fetch_onnx(model_uri: str, dest: Path) -> Path:
    """Download an exported model prefix; the local path of its ONNX file."""
    m = sync_down(model_uri, dest, quiet=True)
    return dest / str(m.extra.get("onnx", "model.onnx"))


def system_eval_uris(det_uri: str, rec_uri: str, dataset_uri: str) -> dict[str, float]:
    """:func:`system_eval` on exported model prefixes and a dataset prefix (staged locally)."""
    work = scratch("system-eval")
    sync_down(dataset_uri, work / "data", quiet=True)
    out = system_eval(fetch_onnx(det_uri, work / "det"), fetch_onnx(rec_uri, work / "rec"),
                      work / "data" / DET_LABEL.format(split="test"), work / "data")
    shutil.rmtree(work, ignore_errors=True)
    return out


def start_pair(candidate: dict[str, str], start: dict[str, str]) -> tuple[dict[str, str], dict[str, str]] | None:
    """The pair the run started from: each part's start model, or the candidate's part when that part
    was trained from scratch; None when both were (no start model at all).

    Returns ``(part -> URI, part -> "start" | "candidate")``.
    """
    if not any(start.values()):
        return None
    uris = {p: start.get(p) or candidate[p] for p in candidate}
    return uris, {p: "start" if start.get(p) else "candidate (trained from scratch)" for p in candidate}


# ------------------------------------------------------------------------------------ pictures
GREEN, RED, BLUE, GREY = (40, 160, 40), (30, 30, 220), (200, 90, 20), (150, 150, 150)


def draw_detections(img: Any, polys: Sequence[Any], gts: list[tuple[list[list[float]], str]],
                    iou: float = 0.5) -> tuple[Any, dict[str, int]]:
    """``img`` with det boxes drawn (green matched, red false positive, blue missed GT, grey
    don't care) and the counts ``{"matched", "false_pos", "missed", "gt"}``."""
    import cv2
    import numpy as np

    vis = img.copy()
    used: set[int] = set()
    colors = []
    for p in polys:
        best, best_iou = -1, iou
        for i, (poly, _) in enumerate(gts):
            if i not in used and (v := _iou(p, poly)) >= best_iou:
                best, best_iou = i, v
        if best >= 0:
            used.add(best)
        colors.append(GREY if best >= 0 and gts[best][1] == "###" else GREEN if best >= 0 else RED)
    counts = {"matched": colors.count(GREEN), "false_pos": colors.count(RED),
              "missed": sum(1 for i, (_, t) in enumerate(gts) if i not in used and t != "###"),
              "gt": sum(t != "###" for _, t in gts)}
    for i, (poly, text) in enumerate(gts):
        if i not in used:
            cv2.polylines(vis, [np.asarray(poly, np.int32).reshape(-1, 1, 2)], True,
                          GREY if text == "###" else BLUE, 1, cv2.LINE_AA)
    for p, c in zip(polys, colors):
        cv2.polylines(vis, [np.asarray(p, np.int32).reshape(-1, 1, 2)], True, c, 2, cv2.LINE_AA)
    return vis, counts


def detection_pairs(det_a: str | Path, det_b: str | Path, label_file: str | Path, data_dir: str | Path,
                    n: int = 3, scale: float = 1.0) -> list[dict[str, Any]]:
    """The first ``n`` images of a det label file through two exported det models, drawn
    (:func:`draw_detections`; ``scale`` enlarges the picture, not what the models see).

    Returns one dict per image: ``{"image", "a": png bytes, "b": png bytes, "a_counts", "b_counts"}``.
    """
    import cv2
    import numpy as np

    from ocr_core.data.label_io import parse_det_label, read_label_lines, split_label_line
    from ocr_core.export.predictors import DetPredictor

    models = {"a": DetPredictor(det_a), "b": DetPredictor(det_b)}
    out: list[dict[str, Any]] = []
    for _, line in read_label_lines(str(label_file)):
        if not line or len(out) >= n:
            continue
        paths, label = split_label_line(line)
        img = cv2.imread(str(Path(data_dir) / paths[0]))
        big = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale != 1.0 else img
        gts = [((np.asarray(b.points, np.float64) * scale).tolist(), b.transcription) for b in parse_det_label(label)]
        item: dict[str, Any] = {"image": paths[0]}
        for k, det in models.items():
            polys = [np.asarray(p, np.float64) * scale for p in det(img)["points"]]
            vis, counts = draw_detections(big, polys, gts)
            item[k], item[f"{k}_counts"] = cv2.imencode(".png", vis)[1].tobytes(), counts
        out.append(item)
    return out
