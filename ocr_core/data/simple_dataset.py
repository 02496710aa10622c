"""SimpleDataSet: images on disk listed in PaddleOCR label files (det or rec).

Differences from PaddleOCR, all deliberate:

* Lines are checked once at load time (:func:`ocr_core.data.validate.check_line`, structure
  only); bad lines are skipped, counted in ``stats["bad_lines"]`` and logged with ``file:line``.
  ``ratio_list`` then samples from the good lines of each file. When no line is usable, the
  :class:`DataError` names the first bad line (and the per-line warnings are not logged).
* A new subset for ``ratio < 1`` is drawn by :meth:`SimpleDataSet.set_epoch` (PaddleOCR rebuilds
  the whole loader with ``seed=epoch``); the draw is deterministic in ``(seed, epoch)``.
* A rejected sample (a transform returned None or raised :class:`DataError`) is replaced by a
  random one in train and the next one in eval, at most ``max_retries`` times; then a
  :class:`DataError` names the last ``file:line`` and reason. Other exceptions are bugs and
  propagate.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any, Optional, Protocol, Union, runtime_checkable

from torch.utils.data import Dataset

from ocr_core.data import DATASETS
from ocr_core.data.label_io import LabelEntry, image_path, read_label_lines
from ocr_core.data.transforms import create_operators
from ocr_core.data.validate import check_line
from ocr_core.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

_MAX_LOGGED_BAD_LINES = 20
_MAX_LOGGED_REJECTIONS = 10


def _ratios(ratio_list: Union[float, list[float]], n_files: int) -> list[float]:
    ratios = [float(ratio_list)] * n_files if isinstance(ratio_list, (int, float)) else [float(r) for r in ratio_list]
    if len(ratios) != n_files:
        raise ConfigError(f"ratio_list has {len(ratios)} entries but there are {n_files} label files", "ratio_list")
    for r in ratios:
        if not 0.0 < r <= 1.0:
            raise ConfigError(f"each ratio must be in (0, 1], got {r}", "ratio_list")
    return ratios


class OCRDataset(Dataset):
    """Transforms, ``ext_data`` and the bounded retry loop shared by the OCR datasets.

    Subclasses implement ``__len__``, :meth:`_raw_sample` and (optionally) ``set_epoch``.
    """

    #: replacement samples tried before giving up on an index
    max_retries: int = 20
    #: draws allowed per requested extra sample before giving up
    max_ext_tries: int = 20

    def _init_common(self, data_dir: str, seed: Optional[int], transforms: Optional[list],
                     global_cfg: Optional[dict], ext_op_transform_idx: int, mode: str) -> None:
        """Apply the constructor keys every OCR dataset shares: ``data_dir``, ``seed`` (default
        ``Global.seed``, else 0), ``transforms``, ``ext_op_transform_idx`` and ``mode``.

        The keys themselves stay in each subclass's signature: signatures are the config schema
        (``check_kwargs``), so only their handling lives here.
        """
        self.data_dir = data_dir
        self.seed = seed if seed is not None else int((global_cfg or {}).get("seed") or 0)
        self.mode = mode.lower()
        if self.mode not in ("train", "eval", "test"):
            raise ConfigError(f"mode must be 'train' or 'eval', got {mode!r}", "mode")
        self.ops = create_operators(transforms, global_cfg)
        self.ext_op_transform_idx = ext_op_transform_idx
        # PaddleOCR: the first op that has the attribute decides
        self.ext_data_num = 0
        for op in self.ops:
            if hasattr(op, "ext_data_num"):
                self.ext_data_num = int(op.ext_data_num)
                break
        self.stats: Counter[str] = Counter()
        self._logged_rejections = 0

    def __len__(self) -> int:
        raise NotImplementedError

    def _raw_sample(self, idx: int) -> dict[str, Any]:
        """The untransformed sample dict, with ``image`` as encoded bytes."""
        raise NotImplementedError

    def _where(self, idx: int) -> str:
        """Where sample ``idx`` comes from (``file:line``), for messages."""
        return f"sample {idx}"

    def _run_ops(self, data: Any, ops: list) -> tuple[Any, str]:
        for op in ops:
            data = op(data)
            if data is None:
                return None, f"rejected by {type(op).__name__}"
        return data, ""

    def _get_ext_data(self) -> list[dict[str, Any]]:
        """``ext_data_num`` other samples through ``ops[:ext_op_transform_idx]`` (CopyPaste, RecConAug)."""
        load_ops = self.ops[: self.ext_op_transform_idx]
        out: list[dict[str, Any]] = []
        limit = self.max_ext_tries * self.ext_data_num
        for _ in range(limit):
            if len(out) >= self.ext_data_num:
                break
            try:
                data = self._raw_sample(random.randrange(len(self)))
                data, _reason = self._run_ops(data, load_ops)
            except DataError:
                data = None
            # det extra samples must be quadrilaterals (PaddleOCR's rule for CopyPaste)
            if data is None or ("polys" in data and getattr(data["polys"], "ndim", 0) == 3
                                and data["polys"].shape[1] != 4):
                self.stats["ext_data_rejected"] += 1
                continue
            out.append(data)
        if len(out) < self.ext_data_num:
            raise DataError(f"could not load {self.ext_data_num} extra sample(s) for ext_data in {limit} tries")
        return out

    def _load(self, idx: int) -> tuple[Any, str]:
        data = self._raw_sample(idx)
        if self.ext_data_num > 0:
            data["ext_data"] = self._get_ext_data()
        return self._run_ops(data, self.ops)

    def __getitem__(self, idx: int) -> Any:
        n = len(self)
        cur = idx
        for attempt in range(self.max_retries + 1):
            where = self._where(cur)
            try:
                out, reason = self._load(cur)
            except DataError as exc:
                out, reason = None, str(exc)
            if out is not None:
                return out
            self.stats["rejected"] += 1
            if self._logged_rejections < _MAX_LOGGED_REJECTIONS:
                self._logged_rejections += 1
                logger.warning("%s: sample skipped: %s", where, reason)
            if self.mode != "train":
                # evaluation: no stand-in (the next sample would be scored twice); the collate drops
                # the None and ``evaluate`` reports how many samples it could not read
                return None
            if attempt < self.max_retries:
                cur = random.randrange(n)
        self.stats["retries_exhausted"] += 1
        raise DataError(
            f"{type(self).__name__}: {self.max_retries + 1} samples in a row were rejected, starting at "
            f"index {idx}; last: {where}: {reason}"
        )


@runtime_checkable
class EpochScheduled(Protocol):
    """A transform whose output follows the training epoch (MakeBorderMap/MakeShrinkMap)."""

    total_epoch: int | None

    def set_epoch(self, epoch: int) -> None: ...


@DATASETS.register()
class SimpleDataSet(OCRDataset):
    """PaddleOCR label files + image files.

    Args:
        data_dir: Root that label paths are relative to.
        label_file_list: One label file or a list.
        ratio_list: Fraction of each file to use per epoch (one value, or one per file).
        delimiter: Between path and label.
        transforms: The transform list (``{OpName: kwargs}`` entries).
        ext_op_transform_idx: How many leading ops load an ``ext_data`` sample.
        seed: Seed of the subsampling/shuffle (default: ``Global.seed``, else 0).
        mode: ``"train"`` or ``"eval"`` (not a config key).
        global_cfg: The ``Global`` section, for the transforms (not a config key).
        shuffle: Shuffle the lines once after sampling (the loader's ``shuffle``; train only).
    """

    def __init__(
        self,
        data_dir: str = "",
        label_file_list: Optional[Union[str, list[str]]] = None,
        ratio_list: Union[float, list[float]] = 1.0,
        delimiter: str = "\t",
        transforms: Optional[list] = None,
        ext_op_transform_idx: int = 2,
        seed: Optional[int] = None,
        *,
        mode: str = "train",
        global_cfg: Optional[dict] = None,
        shuffle: bool = False,
    ) -> None:
        if not label_file_list:
            raise ConfigError("label_file_list is empty", "label_file_list")
        files = [label_file_list] if isinstance(label_file_list, str) else list(label_file_list)
        self.label_files = files
        self.delimiter = delimiter
        self.ratios = _ratios(ratio_list, len(files))
        self.need_reset = any(r < 1.0 for r in self.ratios)
        self.do_shuffle = shuffle
        self._init_common(data_dir, seed, transforms, global_cfg, ext_op_transform_idx, mode)
        names = [type(op).__name__ for op in self.ops]
        if "DetLabelEncode" in names:
            self.label_kind = "det"
        elif any(n.endswith("LabelEncode") for n in names):
            self.label_kind = "rec"
        else:
            self.label_kind = "any"
        self._bad_lines: list[str] = []  # the first bad lines' issues: warned about once a usable line is found
        self.file_entries = [self._read_file(f) for f in files]
        n_bad = self.stats["bad_lines"]
        if not any(self.file_entries):  # one error, naming the first bad line, instead of a warning per line
            more = f" (and {n_bad - 1} more bad line(s))" if n_bad > 1 else ""
            why = f": {self._bad_lines[0]}{more}" if self._bad_lines else f" ({n_bad} bad line(s) skipped)"
            raise DataError(f"no usable lines in {', '.join(files)}{why}")
        for issue in self._bad_lines:
            logger.warning("%s; line skipped", issue)
        if n_bad > _MAX_LOGGED_BAD_LINES:
            logger.warning("%d more bad label lines; not logging each", n_bad - _MAX_LOGGED_BAD_LINES)
        self.epoch = 0
        self.data_lines: list[LabelEntry] = self._draw(0)
        logger.info("%s: %d samples from %d label file(s) (%d bad lines skipped)", type(self).__name__,
                    len(self.data_lines), len(files), self.stats["bad_lines"])

    def _read_file(self, file: str) -> list[LabelEntry]:
        entries = []
        for line_no, text in read_label_lines(file):
            res = check_line(text, file, line_no, self.label_kind, self.data_dir, delimiter=self.delimiter,
                             check_geometry=False, check_images=False)
            if res.ok and res.entry is not None:
                entries.append(res.entry)
                continue
            self.stats["bad_lines"] += 1
            if self.stats["bad_lines"] <= _MAX_LOGGED_BAD_LINES:
                self._bad_lines.append(str(res.issues[0]))
        return entries

    def _draw(self, epoch: int) -> list[LabelEntry]:
        rng = random.Random(f"{self.seed}:{epoch}")
        lines: list[LabelEntry] = []
        for entries, ratio in zip(self.file_entries, self.ratios):
            if self.mode == "train" or ratio < 1.0:
                lines.extend(rng.sample(entries, round(len(entries) * ratio)))
            else:
                lines.extend(entries)
        if self.mode == "train" and self.do_shuffle:
            rng.shuffle(lines)
        return lines

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's subset (only changes anything when some ratio < 1) and pass the epoch to
        the ops that follow it (MakeBorderMap/MakeShrinkMap with ``total_epoch``)."""
        if self.need_reset and epoch != self.epoch:
            self.data_lines = self._draw(epoch)
        self.epoch = epoch
        for op in self.ops:
            if isinstance(op, EpochScheduled) and op.total_epoch:
                op.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.data_lines)

    def _where(self, idx: int) -> str:
        return self.data_lines[idx].where

    def _raw_sample(self, idx: int) -> dict[str, Any]:
        entry = self.data_lines[idx]
        path = entry.paths[0] if len(entry.paths) == 1 else random.choice(entry.paths)
        full = image_path(self.data_dir, path)
        try:
            with open(full, "rb") as fh:
                img = fh.read()
        except OSError as exc:
            raise DataError(f"cannot read image {full} ({exc.strerror or exc})") from exc
        except ValueError as exc:  # a NUL byte in data_dir: open() refuses it without an OSError
            raise DataError(f"cannot read image {full!r} ({exc})") from exc
        return {"img_path": full, "label": entry.label, "image": img}


__all__ = ["OCRDataset", "SimpleDataSet"]
