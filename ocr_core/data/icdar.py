"""Lossless ICDAR2015 ground truth <-> PaddleOCR label conversion.

Detection gt (``gt_img_N.txt``, UTF-8 with BOM, CRLF): ``x1,y1,x2,y2,x3,y3,x4,y4,transcription``.
Only the first 8 commas split, so transcriptions keep their commas and quotes (PaddleOCR's
``gen_label.py`` splits on every comma and truncates them). ``###`` marks a don't-care box.

Recognition gt (``gt.txt``): ``word_N.png, "text"``. The text is kept as written, spaces
included (``gen_label.py`` removes every space and every quote); inside the quotes ``\\"`` and
``\\\\`` are unescaped.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Union

from ocr_core.data.label_io import (
    DetBox,
    LineError,
    format_det_label,
    format_label_line,
    parse_det_label,
    read_label_lines,
    split_label_line,
)
from ocr_core.errors import DataError
from ocr_core.progress import progress

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
BOM = "\ufeff"


@dataclass
class ConvertStats:
    """Counts from a conversion."""

    files: int = 0
    lines: int = 0
    boxes: int = 0
    dont_care: int = 0
    missing_images: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bar(items: Iterable[Any], desc: str) -> Iterable[Any]:
    return progress(items, desc=desc, unit="file")


def _natural_key(name: str) -> list[Union[int, str]]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _text_lines(path: str) -> Iterator[tuple[int, str]]:
    for line_no, text in read_label_lines(path):
        if text is None:
            raise DataError(f"{path}:{line_no}: line is not valid UTF-8")
        yield line_no, text


def _number(token: str) -> Union[int, float]:
    token = token.strip()
    try:
        return int(token)
    except ValueError:
        return float(token)


def _format_number(v: Union[int, float]) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


# ------------------------------------------------------------------------------------------------
# Detection
# ------------------------------------------------------------------------------------------------


def parse_icdar_det_line(text: str, file: str = "<gt>", line: int = 0) -> DetBox:
    """``x1,y1,...,x4,y4,transcription`` -> a box (coordinates stay ints when they are ints).

    Raises:
        DataError: ``file:line: reason`` for fewer than 9 fields or a non-numeric coordinate.
    """
    parts = text.split(",", 8)
    if len(parts) < 9:
        raise DataError(f"{file}:{line}: expected 8 coordinates and a transcription, got {len(parts)} field(s)")
    try:
        coords = [_number(p) for p in parts[:8]]
    except ValueError as exc:
        raise DataError(f"{file}:{line}: non-numeric coordinate in {text[:60]!r}") from exc
    points = [[coords[i], coords[i + 1]] for i in range(0, 8, 2)]
    return DetBox(parts[8], points)


def read_icdar_det_gt(path: str) -> list[DetBox]:
    """All boxes of one ICDAR detection gt file (BOM and CRLF tolerated, blank lines skipped)."""
    return [parse_icdar_det_line(text, path, n) for n, text in _text_lines(path)]


def gt_name_to_image_stem(gt_name: str) -> str:
    """``gt_img_12.txt`` -> ``img_12`` (PaddleOCR: ``label_file[3:-4]``)."""
    stem = os.path.splitext(os.path.basename(gt_name))[0]
    return stem[3:] if stem.startswith("gt_") else stem


def find_image_name(stem: str, image_dir: Optional[str]) -> tuple[str, bool]:
    """``(file name, found)``: the image called ``stem`` in ``image_dir``, else ``stem + ".jpg"``."""
    if image_dir and os.path.isdir(image_dir):
        for ext in IMAGE_EXTS:
            for cand in (stem + ext, stem + ext.upper()):
                if os.path.isfile(os.path.join(image_dir, cand)):
                    return cand, True
    return stem + ".jpg", False


def _join_prefix(prefix: str, name: str) -> str:
    return f"{prefix.rstrip('/')}/{name}" if prefix else name


def convert_det_gt_dir(gt_dir: str, image_dir: Optional[str], out_file: str,
                       image_prefix: Optional[str] = None) -> ConvertStats:
    """Convert a directory of ``gt_*.txt`` files into one PaddleOCR det label file.

    Args:
        gt_dir: Directory with the ICDAR gt files.
        image_dir: Where the images are (used to find each image's real extension).
        out_file: The label file to write (UTF-8, ``\\n`` line ends).
        image_prefix: Written before each image name (default: ``image_dir`` as given).

    Raises:
        DataError: for a missing gt dir, no gt files, or a malformed gt line (``file:line``).
    """
    if not os.path.isdir(gt_dir):
        raise DataError(f"{gt_dir}: gt directory does not exist")
    names = sorted((n for n in os.listdir(gt_dir) if n.lower().endswith(".txt")), key=_natural_key)
    if not names:
        raise DataError(f"{gt_dir}: no .txt ground-truth files")
    prefix = (image_dir or "") if image_prefix is None else image_prefix
    stats = ConvertStats()
    out_lines = []
    for name in _bar(names, "convert det gt"):
        boxes = read_icdar_det_gt(os.path.join(gt_dir, name))
        img_name, found = find_image_name(gt_name_to_image_stem(name), image_dir)
        if not found:
            stats.missing_images.append(img_name)
        stats.files += 1
        stats.lines += 1
        stats.boxes += len(boxes)
        stats.dont_care += sum(b.transcription == "###" for b in boxes)
        out_lines.append(format_label_line(_join_prefix(prefix, img_name), format_det_label(boxes)))
    _write_lines(out_file, out_lines)
    return stats


def format_icdar_det_line(box: DetBox, file: str = "", line: int = 0) -> str:
    """A box as an ICDAR gt line (quadrilaterals only)."""
    if len(box.points) != 4:
        raise DataError(f"{file}:{line}: ICDAR gt needs 4-point boxes, got {len(box.points)} points")
    coords = ",".join(_format_number(v) for pt in box.points for v in pt)
    return f"{coords},{box.transcription}"


def det_labels_to_icdar(label_file: str, out_dir: str, *, bom: bool = True, crlf: bool = True,
                        delimiter: str = "\t") -> ConvertStats:
    """Write one ``gt_<image stem>.txt`` per label line (the reverse of :func:`convert_det_gt_dir`).

    Raises:
        DataError: ``file:line: reason`` for a malformed label or a non-quadrilateral box.
    """
    os.makedirs(out_dir, exist_ok=True)
    stats = ConvertStats()
    newline = "\r\n" if crlf else "\n"
    for line_no, text in _bar(list(_text_lines(label_file)), "write ICDAR gt"):
        try:
            paths, label = split_label_line(text, delimiter)
            boxes = parse_det_label(label)
        except LineError as exc:
            raise DataError(f"{label_file}:{line_no}: {exc.reason}") from exc
        stem = os.path.splitext(os.path.basename(paths[0]))[0]
        body = newline.join(format_icdar_det_line(b, label_file, line_no) for b in boxes)
        with open(os.path.join(out_dir, f"gt_{stem}.txt"), "w", encoding="utf-8", newline="") as fh:
            fh.write((BOM if bom else "") + body + (newline if boxes else ""))
        stats.files += 1
        stats.lines += 1
        stats.boxes += len(boxes)
        stats.dont_care += sum(b.transcription == "###" for b in boxes)
    return stats


# ------------------------------------------------------------------------------------------------
# Recognition
# ------------------------------------------------------------------------------------------------

_UNESCAPE = re.compile(r'\\(["\\])')


def parse_icdar_rec_line(text: str, file: str = "<gt>", line: int = 0) -> tuple[str, str]:
    """``word_1.png, "Genaxis Theatre"`` -> ``("word_1.png", "Genaxis Theatre")``.

    The path ends at the first comma; one space after it is dropped. A text wrapped in double
    quotes loses the outer quotes and has ``\\"``/``\\\\`` unescaped; an unquoted text is kept
    verbatim.

    Raises:
        DataError: ``file:line: reason`` when there is no comma or the path is empty.
    """
    if "," not in text:
        raise DataError(f"{file}:{line}: expected 'image, \"text\"', found no comma")
    path, rest = text.split(",", 1)
    path = path.strip()
    if not path:
        raise DataError(f"{file}:{line}: empty image path")
    if rest.startswith(" "):
        rest = rest[1:]
    if len(rest) >= 2 and rest.startswith('"') and rest.endswith('"'):
        rest = _UNESCAPE.sub(r"\1", rest[1:-1])
    return path, rest


def format_icdar_rec_line(path: str, text: str) -> str:
    """The inverse of :func:`parse_icdar_rec_line`."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'{path}, "{escaped}"'


def convert_rec_gt(gt_file: str, out_file: str, image_prefix: str = "") -> ConvertStats:
    """Convert an ICDAR word-recognition ``gt.txt`` into a PaddleOCR rec label file.

    Raises:
        DataError: for a malformed line, or a text with a line break or tab.
    """
    if os.path.isdir(gt_file):
        gt_file = os.path.join(gt_file, "gt.txt")
    stats = ConvertStats(files=1)
    out_lines = []
    for line_no, text in _text_lines(gt_file):
        path, label = parse_icdar_rec_line(text, gt_file, line_no)
        if "\t" in label:
            raise DataError(f"{gt_file}:{line_no}: text contains a tab, which the label format cannot hold")
        stats.lines += 1
        stats.dont_care += label == "###"
        out_lines.append(format_label_line(_join_prefix(image_prefix, path), label))
    _write_lines(out_file, out_lines)
    return stats


def rec_labels_to_icdar(label_file: str, out_file: str, *, bom: bool = True, crlf: bool = True,
                        delimiter: str = "\t", strip_prefix: bool = True) -> ConvertStats:
    """Write a PaddleOCR rec label file as an ICDAR ``gt.txt`` (image base names when ``strip_prefix``)."""
    stats = ConvertStats(files=1)
    out = []
    for line_no, text in _text_lines(label_file):
        try:
            paths, label = split_label_line(text, delimiter)
        except LineError as exc:
            raise DataError(f"{label_file}:{line_no}: {exc.reason}") from exc
        path = os.path.basename(paths[0]) if strip_prefix else paths[0]
        out.append(format_icdar_rec_line(path, label))
        stats.lines += 1
    newline = "\r\n" if crlf else "\n"
    parent = os.path.dirname(os.path.abspath(out_file))
    os.makedirs(parent, exist_ok=True)
    with open(out_file, "w", encoding="utf-8", newline="") as fh:
        fh.write((BOM if bom else "") + "".join(line + newline for line in out))
    return stats


def _write_lines(path: str, lines: list[str]) -> None:
    """Write ``lines`` to ``path`` atomically (a temporary file beside it, removed on any failure)."""
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory (expected a label file to write)")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(line + "\n" for line in lines)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


__all__ = [
    "ConvertStats",
    "convert_det_gt_dir",
    "convert_rec_gt",
    "det_labels_to_icdar",
    "find_image_name",
    "format_icdar_det_line",
    "format_icdar_rec_line",
    "gt_name_to_image_stem",
    "parse_icdar_det_line",
    "parse_icdar_rec_line",
    "read_icdar_det_gt",
    "rec_labels_to_icdar",
]
