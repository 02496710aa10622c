"""PaddleOCR label files: ``path<delimiter>label`` lines, det JSON labels, multi-image lines.

A label line is ``image_path<delimiter>label`` (delimiter default ``"\\t"``). For detection the
label is a JSON list of ``{"transcription": str, "points": [[x, y], ...]}``; for recognition it
is the text itself (spaces kept). When the path field starts with ``"["`` it is a JSON list of
image paths that share the one label (PaddleOCR picks one at random per sample).

Parsing problems raise :class:`LineError` (a reason plus a short ``code``); the public
:func:`parse_label_line` turns them into :class:`~ocr_core.errors.DataError` naming
``file:line``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from ocr_core.errors import DataError

# Transcriptions that mark a "don't care" region (ICDAR convention plus PaddleOCR's "*").
IGNORE_TEXTS = frozenset({"###", "*"})


class LineError(ValueError):
    """One problem with one label line; ``code`` names the problem class (``bad_json``...)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class LabelEntry:
    """One parsed label line.

    Attributes:
        file: The label file.
        line: 1-based line number in that file.
        paths: Image paths as written (one, or several for a multi-image line).
        label: The raw label string (det JSON or rec text).
    """

    file: str
    line: int
    paths: tuple[str, ...]
    label: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class DetBox:
    """One detection box of a det label."""

    transcription: str
    points: list[list[float]]

    @property
    def ignore(self) -> bool:
        return self.transcription in IGNORE_TEXTS


