"""Dataset validator for PaddleOCR det and rec label files.

Every problem is an :class:`Issue` that prints as ``file:line: reason``. :func:`check_line` is
the per-line check; datasets call it at load time with the cheap options (structure only, no
geometry, no image reads), and :func:`validate_labels` runs it with everything switched on and
gathers :class:`~ocr_core.data.dataset_stats.DatasetStats`.

Geometry checks (zero-area / self-intersecting polygons, points outside the image) skip
don't-care boxes (``###``, ``*``): they never contribute to the loss or the metric.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Union

import cv2
import numpy as np
from shapely.geometry import Polygon

from ocr_core.data import image_io
from ocr_core.data.charset import format_char_counts, measure_coverage, unknown_chars
from ocr_core.data.dataset_stats import BOX_BINS, LEN_BINS, SIDE_BINS, DatasetStats, bin_of, ordered_hist
from ocr_core.data.label_io import (
    DetBox,
    LabelEntry,
    LineError,
    image_path,
    parse_det_label,
    read_label_lines,
    split_label_line,
)
from ocr_core.errors import DataError

MODES = ("det", "rec", "any")


@dataclass(frozen=True)
class Issue:
    """One problem at ``file:line``; ``code`` is the problem class (``bad_json``, ``few_points``...)."""

    file: str
    line: int
    reason: str
    code: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class LineCheck:
    """Result of :func:`check_line`.

    Attributes:
        entry: The parsed line, or None when it could not be split into path and label.
        issues: Problems found (empty when the line is good).
        boxes: Det boxes when the label parsed (mode ``det``).
        image_sizes: ``(h, w)`` of each decoded image (only with ``check_images``).
    """

    entry: Optional[LabelEntry]
    issues: list[Issue] = field(default_factory=list)
    boxes: Optional[list[DetBox]] = None
    image_sizes: list[tuple[int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


def read_image_size(path: str) -> tuple[int, int]:
    """Decode an image file the way ``DecodeImage`` does and return ``(h, w)``.

    Raises:
        LineError: ``missing_image`` or ``bad_image``.
    """
    if not os.path.isfile(path):
        raise LineError("missing_image", f"image not found: {path}")
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise LineError("missing_image", f"image cannot be read: {path} ({exc})") from exc
    try:
        img = image_io.decode(buf, cv2.IMREAD_COLOR) if buf.size else None
    except image_io.ImageTooLarge as exc:
        raise LineError("too_large", f"{path}: {exc}") from exc
    if img is None:
        raise LineError("bad_image", f"image cannot be decoded: {path}")
    return int(img.shape[0]), int(img.shape[1])


def _geometry_issue(box: DetBox, n: int) -> Optional[LineError]:
    poly = Polygon(box.points)
    if poly.convex_hull.area <= 0.0:  # all points on one line (a bow tie has zero signed area too)
        return LineError("bad_polygon", f"box {n}: zero-area polygon")
    if not poly.is_valid:
        return LineError("bad_polygon", f"box {n}: self-intersecting polygon")
    return None


def _outside(box: DetBox, n: int, h: int, w: int) -> Optional[LineError]:
    for x, y in box.points:
        if x < 0 or y < 0 or x > w or y > h:
            return LineError("outside_image", f"box {n}: point ({x:g}, {y:g}) outside the {w}x{h} image")
    return None


def check_line(
    text: Optional[str],
    file: str,
    line: int,
    mode: str,
    data_dir: str = "",
    *,
    delimiter: str = "\t",
    charset: Optional[Collection[str]] = None,
    lower: bool = False,
    max_text_length: Optional[int] = None,
    check_geometry: bool = True,
    check_images: bool = False,
) -> LineCheck:
    """Check one label line.

    Args:
        text: The line without its line ending (None: the line is not valid UTF-8).
        file: Label file name (for messages).
        line: 1-based line number.
        mode: ``"det"``, ``"rec"``, or ``"any"`` (path/delimiter structure only).
        data_dir: Image paths are joined to it and must stay inside it.
        delimiter: Between path and label.
        charset: Dictionary characters; rec labels with other characters are reported.
        lower: Lowercase labels before the dictionary check (built-in default charset).
        max_text_length: Longer rec labels are reported (None: no limit).
        check_geometry: Check det polygons with shapely (zero area, self-intersection).
        check_images: Read and decode images; report missing/undecodable ones and det points
            outside the image.

    Returns:
        A :class:`LineCheck`; structural errors stop the check at the first problem.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    result = LineCheck(entry=None)

    def add(err: LineError) -> None:
        result.issues.append(Issue(file, line, err.reason, err.code))

    if text is None:
        add(LineError("bad_encoding", "line is not valid UTF-8"))
        return result
    try:
        paths, label = split_label_line(text, delimiter)
        full_paths = [image_path(data_dir, p) for p in paths]
    except LineError as exc:
        add(exc)
        return result
    result.entry = LabelEntry(file, line, paths, label)

    if mode == "det":
        try:
            result.boxes = parse_det_label(label)
        except LineError as exc:
            add(exc)
            return result
        if not result.boxes:
            add(LineError("no_boxes", "no boxes (DetLabelEncode rejects an image without boxes)"))
        if check_geometry:
            for n, box in enumerate(result.boxes, start=1):
                err = None if box.ignore else _geometry_issue(box, n)
                if err is not None:
                    add(err)
    elif mode == "rec":
        if label == "":
            add(LineError("empty_text", "empty text"))
        if max_text_length is not None and len(label) > max_text_length:
            add(LineError("text_too_long", f"text has {len(label)} characters, max_text_length is {max_text_length}"))
        if charset is not None:
            unknown = unknown_chars(label, charset, lower)
            if unknown:
                add(LineError("unknown_chars", f"{sum(unknown.values())} character(s) not in the dictionary: "
                              f"{format_char_counts(unknown)}"))

    if check_images:
        for full in full_paths:
            try:
                h, w = read_image_size(full)
            except LineError as exc:
                add(exc)
                continue
            result.image_sizes.append((h, w))
            for n, box in enumerate(result.boxes or [], start=1):
                err = None if box.ignore else _outside(box, n, h, w)
                if err is not None:
                    add(err)
    return result


