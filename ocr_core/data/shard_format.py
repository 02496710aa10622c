"""Shards: self-contained tar files of samples plus an index manifest (``ocrflow build-shards``).

A shard set under a prefix (local directory or ``s3://``) is::

    shard-000000.tar  shard-000001.tar  ...  manifest.json

Each shard is a plain POSIX (ustar) tar. A sample is two consecutive members that share a key (the
sample's 9-digit number in the whole set): ``<key>.<ext>``, the image bytes exactly as stored in the
source (``ext`` from its file name), and ``<key>.json``, ``{"label": <raw label string>, "path": <image
path as written in the label file>, "source": "<label file>:<line>"}``. Tar headers carry no time,
owner or mode of the build machine, so the same inputs give byte-identical shards.

``manifest.json`` is the storage manifest (:mod:`ocr_core.storage.manifest`, ``kind: "shards"``):
size and sha256 of every shard, written last (a prefix without it is not a shard set), with
``counts.samples`` and ``extra = {"format": "ocrflow-shards/1", "mode": "det"|"rec", "shards":
[{"path", "samples"}], "skipped": {reason: count}}``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Optional, Union

from ocr_core.data.label_io import LineError, image_path, read_label_lines
from ocr_core.data.validate import Issue, check_line
from ocr_core.errors import ConfigError, DataError
from ocr_core.storage.client import Store, open_store, sha256_file
from ocr_core.storage.manifest import MANIFEST_NAME, FileEntry, Manifest, read_manifest, write_manifest
from ocr_core.storage.uri import StorageError, parse_uri

log = logging.getLogger(__name__)

FORMAT = "ocrflow-shards/1"
KIND = "shards"
_BLOCK = 512
_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9,
          "T": 10**12, "TB": 10**12, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}
_EXT_RE = re.compile(r"^[a-z0-9]{1,8}$")


def parse_size(value: Union[int, str], key: str = "size") -> int:
    """Bytes from ``256MB``, ``1.5GiB``, ``500k`` or a plain integer (KB/MB/GB are powers of 1000).

    Raises:
        ConfigError: naming ``key`` for anything else, or a size below 1 byte.
    """
    if isinstance(value, bool):
        raise ConfigError(f"not a size: {value!r}", key)
    if isinstance(value, int):
        n = value
    else:
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
        unit = m.group(2).upper() if m else ""
        if not m or unit not in _UNITS:
            raise ConfigError(f"not a size: {value!r} (examples: 256MB, 1GiB, 1000000)", key)
        n = int(float(m.group(1)) * _UNITS[unit])
    if n < 1:
        raise ConfigError(f"must be at least 1 byte, got {value!r}", key)
    return n


def shard_name(i: int) -> str:
    return f"shard-{i:06d}.tar"


def _member(name: str, data: bytes) -> bytes:
    """One ustar member: header, data, zero padding to the block. (tarfile.TarFile would also pad the
    archive to a 10 KiB record; plain blocks keep a shard within ``--shard-size``.)"""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict") + data + bytes(-len(data) % _BLOCK)


def _padded(n: int) -> int:
    return _BLOCK + -(-n // _BLOCK) * _BLOCK


def image_ext(path: str) -> str:
    """The member extension of an image path (lower-case suffix, ``img`` when unusual)."""
    ext = os.path.splitext(path)[1][1:].lower()
    return ext if _EXT_RE.match(ext) else "img"


@dataclass
class ShardIndex:
    """A published shard set: where it is, and what each shard holds."""

    prefix: str
    mode: str
    names: list[str]
    counts: list[int]
    sizes: list[int]
    sha256: list[str]
    digest: str

    @property
    def total(self) -> int:
        return sum(self.counts)

    def uri(self, i: int) -> str:
        return str(parse_uri(self.prefix).join(self.names[i]))


def read_index(prefix: str, store: Optional[Store] = None) -> ShardIndex:
    """Load and check the manifest of a shard set.

    Raises:
        DataError: naming the prefix when it is not a published shard set (or a broken one).
    """
    try:
        man = read_manifest(prefix, store)
    except StorageError as exc:
        raise DataError(f"{prefix}: not a shard set ({exc})") from None
    extra = man.extra
    if man.kind != KIND or extra.get("format") != FORMAT:
        raise DataError(f"{prefix}: {MANIFEST_NAME} is kind {man.kind!r} / format {extra.get('format')!r}, "
                        f"not a shard set ({KIND}, {FORMAT}); build one with `ocrflow build-shards`")
    files = {f.path: f for f in man.files}
    names, counts, sizes, shas = [], [], [], []
    for i, s in enumerate(extra.get("shards") or []):
        path, n = s.get("path"), s.get("samples")
        if path not in files or not isinstance(n, int) or n < 1:
            raise DataError(f"{prefix}: {MANIFEST_NAME}: extra.shards[{i}] ({path!r}) has no file entry or no "
                            "sample count")
        names.append(path)
        counts.append(n)
        sizes.append(files[path].size)
        shas.append(files[path].sha256)
    if not names:
        raise DataError(f"{prefix}: the shard set holds no sample")
    return ShardIndex(prefix=str(prefix).rstrip("/"), mode=str(extra.get("mode", "")), names=names, counts=counts,
                      sizes=sizes, sha256=shas, digest=man.digest())


@dataclass
class ShardBuildStats:
    """What :func:`build_shards` wrote."""

    out: str
    samples: int = 0
    shards: int = 0
    bytes: int = 0
    issues: list[Issue] = field(default_factory=list)

    @property
    def skipped(self) -> Counter[str]:
        return Counter(i.code or "other" for i in self.issues)


class _ShardWriter:
    """Writes shard tars into ``work_dir`` and hands each finished one to ``publish``."""

    def __init__(self, work_dir: Path, shard_size: int, publish: Any) -> None:
        self.work_dir, self.shard_size, self.publish = work_dir, shard_size, publish
        self.index = 0
        self.samples = 0
        self.bytes = 0
        self.tar: Optional[BinaryIO] = None
        self.path: Optional[Path] = None
        self.done: list[tuple[str, int]] = []  # (name, samples)

    def add(self, key: str, ext: str, img: bytes, meta: bytes) -> None:
        need = _padded(len(img)) + _padded(len(meta))
        if self.tar is not None and self.samples and self.bytes + need + 2 * _BLOCK > self.shard_size:
            self.close()
        if self.tar is None:
            self.path = self.work_dir / shard_name(self.index)
            self.tar = open(self.path, "wb")  # noqa: SIM115 - closed in close()
            self.samples = self.bytes = 0
        self.tar.write(_member(f"{key}.{ext}", img) + _member(f"{key}.json", meta))
        self.samples += 1
        self.bytes += need

    def close(self) -> None:
        if self.tar is None:
            return
        self.tar.write(bytes(2 * _BLOCK))  # end of archive
        self.tar.close()
        assert self.path is not None
        self.done.append((self.path.name, self.samples))
        self.publish(self.path)
        self.tar, self.index = None, self.index + 1


def _check_out(out: str, store: Store, overwrite: bool) -> Optional[Manifest]:
    """The old manifest when ``out`` holds a shard set we may replace; refuse anything else."""
    uri = parse_uri(out)
    if uri.is_s3 and not uri.key:
        raise ConfigError(f"{out}: name a prefix below the bucket", "--out")
    old = None
    try:
        old = read_manifest(out, store)
    except StorageError:
        pass
    if old is not None and (old.kind != KIND or not overwrite):
        why = "holds a shard set (--overwrite replaces it)" if old.kind == KIND else f"holds a {old.kind!r} manifest"
        raise ConfigError(f"{out} {why}", "--out")
    if old is None and store.list(out):
        raise ConfigError(f"{out} is not empty and holds no shard set", "--out")
    return old


def build_shards(label_files: Sequence[str], data_dir: str, out: str, mode: str, shard_size: Union[int, str] = "256MB",
                 *, delimiter: str = "\t", overwrite: bool = False, store: Optional[Store] = None,
                 quiet: bool = False) -> ShardBuildStats:
    """Write the good lines of ``label_files`` as shards under ``out`` and publish the index last.

    Lines are checked as :class:`~ocr_core.data.simple_dataset.SimpleDataSet` checks them (a line it
    would skip is skipped here and counted); a missing image is skipped and counted too. For an
    ``s3://`` ``out`` each shard is uploaded as soon as it is complete (one upload in flight; local
    disk holds at most two shards). A line naming several images keeps its first one.

    Raises:
        ConfigError: bad ``mode``/``shard_size``, or an ``out`` that holds something else.
        DataError: no usable sample.
    """
    from ocr_core.progress import progress

    if mode not in ("det", "rec"):
        raise ConfigError(f"must be det or rec, got {mode!r}", "--mode")
    size = parse_size(shard_size, "--shard-size")
    store = store if store is not None else open_store(out)
    prefix = parse_uri(out)
    old = _check_out(out, store, overwrite)
    store.delete(str(prefix.join(MANIFEST_NAME)))  # unpublished while shards change
    stats = ShardBuildStats(out=str(prefix).rstrip("/"))
    entries: dict[str, FileEntry] = {}
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocrflow-shard-upload")
    pending: list[Future[None]] = []
    if prefix.is_local:
        prefix.path.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".ocrflow-shards-", dir=prefix.path if prefix.is_local else None))

    def upload(path: Path) -> None:
        sha, n = sha256_file(path), path.stat().st_size
        if prefix.is_local:  # same file system: a rename, not a copy
            os.replace(path, prefix.path / path.name)
        else:
            store.put_file(path, str(prefix.join(path.name)), sha256=sha)
            path.unlink()
        entries[path.name] = FileEntry(path.name, n, sha)

    def publish(path: Path) -> None:
        while pending:  # one upload in flight: bounded local disk
            pending.pop(0).result()
        pending.append(pool.submit(upload, path))

    writer = _ShardWriter(work, size, publish)
    try:
        for file in label_files:
            lines = list(read_label_lines(file))
            for line_no, text in progress(lines, desc=f"shards {os.path.basename(file)}", unit="line",
                                          disable=quiet):
                res = check_line(text, file, line_no, mode, data_dir, delimiter=delimiter, check_geometry=False,
                                 check_images=False)
                if not res.ok or res.entry is None:
                    stats.issues.append(res.issues[0])
                    continue
                rel = res.entry.paths[0]
                try:
                    with open(image_path(data_dir, rel), "rb") as fh:
                        img = fh.read()
                except LineError as exc:
                    stats.issues.append(Issue(file, line_no, exc.reason, exc.code))
                    continue
                except OSError as exc:
                    stats.issues.append(Issue(file, line_no, f"cannot read image {rel} ({exc.strerror or exc})",
                                              "missing_image"))
                    continue
                meta = json.dumps({"label": res.entry.label, "path": rel, "source": f"{file}:{line_no}"},
                                  ensure_ascii=False).encode("utf-8")
                writer.add(f"{stats.samples:09d}", image_ext(rel), img, meta)
                stats.samples += 1
        writer.close()
        for f in pending:
            f.result()
    finally:
        pool.shutdown(wait=True)
        shutil.rmtree(work, ignore_errors=True)
    if not stats.samples:
        raise DataError(f"no usable sample in {', '.join(label_files)} ({len(stats.issues)} line(s) skipped)")
    names = [n for n, _ in writer.done]
    for stale in sorted({f.path for f in (old.files if old else [])} - set(names)):
        store.delete(str(prefix.join(stale)))
    files = [entries[n] for n in names]
    stats.shards, stats.bytes = len(files), sum(f.size for f in files)
    manifest = Manifest(kind=KIND, prefix=stats.out, files=files,
                        counts={"files": len(files), "bytes": stats.bytes, "samples": stats.samples,
                                "shards": len(files)},
                        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        extra={"format": FORMAT, "mode": mode, "shard_size": size,
                               "shards": [{"path": n, "samples": c} for n, c in writer.done],
                               "skipped": dict(sorted(stats.skipped.items()))})
    write_manifest(manifest, prefix, store)
    log.info("built %d shard(s), %d samples, %d bytes under %s", stats.shards, stats.samples, stats.bytes, stats.out)
    return stats


__all__ = ["FORMAT", "KIND", "ShardBuildStats", "ShardIndex", "build_shards", "image_ext", "parse_size",
           "read_index", "shard_name"]