def read_label_lines(path: str) -> Iterator[tuple[int, Optional[str]]]:
    """Yield ``(line_number, text)`` for every non-blank line of a label file.

    Lines are decoded one by one as UTF-8 (a leading BOM is dropped) and only the line ending
    (``"\\n"``, ``"\\r\\n"``) is removed, so trailing spaces of rec labels survive. A line that
    is not valid UTF-8 yields ``text=None``.

    Raises:
        DataError: if the file cannot be read.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise DataError(f"{path}: cannot read label file ({exc.strerror or exc})") from exc
    except ValueError as exc:  # a NUL byte in the path (open() refuses it before any OSError)
        raise DataError(f"{path!r}: cannot read label file ({exc})") from exc
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for i, chunk in enumerate(raw.split(b"\n"), start=1):
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
        if not chunk.strip():
            continue
        try:
            yield i, chunk.decode("utf-8")
        except UnicodeDecodeError:
            yield i, None


def split_label_line(text: str, delimiter: str = "\t") -> tuple[tuple[str, ...], str]:
    """Split a line into ``(image_paths, label)``.

    Only the first delimiter splits (a rec label may contain the delimiter itself).

    Raises:
        LineError: ``missing_delimiter`` or ``bad_path``.
    """
    if delimiter not in text:
        name = "tab" if delimiter == "\t" else f"delimiter {delimiter!r}"
        raise LineError("missing_delimiter", f"no {name} between image path and label")
    path_field, label = text.split(delimiter, 1)
    return parse_path_field(path_field), label


def parse_path_field(field: str) -> tuple[str, ...]:
    """Image path(s) of a label line: a plain path, or a JSON list of paths if it starts with "["."""
    if field.startswith("["):
        try:
            paths = json.loads(field)
        except json.JSONDecodeError as exc:
            raise LineError("bad_path", f"multi-image path list is not valid JSON ({exc.msg})") from exc
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
            raise LineError("bad_path", "multi-image path list must be a non-empty JSON list of strings")
    else:
        if not field.strip():
            raise LineError("bad_path", "empty image path")
        paths = [field]
    if any("\x00" in p for p in paths):  # no file system takes it (open() raises ValueError)
        raise LineError("bad_path", "image path contains a NUL byte")
    return tuple(paths)


def _coord(value: Any, box_no: int) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LineError("bad_coordinate", f"box {box_no}: non-numeric coordinate {value!r}")
    if not math.isfinite(value):
        raise LineError("bad_coordinate", f"box {box_no}: coordinate {value!r} is not finite")
    return value


def parse_det_label(label: str) -> list[DetBox]:
    """Parse a det label (JSON list of boxes) and check its structure.

    Boxes are numbered from 1 in messages. Coordinates keep their JSON type (int or float).

    Raises:
        LineError: ``bad_json`` (not JSON / not a list of objects / missing keys),
            ``few_points`` (fewer than 3 points), ``bad_coordinate`` (non-numeric, NaN, inf).
    """
    try:
        data = json.loads(label)
    except json.JSONDecodeError as exc:
        raise LineError("bad_json", f"label is not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(data, list):
        raise LineError("bad_json", f"det label must be a JSON list of boxes, got {type(data).__name__}")
    boxes = []
    for n, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise LineError("bad_json", f"box {n}: expected an object, got {type(item).__name__}")
        if "points" not in item:
            raise LineError("bad_json", f"box {n}: missing 'points'")
        text = item.get("transcription")
        if not isinstance(text, str):
            raise LineError("bad_json", f"box {n}: 'transcription' missing or not a string")
        pts = item["points"]
        if not isinstance(pts, list) or not all(isinstance(p, list) and len(p) == 2 for p in pts):
            raise LineError("bad_json", f"box {n}: 'points' must be a list of [x, y] pairs")
        if len(pts) < 3:
            raise LineError("few_points", f"box {n}: {len(pts)} point(s), a polygon needs at least 3")
        points = [[_coord(x, n), _coord(y, n)] for x, y in pts]
        boxes.append(DetBox(text, points))
    return boxes


def format_det_label(boxes: Sequence[DetBox | dict[str, Any]]) -> str:
    """A det label as PaddleOCR writes it: ``json.dumps`` with ``ensure_ascii=False``."""
    items = []
    for b in boxes:
        if isinstance(b, DetBox):
            items.append({"transcription": b.transcription, "points": b.points})
        else:
            items.append({"transcription": b["transcription"], "points": b["points"]})
    return json.dumps(items, ensure_ascii=False)


def format_label_line(paths: str | Sequence[str], label: str, delimiter: str = "\t") -> str:
    """One label line (without the newline); several paths become a JSON list."""
    if isinstance(paths, str):
        field = paths
    elif len(paths) == 1:
        field = paths[0]
    else:
        field = json.dumps(list(paths), ensure_ascii=False)
    if "\n" in label or "\r" in label:
        raise ValueError(f"label for {field!r} contains a line break")
    return f"{field}{delimiter}{label}"


def image_path(data_dir: str, path: str) -> str:
    """``data_dir`` joined with a label path (PaddleOCR: ``os.path.join``).

    Raises:
        LineError: ``path_escape`` when ``data_dir`` is set and the result lies outside it
            (an absolute path or ``..`` components).
    """
    full = os.path.join(data_dir, path)
    if data_dir:
        root = os.path.abspath(data_dir)
        if os.path.commonpath([root, os.path.abspath(full)]) != root:
            raise LineError("path_escape", f"image path {path!r} points outside data_dir {data_dir!r}")
    return full


def parse_label_line(text: str, file: str, line: int, delimiter: str = "\t") -> LabelEntry:
    """Parse one line into a :class:`LabelEntry`.

    Raises:
        DataError: ``file:line: reason``.
    """
    try:
        paths, label = split_label_line(text, delimiter)
    except LineError as exc:
        raise DataError(f"{file}:{line}: {exc.reason}") from exc
    return LabelEntry(file, line, paths, label)


__all__ = [
    "IGNORE_TEXTS",
    "DetBox",
    "LabelEntry",
    "LineError",
    "format_det_label",
    "format_label_line",
    "image_path",
    "parse_det_label",
    "parse_label_line",
    "parse_path_field",
    "read_label_lines",
    "split_label_line",
]
