"""onnxruntime predictors for exported models: :class:`DetPredictor`, :class:`RecPredictor`,
:class:`TextSystem`.

Every setting (normalisation, resize policy, DB/CTC post-processing, dictionary) is read from the
model's ``ocrflow.*`` metadata; keyword arguments override single settings. This module needs
only numpy, OpenCV, onnxruntime and pyclipper/shapely (via the DB post-processing): it never
imports torch, so it runs in slim serving images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import cv2
import numpy as np

from ocr_core.data.transforms.common import NormalizeImage
from ocr_core.data.transforms.det_resize import det_resize_params, pad_small_image
from ocr_core.data.transforms.rec_resize import resize_norm_img
from ocr_core.inference import metadata as md
from ocr_core.inference.det_box_filter import filter_det_result
from ocr_core.postprocess.db_postprocess import DBPostProcess
from ocr_core.postprocess.rec_postprocess import CTCLabelDecode

if TYPE_CHECKING:  # imported lazily at runtime (EAST only)
    from ocr_core.postprocess.east_postprocess import EASTPostProcess

P = md.PREFIX
EAST_KEYS = ("score_thresh", "cover_thresh", "nms_thresh")
EAST_DEFAULTS = {"score_thresh": 0.8, "cover_thresh": 0.1, "nms_thresh": 0.2}


def default_providers() -> list[str]:
    """CUDA when this onnxruntime build offers it, else CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def make_session(model_path: str | Path, providers: Optional[Sequence[str]] = None,
                 intra_op_num_threads: Optional[int] = None) -> Any:
    """An ``onnxruntime.InferenceSession`` with full graph optimisation."""
    import onnxruntime as ort
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidGraph, InvalidProtobuf

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_num_threads:
        so.intra_op_num_threads = int(intra_op_num_threads)
    try:
        return ort.InferenceSession(str(model_path), so, providers=list(providers or default_providers()))
    except (InvalidGraph, InvalidProtobuf) as exc:  # a file that is not ONNX (or not a valid graph)
        reason = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise md.MetadataError(f"not an ONNX model onnxruntime can load: {model_path} ({reason})") from None


