"""Evaluation pictures: detections coloured by match result, and a grid of recognition errors.

Colours (BGR images): green = matched detection, red = false positive, blue = missed ground
truth, grey = don't-care (``###`` ground truth and detections falling on it).

Both visualizers are ``evaluate(on_batch=...)`` callbacks: they see the host copy of each eval
batch (normalised image tensors) and the post-processed predictions, keep the first N images,
and write PNGs with :meth:`save`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocr_core.metrics.det_metric import _per_image, evaluate_image

log = logging.getLogger("ocrflow")

GREEN = (0, 200, 0)
RED = (0, 0, 255)
BLUE = (255, 0, 0)
GREY = (150, 150, 150)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _polys(x: Any) -> list[np.ndarray]:
    if x is None:
        return []
    return [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in x]


def _draw(img: np.ndarray, poly: np.ndarray, color: tuple[int, int, int], thickness: int) -> None:
    if len(poly) >= 2 and np.isfinite(poly).all():
        cv2.polylines(img, [np.round(poly).astype(np.int32).reshape(-1, 1, 2)], True, color, thickness,
                      lineType=cv2.LINE_AA)


def draw_det_eval(image_bgr: np.ndarray, gt_polys: Any, gt_ignore: Any, det_polys: Any,
                  thickness: int = 2) -> np.ndarray:
    """Draw one image's evaluation: matched (green), false positive (red), missed (blue), don't-care (grey).

    Args:
        image_bgr: ``[H, W, 3]`` uint8 image (not modified).
        gt_polys: Ground-truth polygons, each ``[K, 2]`` in image coordinates.
        gt_ignore: One bool per GT, True = don't care.
        det_polys: Detected polygons, each ``[K, 2]``.

    Returns:
        A copy of the image with the polygons drawn; the match follows
        :func:`ocr_core.metrics.det_metric.evaluate_image` (ICDAR 2015 protocol).
    """
    img: np.ndarray = np.ascontiguousarray(image_bgr, dtype=np.uint8).copy()
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    gts, dets = _polys(gt_polys), _polys(det_polys)
    ignore = [] if gt_ignore is None else list(np.asarray(gt_ignore).reshape(-1))
    res = evaluate_image(gts, ignore, dets)
    for i in res["gt_dont_care"]:
        _draw(img, gts[i], GREY, thickness)
    for j in res["det_dont_care"]:
        _draw(img, dets[j], GREY, thickness)
    for i in res["missed"]:
        _draw(img, gts[i], BLUE, thickness)
    for j in res["false_positive"]:
        _draw(img, dets[j], RED, thickness)
    for j in res["matched_det"]:
        _draw(img, dets[j], GREEN, thickness)
    return img


def denormalize(chw: Any, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                scale: float = 1.0 / 255.0) -> np.ndarray:
    """Undo ``NormalizeImage`` + ``ToCHWImage``: float ``[C, H, W]`` → uint8 ``[H, W, C]``."""
    x = np.asarray(chw, dtype=np.float32)
    c = x.shape[0]
    m = np.asarray(mean, np.float32).reshape(-1, 1, 1)[:c]
    s = np.asarray(std, np.float32).reshape(-1, 1, 1)[:c]
    img = np.clip(np.round((x * s + m) / scale), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if c == 1 else np.ascontiguousarray(img)


def _first_role(post: Any) -> Any:
    """Distillation post-processing returns ``{role: result}``: show the first role."""
    if isinstance(post, dict) and post and not {"points", "scores"} & set(post):
        return next(iter(post.values()))
    return post


class DetEvalVisualizer:
    """``evaluate(on_batch=...)`` callback keeping the first ``max_images`` det results, drawn.

    The original image is the normalised tensor de-normalised, cropped to the resized area and
    resized back to the source size recorded in ``shape`` ([src_h, src_w, ratio_h, ratio_w]),
    so ground truth and detections (both in source coordinates) line up.
    """

    def __init__(self, max_images: int = 8, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, scale: float = 1.0 / 255.0) -> None:
        self.max_images = max_images
        self.mean, self.std, self.scale = mean, std, scale
        self.images: list[np.ndarray] = []
        self.counts: list[dict[str, int]] = []

    def __call__(self, host_batch: Sequence[Any], post: Any) -> None:
        if len(self.images) >= self.max_images or len(host_batch) < 4:
            return
        post = _first_role(post)
        n = len(post)
        images, shapes = np.asarray(host_batch[0]), np.asarray(host_batch[1]).reshape(n, -1)
        gts, ignores = _per_image(host_batch[2], n, 3), _per_image(host_batch[3], n, 1)
        for i in range(min(n, self.max_images - len(self.images))):
            img = self.source_image(images[i], shapes[i])
            dets = post[i]["points"]
            self.images.append(draw_det_eval(img, gts[i], ignores[i], dets))
            r = evaluate_image(_polys(gts[i]), ignores[i], _polys(dets))
            self.counts.append({"matched": r["det_matched"], "false_positive": len(r["false_positive"]),
                                "missed": len(r["missed"]), "dont_care": len(r["gt_dont_care"])})

    def source_image(self, chw: np.ndarray, shape: np.ndarray) -> np.ndarray:
        img = denormalize(chw, self.mean, self.std, self.scale)
        src_h, src_w, rh, rw = (float(v) for v in shape[:4])
        h = min(img.shape[0], max(1, int(round(src_h * rh))))
        w = min(img.shape[1], max(1, int(round(src_w * rw))))
        img = img[:h, :w]
        if (h, w) != (int(src_h), int(src_w)) and src_h >= 1 and src_w >= 1:
            img = cv2.resize(img, (int(src_w), int(src_h)), interpolation=cv2.INTER_LINEAR)
        return img

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``det_0000.png`` ... into ``out_dir`` (older ``det_*.png`` there are removed)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("det_*.png"):
            old.unlink()
        paths = []
        for k, img in enumerate(self.images):
            p = out / f"det_{k:04d}.png"
            cv2.imwrite(str(p), img)
            paths.append(p)
        return paths


class RecErrorVisualizer:
    """``evaluate(on_batch=...)`` callback keeping the first ``max_images`` wrongly read words."""

    def __init__(self, max_images: int = 8, normalize: Callable[[str], str] | None = None) -> None:
        self.max_images = max_images
        self.normalize = normalize or (lambda s: s)
        self.errors: list[tuple[np.ndarray, str, str]] = []
        self.seen = 0

    def __call__(self, host_batch: Sequence[Any], post: Any) -> None:
        post = _first_role(post)
        if not (isinstance(post, (tuple, list)) and len(post) == 2):
            return
        preds, labels = post
        images = np.asarray(host_batch[0])
        for i, ((pred, _), (gt, _)) in enumerate(zip(preds, labels)):
            self.seen += 1
            if len(self.errors) >= self.max_images or self.normalize(pred) == self.normalize(gt):
                continue
            self.errors.append((denormalize(images[i], (0.5,) * 3, (0.5,) * 3), str(pred), str(gt)))

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``rec_errors.png`` (a grid with "pred / gt" captions) if there are errors."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        target = out / "rec_errors.png"
        if target.exists():
            target.unlink()
        if not self.errors:
            return []
        from ocr_core.observability.plots import image_grid

        image_grid(target, [img for img, _, _ in self.errors], [f"{p!r} / {g!r}" for _, p, g in self.errors],
                   title="recognition errors: pred / gt")
        return [target]


def _normalize_params(cfg: dict[str, Any]) -> dict[str, Any]:
    from ocr_core.data.transforms.common import parse_scale

    for op in ((cfg.get("Eval") or {}).get("dataset") or {}).get("transforms") or []:
        if isinstance(op, dict) and "NormalizeImage" in op:
            kw = op["NormalizeImage"] or {}
            return {"mean": kw.get("mean") or IMAGENET_MEAN, "std": kw.get("std") or IMAGENET_STD,
                    "scale": parse_scale(kw.get("scale"))}
    return {}


def make_eval_visualizer(cfg: dict[str, Any], model_type: str, max_images: int,
                         metric: Any = None) -> DetEvalVisualizer | RecErrorVisualizer | None:
    """The visualizer for a run's model type (None when ``max_images`` is 0)."""
    if max_images <= 0:
        return None
    if model_type == "det":
        return DetEvalVisualizer(max_images, **_normalize_params(cfg))
    if model_type == "rec":
        return RecErrorVisualizer(max_images, getattr(metric, "_normalize", None))
    return None


__all__ = ["DetEvalVisualizer", "RecErrorVisualizer", "denormalize", "draw_det_eval", "make_eval_visualizer"]
