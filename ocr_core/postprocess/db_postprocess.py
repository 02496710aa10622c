"""DB post-processing: probability map -> text boxes (PaddleOCR ``db_postprocess.py``, SPEC §1.5).

Framework-free (numpy, OpenCV, pyclipper, shapely; torch is never imported) so eval,
inference, ONNX and TensorRT runners share the same pure functions:
:func:`boxes_from_bitmap`, :func:`polygons_from_bitmap` (batched, in ``db_boxes.py``: the same
boxes as PaddleOCR in ~1/2.5 of its time, see ``bench/postprocess.py``) and the per-box
reference steps :func:`unclip`, :func:`get_mini_boxes`, :func:`box_score_fast`,
:func:`box_score_slow`.
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
import pyclipper
from shapely.geometry import Polygon

from ocr_core.errors import ConfigError
from ocr_core.postprocess import POSTPROCESS, db_boxes

MIN_SIZE = db_boxes.MIN_SIZE


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor; duck-typed so this module never imports torch
        x = x.detach().cpu().float().numpy()
    return np.asarray(x)


def get_mini_boxes(contour: np.ndarray) -> tuple[np.ndarray, float]:
    """Min-area rectangle of ``contour`` as 4 points (TL, TR, BR, BL) and its short side.

    Ordering follows PaddleOCR: sort corners by x (stable); of the two left-most, the one with
    the smaller y is first (TL) and the other last (BL); of the two right-most, smaller y is TR.
    """
    rect = cv2.minAreaRect(np.asarray(contour, dtype=np.float32).reshape(-1, 1, 2))
    points = sorted(list(cv2.boxPoints(rect)), key=lambda p: p[0])
    i1, i4 = (0, 1) if points[1][1] > points[0][1] else (1, 0)
    i2, i3 = (2, 3) if points[3][1] > points[2][1] else (3, 2)
    box = np.array([points[i1], points[i2], points[i3], points[i4]], dtype=np.float32)
    return box, float(min(rect[1]))


def box_score_fast(pred: np.ndarray, box: np.ndarray) -> float:
    """Mean of ``pred`` inside the filled polygon ``box`` (points truncated to int), via its bbox."""
    h, w = pred.shape[:2]
    box = np.array(box, dtype=np.float64).reshape(-1, 2)
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    box[:, 0] -= xmin
    box[:, 1] -= ymin
    cv2.fillPoly(mask, [box.reshape(-1, 2).astype(np.int32)], 1)
    return float(cv2.mean(pred[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def box_score_slow(pred: np.ndarray, contour: np.ndarray) -> float:
    """Mean of ``pred`` inside the filled raw contour (integer points)."""
    # On integer points the fast score's floor/ceil and int32 truncation change nothing.
    return box_score_fast(pred, np.array(contour).reshape(-1, 2).astype(np.int64))


def unclip(box: np.ndarray, unclip_ratio: float) -> list[np.ndarray]:
    """Expand a polygon by ``D = area * unclip_ratio / perimeter`` (pyclipper, round joins).

    Returns the pieces pyclipper produces (integer coordinates, as pyclipper truncates float
    input); callers drop the box unless there is exactly one.
    """
    box = np.asarray(box).reshape(-1, 2)
    poly = Polygon(box)
    if poly.length == 0:
        return []
    distance = poly.area * unclip_ratio / poly.length
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return [np.array(piece, dtype=np.int64).reshape(-1, 2) for piece in offset.Execute(distance)]


def boxes_from_bitmap(
    pred: np.ndarray,
    bitmap: np.ndarray,
    dest_width: float,
    dest_height: float,
    box_thresh: float = 0.7,
    unclip_ratio: float = 2.0,
    max_candidates: int = 1000,
    score_mode: str = "fast",
) -> tuple[np.ndarray, np.ndarray]:
    """Quadrilaterals from a binary map (batched: :func:`db_boxes.quads_from_bitmap`).

    Args:
        pred: ``[H, W]`` probability map.
        bitmap: ``[H, W]`` binarized map (bool or 0/1).
        dest_width, dest_height: Source image size the boxes are rescaled to.

    Returns:
        ``(boxes int32 [N, 4, 2], scores float32 [N])``, the boxes PaddleOCR's per-contour loop
        (``get_mini_boxes``, ``box_score_*``, ``unclip`` above) produces.
    """
    return db_boxes.quads_from_bitmap(
        pred, bitmap, dest_width, dest_height, box_thresh, unclip_ratio, max_candidates, score_mode
    )


def polygons_from_bitmap(
    pred: np.ndarray,
    bitmap: np.ndarray,
    dest_width: float,
    dest_height: float,
    box_thresh: float = 0.7,
    unclip_ratio: float = 2.0,
    max_candidates: int = 1000,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Polygons (approxPolyDP, eps = 0.002 * arcLength) from a binary map; always fast-scored.

    Returns:
        ``(list of int32 [K, 2] polygons, scores float32 [N])``.
    """
    return db_boxes.polygons_from_bitmap(
        pred, bitmap, dest_width, dest_height, box_thresh, unclip_ratio, max_candidates
    )


