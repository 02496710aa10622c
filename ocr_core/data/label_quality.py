"""What a training set's labels lose before they reach the model, counted up front.

The datasets skip bad label lines and the label encoders drop characters outside the dictionary
and reject texts longer than ``max_text_length``, each sample at the moment it is drawn (often in
a DataLoader worker, where the counts never reach the log). :func:`label_quality` counts the same
things from the labels alone, once, so ``train.log`` and the training report can say them.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from ocr_core.data.charset import format_char_counts
from ocr_core.data.label_io import LineError, parse_det_label
from ocr_core.data.transforms.rec_label import _RecLabelEncoder


def _rec_encoder(dataset: Any) -> Optional[_RecLabelEncoder]:
    for op in getattr(dataset, "ops", []):
        if isinstance(op, _RecLabelEncoder):
            return op
        inner = getattr(op, "ctc_encode", None)  # MultiLabelEncode: CTC's rules decide for both heads
        if isinstance(inner, _RecLabelEncoder):
            return inner
    return None


def _labels(dataset: Any) -> list[str]:
    """Every label the dataset can draw from (all good lines of every file, every LMDB sample)."""
    entries = getattr(dataset, "file_entries", None)
    if entries is not None:  # SimpleDataSet: all good lines, not only this epoch's ratio_list draw
        return [e.label for file in entries for e in file]
    read = getattr(dataset, "read_label", None)
    if callable(read):
        return [read(i) for i in range(len(dataset))]
    return []


def label_quality(dataset: Any) -> dict[str, Any]:
    """Count the label problems of ``dataset``.

    Returns:
        ``samples``; ``bad_lines`` (label lines skipped at load time); rec: ``too_long`` (texts
        longer than ``max_text_length``: rejected when drawn), ``empty`` (empty texts, rejected),
        ``with_unknown_chars`` (labels that lose characters outside the dictionary) and
        ``unknown_chars`` (character -> count); det: ``empty_transcriptions`` (boxes with an empty
        text that are not ``###``: trained as text).
    """
    out: dict[str, Any] = {"samples": len(dataset), "bad_lines": int(getattr(dataset, "stats", {}).get("bad_lines", 0))}
    names = [type(op).__name__ for op in getattr(dataset, "ops", [])]
    enc = _rec_encoder(dataset)
    if enc is not None:
        unknown: Counter[str] = Counter()
        too_long = empty = with_unknown = 0
        for text in _labels(dataset):
            if not text:
                empty += 1
                continue
            if len(text) > enc.max_text_len:
                too_long += 1
            _ids, dropped = enc.charset.encode(text, offset=0)
            if dropped:
                with_unknown += 1
                unknown.update(dropped)
        out.update(max_text_length=enc.max_text_len, too_long=too_long, empty=empty,
                   with_unknown_chars=with_unknown, unknown_chars=dict(unknown.most_common()))
    elif "DetLabelEncode" in names:
        empty_boxes = 0
        for text in _labels(dataset):
            try:
                boxes = parse_det_label(text)
            except (LineError, ValueError, json.JSONDecodeError):
                continue  # bad lines were skipped (and counted) at load time
            empty_boxes += sum(1 for b in boxes if not b.ignore and not b.transcription.strip())
        out["empty_transcriptions"] = empty_boxes
    return out


def describe(quality: dict[str, Any]) -> list[str]:
    """One log line per problem found (nothing when the labels are clean)."""
    lines = []
    if quality.get("bad_lines"):
        lines.append(f"{quality['bad_lines']} bad label line(s) skipped")
    if quality.get("too_long"):
        lines.append(f"{quality['too_long']} text(s) longer than max_text_length {quality['max_text_length']} "
                     "(rejected when drawn)")
    if quality.get("empty"):
        lines.append(f"{quality['empty']} empty text(s) (rejected when drawn)")
    if quality.get("with_unknown_chars"):
        lines.append(f"{quality['with_unknown_chars']} label(s) lose characters outside the dictionary: "
                     f"{format_char_counts(Counter(quality['unknown_chars']), 10)}")
    if quality.get("empty_transcriptions"):
        lines.append(f"{quality['empty_transcriptions']} det box(es) with an empty transcription (trained as "
                     "text; '###' marks don't-care)")
    return lines


def report_label_quality(dataset: Any, save_dir: Any, logger: logging.Logger, name: str = "Train") -> dict[str, Any]:
    """Log :func:`label_quality` of ``dataset`` (WARNING per problem, else one INFO line) and write it
    to ``<save_dir>/data_quality.json`` for the training report; returns it."""
    quality = label_quality(dataset)
    problems = describe(quality)
    for line in problems:
        logger.warning("%s data: %s", name, line)
    if not problems:
        logger.info("%s data: %d samples, no label problems found", name, quality["samples"])
    path = Path(save_dir) / "data_quality.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({name: quality}, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return quality


__all__ = ["describe", "label_quality", "report_label_quality"]
