"""One small object API over S3 and the local filesystem: :class:`Store`, :func:`open_store`.

``open_store(uri)`` returns a :class:`LocalStore` for local paths and an
:class:`~ocr_core.storage.s3.S3Store` for ``s3://`` URIs. Both implement :class:`Store`; every
method takes URIs, never bucket/key pairs. Writes are atomic (temp file + rename), downloads can
be checked against an expected sha256 before they land, and missing objects raise
:class:`StorageError` with ``code == "NoSuchKey"`` on both backends.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ocr_core.storage.uri import IntegrityError, StorageError, StorageURI, parse_uri

if TYPE_CHECKING:
    from ocr_core.storage.s3 import S3Config

__all__ = ["ObjectInfo", "Store", "LocalStore", "open_store", "sha256_file", "StorageError", "IntegrityError"]

SHA256_META = "sha256"  # S3 user metadata key, sent as x-amz-meta-sha256
CHUNK = 1 << 20
PART_SUFFIX = ".ocrflow-part"  # in-flight downloads/uploads; listings and manifests skip them


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a local file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ObjectInfo:
    """One object (or, in a non-recursive listing, one "directory": ``is_dir``)."""

    uri: str
    size: int
    etag: str | None = None
    sha256: str | None = None
    last_modified: datetime | None = None
    rel: str = ""  # path below the listed prefix (listings only)
    is_dir: bool = False


@runtime_checkable
class Store(Protocol):
    """The storage operations every backend offers. All arguments are URIs (or local paths).

    * ``put_file``/``put_bytes`` record the sha256 (``sha256``: a precomputed digest of ``local``).
    * ``get_file`` downloads to a temp file, checks ``expected_sha256``, renames; returns the digest.
    * ``list`` treats ``prefix_uri`` as a directory; ``ObjectInfo.rel`` is the path below it.
    * ``stat`` gives size, etag and sha256 (when recorded); missing objects raise ``StorageError``
      with ``code == "NoSuchKey"``; ``exists`` is False for them. ``delete`` is idempotent.
    """

    def put_file(self, local: str | os.PathLike[str], uri: str, sha256: str | None = None) -> ObjectInfo: ...
    def get_file(self, uri: str, local: str | os.PathLike[str], expected_sha256: str | None = None) -> str: ...
    def put_bytes(self, data: bytes, uri: str, content_type: str = "application/octet-stream") -> ObjectInfo: ...
    def get_bytes(self, uri: str) -> bytes: ...
    def list(self, prefix_uri: str, recursive: bool = True) -> list[ObjectInfo]: ...
    def exists(self, uri: str) -> bool: ...
    def stat(self, uri: str) -> ObjectInfo: ...
    def delete(self, uri: str, recursive: bool = False) -> None: ...


def tmp_next_to(dest: Path) -> Path:
    """A hidden temp name beside ``dest``, unique per writer (two ranks on one node may fetch
    the same file at once)."""
    return dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{PART_SUFFIX}")


def check_digest(uri: str, expected: str | None, got: str) -> None:
    """Raise :class:`IntegrityError` naming ``uri`` unless ``got`` equals ``expected`` (if given)."""
    if expected is not None and got != expected.lower():
        raise IntegrityError(f"sha256 mismatch: expected {expected}, got {got} (object corrupted or replaced)",
                             uri)


class LocalStore:
    """The filesystem behind the same API; writes are atomic (temp file + rename).

    ``stat`` hashes the file, so ``sha256`` is always present; ``etag`` is None.
    """

    def __repr__(self) -> str:
        return "LocalStore()"

    @staticmethod
    def _path(uri: str | StorageURI) -> Path:
        u = parse_uri(uri)
        if not u.is_local:
            raise StorageError("LocalStore only handles local paths", str(u))
        return u.path

    def _copy_in(self, src: io.BufferedReader | io.BytesIO, dest: Path, expected: str | None,
                 label: str) -> str:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_next_to(dest)
        h = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    h.update(chunk)
                    out.write(chunk)
            check_digest(label, expected, h.hexdigest())
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return h.hexdigest()

    def _info(self, p: Path, rel: str = "") -> ObjectInfo:
        st = p.stat()
        return ObjectInfo(str(p), st.st_size, None, sha256_file(p),
                          datetime.fromtimestamp(st.st_mtime, timezone.utc), rel)

    def put_file(self, local: str | os.PathLike[str], uri: str, sha256: str | None = None) -> ObjectInfo:
        dest = self._path(uri)
        try:
            with open(local, "rb") as src:
                digest = self._copy_in(src, dest, sha256, str(local))
        except FileNotFoundError as exc:
            raise StorageError(f"no such file {exc.filename}", str(dest)) from None
        return ObjectInfo(str(dest), dest.stat().st_size, None, digest)

    def put_bytes(self, data: bytes, uri: str, content_type: str = "application/octet-stream") -> ObjectInfo:
        dest = self._path(uri)
        digest = self._copy_in(io.BytesIO(data), dest, None, str(dest))
        return ObjectInfo(str(dest), len(data), None, digest)

    def get_file(self, uri: str, local: str | os.PathLike[str], expected_sha256: str | None = None) -> str:
        src = self._path(uri)
        try:
            with open(src, "rb") as fh:
                return self._copy_in(fh, Path(local), expected_sha256, str(src))
        except (FileNotFoundError, IsADirectoryError):
            raise StorageError("no such object", str(src), "NoSuchKey") from None

    def get_bytes(self, uri: str) -> bytes:
        p = self._path(uri)
        try:
            return p.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise StorageError("no such object", str(p), "NoSuchKey") from None

    def list(self, prefix_uri: str, recursive: bool = True) -> list[ObjectInfo]:
        root = self._path(prefix_uri)
        if not root.is_dir():
            return []
        out = []
        if recursive:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for f in sorted(filenames):
                    if not f.endswith(PART_SUFFIX):
                        p = Path(dirpath) / f
                        out.append(self._light_info(p, p.relative_to(root).as_posix()))
        else:
            for p in sorted(root.iterdir()):
                if p.is_dir():
                    out.append(ObjectInfo(str(p) + os.sep, 0, rel=p.name + "/", is_dir=True))
                elif not p.name.endswith(PART_SUFFIX):
                    out.append(self._light_info(p, p.name))
        return sorted(out, key=lambda o: o.rel)

    @staticmethod
    def _light_info(p: Path, rel: str) -> ObjectInfo:
        # listings don't hash (S3 listings carry no user metadata either)
        st = p.stat()
        return ObjectInfo(str(p), st.st_size, None, None, datetime.fromtimestamp(st.st_mtime, timezone.utc), rel)

    def exists(self, uri: str) -> bool:
        return self._path(uri).is_file()

    def stat(self, uri: str) -> ObjectInfo:
        p = self._path(uri)
        if not p.is_file():
            raise StorageError("no such object", str(p), "NoSuchKey")
        return self._info(p)

    def delete(self, uri: str, recursive: bool = False) -> None:
        p = self._path(uri)
        if recursive and p.is_dir():
            shutil.rmtree(p)
        elif p.is_file() or p.is_symlink():
            p.unlink()


def open_store(uri: str | os.PathLike[str] | StorageURI, config: S3Config | None = None) -> Store:
    """The store that serves ``uri``: :class:`LocalStore`, or an ``S3Store`` (config from the env)."""
    if parse_uri(uri).is_local:
        return LocalStore()
    from ocr_core.storage.s3 import S3Config, check_bucket_named, shared_s3_store

    cfg = config or S3Config.from_env()
    check_bucket_named(cfg, parse_uri(uri).bucket, str(uri))  # early; every S3Store call checks again
    return shared_s3_store(cfg)


# Default bucket names in our examples and pipeline parameters: fine inside a private MinIO, but on
# Amazon S3 anyone could own a bucket of that name.
PLACEHOLDER_BUCKETS = frozenset({"ocrflow", "bucket", "my-bucket"})
