"""PaddleOCR's ``tools/infer/predict_*.py`` flags for ``ocrflow predict``.

Each flag overrides one setting embedded in the exported model; a flag left unset keeps the
embedded value. Both spellings are accepted (``--det_db_thresh`` and ``--det-db-thresh``).
Booleans take PaddleOCR's ``str2bool`` values (``True``/``False``/``1``/``0``/``yes``/``no``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from ocr_core.errors import ConfigError

# flag -> (predictor setting, type, help); det settings go to DetPredictor, rec to RecPredictor
DET_FLAGS: dict[str, tuple[str, Any, str]] = {
    "det_db_thresh": ("thresh", float, "DB binarisation threshold of the probability map"),
    "det_db_box_thresh": ("box_thresh", float, "DB: drop boxes whose mean score is below this"),
    "det_db_unclip_ratio": ("unclip_ratio", float, "DB: box expansion ratio"),
    "use_dilation": ("use_dilation", "bool", "DB: dilate the binary map (True/False)"),
    "det_db_score_mode": ("score_mode", str, "DB box score: fast or slow"),
    "det_box_type": ("box_type", str, "quad or poly"),
    "det_limit_side_len": ("limit_side_len", int, "resize limit in pixels"),
    "det_limit_type": ("limit_type", str, "min, max or resize_long"),
}
REC_FLAGS: dict[str, tuple[str, Any, str]] = {
    "rec_image_shape": ("image_shape", "shape", 'rec input "C, H, W", e.g. "3, 48, 320"'),
    "rec_char_dict_path": ("character", "dict", "character dictionary (one character per line)"),
    "rec_batch_num": ("batch_size", int, "crops per recognition batch"),
}
CHOICES = {"det_db_score_mode": ("fast", "slow"), "det_box_type": ("quad", "poly"),
           "det_limit_type": ("min", "max", "resize_long")}
TRUE = {"true", "1", "yes", "y", "t"}
FALSE = {"false", "0", "no", "n", "f"}


def str2bool(value: str) -> bool:
    """PaddleOCR's ``str2bool``: a flag's text as a boolean."""
    low = str(value).strip().lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def parse_shape(value: str) -> list[int]:
    """``"3, 48, 320"`` (PaddleOCR's ``--rec_image_shape``) -> ``[3, 48, 320]``."""
    try:
        shape = [int(v) for v in str(value).replace("[", "").replace("]", "").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C, H, W integers, got {value!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers C, H, W, got {value!r}")
    return shape


def _type(kind: Any) -> Any:
    return {"bool": str2bool, "shape": parse_shape, "dict": str}.get(kind, kind)


def add_paddle_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every PaddleOCR inference flag (underscore and dash spellings) to ``parser``."""
    group = parser.add_argument_group("PaddleOCR inference flags (override the exported settings)")
    for flag, (_, kind, text) in {**DET_FLAGS, **REC_FLAGS}.items():
        group.add_argument(f"--{flag}", f"--{flag.replace('_', '-')}", dest=flag, type=_type(kind),
                           default=None, choices=CHOICES.get(flag), help=text)


def read_dictionary(path: str | Path, use_space_char: bool) -> list[str]:
    """Characters of a dictionary file (PaddleOCR's rules: one per line, only CR/LF stripped),
    plus a space when the exported model was trained with ``use_space_char``."""
    from ocr_core.data.dictionary import read_dict_file, resolve_dict_path

    try:
        chars = read_dict_file(resolve_dict_path(path))
    except ConfigError as exc:
        raise ConfigError(exc.message, "--rec_char_dict_path") from None
    if use_space_char:
        chars = [*chars, " "]
    return chars


def det_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """DetPredictor keyword overrides from the parsed flags (only those given).

    A limit flag replaces the embedded resize policy entirely, as in PaddleOCR's predict_det
    (which knows no fixed ``image_shape``): the fixed shape and ``resize_long`` are cleared.
    """
    out: dict[str, Any] = {}
    for flag, (key, _, _) in DET_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            out[key] = value
    if "limit_side_len" in out or "limit_type" in out:
        out.update(image_shape=None, resize_long=None)
    return out


def rec_overrides(args: argparse.Namespace, use_space_char: Optional[bool] = None) -> dict[str, Any]:
    """RecPredictor keyword overrides from the parsed flags (only those given).

    Args:
        args: Parsed flags.
        use_space_char: Whether the exported model appends a space to its dictionary (from its
            metadata); used when ``--rec_char_dict_path`` is given.
    """
    out: dict[str, Any] = {}
    if getattr(args, "rec_image_shape", None) is not None:
        out["image_shape"] = list(args.rec_image_shape)
    if getattr(args, "rec_batch_num", None) is not None:
        if args.rec_batch_num < 1:
            raise ConfigError(f"--rec_batch_num must be at least 1, got {args.rec_batch_num}", "--rec_batch_num")
        out["batch_size"] = int(args.rec_batch_num)
    if getattr(args, "rec_char_dict_path", None):
        out["character"] = read_dictionary(args.rec_char_dict_path, bool(use_space_char))
    return out


__all__ = ["DET_FLAGS", "REC_FLAGS", "add_paddle_inference_arguments", "det_overrides", "parse_shape",
           "read_dictionary", "rec_overrides", "str2bool"]
