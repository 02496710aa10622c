"""Recognition label encoders: raw text -> padded id arrays (PaddleOCR ``label_ops`` semantics).

Common rules (PaddleOCR ``BaseRecLabelEncode``): a sample is rejected (None) when its raw text is
empty or longer than ``max_text_length``, or when nothing is left after dropping characters that
are not in the dictionary. Dropped characters are silently removed by PaddleOCR; here they are
also counted, per encoder in ``unknown_counts`` and per sample in ``data["unknown_chars"]``, so
the dataset can report them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional

import numpy as np

from ocr_core.data import TRANSFORMS
from ocr_core.data.dictionary import CharacterSet
from ocr_core.errors import ConfigError


class _RecLabelEncoder:
    """Shared dictionary handling and output; subclasses define the class list and ``make_label``."""

    def __init__(
        self,
        max_text_length: int,
        character_dict_path: Optional[str],
        use_space_char: bool,
        lower: bool = False,
    ) -> None:
        self.max_text_len = max_text_length
        self.charset = CharacterSet.from_config(character_dict_path, use_space_char, lower)
        self.unknown_counts: Counter[str] = Counter()

    def encode(self, text: str) -> Optional[tuple[list[int], int]]:
        """Return ``(positions in charset.chars, number of dropped chars)`` or None to reject."""
        if len(text) == 0 or len(text) > self.max_text_len:
            return None
        ids, unknown = self.charset.encode(text, offset=0)
        if unknown:
            self.unknown_counts.update(unknown)
        if not ids:
            return None
        return ids, len(unknown)

    def make_label(self, ids: list[int]) -> Optional[np.ndarray]:
        """The padded int64 label of ``ids`` (positions in ``charset.chars``), or None to reject."""
        raise NotImplementedError

    def extra_targets(self, label: np.ndarray) -> dict[str, Any]:
        """Targets derived from ``label`` beyond ``label`` and ``length`` (none by default)."""
        return {}

    def framed_label(self, ids: list[int], bos: int, eos: int, pad: int, id_offset: int) -> Optional[np.ndarray]:
        """``[bos] + (ids + id_offset) + [eos]`` padded with ``pad``; None (reject) when
        ``len(ids) >= max_text_length - 1``, as PaddleOCR does."""
        if len(ids) >= self.max_text_len - 1:
            return None
        label = np.full(self.max_text_len, pad, dtype=np.int64)
        label[0] = bos
        label[1 : len(ids) + 1] = np.asarray(ids, dtype=np.int64) + id_offset
        label[len(ids) + 1] = eos
        return label

    def __call__(self, data: dict[str, Any]) -> Optional[dict[str, Any]]:
        encoded = self.encode(data["label"])
        if encoded is None:
            return None
        ids, n_unknown = encoded
        label = self.make_label(ids)
        if label is None:
            return None
        data["length"] = np.array(len(ids), dtype=np.int64)
        data["label"] = label
        data.update(self.extra_targets(label))
        data["unknown_chars"] = n_unknown
        return data


@TRANSFORMS.register()
class CTCLabelEncode(_RecLabelEncoder):
    """CTC targets. Classes: ``["blank"] + chars`` (+ ``" "`` with ``use_space_char``).

    Outputs ``label`` (int64 [max_text_length], zero-padded), ``length`` (int64 scalar),
    ``label_ace`` (int64 [num_classes] histogram of ``label``, padding zeros included as in
    PaddleOCR) and ``unknown_chars`` (int).
    """

    def __init__(
        self,
        max_text_length: int = 25,
        character_dict_path: Optional[str] = None,
        use_space_char: bool = False,
        lower: bool = False,
    ) -> None:
        super().__init__(max_text_length, character_dict_path, use_space_char, lower)
        self.character = self.charset.ctc_classes

    def make_label(self, ids: list[int]) -> Optional[np.ndarray]:
        label = np.zeros(self.max_text_len, dtype=np.int64)
        label[: len(ids)] = np.asarray(ids, dtype=np.int64) + 1
        return label

    def extra_targets(self, label: np.ndarray) -> dict[str, Any]:
        return {"label_ace": np.bincount(label, minlength=len(self.character)).astype(np.int64)}


@TRANSFORMS.register()
class SARLabelEncode(_RecLabelEncoder):
    """SAR (attention) targets. Classes: ``chars + ["<UKN>", "<BOS/EOS>", "<PAD>"]``.

    ``label`` is ``[BOS] + ids + [EOS]`` padded with ``<PAD>`` to ``max_text_length``. Texts with
    ``len(ids) >= max_text_length - 1`` are rejected (24+ characters for 25), as in PaddleOCR.
    Unknown characters are dropped, not mapped to ``<UKN>``.
    """

    def __init__(
        self,
        max_text_length: int = 25,
        character_dict_path: Optional[str] = None,
        use_space_char: bool = False,
    ) -> None:
        super().__init__(max_text_length, character_dict_path, use_space_char)
        n = len(self.charset)
        self.unknown_idx = n
        self.start_idx = self.end_idx = n + 1
        self.padding_idx = n + 2
        self.character = [*self.charset.chars, "<UKN>", "<BOS/EOS>", "<PAD>"]

    def make_label(self, ids: list[int]) -> Optional[np.ndarray]:
        return self.framed_label(ids, self.start_idx, self.end_idx, self.padding_idx, id_offset=0)

    def get_ignored_tokens(self) -> list[int]:
        return [self.padding_idx]


@TRANSFORMS.register()
class NRTRLabelEncode(_RecLabelEncoder):
    """NRTR/GTC targets (PP-OCRv4 ``gtc_encode``): classes ``["blank", "<unk>", "<s>", "</s>"]
    + chars``; ``label`` is ``[2] + ids + [3]`` zero-padded; rejects ``len(ids) >= max - 1``."""

    def __init__(
        self,
        max_text_length: int = 25,
        character_dict_path: Optional[str] = None,
        use_space_char: bool = False,
    ) -> None:
        super().__init__(max_text_length, character_dict_path, use_space_char)
        self.character = ["blank", "<unk>", "<s>", "</s>", *self.charset.chars]

    def make_label(self, ids: list[int]) -> Optional[np.ndarray]:
        return self.framed_label(ids, bos=2, eos=3, pad=0, id_offset=4)


_GTC_ENCODERS = {"SARLabelEncode": SARLabelEncode, "NRTRLabelEncode": NRTRLabelEncode}


@TRANSFORMS.register()
class MultiLabelEncode:
    """Targets for the CTC + SAR (or GTC) multi-head: runs both encoders on copies.

    The sample is rejected when either encoder rejects it (so with SAR, texts of 24-25 chars for
    max 25 are dropped). Output keys (other keys are dropped, as in PaddleOCR): ``img_path``,
    ``image``, ``label_ctc``, ``label_sar`` (``label_gtc`` when ``gtc_encode`` is set),
    ``length`` (CTC length), ``valid_ratio`` (1.0 placeholder; RecResizeImg overwrites it) and
    ``unknown_chars``.
    """

    def __init__(
        self,
        max_text_length: int = 25,
        character_dict_path: Optional[str] = None,
        use_space_char: bool = False,
        gtc_encode: Optional[str] = None,
    ) -> None:
        self.ctc_encode = CTCLabelEncode(max_text_length, character_dict_path, use_space_char)
        self.gtc_encode_type = gtc_encode
        name = gtc_encode or "SARLabelEncode"
        if name not in _GTC_ENCODERS:
            raise ConfigError(
                f"unsupported gtc_encode {gtc_encode!r}; choose one of: {', '.join(_GTC_ENCODERS)}",
                "gtc_encode",
            )
        self.gtc_encode = _GTC_ENCODERS[name](max_text_length, character_dict_path, use_space_char)

    @property
    def unknown_counts(self) -> Counter[str]:
        # Both encoders see the same text; report the CTC side's counts once.
        return self.ctc_encode.unknown_counts

    def __call__(self, data: dict[str, Any]) -> Optional[dict[str, Any]]:
        ctc = self.ctc_encode({"label": data["label"]})
        if ctc is None:
            return None
        # The encoders only read "label": hand them fresh dicts instead of deep copies of the image.
        gtc = self.gtc_encode({"label": data["label"]})
        if gtc is None:
            return None
        out: dict[str, Any] = {"img_path": data.get("img_path"), "image": data["image"]}
        out["label_ctc"] = ctc["label"]
        out["label_gtc" if self.gtc_encode_type is not None else "label_sar"] = gtc["label"]
        out["length"] = ctc["length"]
        out["valid_ratio"] = np.float32(1.0)
        out["unknown_chars"] = ctc["unknown_chars"]
        return out


__all__ = ["CTCLabelEncode", "MultiLabelEncode", "NRTRLabelEncode", "SARLabelEncode"]