@POSTPROCESS.register()
class DBPostProcess:
    """Turn DB shrink maps into boxes in source-image coordinates.

    ``__call__(preds, shape_list)``: ``preds["maps"]`` is ``[B, 1 or 3, H, W]`` (numpy or
    tensor; channel 0 is used), ``shape_list`` is ``[B, 4]`` = (src_h, src_w, ratio_h, ratio_w);
    boxes are rescaled by the bitmap->source size ratio (the ratios are not used, as in
    PaddleOCR). Returns ``[{"points": int32 [N, 4, 2] (quad) or list of int32 [K, 2] (poly),
    "scores": float32 [N]}]``.
    """

    def __init__(
        self,
        thresh: float = 0.3,
        box_thresh: float = 0.7,
        max_candidates: int = 1000,
        unclip_ratio: float = 2.0,
        use_dilation: bool = False,
        score_mode: Literal["fast", "slow"] = "fast",
        box_type: Literal["quad", "poly"] = "quad",
    ) -> None:
        if score_mode not in ("fast", "slow"):
            raise ConfigError(f"score_mode must be 'fast' or 'slow', got {score_mode!r}", "PostProcess.score_mode")
        if box_type not in ("quad", "poly"):
            raise ConfigError(f"box_type must be 'quad' or 'poly', got {box_type!r}", "PostProcess.box_type")
        self.thresh = thresh
        self.box_thresh = box_thresh
        self.max_candidates = max_candidates
        self.unclip_ratio = unclip_ratio
        self.score_mode = score_mode
        self.box_type = box_type
        self.dilation_kernel = np.ones((2, 2), dtype=np.uint8) if use_dilation else None

    def __call__(self, preds: dict[str, Any], shape_list: Any) -> list[dict[str, Any]]:
        pred = _to_numpy(preds["maps"])[:, 0, :, :]
        shapes = _to_numpy(shape_list).reshape(pred.shape[0], -1)
        segmentation = np.ascontiguousarray(pred > self.thresh)
        results = []
        for i in range(pred.shape[0]):
            src_h, src_w = float(shapes[i][0]), float(shapes[i][1])
            mask = segmentation[i].view(np.uint8)  # 0/1, no copy
            if self.dilation_kernel is not None:
                mask = cv2.dilate(mask, self.dilation_kernel)
            boxes: Any
            if self.box_type == "poly":
                boxes, scores = polygons_from_bitmap(
                    pred[i], mask, src_w, src_h, self.box_thresh, self.unclip_ratio, self.max_candidates
                )
            else:
                boxes, scores = boxes_from_bitmap(
                    pred[i], mask, src_w, src_h, self.box_thresh, self.unclip_ratio,
                    self.max_candidates, self.score_mode,
                )
            results.append({"points": boxes, "scores": scores})
        return results


@POSTPROCESS.register()
class DistillationDBPostProcess:
    """Run :class:`DBPostProcess` on ``preds[name]`` for each name; returns ``{name: result}``.

    ``key`` is unused by PaddleOCR (its configs set ``head_out``); here, if the model's output
    dict has that key, its value is used as the preds dict, otherwise the output itself.
    """

    def __init__(
        self,
        model_name: list[str] | None = None,
        key: str | None = None,
        thresh: float = 0.3,
        box_thresh: float = 0.6,
        max_candidates: int = 1000,
        unclip_ratio: float = 1.5,
        use_dilation: bool = False,
        score_mode: Literal["fast", "slow"] = "fast",
        box_type: Literal["quad", "poly"] = "quad",
    ) -> None:
        self.model_name = list(model_name) if model_name is not None else ["student"]
        self.key = key
        self.post_process = DBPostProcess(
            thresh, box_thresh, max_candidates, unclip_ratio, use_dilation, score_mode, box_type
        )

    def __call__(self, preds: dict[str, Any], shape_list: Any) -> dict[str, list[dict[str, Any]]]:
        results = {}
        for name in self.model_name:
            out = preds[name]
            if self.key is not None and isinstance(out, dict) and self.key in out:
                out = out[self.key]
            if not isinstance(out, dict):
                out = {"maps": out}
            results[name] = self.post_process(out, shape_list)
        return results


__all__ = [
    "DBPostProcess",
    "DistillationDBPostProcess",
    "box_score_fast",
    "box_score_slow",
    "boxes_from_bitmap",
    "get_mini_boxes",
    "polygons_from_bitmap",
    "unclip",
]
