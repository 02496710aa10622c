"""What ``ocrflow infer`` reads and writes, shared by the torch and the ONNX back ends.

The image list, the drawn boxes, PaddleOCR's result-file lines and where the files go; kept apart
from :mod:`ocr_core.engine.infer` so :mod:`ocr_core.engine.infer_onnx` uses them without importing
the back end that dispatches to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocr_core.errors import DataError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


def list_images(path: str | Path) -> list[Path]:
    """An image file, or the images in a folder (sorted)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise DataError(f"{p}: no images found (extensions {', '.join(sorted(IMAGE_EXTS))})")
        return files
    raise DataError(f"{p}: no such image or folder")


def draw_polys(image: np.ndarray, polys: Any, color: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """Return a copy of ``image`` with polygons outlined."""
    out = image.copy()
    for poly in polys:
        pts = np.asarray(poly, dtype=np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], True, color, 2)
    return out


def paddle_line(path: Path, model_type: str, post: Any) -> str:
    """One line of PaddleOCR's result file for an image (``tools/infer_det.py``/``infer_rec.py``).

    det: ``image\t[{"points": [[x, y], ...]}, ...]`` (a distillation model: ``{role: [...]}``);
    rec: ``image\ttext\tscore`` (distillation: ``image\t{role: {"label", "score"}}``).
    """
    def det_boxes(res: Any) -> list[dict[str, Any]]:
        return [{"points": np.asarray(b).tolist()} for b in res[0]["points"]]

    if model_type == "det":
        boxes = {k: det_boxes(v) for k, v in post.items()} if isinstance(post, dict) else det_boxes(post)
        return f"{path}\t{json.dumps(boxes)}\n"
    if isinstance(post, dict):
        roles = {k: {"label": v[0][0], "score": float(v[0][1])} for k, v in post.items()}
        return f"{path}\t{json.dumps(roles, ensure_ascii=False)}\n"
    return f"{path}\t{post[0][0]}\t{float(post[0][1])}\n"


def destinations(save_res_path: str | None, save_dir: str | Path, out_dir: str | None) -> tuple[Path, Path | None]:
    """``(folder for predicts.json and drawings, PaddleOCR result file or None = default name)``.

    ``--out`` wins; else ``Global.save_res_path`` is PaddleOCR's result file and the rest goes
    beside it; else ``<save_model_dir>/infer``.
    """
    if out_dir:
        return Path(out_dir), None
    if save_res_path:
        return Path(save_res_path).parent, Path(save_res_path)
    return Path(save_dir) / "infer", None


__all__ = ["IMAGE_EXTS", "destinations", "draw_polys", "list_images", "paddle_line"]
