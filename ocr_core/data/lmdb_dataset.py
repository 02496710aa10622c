"""LMDBDataSet: recognition samples from one or more LMDBs (deep-text-recognition-benchmark layout).

Every leaf directory (no subdirectories) under ``data_dir`` is one LMDB with the keys
``num-samples``, ``image-%09d`` and ``label-%09d`` (1-based). Samples go through the same
transforms as :class:`~ocr_core.data.simple_dataset.SimpleDataSet` (``image`` is the encoded
bytes, ``DecodeImage`` decodes it).

Environments are opened read-only once per process and shared by all dataset instances (py-lmdb
refuses to open one path twice in a process). Forked DataLoader workers inherit them and read
through them, as PaddleOCR's workers do; spawned workers open their own.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional, Union

import lmdb
import numpy as np

from ocr_core.data import DATASETS
from ocr_core.data.simple_dataset import OCRDataset
from ocr_core.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


def find_lmdb_dirs(data_dir: str) -> list[str]:
    """Leaf directories under ``data_dir`` (sorted walk order), each one LMDB."""
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: LMDB data_dir does not exist")
    leaves = []
    for dirpath, dirnames, _files in os.walk(data_dir):
        dirnames.sort()
        if not dirnames:
            leaves.append(dirpath)
    return leaves


_ENVS: dict[str, lmdb.Environment] = {}


def check_lmdb_size(env: lmdb.Environment, path: str) -> None:
    """Refuse a database whose ``data.mdb`` is shorter than its own meta page says.

    A read-only LMDB is memory-mapped: reading a page past the end of a truncated file (a copy or
    download cut short) kills the process with SIGBUS, with no message. The meta page (at the
    start of the file) records the last page in use, so the size needed is known before any read.

    Raises:
        DataError: naming the file, its size and the size it needs.
    """
    data = os.path.join(path, "data.mdb") if os.path.isdir(path) else path
    need = (int(env.info()["last_pgno"]) + 1) * int(env.stat()["psize"])
    have = os.path.getsize(data)
    if have < need:
        raise DataError(f"{data}: truncated LMDB ({have} bytes, its pages need {need}); "
                        "copy or rebuild the database")


def _open(path: str) -> lmdb.Environment:
    key = os.path.realpath(path)
    env = _ENVS.get(key)
    if env is None:
        env = lmdb.open(key, max_readers=32, readonly=True, lock=False, readahead=False, meminit=False)
        try:
            check_lmdb_size(env, key)
        except BaseException:
            env.close()
            raise
        _ENVS[key] = env
    return env


def close_lmdb_envs() -> None:
    """Close this process's cached LMDB handles (before rebuilding a database in place)."""
    while _ENVS:
        _ENVS.popitem()[1].close()


@DATASETS.register()
class LMDBDataSet(OCRDataset):
    """Recognition LMDBs under ``data_dir``.

    Args:
        data_dir: Root directory; every leaf directory below it is one LMDB.
        transforms: The transform list.
        ratio_list: Only decides whether samples are redrawn per epoch (LMDB never subsamples,
            as in PaddleOCR); accepted for config compatibility.
        ext_op_transform_idx: How many leading ops load an ``ext_data`` sample (default 1).
        seed: Seed of the one-time shuffle (default: ``Global.seed``, else 0).
        mode: ``"train"`` or ``"eval"`` (not a config key).
        global_cfg: The ``Global`` section (not a config key).
        shuffle: Shuffle the global index once (not a config key).
    """

    def __init__(
        self,
        data_dir: str = "",
        transforms: Optional[list] = None,
        ratio_list: Union[float, list[float]] = 1.0,
        ext_op_transform_idx: int = 1,
        seed: Optional[int] = None,
        *,
        mode: str = "train",
        global_cfg: Optional[dict] = None,
        shuffle: bool = False,
    ) -> None:
        if not data_dir:
            raise ConfigError("data_dir is required", "data_dir")
        ratios = [ratio_list] if isinstance(ratio_list, (int, float)) else list(ratio_list)
        self.need_reset = any(r < 1.0 for r in ratios)
        self._init_common(data_dir, seed, transforms, global_cfg, ext_op_transform_idx, mode)
        self.lmdb_dirs = find_lmdb_dirs(data_dir)
        counts = []
        for path in self.lmdb_dirs:
            try:
                env = _open(path)
            except lmdb.Error as exc:
                raise DataError(f"{path}: not a readable LMDB ({exc})") from exc
            with env.begin(write=False) as txn:
                raw = txn.get(b"num-samples")
            if raw is None:
                raise DataError(f"{path}: LMDB has no 'num-samples' key")
            try:
                counts.append(int(raw.decode()))
            except ValueError as exc:
                raise DataError(f"{path}: 'num-samples' is not an integer: {raw!r}") from exc
        if not self.lmdb_dirs:
            raise DataError(f"{data_dir}: no LMDB found")
        # global index: (lmdb number, 1-based sample number)
        self.index = np.concatenate(
            [np.stack([np.full(c, i), np.arange(1, c + 1)], axis=1) for i, c in enumerate(counts)]
        ).astype(np.int64) if sum(counts) else np.zeros((0, 2), dtype=np.int64)
        if shuffle:
            np.random.default_rng(self.seed).shuffle(self.index)
        self.counts = counts
        logger.info("LMDBDataSet: %d samples in %d LMDB(s) under %s", len(self.index), len(counts), data_dir)

    def set_epoch(self, epoch: int) -> None:
        """Nothing to redraw (kept so loaders can treat datasets alike)."""

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def _where(self, idx: int) -> str:
        lmdb_no, sample_no = self.index[idx]
        return f"{self.lmdb_dirs[int(lmdb_no)]}:{int(sample_no)}"

    def read_sample(self, idx: int) -> tuple[bytes, str]:
        """Raw ``(image bytes, label)`` of sample ``idx``.

        Raises:
            DataError: if a key is missing or the label is not UTF-8.
        """
        lmdb_no, sample_no = (int(v) for v in self.index[idx])
        with _open(self.lmdb_dirs[lmdb_no]).begin(write=False) as txn:
            label = txn.get(b"label-%09d" % sample_no)
            img = txn.get(b"image-%09d" % sample_no)
        if label is None or img is None:
            raise DataError(f"missing {'label' if label is None else 'image'} key for sample {sample_no}")
        try:
            return bytes(img), label.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"label of sample {sample_no} is not UTF-8") from exc

    def read_label(self, idx: int) -> str:
        """The label of sample ``idx`` without its image ('' when missing or not UTF-8)."""
        lmdb_no, sample_no = (int(v) for v in self.index[idx])
        with _open(self.lmdb_dirs[lmdb_no]).begin(write=False) as txn:
            label = txn.get(b"label-%09d" % sample_no)
        try:
            return bytes(label).decode("utf-8") if label is not None else ""
        except UnicodeDecodeError:
            return ""

    def _raw_sample(self, idx: int) -> dict[str, Any]:
        img, label = self.read_sample(idx)
        return {"img_path": self._where(idx), "image": img, "label": label}


__all__ = ["LMDBDataSet", "check_lmdb_size", "close_lmdb_envs", "find_lmdb_dirs"]