@dataclass
class ValidationReport:
    """What :func:`validate_labels` found."""

    errors: list[Issue]
    good_lines: int
    stats: DatasetStats
    warnings: list[Issue] = field(default_factory=list)  # usable but suspect (empty det transcriptions)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "good_lines": self.good_lines,
            "errors": [asdict(e) for e in self.errors],
            "warnings": [asdict(e) for e in self.warnings],
            "stats": self.stats.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def to_text(self, max_errors: Optional[int] = None) -> str:
        shown = self.errors if max_errors is None else self.errors[:max_errors]
        lines = [str(e) for e in shown]
        if len(shown) < len(self.errors):
            lines.append(f"... {len(self.errors) - len(shown)} more error(s)")
        warn = self.warnings if max_errors is None else self.warnings[:max_errors]
        lines.extend(f"{w} (warning)" for w in warn)
        if len(warn) < len(self.warnings):
            lines.append(f"... {len(self.warnings) - len(warn)} more warning(s)")
        lines.append(self.stats.to_text())
        return "\n".join(lines)


def validate_labels(
    label_files: Union[str, Sequence[str]],
    data_dir: str,
    mode: str,
    charset: Optional[Collection[str]] = None,
    max_text_length: Optional[int] = 25,
    check_images: bool = True,
    *,
    delimiter: str = "\t",
    lower: bool = False,
    progress: bool = True,
) -> ValidationReport:
    """Check every line of ``label_files`` and summarise the dataset.

    Args:
        label_files: One or more PaddleOCR label files.
        data_dir: Root the image paths are relative to.
        mode: ``"det"`` or ``"rec"``.
        charset: Dictionary characters for rec labels (None: no dictionary check).
        max_text_length: Longest allowed rec label (None: no limit).
        check_images: Read and decode every image (slower; also checks det points lie inside).
        delimiter: Between path and label.
        lower: Lowercase labels before the dictionary check.
        progress: Show a progress bar when stderr is a terminal.

    Raises:
        DataError: if a label file cannot be read, ``data_dir`` is given but is not a directory, or
            ``delimiter`` is empty.
    """
    from ocr_core.progress import progress as progress_bar

    files = [label_files] if isinstance(label_files, str) else list(label_files)
    if mode not in ("det", "rec"):
        raise DataError(f"mode must be 'det' or 'rec', got {mode!r}")
    if not delimiter:
        raise DataError("the delimiter between image path and label must not be empty")
    if data_dir and not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: data dir " + ("is not a directory" if os.path.exists(data_dir)
                                                    else "does not exist"))
    stats = DatasetStats(mode=mode, label_files=files)
    errors: list[Issue] = []
    warnings: list[Issue] = []
    box_hist: Counter[str] = Counter()
    side_hist: Counter[str] = Counter()
    len_hist: Counter[str] = Counter()
    seen_images: set[str] = set()
    texts: list[str] = []  # for charset coverage
    for file in files:
        lines = list(read_label_lines(file))
        bar = progress_bar(lines, desc=f"validate {os.path.basename(file)}", unit="line", disable=not progress)
        for line_no, text in bar:
            stats.lines += 1
            res = check_line(text, file, line_no, mode, data_dir, delimiter=delimiter, charset=charset,
                             lower=lower, max_text_length=max_text_length, check_geometry=True,
                             check_images=check_images)
            errors.extend(res.issues)
            if res.entry is not None:
                seen_images.update(res.entry.paths)
                if mode == "rec":
                    texts.append(res.entry.label)
                elif res.boxes:
                    texts.extend(b.transcription for b in res.boxes if not b.ignore)
            for h, w in res.image_sizes:
                stats.images_read += 1
                side_hist[bin_of(max(h, w), SIDE_BINS)] += 1
            if not res.ok:
                stats.bad_lines += 1
                continue
            stats.good_lines += 1
            assert res.entry is not None
            if mode == "det":
                boxes = res.boxes or []
                stats.boxes += len(boxes)
                stats.ignored_boxes += sum(b.ignore for b in boxes)
                for n, b in enumerate(boxes, start=1):
                    if not b.ignore and not b.transcription.strip():
                        stats.empty_texts += 1
                        warnings.append(Issue(file, line_no, f"box {n}: empty transcription (trained as text; "
                                                             "'###' marks a don't-care box)", "empty_text"))
                box_hist[bin_of(len(boxes), BOX_BINS)] += 1
                line_texts = [b.transcription for b in boxes if not b.ignore]
            else:
                line_texts = [res.entry.label]
            for t in line_texts:
                len_hist[bin_of(len(t), LEN_BINS)] += 1
                stats.max_text_length_seen = max(stats.max_text_length_seen, len(t))
    stats.images = len(seen_images)
    if mode == "det":
        stats.boxes_per_image = ordered_hist(box_hist, BOX_BINS)
    stats.image_long_side = ordered_hist(side_hist, SIDE_BINS) if stats.images_read else {}
    stats.text_lengths = ordered_hist(len_hist, LEN_BINS)
    if charset is not None:
        # over every parsed line, bad ones included, so unknown characters are all counted
        cov = measure_coverage(texts, charset, lower)
        stats.charset_size, stats.chars_used, stats.charset_coverage = cov.charset_size, cov.used, cov.coverage
        stats.unknown_chars = dict(cov.unknown.most_common())
    stats.errors_by_code = dict(Counter(e.code for e in errors))
    return ValidationReport(errors=errors, good_lines=stats.good_lines, stats=stats, warnings=warnings)


__all__ = ["DatasetStats", "Issue", "LineCheck", "ValidationReport", "check_line", "read_image_size",
           "validate_labels"]
