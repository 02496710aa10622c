"""Reading shards: a bounded node-local cache of downloaded shards and random access inside one.

:class:`ShardCache` downloads whole shards (one sequential GET each, sha256 checked while the bytes
arrive, :class:`~ocr_core.storage.uri.IntegrityError` naming the shard on a mismatch) into
``cache_dir`` and keeps the directory under ``max_bytes``: before a download, under an exclusive
``flock`` on ``cache_dir/.lock``, it reserves the shard's size (a ``<file>.<pid>.reserve`` marker) and
evicts the least recently used finished shards until cached + reserved bytes fit. Every process on a
node (ranks, DataLoader workers) shares one cache; a shard evicted while another process reads it
stays readable through that process's open descriptor (POSIX unlink semantics). Cache file names
start with the shard's sha256, so a replaced shard set never reads stale bytes.

:class:`ShardFile` is one shard opened for reading: the ustar headers are scanned once (our shards
hold only regular files), then each sample is two ``pread`` calls.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, Optional

from ocr_core.data.shard_format import ShardIndex
from ocr_core.errors import ConfigError, DataError
from ocr_core.storage.client import PART_SUFFIX, Store, open_store, sha256_file
from ocr_core.storage.uri import IntegrityError

log = logging.getLogger(__name__)

_BLOCK = 512
_RESERVE = ".reserve"
_WAIT_S = 600.0
_TABLES = 256  # member tables kept per process (a few hundred KB each for 256 MB shards)


class SampleRef(NamedTuple):
    """Where one sample's members lie in its shard file."""

    key: str
    ext: str
    img_offset: int
    img_size: int
    meta_offset: int
    meta_size: int


