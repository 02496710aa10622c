"""Storage URIs: ``s3://bucket/key/prefix``, ``file:///abs/path`` and plain local paths.

A :class:`StorageURI` is the one value every storage function takes. Local paths are made
absolute at parse time, so a URI means the same thing in every process that receives it.
This module is the bottom of the storage package and also defines its exceptions.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from ocr_core.errors import OCRFlowError

__all__ = ["StorageError", "IntegrityError", "StorageURI", "parse_uri", "join_uri", "is_s3_uri",
           "normalize_relpath"]

# AWS rules for new buckets (MinIO and SeaweedFS accept the same set).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class StorageError(OCRFlowError):
    """An object-store or local-storage operation failed; the message names the URI."""

    def __init__(self, message: str, uri: str = "", code: str | None = None) -> None:
        self.uri = uri
        self.code = code
        super().__init__(f"{uri}: {message}" if uri else message)


class IntegrityError(StorageError):
    """A downloaded object does not match the sha256 (or size) recorded in its manifest."""


@dataclass(frozen=True)
class StorageURI:
    """A parsed location.

    Attributes:
        scheme: ``"s3"`` or ``"file"``.
        bucket: The bucket (``""`` for local paths).
        key: For ``s3`` the object key or prefix without a leading ``/`` (may be ``""``); for
            ``file`` the absolute local path.
    """

    scheme: str
    bucket: str
    key: str

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def path(self) -> Path:
        """The local path (only for local URIs)."""
        if not self.is_local:
            raise StorageError("not a local path", str(self))
        return Path(self.key)

    @property
    def name(self) -> str:
        """The last path component (``""`` for a bucket root)."""
        return posixpath.basename(self.key.rstrip("/"))

    @property
    def dir_key(self) -> str:
        """The key as a directory prefix: ``""`` or ending in ``/`` (s3 only)."""
        k = self.key
        return k if not k or k.endswith("/") else k + "/"

    def join(self, *parts: str) -> StorageURI:
        """Append relative path parts (``/``-separated); ``..`` and absolute parts are refused."""
        rel = normalize_relpath("/".join(p.strip("/") for p in parts if p and p.strip("/")), str(self))
        if not rel:
            return self
        if self.is_local:
            return StorageURI("file", "", os.path.join(self.key, *rel.split("/")))
        return StorageURI("s3", self.bucket, self.dir_key + rel)

    def relative_to(self, prefix: StorageURI) -> str:
        """The ``/``-separated path of this URI below ``prefix`` (which must contain it)."""
        if self.scheme != prefix.scheme or self.bucket != prefix.bucket:
            raise StorageError(f"not under {prefix}", str(self))
        if self.is_local:
            rel = os.path.relpath(self.key, prefix.key)
            if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
                raise StorageError(f"not under {prefix}", str(self))
            return rel.replace(os.sep, "/")
        base = prefix.dir_key
        if not self.key.startswith(base):
            raise StorageError(f"not under {prefix}", str(self))
        return self.key[len(base):]

    def __str__(self) -> str:
        if self.is_local:
            return self.key
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"


def normalize_relpath(rel: str, context: str = "") -> str:
    """Normalise a relative path to ``a/b/c`` (``\\`` and ``.`` handled); refuse ``..`` so a join
    never escapes its prefix."""
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise StorageError(f"relative path {rel!r} must not contain '..'", context)
    return "/".join(parts)


def is_s3_uri(uri: str | os.PathLike[str] | StorageURI) -> bool:
    """True for ``s3://`` URIs."""
    if isinstance(uri, StorageURI):
        return uri.is_s3
    return str(uri).lower().startswith("s3://")


def parse_uri(uri: str | os.PathLike[str] | StorageURI) -> StorageURI:
    """Parse ``s3://bucket[/key]``, ``file://[localhost]/path`` or a local path.

    Local paths are expanded (``~``) and made absolute. S3 keys keep a trailing ``/`` if given;
    repeated slashes are collapsed.

    Raises:
        StorageError: Empty URI, missing or invalid bucket, unsupported scheme.
    """
    if isinstance(uri, StorageURI):
        return uri
    s = os.fspath(uri)
    if not isinstance(s, str) or not s.strip():
        raise StorageError("empty storage URI")
    s = s.strip()
    scheme, sep, rest = s.partition("://")
    if not sep:
        return StorageURI("file", "", os.path.abspath(os.path.expanduser(s)))
    scheme = scheme.lower()
    if scheme == "file":
        host, slash, path = rest.partition("/")
        if host not in ("", "localhost"):
            raise StorageError(f"file URIs with a host ({host!r}) are not supported", s)
        path = unquote(slash + path)
        if not path:
            raise StorageError("file URI has no path", s)
        return StorageURI("file", "", os.path.abspath(path))
    if scheme != "s3":
        raise StorageError(f"unsupported scheme {scheme!r} (use s3:// or a local path)", s)
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError("s3 URI has no bucket", s)
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise StorageError(f"invalid bucket name {bucket!r}", s)
    trailing = key.endswith("/")
    key = "/".join(p for p in key.split("/") if p)
    if key and trailing:
        key += "/"
    return StorageURI("s3", bucket, key)


def join_uri(base: str | os.PathLike[str] | StorageURI, *parts: str) -> str:
    """``join_uri("s3://b/data", "train", "x.jpg") == "s3://b/data/train/x.jpg"``."""
    return str(parse_uri(base).join(*parts))
