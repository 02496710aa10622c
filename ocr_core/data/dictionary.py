"""Character dictionaries for recognition: locating them and mapping text <-> class ids.

PaddleOCR configs name dictionaries by their path inside the PaddleOCR tree
(``ppocr/utils/en_dict.txt``). :func:`resolve_dict_path` maps such names onto the copies shipped
in ``ocr_core/dicts/`` when the path does not exist, so unmodified configs work.

:class:`CharacterSet` follows PaddleOCR's ``BaseRecLabelEncode``/``BaseRecLabelDecode`` rules:
one character per dictionary line (only CR/LF stripped, so a line holding a space is the space
character), an extra ``" "`` appended when ``use_space_char``, and with no dictionary at all the
36 characters ``0-9a-z`` with text lowercased before encoding.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

from ocr_core.errors import ConfigError

DICTS_DIR = Path(__file__).resolve().parent.parent / "dicts"
DEFAULT_CHARACTERS = "0123456789abcdefghijklmnopqrstuvwxyz"
CTC_BLANK = "blank"

# PaddleOCR dictionaries that do not ship here, and where to get them. ocr_core/dicts/ holds those of
# the shipped configs: en/ic15, ppocr_keys_v1.txt (written from the official PP-OCRv3 rec model's
# metadata by `ocrflow weights import-ppocrv3 --kind rec`) and the 8 dictionaries of
# configs/rec/multi_language/ (source and licence in ocr_core/dicts/README.md). The other language
# dictionaries of PaddleOCR release/2.10's ppocr/utils/dict/ are not shipped:
_UPSTREAM_DICT_URL = "https://github.com/PaddlePaddle/PaddleOCR/blob/release/2.10/ppocr/utils/dict/"
_NOT_SHIPPED: dict[str, str] = {
    name: (f"not shipped with OCRFlow; download PaddleOCR's {_UPSTREAM_DICT_URL}{name} (Apache-2.0) and set "
           "Global.character_dict_path to the downloaded file")
    for name in (
        "ar_dict.txt", "be_dict.txt", "bengali_dict.txt", "bg_dict.txt", "bn_dict.txt", "chinese_cht_dict.txt",
        "fa_dict.txt", "gujarati_dict.txt", "hebrew_dict.txt", "hi_dict.txt", "it_dict.txt", "ka_dict.txt",
        "kazakh_dict.txt", "mr_dict.txt", "ne_dict.txt", "oc_dict.txt", "pu_dict.txt", "rs_dict.txt",
        "rsc_dict.txt", "ru_dict.txt", "samaritan_dict.txt", "syriac_dict.txt", "ta_dict.txt", "te_dict.txt",
        "th_dict.txt", "ug_dict.txt", "uk_dict.txt", "ur_dict.txt", "vi_dict.txt", "xi_dict.txt",
    )
}


def resolve_dict_path(path: Union[str, os.PathLike[str]]) -> Path:
    """Find a character dictionary file.

    An existing path is returned as is. Otherwise the file name is looked up among the
    dictionaries shipped in ``ocr_core/dicts/``, so PaddleOCR names such as
    ``ppocr/utils/en_dict.txt`` or ``./ppocr/utils/ic15_dict.txt`` and bare names such as
    ``en_dict.txt`` work.

    Args:
        path: A file path or a PaddleOCR dictionary name.

    Returns:
        The path of a readable dictionary file.

    Raises:
        ConfigError: naming the missing file (and, for known unshipped ones, how to get it).
    """
    given = Path(path)
    if given.is_file():
        return given
    shipped = DICTS_DIR / given.name
    if shipped.is_file():
        return shipped
    available = ", ".join(sorted(p.name for p in DICTS_DIR.glob("*.txt")))
    hint = _NOT_SHIPPED.get(given.name)
    if hint:
        msg = f"character dictionary {str(path)!r} not found; it is {hint}"
    else:
        msg = (
            f"character dictionary {str(path)!r} not found, and {given.name!r} is not one of the "
            f"dictionaries shipped in {DICTS_DIR}: {available}"
        )
    raise ConfigError(msg, "character_dict_path")


@functools.lru_cache(maxsize=32)
def _read_dict_lines(path: str, mtime_ns: int) -> tuple[str, ...]:
    # Cached per (path, mtime): every label encoder / decoder of a config reads the same file.
    del mtime_ns
    with open(path, "rb") as fh:
        raw = fh.readlines()
    out = []
    for n, line in enumerate(raw, 1):
        try:
            out.append(line.decode("utf-8").strip("\r\n"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"dictionary {path}:{n}: not UTF-8 ({exc.reason} at byte {exc.start})",
                              "character_dict_path") from None
    return tuple(out)


def read_dict_file(path: Union[str, os.PathLike[str]]) -> list[str]:
    """Read a dictionary: one entry per line, CR/LF removed, nothing else stripped."""
    resolved = resolve_dict_path(path)
    return list(_read_dict_lines(str(resolved), resolved.stat().st_mtime_ns))


class CharacterSet:
    """The characters a recognizer can emit, and text <-> id conversion.

    Args:
        chars: Characters in class order, without the CTC blank. Duplicates are allowed (as in
            PaddleOCR, encoding uses the last occurrence; ``en_dict.txt`` plus
            ``use_space_char`` has two spaces).
        lower: Lowercase text before encoding.
        source: Where the characters came from (for messages and metadata).
    """

    def __init__(self, chars: Sequence[str], lower: bool = False, source: Optional[str] = None) -> None:
        self.chars: list[str] = list(chars)
        self.lower = lower
        self.source = source
        # Later entries win, matching PaddleOCR's dict construction.
        self._index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_config(
        cls,
        character_dict_path: Optional[str] = None,
        use_space_char: bool = False,
        lower: bool = False,
    ) -> CharacterSet:
        """Build from the ``Global`` keys ``character_dict_path`` and ``use_space_char``.

        With no dictionary the 36-character ``0-9a-z`` set is used, text is lowercased and
        ``use_space_char`` is ignored (PaddleOCR behaviour).
        """
        if character_dict_path is None:
            return cls(DEFAULT_CHARACTERS, lower=True, source=None)
        chars = read_dict_file(character_dict_path)
        if use_space_char:
            chars.append(" ")
        return cls(chars, lower=lower, source=str(character_dict_path))

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def ctc_classes(self) -> list[str]:
        """CTC output classes: ``["blank"] + chars``."""
        return [CTC_BLANK, *self.chars]

    @property
    def num_ctc_classes(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str, offset: int = 1) -> tuple[list[int], list[str]]:
        """Map ``text`` to ids, dropping characters not in the set.

        Args:
            text: The label.
            offset: Added to each character's position; the default 1 gives CTC class ids
                (blank = 0), 0 gives positions in :attr:`chars`.

        Returns:
            ``(ids, unknown_chars)``: the ids of the known characters in order, and the
            characters that were dropped (with repeats).
        """
        if self.lower:
            text = text.lower()
        ids: list[int] = []
        unknown: list[str] = []
        for ch in text:
            idx = self._index.get(ch)
            if idx is None:
                unknown.append(ch)
            else:
                ids.append(idx + offset)
        return ids, unknown

    def decode(self, ids: Sequence[int], offset: int = 1) -> str:
        """Join the characters of ``ids`` (as produced by :meth:`encode` with the same offset)."""
        return "".join(self.chars[i - offset] for i in ids)

    def sha256(self) -> str:
        """Digest of the CTC class list (order and content); identifies a model's output layer."""
        return hashlib.sha256("\n".join(self.ctc_classes).encode("utf-8")).hexdigest()

    def __repr__(self) -> str:
        return f"CharacterSet({len(self.chars)} chars, lower={self.lower}, source={self.source!r})"


__all__ = ["CharacterSet", "DEFAULT_CHARACTERS", "DICTS_DIR", "read_dict_file", "resolve_dict_path"]
