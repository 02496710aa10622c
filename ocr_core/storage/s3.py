"""S3-compatible storage through the ``minio`` client (MinIO, SeaweedFS, AWS S3).

Settings come from the environment (see :meth:`S3Config.from_env`) or a Kubernetes Secret
mounted as files (KFP's ``mlpipeline-minio-artifact`` layout: ``accesskey``, ``secretkey``).
Transient failures (connection errors, 5xx, ``SlowDown``) are retried with bounded exponential
backoff; anything else raises :class:`StorageError` naming the URI at once. Every upload stores
the object's sha256 in user metadata (``x-amz-meta-sha256``), because multipart ETags are not
content hashes. ``repr()`` of configs and stores never shows credentials.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from ocr_core.storage.client import (
    CHUNK,
    PLACEHOLDER_BUCKETS,
    SHA256_META,
    ObjectInfo,
    check_digest,
    sha256_file,
    tmp_next_to,
)
from ocr_core.storage.uri import StorageError, StorageURI, parse_uri

__all__ = ["S3Config", "S3Store", "check_bucket_named", "shared_s3_store"]

log = logging.getLogger("ocrflow.storage")
T = TypeVar("T")

_ENDPOINT_VARS = ("OCRFLOW_S3_ENDPOINT", "S3_ENDPOINT", "MINIO_ENDPOINT", "AWS_ENDPOINT_URL_S3",
                  "AWS_ENDPOINT_URL")
_TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling",
                    "ThrottlingException", "RequestLimitExceeded", "TooManyRequests"}
_MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "NotFound", "ResourceNotFound"}
_AUTH_CODES = {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken",
               "ExpiredToken", "AuthorizationHeaderMalformed"}


def _truthy(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class S3Config:
    """How to reach an S3 endpoint. ``repr()`` never shows the keys.

    Attributes:
        endpoint: ``host:port`` (no scheme). Required: there is no default, least of all Amazon S3.
        secure: HTTPS when True.
        access_key / secret_key / session_token: Credentials; anonymous when ``access_key`` is None.
        region: Signing region (also avoids a GetBucketLocation round trip).
        cert_check: Verify TLS certificates.
        attempts: Tries per operation for transient errors (1 = no retry).
        backoff: First retry delay in seconds; doubles each time up to ``max_backoff``.
    """

    endpoint: str
    secure: bool = True
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str = "us-east-1"
    cert_check: bool = True
    attempts: int = 5
    backoff: float = 0.25
    max_backoff: float = 8.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    def __repr__(self) -> str:
        key = "None" if self.access_key is None else "'***'"
        return (f"S3Config(endpoint={self.endpoint!r}, secure={self.secure}, access_key={key}, "
                f"secret_key={'None' if self.secret_key is None else repr('***')}, region={self.region!r}, "
                f"attempts={self.attempts})")

    __str__ = __repr__

    @property
    def is_amazon(self) -> bool:
        """True when the endpoint is Amazon S3 (``*.amazonaws.com``, ``*.amazonaws.com.cn``)."""
        host = urlsplit(f"//{self.endpoint}").hostname or ""
        return host.endswith((".amazonaws.com", ".amazonaws.com.cn")) or host == "amazonaws.com"

    @property
    def url(self) -> str:
        """The endpoint with its scheme, e.g. ``http://127.0.0.1:8333``."""
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Config:
        """Read the configuration from environment variables.

        * Endpoint: ``OCRFLOW_S3_ENDPOINT`` (also ``S3_ENDPOINT``, ``MINIO_ENDPOINT``,
          ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``), e.g. ``http://127.0.0.1:8333``. Its scheme
          sets TLS; a bare ``host:port`` uses ``OCRFLOW_S3_SECURE`` (default true). ``aws``: Amazon
          S3 (an explicit opt-in). Unset: an error, never a silent fall-back to AWS with whatever
          AWS credentials the user happens to have.
        * Keys: files ``accesskey``/``secretkey`` in ``OCRFLOW_S3_SECRET_DIR`` when that is set
          (a mounted Secret wins over the environment), else ``AWS_ACCESS_KEY_ID``,
          ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``). No keys: anonymous.
        * ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` (``OCRFLOW_S3_REGION`` first), default us-east-1;
          ``OCRFLOW_S3_VERIFY_TLS`` (default true); ``OCRFLOW_S3_RETRIES`` (attempts, default 5).
        """
        env = os.environ if env is None else env
        raw = next((env[v].strip() for v in _ENDPOINT_VARS if env.get(v, "").strip()), "")
        if not raw:
            raise StorageError("no S3 endpoint: set OCRFLOW_S3_ENDPOINT to your object store (e.g. "
                               "http://minio.kubeflow:9000, or `ocrflow storage serve` locally), or "
                               "OCRFLOW_S3_ENDPOINT=aws to use Amazon S3 with a bucket you own")
        if raw.lower() == "aws":
            raw = "https://s3.amazonaws.com"
        if "://" in raw:
            parts = urlsplit(raw)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
                raise StorageError(f"S3 endpoint must be http(s)://host[:port], got {raw!r}")
            endpoint, secure = parts.netloc, parts.scheme == "https"
        else:
            endpoint, secure = raw.rstrip("/"), _truthy(env.get("OCRFLOW_S3_SECURE"), True)
        secret_dir = env.get("OCRFLOW_S3_SECRET_DIR", "").strip()
        access: str | None
        secret: str | None
        token = None
        if secret_dir:
            access, secret = _read_secret_dir(secret_dir)
            if not (access and secret):
                raise StorageError("accesskey or secretkey is empty", secret_dir)
        else:
            access = env.get("AWS_ACCESS_KEY_ID") or None
            secret = env.get("AWS_SECRET_ACCESS_KEY") or None
            token = env.get("AWS_SESSION_TOKEN") or None
        if bool(access) != bool(secret):
            raise StorageError("S3 credentials are incomplete: set both the access key and the secret key")
        region = next((env[v] for v in ("OCRFLOW_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
                       if env.get(v)), "us-east-1")
        try:
            attempts = max(1, int(env.get("OCRFLOW_S3_RETRIES", "5")))
        except ValueError as exc:
            raise StorageError(f"OCRFLOW_S3_RETRIES must be an integer, got {env['OCRFLOW_S3_RETRIES']!r}") from exc
        return cls(endpoint=endpoint, secure=secure, access_key=access, secret_key=secret,
                   session_token=token, region=region,
                   cert_check=_truthy(env.get("OCRFLOW_S3_VERIFY_TLS"), True), attempts=attempts)


def _read_secret_dir(secret_dir: str) -> tuple[str, str]:
    """Keys from a mounted Secret (``accesskey``/``secretkey``, KFP's layout)."""
    out = []
    for name in ("accesskey", "secretkey"):
        p = Path(secret_dir) / name
        try:
            out.append(p.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise StorageError(f"cannot read {name} from OCRFLOW_S3_SECRET_DIR ({exc.strerror})",
                               str(p)) from None
    return out[0], out[1]


def _is_transient(exc: BaseException) -> bool:
    """Connection problems, timeouts, 5xx and throttling are worth another try."""
    import urllib3
    from minio.error import InvalidResponseError, S3Error, ServerError

    if isinstance(exc, S3Error):
        status = getattr(exc.response, "status", 0) or 0
        return exc.code in _TRANSIENT_CODES or status >= 500 or status == 429
    if isinstance(exc, ServerError):
        return True
    if isinstance(exc, InvalidResponseError):
        return (getattr(exc, "_code", 0) or 0) >= 500
    if isinstance(exc, urllib3.exceptions.LocationValueError):
        return False
    return isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, urllib3.exceptions.HTTPError))


