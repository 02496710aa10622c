"""DetLabelEncode: parse a PaddleOCR detection label (JSON list of boxes) into arrays."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ocr_core.data import TRANSFORMS
from ocr_core.errors import DataError

# Transcriptions that mark a "don't care" region (ICDAR convention plus PaddleOCR's "*").
IGNORE_TRANSCRIPTIONS = frozenset({"*", "###"})


def pad_polygons(polys: list[np.ndarray]) -> np.ndarray:
    """Stack polygons of different point counts into a float32 ``(N, K, 2)`` array.

    Shorter polygons are padded to the largest point count ``K`` by repeating their last point,
    which leaves their shape (area, edges) unchanged.
    """
    if not polys:
        return np.zeros((0, 4, 2), dtype=np.float32)
    k = max(len(p) for p in polys)
    out = np.empty((len(polys), k, 2), dtype=np.float32)
    for i, p in enumerate(polys):
        out[i, : len(p)] = p
        out[i, len(p) :] = p[-1]
    return out


def _where(data: dict[str, Any]) -> str:
    path = data.get("img_path")
    return f"{path}: " if path else ""


def _parse_points(points: Any, where: str, index: int) -> np.ndarray:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}box {index}: 'points' is not a list of [x, y] numbers ({e})") from e
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 1:
        raise DataError(
            f"{where}box {index}: 'points' must be a non-empty list of [x, y] pairs, got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise DataError(f"{where}box {index}: 'points' holds NaN or infinite values")
    return arr


@TRANSFORMS.register()
class DetLabelEncode:
    """Parse ``data["label"]`` into ``polys`` (float32 [N,K,2]), ``texts`` and ``ignore_tags``.

    The label is a JSON list of ``{"transcription": str, "points": [[x, y], ...]}``. Boxes whose
    transcription is ``"*"`` or ``"###"`` are tagged ignore. A label with no box returns None so
    the dataset rejects the sample (PaddleOCR does the same).

    Raises:
        DataError: the label is not valid JSON or not a list of boxes with points.
    """

    def __init__(self) -> None:
        pass

    def __call__(self, data: dict[str, Any]) -> dict[str, Any] | None:
        where = _where(data)
        raw = data["label"]
        try:
            label = json.loads(raw)
        except (TypeError, ValueError) as e:
            snippet = raw[:80] if isinstance(raw, str) else type(raw).__name__
            raise DataError(f"{where}malformed detection label (not JSON: {e}): {snippet!r}") from e
        if not isinstance(label, list):
            raise DataError(f"{where}detection label must be a JSON list of boxes, got {type(label).__name__}")
        polys: list[np.ndarray] = []
        texts: list[str] = []
        tags: list[bool] = []
        for i, box in enumerate(label):
            if not isinstance(box, dict) or "points" not in box or "transcription" not in box:
                raise DataError(
                    f"{where}box {i} of the detection label needs 'transcription' and 'points' keys"
                )
            polys.append(_parse_points(box["points"], where, i))
            text = box["transcription"]
            texts.append(text)
            tags.append(isinstance(text, str) and text in IGNORE_TRANSCRIPTIONS)
        if not polys:
            return None
        data["polys"] = pad_polygons(polys)
        data["texts"] = texts
        data["ignore_tags"] = np.array(tags, dtype=bool)
        return data