class ShardFile:
    """A shard opened for reading (the descriptor stays valid if the cache evicts the file).

    ``samples``: the member table of an earlier scan of the same shard (skips the header scan).
    """

    def __init__(self, path: str, name: str, expected: int, samples: Optional[list[SampleRef]] = None) -> None:
        self.name = name
        self.fd = os.open(path, os.O_RDONLY)
        try:
            self.samples = samples if samples is not None else self._scan(expected)
        except BaseException:
            os.close(self.fd)
            raise

    def _scan(self, expected: int) -> list[SampleRef]:
        members: list[tuple[str, int, int]] = []
        off = 0
        while True:
            hdr = os.pread(self.fd, _BLOCK, off)
            if len(hdr) < _BLOCK or hdr == bytes(_BLOCK):
                break
            kind = hdr[156:157]
            try:
                name = hdr[:100].rstrip(b"\0").decode("ascii")
                size = int(hdr[124:136].strip(b"\0 ") or b"0", 8)
            except (UnicodeDecodeError, ValueError):
                raise DataError(f"{self.name}: bad tar header at byte {off}") from None
            if kind not in (b"0", b"\0"):
                raise DataError(f"{self.name}: tar member {name!r} is not a regular file (not built by build-shards)")
            members.append((name, off + _BLOCK, size))
            off += _BLOCK + -(-size // _BLOCK) * _BLOCK
        refs: list[SampleRef] = []
        for i in range(0, len(members) - 1, 2):
            (a, a_off, a_n), (b, b_off, b_n) = members[i], members[i + 1]
            key, ext = a.rsplit(".", 1) if "." in a else (a, "")
            if b != f"{key}.json":
                raise DataError(f"{self.name}: member {b!r} does not follow {a!r} (expected {key}.json)")
            refs.append(SampleRef(key, ext, a_off, a_n, b_off, b_n))
        if len(members) % 2 or len(refs) != expected:
            raise DataError(f"{self.name}: holds {len(members)} member(s) / {len(refs)} sample(s), the index says "
                            f"{expected} samples")
        return refs

    def read(self, i: int) -> tuple[bytes, dict[str, Any]]:
        """Image bytes and the label record of sample ``i`` of this shard."""
        ref = self.samples[i]
        img = os.pread(self.fd, ref.img_size, ref.img_offset)
        raw = os.pread(self.fd, ref.meta_size, ref.meta_offset)
        try:
            meta = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise DataError(f"{self.name}:{ref.key}: label record is not UTF-8 JSON") from None
        return img, meta

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


class ShardCache:
    """Local paths of the shards of ``index``: in place for a local set, else downloaded into a bounded cache.

    Args:
        index: The shard set.
        cache_dir: Where downloads live (shared by every process on the node).
        max_bytes: Bound on the bytes of finished and in-flight shards in ``cache_dir``.
        verify: For a local set, hash each shard once per process before reading it (downloads are
            always checked).
    """

    def __init__(self, index: ShardIndex, cache_dir: str, max_bytes: int, verify: bool = True,
                 store: Optional[Store] = None) -> None:
        self.index, self.max_bytes, self.verify = index, max_bytes, verify
        self.local = not index.prefix.startswith("s3://")
        self.dir = Path(cache_dir)
        self.downloads = 0
        self._verified: set[int] = set()
        self._tables: OrderedDict[int, list[SampleRef]] = OrderedDict()  # member tables of recent shards
        self._store = store
        self._store_pid = os.getpid() if store is not None else -1
        if not self.local and max(index.sizes) > max_bytes:
            big = max(range(len(index.sizes)), key=index.sizes.__getitem__)
            raise ConfigError(f"{max_bytes} bytes cannot hold shard {index.names[big]} ({index.sizes[big]} bytes); "
                              "raise it to a few shards", "cache_size")

    @property
    def store(self) -> Store:
        if self._store is None or self._store_pid != os.getpid():
            # one connection pool per process: a forked DataLoader worker must not share its parent's sockets
            from ocr_core.storage.s3 import S3Store

            base = open_store(self.index.prefix)
            self._store = S3Store(base.config) if isinstance(base, S3Store) else base
            self._store_pid = os.getpid()
        return self._store

    def _cache_name(self, i: int) -> str:
        return f"{self.index.sha256[i][:16]}-{self.index.names[i]}"

    def open(self, i: int) -> ShardFile:
        """Shard ``i`` opened for reading (downloaded first if needed).

        Raises:
            IntegrityError: the bytes do not match the index's sha256 (names the shard).
        """
        name = self.index.names[i]
        if self.local:
            path = os.path.join(self.index.prefix, name)
            if self.verify and i not in self._verified:
                got = sha256_file(path)
                if got != self.index.sha256[i]:
                    raise IntegrityError(f"sha256 mismatch: expected {self.index.sha256[i]}, got {got} (shard "
                                         "corrupted or replaced)", path)
                self._verified.add(i)
            return self._opened(i, path)
        for _ in range(3):
            fetched = self.fetch(i)
            try:
                return self._opened(i, str(fetched))
            except FileNotFoundError:  # evicted by another process between fetch and open: fetch again
                continue
        raise DataError(f"{self.index.uri(i)}: evicted from {self.dir} before it could be opened three times; "
                        "raise cache_size")

    def _opened(self, i: int, path: str) -> ShardFile:
        f = ShardFile(path, self.index.names[i], self.index.counts[i], self._tables.get(i))
        self._tables[i] = f.samples
        self._tables.move_to_end(i)
        while len(self._tables) > _TABLES:
            self._tables.popitem(last=False)
        return f

    def fetch(self, i: int) -> Path:
        """Download shard ``i`` into the cache unless it is there; returns its cache path."""
        dest = self.dir / self._cache_name(i)
        if dest.is_file():
            os.utime(dest)  # LRU by modification time
            return dest
        self.dir.mkdir(parents=True, exist_ok=True)
        marker = self.dir / f"{dest.name}.{os.getpid()}{_RESERVE}"
        deadline = time.monotonic() + _WAIT_S
        while True:
            with self._locked():
                if dest.is_file():
                    os.utime(dest)
                    return dest
                if self._make_room(self.index.sizes[i], keep=dest.name):
                    marker.write_text(str(self.index.sizes[i]))
                    break
            if time.monotonic() > deadline:  # other processes' downloads hold the room
                raise DataError(f"shard cache {self.dir}: no room for {self.index.names[i]} within "
                                f"{self.max_bytes} bytes after {_WAIT_S}s; raise cache_size")
            time.sleep(0.05)
        try:
            self.store.get_file(self.index.uri(i), dest, expected_sha256=self.index.sha256[i])
            self.downloads += 1
        finally:
            marker.unlink(missing_ok=True)
        return dest

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def usage(self) -> tuple[int, list[tuple[float, int, Path]]]:
        """``(reserved bytes, [(mtime, size, path) of finished shards])`` in the cache directory."""
        reserved, done = 0, []
        for p in self.dir.iterdir():
            if p.name.endswith(_RESERVE):
                pid = p.name[: -len(_RESERVE)].rsplit(".", 1)[-1]
                if pid.isdigit() and not _pid_alive(int(pid)):
                    p.unlink(missing_ok=True)  # a crashed downloader's reservation
                    continue
                try:
                    reserved += int(p.read_text() or 0)
                except (OSError, ValueError):
                    continue
            elif p.name.endswith(PART_SUFFIX):
                pid = p.name[: -len(PART_SUFFIX)].split(".")[-2]
                if pid.isdigit() and not _pid_alive(int(pid)):
                    p.unlink(missing_ok=True)  # a crashed download
            elif p.name.endswith(".tar"):
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                done.append((st.st_mtime, st.st_size, p))
        return reserved, sorted(done)

    def _make_room(self, need: int, keep: str) -> bool:
        """Evict least recently used shards until ``need`` more bytes fit; False if reservations block it."""
        reserved, done = self.usage()
        total = reserved + sum(size for _, size, _ in done)
        for _mtime, size, path in done:
            if total + need <= self.max_bytes:
                break
            if path.name != keep:
                path.unlink(missing_ok=True)
                total -= size
        return total + need <= self.max_bytes


__all__ = ["SampleRef", "ShardCache", "ShardFile"]
