"""CTC decoding (PaddleOCR ``CTCLabelDecode`` semantics). Framework-free: NumPy in, Python out.

Greedy decoding: argmax per time step, drop a step equal to the previous one, drop blanks (id 0).
The confidence is the mean of the max-probabilities of the kept steps, or 0 if none is kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Optional, Union

import numpy as np

from ocr_core.data.dictionary import CharacterSet
from ocr_core.postprocess import POSTPROCESS

_LTR_RUN = re.compile(r"[a-zA-Z0-9 :*./%+-]")


def to_numpy(x: Any) -> np.ndarray:
    """Array-like or tensor (duck-typed ``.detach().cpu()``) -> ndarray, without importing torch."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if getattr(x, "is_floating_point", lambda: False)():
            x = x.float()  # bf16/fp16 tensors: numpy has no bfloat16
        return x.numpy()
    return np.asarray(x)


def _reverse_rtl(text: str) -> str:
    """Reverse an RTL (Arabic) prediction while keeping runs of Latin/digits in order."""
    parts: list[str] = []
    run = ""
    for c in text:
        if _LTR_RUN.match(c):
            run += c
        else:
            if run:
                parts.append(run)
            parts.append(c)
            run = ""
    if run:
        parts.append(run)
    return "".join(reversed(parts))


@POSTPROCESS.register()
class CTCLabelDecode:
    """Greedy CTC decoder.

    Args:
        character_dict_path: Dictionary file (PaddleOCR names resolve to shipped copies); None
            means the 36-char ``0-9a-z`` set. A path containing "arabic" turns on RTL reversal.
        use_space_char: Append ``" "`` to the dictionary.
    """

    def __init__(self, character_dict_path: Optional[str] = None, use_space_char: bool = False) -> None:
        self.charset = CharacterSet.from_config(character_dict_path, use_space_char)
        self.character = self.charset.ctc_classes
        self.reverse = character_dict_path is not None and "arabic" in character_dict_path

    @staticmethod
    def _select(preds: Any) -> np.ndarray:
        if isinstance(preds, Mapping):
            if "ctc" not in preds:
                raise KeyError(f"CTCLabelDecode needs a 'ctc' entry, got keys {sorted(preds)}")
            preds = preds["ctc"]
        if isinstance(preds, (tuple, list)):
            preds = preds[-1]
        arr = to_numpy(preds)
        if arr.ndim != 3:
            raise ValueError(f"CTC predictions must be [B, T, C], got shape {arr.shape}")
        return arr

    def decode(
        self,
        text_index: np.ndarray,
        text_prob: Optional[np.ndarray] = None,
        is_remove_duplicate: bool = False,
    ) -> list[tuple[str, float]]:
        """Ids [B, T] (+ probs [B, T]) -> ``[(text, confidence)]``; blanks (0) are dropped."""
        results: list[tuple[str, float]] = []
        for b in range(len(text_index)):
            ids = np.asarray(text_index[b])
            keep = np.ones(len(ids), dtype=bool)
            if is_remove_duplicate:
                keep[1:] = ids[1:] != ids[:-1]
            keep &= ids != 0
            text = "".join(self.character[int(i)] for i in ids[keep])
            if self.reverse:
                text = _reverse_rtl(text)
            if text_prob is None:
                conf = 1.0  # ground-truth labels
            else:
                kept = np.asarray(text_prob[b])[keep]
                conf = float(kept.mean()) if kept.size else 0.0
            results.append((text, conf))
        return results

    def __call__(
        self, preds: Any, label: Any = None
    ) -> Union[list[tuple[str, float]], tuple[list[tuple[str, float]], list[tuple[str, float]]]]:
        """Decode ``preds`` (array/tensor [B, T, C] of probabilities, ``{"ctc": ...}``, or a
        list/tuple whose last item is used).

        Returns:
            ``[(text, conf)]`` per sample; with ``label`` ([B, L] ids, 0-padded) also the
            decoded labels: ``(preds, labels)``.
        """
        probs = self._select(preds)
        text = self.decode(probs.argmax(axis=2), probs.max(axis=2), is_remove_duplicate=True)
        if label is None:
            return text
        return text, self.decode(to_numpy(label))


@POSTPROCESS.register()
class DistillationCTCLabelDecode(CTCLabelDecode):
    """Decode several roles of a distillation model: ``{role: CTCLabelDecode result}``.

    Args:
        model_name: Role name(s) to decode, e.g. ``["Student", "Teacher"]``.
        key: Entry of each role's output to use (e.g. ``head_out``), if present.
        multi_head: The role output is a multi-head dict; use its ``ctc`` entry.
    """

    def __init__(
        self,
        model_name: Union[str, list[str], None] = None,
        key: Optional[str] = None,
        multi_head: bool = False,
        character_dict_path: Optional[str] = None,
        use_space_char: bool = False,
    ) -> None:
        super().__init__(character_dict_path, use_space_char)
        if model_name is None:
            model_name = ["student"]
        self.model_name: list[str] = [model_name] if isinstance(model_name, str) else list(model_name)
        self.key = key
        self.multi_head = multi_head

    def __call__(self, preds: Any, label: Any = None) -> dict[str, Any]:  # type: ignore[override]
        out: dict[str, Any] = {}
        for name in self.model_name:
            pred = preds[name]
            # Our models may return the head dict directly instead of nesting it under ``key``.
            if self.key is not None and isinstance(pred, Mapping) and self.key in pred:
                pred = pred[self.key]
            if self.multi_head and isinstance(pred, Mapping):
                pred = pred["ctc"]
            out[name] = super().__call__(pred, label=label)
        return out


__all__ = ["CTCLabelDecode", "DistillationCTCLabelDecode", "to_numpy"]