class _Predictor:
    model_type = ""

    def __init__(self, model_path: str | Path, providers: Optional[Sequence[str]] = None,
                 intra_op_num_threads: Optional[int] = None, metadata: Optional[dict[str, Any]] = None) -> None:
        self.model_path = md.resolve_model_path(model_path)
        self.session = make_session(self.model_path, providers, intra_op_num_threads)
        # a foreign model (no ocrflow.* entries) may be given its settings (built from a config)
        self.meta = dict(metadata) if metadata is not None else md.read_metadata(self.session)
        md.validate_metadata(self.meta, str(self.model_path), self.model_type)
        self.input_name = self.session.get_inputs()[0].name

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        """The raw model output for a preprocessed float32 batch."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def _override(settings: dict[str, Any], overrides: dict[str, Any], allowed: Sequence[str]) -> dict[str, Any]:
    out = dict(settings)
    for key in list(overrides):
        if key in allowed:
            out[key] = overrides.pop(key)
    return out


class DetPredictor(_Predictor):
    """DB text detector on an exported det model.

    Args:
        model_path: ``model.onnx`` or its export directory.
        providers: onnxruntime execution providers (default: CUDA if available, else CPU).
        intra_op_num_threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        **overrides: Any resize (``limit_side_len``, ``limit_type``, ``image_shape``,
            ``keep_ratio``, ``resize_long``), normalisation (``scale``, ``mean``, ``std``) or
            DB (``thresh``, ``box_thresh``, ``max_candidates``, ``unclip_ratio``, ``score_mode``,
            ``box_type``, ``use_dilation``) setting, replacing the embedded one. For EAST models
            (exported algorithm ``EAST`` or ``det_algorithm="EAST"``): ``score_thresh``,
            ``cover_thresh``, ``nms_thresh``; the model output is ``[1, 9, H/4, W/4]`` (score + geo).
        filter_boxes: Apply PaddleOCR's ``filter_tag_det_res`` (order corners, clip into the
            image, drop quads with a side of 3 px or less; polygons are only clipped).
    """

    model_type = "det"

    def __init__(self, model_path: str | Path, providers: Optional[Sequence[str]] = None,
                 intra_op_num_threads: Optional[int] = None, filter_boxes: bool = True,
                 metadata: Optional[dict[str, Any]] = None, **overrides: Any) -> None:
        super().__init__(model_path, providers, intra_op_num_threads, metadata)
        self.filter_boxes = filter_boxes
        self.resize = _override(self.meta[P + "resize"], overrides, md.DET_RESIZE_KEYS)
        self.normalize = _override(self.meta[P + "normalize"], overrides, ("scale", "mean", "std"))
        # EAST: chosen by the exported algorithm or det_algorithm="EAST" (PaddleOCR's --det_algorithm)
        self.algorithm = str(overrides.pop("det_algorithm", None) or self.meta.get(P + "algorithm") or "DB")
        if self.algorithm == "EAST":
            from ocr_core.postprocess.east_postprocess import EASTPostProcess

            embedded = self.meta[P + "postprocess"]
            base = {k: embedded[k] for k in EAST_KEYS if embedded.get("name") == "EASTPostProcess" and k in embedded}
            post = _override({**EAST_DEFAULTS, **base}, overrides, EAST_KEYS)
        else:
            post = _override(self.meta[P + "postprocess"], overrides, md.DB_KEYS)
        if overrides:
            raise TypeError(f"unknown DetPredictor setting(s): {', '.join(sorted(overrides))}")
        self._norm = NormalizeImage(scale=self.normalize["scale"], mean=self.normalize["mean"],
                                    std=self.normalize["std"], order="hwc")
        self.post_process: DBPostProcess | EASTPostProcess
        if self.algorithm == "EAST":
            self.post = {k: post[k] for k in EAST_KEYS}
            self.post_process = EASTPostProcess(**self.post)
        else:
            self.post = {k: post[k] for k in md.DB_KEYS}
            self.post_process = DBPostProcess(**self.post)

    def preprocess(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """BGR uint8 HWC -> (float32 [1,3,H,W], shape [1,4] = src_h, src_w, ratio_h, ratio_w)."""
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        src_h, src_w = img.shape[:2]
        padded = pad_small_image(img)
        h, w = padded.shape[:2]
        r = self.resize
        new_h, new_w = det_resize_params(h, w, limit_side_len=r.get("limit_side_len"),
                                         limit_type=r.get("limit_type"), image_shape=r.get("image_shape"),
                                         keep_ratio=bool(r.get("keep_ratio")), resize_long=r.get("resize_long"))
        resized = cv2.resize(padded, (new_w, new_h))
        x = self._norm({"image": resized})["image"].transpose(2, 0, 1)[None]
        shape = np.array([[src_h, src_w, new_h / h, new_w / w]], dtype=np.float32)
        return np.ascontiguousarray(x, dtype=np.float32), shape

    def __call__(self, img: np.ndarray) -> dict[str, Any]:
        """Detect text in one BGR image: ``{"points": int32 [N,4,2] (or list), "scores": [N]}``."""
        x, shape = self.preprocess(img)
        maps = self.run_raw(x)
        result = self.post_process({"maps": maps}, shape)[0]
        if not self.filter_boxes:
            return result
        return filter_det_result(result, img.shape[:2], str(self.post.get("box_type", "quad")))


class RecPredictor(_Predictor):
    """CTC text recogniser on an exported rec model.

    Crops are resized with :func:`resize_norm_img` (height from the metadata ``image_shape``)
    and batched in order of aspect ratio. With ``dynamic_width`` (default) a batch's width grows
    to fit its widest crop (PaddleOCR's inference behaviour); otherwise every crop is squeezed
    into the trained width, exactly like ``RecResizeImg`` in evaluation.

    Args:
        model_path: ``model.onnx`` or its export directory.
        batch_size: Crops per onnxruntime call.
        dynamic_width: See above.
        providers, intra_op_num_threads: As for :class:`DetPredictor`.
        image_shape: Override the embedded ``[C, H, W]``.
        character: Override the embedded dictionary (PaddleOCR's ``--rec_char_dict_path``); it
            must give the model's number of classes minus the CTC blank.
    """

    model_type = "rec"

    def __init__(self, model_path: str | Path, providers: Optional[Sequence[str]] = None,
                 intra_op_num_threads: Optional[int] = None, batch_size: int = 6, dynamic_width: bool = True,
                 image_shape: Optional[list[int]] = None, character: Optional[list[str]] = None,
                 metadata: Optional[dict[str, Any]] = None) -> None:
        super().__init__(model_path, providers, intra_op_num_threads, metadata)
        self.image_shape = [int(v) for v in (image_shape or self.meta[P + "resize"]["image_shape"])]
        self.batch_size = max(1, int(batch_size))
        self.dynamic_width = dynamic_width
        self.character = list(self.meta[P + "character"] if character is None else character)
        self.decoder = CTCLabelDecode()
        self.decoder.character = ["blank", *self.character]
        self.decoder.reverse = bool(self.meta[P + "postprocess"].get("reverse", False))

    def _batch_shape(self, crops: Sequence[np.ndarray]) -> list[int]:
        c, h, w = self.image_shape
        if not self.dynamic_width:
            return [c, h, w]
        ratio = max([w / h] + [im.shape[1] / max(1, im.shape[0]) for im in crops])
        return [c, h, max(w, int(math.ceil(h * ratio)))]

    def __call__(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """Recognise BGR crops; returns ``(text, score)`` per crop, in input order."""
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        order = np.argsort([im.shape[1] / max(1, im.shape[0]) for im in crops], kind="stable")
        for start in range(0, len(crops), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = [crops[i] for i in idx]
            shape = self._batch_shape(batch)
            x = np.stack([resize_norm_img(im, shape)[0] for im in batch])
            probs = self.run_raw(x)
            if probs.shape[-1] != len(self.decoder.character):
                raise md.MetadataError(f"{self.model_path}: the model has {probs.shape[-1]} classes but the "
                                       f"dictionary gives {len(self.decoder.character)} (blank + "
                                       f"{len(self.character)} characters)")
            decoded = self.decoder.decode(probs.argmax(axis=2), probs.max(axis=2), is_remove_duplicate=True)
            for i, res in zip(idx, decoded):
                results[int(i)] = res
        return results


def sorted_boxes(boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Sort quads top-to-bottom, then left-to-right within a 10-pixel line band (PaddleOCR)."""
    items = sorted(boxes, key=lambda b: (float(b[0][1]), float(b[0][0])))
    for i in range(len(items) - 1):
        for j in range(i, -1, -1):
            if abs(items[j + 1][0][1] - items[j][0][1]) < 10 and items[j + 1][0][0] < items[j][0][0]:
                items[j], items[j + 1] = items[j + 1], items[j]
            else:
                break
    return items


def get_rotate_crop_image(img: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Perspective-crop a quad (TL, TR, BR, BL); crops taller than 1.5x their width are rotated."""
    pts = np.asarray(points, dtype=np.float32).reshape(4, 2)
    w = int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3])))
    h = int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2])))
    w, h = max(w, 1), max(h, 1)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(pts, dst)
    crop = cv2.warpPerspective(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if crop.shape[0] / max(1, crop.shape[1]) >= 1.5:
        crop = np.rot90(crop)
    return np.ascontiguousarray(crop)


class TextSystem:
    """Detection then recognition: ``[{"points", "text", "score"}]`` per image.

    Args:
        det: A :class:`DetPredictor`.
        rec: A :class:`RecPredictor`.
        drop_score: Results with a recognition score below this are dropped.
    """

    def __init__(self, det: DetPredictor, rec: RecPredictor, drop_score: float = 0.5) -> None:
        self.det = det
        self.rec = rec
        self.drop_score = drop_score

    def __call__(self, img: np.ndarray) -> list[dict[str, Any]]:
        found = self.det(img)
        boxes = [np.asarray(b) for b in found["points"]]
        if not boxes:
            return []
        boxes = sorted_boxes(boxes) if all(b.shape == (4, 2) for b in boxes) else boxes
        crops = [get_rotate_crop_image(img, b) if b.shape == (4, 2) else _bbox_crop(img, b) for b in boxes]
        texts = self.rec(crops)
        out = []
        for box, (text, score) in zip(boxes, texts):
            if score >= self.drop_score:
                out.append({"points": np.asarray(box).astype(int).tolist(), "text": text, "score": float(score)})
        return out


def _bbox_crop(img: np.ndarray, poly: np.ndarray) -> np.ndarray:
    x, y, w, h = cv2.boundingRect(np.asarray(poly, dtype=np.int32))
    return img[y:y + max(h, 1), x:x + max(w, 1)]


def load_predictor(model_path: str | Path, **kwargs: Any) -> DetPredictor | RecPredictor:
    """The predictor matching the model's ``ocrflow.model_type``."""
    path = md.resolve_model_path(model_path)
    meta = md.read_metadata(path)
    mtype = md.validate_metadata(meta, str(path))
    if mtype != "det":
        kwargs.pop("det_algorithm", None)
    return DetPredictor(path, **kwargs) if mtype == "det" else RecPredictor(path, **kwargs)


def draw_results(img: np.ndarray, results: Sequence[dict[str, Any]]) -> np.ndarray:
    """A copy of ``img`` with each result's polygon (and ASCII text, if any) drawn."""
    vis = img.copy() if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    for r in results:
        pts = np.asarray(r["points"], dtype=np.int32).reshape(-1, 1, 2)
        cv2.polylines(vis, [pts], True, (0, 0, 255), 2)
        text = str(r.get("text", "")).encode("ascii", "replace").decode()
        if text:
            x, y = int(pts[:, 0, 0].min()), int(pts[:, 0, 1].min())
            cv2.putText(vis, text, (x, max(12, y - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 0, 0), 1)
    return vis


__all__ = [
    "DetPredictor",
    "RecPredictor",
    "TextSystem",
    "default_providers",
    "draw_results",
    "get_rotate_crop_image",
    "load_predictor",
    "make_session",
    "sorted_boxes",
]
