"""Build a recognition LMDB in the deep-text-recognition-benchmark layout PaddleOCR reads.

Keys: ``num-samples`` (decimal string), ``image-%09d`` (encoded image bytes) and ``label-%09d``
(UTF-8 text), with 1-based indices. The build is atomic: it writes into a temporary directory
next to ``out_dir`` and renames it into place at the end, so an interrupted or failed build
leaves neither a half database nor the temporary directory behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Union

import lmdb

from ocr_core.data.label_io import LineError, image_path, read_label_lines
from ocr_core.data.validate import Issue, check_line, read_image_size
from ocr_core.errors import DataError
from ocr_core.progress import progress as progress_bar

_CHUNK = 256  # samples per write transaction


@dataclass
class LmdbBuildStats:
    """What :func:`build_lmdb` wrote.

    Attributes:
        out_dir: The finished database directory.
        samples: Samples written (``num-samples``).
        skipped: Label lines (or images of multi-image lines) left out.
        issues: Why each was left out (``file:line: reason``).
        map_size: Final LMDB map size in bytes.
        map_resizes: How often the map was doubled.
    """

    out_dir: str
    samples: int = 0
    skipped: int = 0
    issues: list[Issue] = field(default_factory=list)
    map_size: int = 0
    map_resizes: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["issues"] = [str(i) for i in self.issues]
        return d


def _write_chunk(env: lmdb.Environment, items: list[tuple[bytes, bytes]], stats: LmdbBuildStats) -> None:
    """Write ``items`` in one transaction, doubling the map size until they fit."""
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in items:
                    txn.put(key, value)
            return
        except lmdb.MapFullError:
            # the failed transaction was aborted by the context manager; grow and retry it
            new_size = env.info()["map_size"] * 2
            env.set_mapsize(new_size)
            stats.map_resizes += 1


def _samples(label_files: Sequence[str], data_dir: str, delimiter: str,
             charset: Optional[Collection[str]], max_text_length: Optional[int],
             stats: LmdbBuildStats) -> list[tuple[str, int, str, str]]:
    """Good ``(file, line, image_path, label)``; a multi-image line gives one per image."""
    out = []
    for file in label_files:
        for line_no, text in read_label_lines(file):
            res = check_line(text, file, line_no, "rec", data_dir, delimiter=delimiter, charset=charset,
                             max_text_length=max_text_length, check_geometry=False, check_images=False)
            if not res.ok or res.entry is None:
                stats.skipped += 1
                stats.issues.extend(res.issues)
                continue
            for p in res.entry.paths:
                out.append((file, line_no, image_path(data_dir, p), res.entry.label))
    return out


def build_lmdb(
    label_files: Union[str, Sequence[str]],
    data_dir: str,
    out_dir: str,
    *,
    delimiter: str = "\t",
    check: bool = True,
    charset: Optional[Collection[str]] = None,
    max_text_length: Optional[int] = None,
    map_size: int = 64 << 20,
    overwrite: bool = False,
    progress: bool = True,
) -> LmdbBuildStats:
    """Write the samples of rec label files into an LMDB at ``out_dir``.

    Args:
        label_files: PaddleOCR rec label files (``path<delimiter>text``).
        data_dir: Root the image paths are relative to.
        out_dir: The database directory to create.
        delimiter: Between path and label.
        check: Decode every image first and skip the undecodable ones (a missing image is
            always skipped).
        charset: If given, skip labels with characters outside it.
        max_text_length: If given, skip longer labels.
        map_size: Initial map size in bytes; it doubles whenever a write does not fit.
        overwrite: Replace an existing ``out_dir``.
        progress: Show a progress bar when stderr is a terminal.

    Returns:
        :class:`LmdbBuildStats`.

    Raises:
        DataError: if ``out_dir`` exists (without ``overwrite``), a label file is unreadable, or
            no sample is usable.
    """
    files = [label_files] if isinstance(label_files, str) else list(label_files)
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not overwrite:
        raise DataError(f"{out_dir}: already exists (pass overwrite=True / --overwrite to replace it)")
    _check_replaceable(out_dir, data_dir, files)
    stats = LmdbBuildStats(out_dir=out_dir)
    samples = _samples(files, data_dir, delimiter, charset, max_text_length, stats)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    env: Optional[lmdb.Environment] = None
    try:
        env = lmdb.open(tmp, map_size=max(int(map_size), 1 << 16), subdir=True, lock=True)
        chunk: list[tuple[bytes, bytes]] = []
        n = 0
        bar = progress_bar(samples, desc="build-lmdb", unit="img", disable=not progress)
        for file, line_no, full, label in bar:
            try:
                if check:
                    read_image_size(full)
                with open(full, "rb") as fh:
                    img = fh.read()
            except LineError as exc:
                stats.skipped += 1
                stats.issues.append(Issue(file, line_no, exc.reason, exc.code))
                continue
            except OSError as exc:
                stats.skipped += 1
                stats.issues.append(Issue(file, line_no, f"image cannot be read: {full} ({exc.strerror or exc})",
                                          "missing_image"))
                continue
            n += 1
            chunk.append((b"image-%09d" % n, img))
            chunk.append((b"label-%09d" % n, label.encode("utf-8")))
            if len(chunk) >= 2 * _CHUNK:
                _write_chunk(env, chunk, stats)
                chunk = []
        if n == 0:
            raise DataError(f"no usable samples in {', '.join(files)} ({stats.skipped} skipped)")
        chunk.append((b"num-samples", str(n).encode()))
        _write_chunk(env, chunk, stats)
        env.sync(True)
        stats.samples = n
        stats.map_size = int(env.info()["map_size"])
        env.close()
        env = None
        _move_into_place(tmp, out_dir)
    except BaseException:
        if env is not None:
            env.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return stats


LMDB_FILES = frozenset({"data.mdb", "lock.mdb"})


def _inside(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _check_replaceable(out_dir: str, data_dir: str, files: Sequence[str]) -> None:
    """``out_dir`` may be written (and, with overwrite, replaced) only if it holds no input and, when it
    exists, nothing but an LMDB database: ``--out`` pointed at a dataset must never delete it."""
    inputs = [data_dir, *files]
    clash = [p for p in inputs if p and _inside(p, out_dir)]
    if clash:
        raise DataError(f"{out_dir}: holds the inputs ({clash[0]}); write the LMDB somewhere else")
    if os.path.isdir(out_dir):
        other = sorted(set(os.listdir(out_dir)) - LMDB_FILES)
        if other:
            raise DataError(f"{out_dir}: not an LMDB directory ({len(other)} other entr{'y' if len(other) == 1 else 'ies'}, "
                            f"e.g. {other[0]}); --overwrite replaces only a directory holding data.mdb/lock.mdb")
    elif os.path.exists(out_dir):
        raise DataError(f"{out_dir}: exists and is not a directory")


def _move_into_place(tmp: str, out_dir: str) -> None:
    if not os.path.exists(out_dir):
        os.rename(tmp, out_dir)
        return
    # overwrite: swap the old database out first so out_dir is never missing a finished db for long
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=os.path.dirname(out_dir))
    os.rmdir(old)
    os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        os.rename(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


__all__ = ["LmdbBuildStats", "build_lmdb"]