class S3Store:
    """An S3-compatible store through the ``minio`` client (MinIO, SeaweedFS, AWS S3)."""

    def __init__(self, config: S3Config | None = None) -> None:
        import certifi
        import urllib3
        from minio import Minio

        self.config = config or S3Config.from_env()
        c = self.config
        # retries=False: our own loop owns retrying, so the attempt count is exactly what we say
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=c.connect_timeout, read=c.read_timeout), maxsize=16,
            cert_reqs="CERT_REQUIRED" if c.cert_check else "CERT_NONE",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(), retries=False)
        self.client = Minio(c.endpoint, access_key=c.access_key, secret_key=c.secret_key,
                            session_token=c.session_token, secure=c.secure, region=c.region,
                            http_client=http, cert_check=c.cert_check)

    def __repr__(self) -> str:
        return f"S3Store({self.config!r})"

    # -- plumbing ---------------------------------------------------------------------------------
    def _split(self, uri: str | StorageURI, want_key: bool = True) -> tuple[StorageURI, str, str]:
        u = parse_uri(uri)
        if not u.is_s3:
            raise StorageError("S3Store only handles s3:// URIs", str(u))
        check_bucket_named(self.config, u.bucket, str(u))
        if want_key and (not u.key or u.key.endswith("/")):
            raise StorageError("URI names a prefix, not an object", str(u))
        return u, u.bucket, u.key

    def _call(self, op: str, uri: StorageURI | str, fn: Callable[[], T]) -> T:
        """Run ``fn``; retry transient failures with jittered exponential backoff."""
        attempts = max(1, self.config.attempts)
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except StorageError:
                raise
            except Exception as exc:
                if not _is_transient(exc):
                    raise self._wrap(op, uri, exc) from exc
                if attempt == attempts:
                    raise StorageError(f"{op} failed after {attempts} attempts: {_short(exc)}", str(uri),
                                       getattr(exc, "code", None)) from exc
                delay = min(self.config.max_backoff, self.config.backoff * 2 ** (attempt - 1))
                delay *= 0.5 + random.random() / 2
                log.warning("%s %s: transient error (%s); retry %d/%d in %.2fs", op, uri, _short(exc),
                            attempt, attempts - 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _wrap(self, op: str, uri: StorageURI | str, exc: Exception) -> StorageError:
        from minio.error import S3Error

        if isinstance(exc, S3Error):
            code = exc.code or "S3Error"
            if code in _MISSING_CODES:
                what = "no such bucket" if code == "NoSuchBucket" else "no such object"
                return StorageError(f"{op}: {what} ({code})", str(uri), code)
            if code in _AUTH_CODES:
                return StorageError(
                    f"{op}: access denied by {self.config.url} ({code}); check AWS_ACCESS_KEY_ID / "
                    "AWS_SECRET_ACCESS_KEY or OCRFLOW_S3_SECRET_DIR", str(uri), code)
            return StorageError(f"{op} failed: {code}: {exc.message}", str(uri), code)
        if isinstance(exc, FileNotFoundError):
            return StorageError(f"{op}: no such file {exc.filename}", str(uri))
        return StorageError(f"{op} failed: {_short(exc)}", str(uri), getattr(exc, "code", None))

    # -- the API ----------------------------------------------------------------------------------
    def ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` if it does not exist."""
        check_bucket_named(self.config, bucket, f"s3://{bucket}")

        def go() -> None:
            if not self.client.bucket_exists(bucket):
                self.client.make_bucket(bucket)
        self._call("make_bucket", f"s3://{bucket}", go)

    def put_file(self, local: str | os.PathLike[str], uri: str, sha256: str | None = None) -> ObjectInfo:
        u, bucket, key = self._split(uri)
        try:
            digest = sha256 or sha256_file(local)
        except FileNotFoundError:
            raise StorageError(f"no such file {os.fspath(local)}", str(u)) from None
        res = self._call("put", u, lambda: self.client.fput_object(
            bucket, key, os.fspath(local), metadata={SHA256_META: digest}))
        return ObjectInfo(str(u), os.path.getsize(local), res.etag, digest)

    def put_bytes(self, data: bytes, uri: str, content_type: str = "application/octet-stream") -> ObjectInfo:
        u, bucket, key = self._split(uri)
        digest = hashlib.sha256(data).hexdigest()
        res = self._call("put", u, lambda: self.client.put_object(
            bucket, key, io.BytesIO(data), len(data), content_type=content_type,
            metadata={SHA256_META: digest}))
        return ObjectInfo(str(u), len(data), res.etag, digest)

    def get_file(self, uri: str, local: str | os.PathLike[str], expected_sha256: str | None = None) -> str:
        u, bucket, key = self._split(uri)
        dest = Path(local)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_next_to(dest)

        def go() -> str:
            h = hashlib.sha256()
            resp = self.client.get_object(bucket, key)
            try:
                with open(tmp, "wb") as out:
                    for chunk in resp.stream(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
            finally:
                resp.close()
                resp.release_conn()
            return h.hexdigest()

        try:
            digest = self._call("get", u, go)
            check_digest(str(u), expected_sha256, digest)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return digest

    def get_bytes(self, uri: str) -> bytes:
        u, bucket, key = self._split(uri)

        def go() -> bytes:
            resp = self.client.get_object(bucket, key)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()
        return self._call("get", u, go)

    def list(self, prefix_uri: str, recursive: bool = True) -> list[ObjectInfo]:
        u, bucket, _ = self._split(prefix_uri, want_key=False)
        prefix = u.dir_key
        objs = self._call("list", u, lambda: list(self.client.list_objects(bucket, prefix=prefix,
                                                                            recursive=recursive)))
        out = [ObjectInfo(f"s3://{bucket}/{o.object_name}", int(o.size or 0), (o.etag or "").strip('"') or None,
                          None, o.last_modified, o.object_name[len(prefix):], bool(o.is_dir)) for o in objs]
        return sorted(out, key=lambda o: o.rel)

    def stat(self, uri: str) -> ObjectInfo:
        u, bucket, key = self._split(uri)
        st = self._call("stat", u, lambda: self.client.stat_object(bucket, key))
        meta = st.metadata or {}
        sha = meta.get("x-amz-meta-" + SHA256_META) or meta.get("X-Amz-Meta-" + SHA256_META)
        return ObjectInfo(str(u), int(st.size or 0), (st.etag or "").strip('"') or None, sha, st.last_modified)

    def exists(self, uri: str) -> bool:
        try:
            self.stat(uri)
        except StorageError as exc:
            if exc.code in _MISSING_CODES:
                return False
            raise
        return True

    def delete(self, uri: str, recursive: bool = False) -> None:
        from minio.deleteobjects import DeleteObject

        u, bucket, key = self._split(uri, want_key=not recursive)
        if not recursive:
            self._call("delete", u, lambda: self.client.remove_object(bucket, key))
            return
        keys = [DeleteObject(u.dir_key + o.rel) for o in self.list(str(u), recursive=True)]
        if keys:
            errors = self._call("delete", u, lambda: list(self.client.remove_objects(bucket, keys)))
            if errors:
                raise StorageError(f"delete failed for {len(errors)} object(s): {errors[0]}", str(u))


def check_bucket_named(config: S3Config, bucket: str, uri: str) -> None:
    """Refuse our placeholder bucket names on Amazon S3, where anyone may own a bucket of that name
    (it would receive our data, or serve us theirs); any name is fine on a private endpoint."""
    if config.is_amazon and bucket in PLACEHOLDER_BUCKETS:
        raise StorageError(f"s3://{bucket} is OCRFlow's placeholder bucket name; on Amazon S3 name a bucket "
                           "you own (e.g. --store-root / store_root=s3://<your-bucket>/ocrflow)", uri)


def _short(exc: BaseException) -> str:
    s = f"{type(exc).__name__}: {exc}"
    return s if len(s) < 300 else s[:297] + "..."


@lru_cache(maxsize=8)
def shared_s3_store(config: S3Config) -> S3Store:
    """One store (one connection pool) per distinct config."""
    return S3Store(config)
