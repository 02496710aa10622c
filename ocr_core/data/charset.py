"""Character sets for label checks: loading a dictionary and measuring label coverage.

Dictionary reading and path resolution (PaddleOCR names like ``ppocr/utils/en_dict.txt`` map onto
``ocr_core/dicts/``) live in :mod:`ocr_core.data.dictionary`; this module adds the plain-list view
and the helpers the dataset validator uses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Optional

from ocr_core.data.dictionary import DEFAULT_CHARACTERS, read_dict_file


def read_charset(path: Optional[str], use_space_char: bool) -> list[str]:
    """The characters of a recognition dictionary, without the CTC blank.

    PaddleOCR semantics: one character per line with only ``"\\r\\n"`` stripped; ``" "`` appended
    when ``use_space_char``. With no path the 36 characters ``0-9a-z`` are used (and labels are
    lowercased, see :func:`charset_lowercases`; ``use_space_char`` is ignored then, as in
    PaddleOCR).

    Raises:
        ConfigError: if the dictionary cannot be found.
    """
    if path is None:
        return list(DEFAULT_CHARACTERS)
    chars = read_dict_file(path)
    if use_space_char:
        chars.append(" ")
    return chars


def charset_lowercases(path: Optional[str]) -> bool:
    """Whether labels are lowercased before encoding (only for the built-in default set)."""
    return path is None


def unknown_chars(text: str, charset: Collection[str], lower: bool = False) -> Counter[str]:
    """Characters of ``text`` that the recognizer cannot emit, with their counts."""
    if lower:
        text = text.lower()
    return Counter(ch for ch in text if ch not in charset)


@dataclass
class CharsetCoverage:
    """How a set of labels uses a dictionary.

    Attributes:
        charset_size: Distinct characters in the dictionary.
        seen: Count of each character that appears in the labels.
        unknown: Count of each label character missing from the dictionary.
    """

    charset_size: int
    seen: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)

    @property
    def used(self) -> int:
        """Dictionary characters that occur at least once."""
        return sum(1 for ch in self.seen if ch not in self.unknown)

    @property
    def coverage(self) -> float:
        """Fraction of the dictionary that occurs in the labels."""
        return self.used / self.charset_size if self.charset_size else 0.0


def measure_coverage(texts: Iterable[str], charset: Collection[str], lower: bool = False) -> CharsetCoverage:
    """Count dictionary use and unknown characters over ``texts``."""
    chars = set(charset)
    cov = CharsetCoverage(charset_size=len(chars))
    for text in texts:
        if lower:
            text = text.lower()
        for ch in text:
            cov.seen[ch] += 1
            if ch not in chars:
                cov.unknown[ch] += 1
    return cov


def format_char_counts(counts: Counter[str], limit: int = 10) -> str:
    """``'é' x2, '€' x1`` for messages, most frequent first."""
    items = [f"{ch!r} x{n}" for ch, n in counts.most_common(limit)]
    if len(counts) > limit:
        items.append(f"... {len(counts) - limit} more")
    return ", ".join(items)


__all__ = [
    "CharsetCoverage",
    "charset_lowercases",
    "format_char_counts",
    "measure_coverage",
    "read_charset",
    "unknown_chars",
]
