"""Dataset statistics gathered by :func:`ocr_core.data.validate.validate_labels`.

Histograms bin box counts, the image's longer side and text lengths; :class:`DatasetStats`
prints them as text or JSON.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from ocr_core.data.charset import format_char_counts

BOX_BINS = [(0, 0), (1, 1), (2, 5), (6, 10), (11, 20), (21, 50), (51, None)]
SIDE_BINS = [(1, 64), (65, 128), (129, 256), (257, 512), (513, 1024), (1025, 2048), (2049, None)]
LEN_BINS = [(0, 0), (1, 5), (6, 10), (11, 15), (16, 25), (26, 50), (51, None)]


def _bin_label(lo: int, hi: Optional[int]) -> str:
    if hi is None:
        return f"{lo}+"
    return str(lo) if lo == hi else f"{lo}-{hi}"


def bin_of(value: int, bins: list[tuple[int, Optional[int]]]) -> str:
    for lo, hi in bins:
        if value >= lo and (hi is None or value <= hi):
            return _bin_label(lo, hi)
    return _bin_label(*bins[0])


def ordered_hist(hist: Counter[str], bins: list[tuple[int, Optional[int]]]) -> dict[str, int]:
    return {_bin_label(lo, hi): hist.get(_bin_label(lo, hi), 0) for lo, hi in bins}


@dataclass
class DatasetStats:
    """Summary of a labelled dataset (good lines only, except ``lines``/``bad_lines``).

    Histograms map a bin label (``"2-5"``, ``"51+"``) to a count; image sizes are binned by
    the longer side in pixels.
    """

    mode: str
    label_files: list[str]
    lines: int = 0
    good_lines: int = 0
    bad_lines: int = 0
    images: int = 0
    images_read: int = 0
    boxes: int = 0
    ignored_boxes: int = 0
    empty_texts: int = 0  # det boxes with an empty transcription that are not don't-care
    boxes_per_image: dict[str, int] = field(default_factory=dict)
    image_long_side: dict[str, int] = field(default_factory=dict)
    text_lengths: dict[str, int] = field(default_factory=dict)
    max_text_length_seen: int = 0
    charset_size: Optional[int] = None
    chars_used: Optional[int] = None
    charset_coverage: Optional[float] = None
    unknown_chars: dict[str, int] = field(default_factory=dict)
    errors_by_code: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def to_text(self) -> str:
        """A human-readable summary (several lines)."""

        def hist(h: dict[str, int]) -> str:
            return "  ".join(f"{k}:{v}" for k, v in h.items()) or "-"

        out = [
            f"mode: {self.mode}   label files: {len(self.label_files)}",
            f"lines: {self.lines}  good: {self.good_lines}  bad: {self.bad_lines}",
            f"images referenced: {self.images}  read: {self.images_read}",
        ]
        if self.mode == "det":
            out.append(f"boxes: {self.boxes}  don't care: {self.ignored_boxes}  "
                       f"empty transcription: {self.empty_texts}")
            out.append(f"boxes per image: {hist(self.boxes_per_image)}")
        out.append(f"image long side (px): {hist(self.image_long_side)}")
        out.append(f"text length: {hist(self.text_lengths)}  (max {self.max_text_length_seen})")
        if self.charset_size is not None:
            out.append(f"charset: {self.chars_used}/{self.charset_size} characters used "
                       f"({100.0 * (self.charset_coverage or 0.0):.1f}% coverage)")
            if self.unknown_chars:
                counts = Counter(self.unknown_chars)
                out.append(f"unknown characters ({sum(counts.values())}): {format_char_counts(counts, 20)}")
        if self.errors_by_code:
            out.append("errors: " + "  ".join(f"{k}:{v}" for k, v in sorted(self.errors_by_code.items())))
        return "\n".join(out)
