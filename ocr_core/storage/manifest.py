"""Dataset and model manifests: publish a directory under a URI prefix, fetch it back verified.

A prefix is *published* when it holds ``manifest.json``; ``sync_up`` writes it last, after every
file, so a reader never sees a half upload. The manifest lists each file's relative path, size
and sha256; ``sync_down`` checks every downloaded byte against it and keeps already-present
files (a per-node cache). Schema (``version`` 1)::

    {"version": 1, "kind": "dataset", "prefix": "s3://bucket/data/v1",
     "files": [{"path": "train/img_1.jpg", "size": 123, "sha256": "ab..."}],
     "counts": {"files": 1, "bytes": 123}, "created": "2025-01-01T00:00:00+00:00", "extra": {}}
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ocr_core.storage.client import PART_SUFFIX, Store, open_store, sha256_file
from ocr_core.storage.uri import IntegrityError, StorageError, StorageURI, normalize_relpath, parse_uri

__all__ = ["MANIFEST_NAME", "FileEntry", "Manifest", "sync_up", "sync_down", "read_manifest",
           "write_manifest", "is_published"]

log = logging.getLogger("ocrflow.storage")

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class FileEntry:
    """One file of a manifest; ``path`` is relative to the prefix, ``/``-separated."""

    path: str
    size: int
    sha256: str


@dataclass
class Manifest:
    """What a published prefix contains."""

    kind: str
    prefix: str
    files: list[FileEntry]
    counts: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    def digest(self) -> str:
        """sha256 over the sorted ``(path, sha256)`` pairs: equal content, equal digest."""
        h = hashlib.sha256()
        for e in sorted(self.files, key=lambda e: e.path):
            h.update(f"{e.path}\0{e.sha256}\n".encode())
        return h.hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "kind": self.kind, "prefix": self.prefix,
                "files": [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in self.files],
                "counts": dict(self.counts), "created": self.created, "extra": dict(self.extra)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "") -> Manifest:
        """Validate and build; errors name ``source`` and the offending key."""
        def bad(msg: str) -> StorageError:
            return StorageError(f"invalid manifest: {msg}", source)

        if not isinstance(d, Mapping):
            raise bad("top level is not an object")
        if d.get("version") != MANIFEST_VERSION:
            raise bad(f"version {d.get('version')!r} is not supported (expected {MANIFEST_VERSION})")
        files = d.get("files")
        if not isinstance(files, list):
            raise bad("'files' must be a list")
        entries = []
        for i, f in enumerate(files):
            try:
                path, size, sha = f["path"], f["size"], f["sha256"]
            except (KeyError, TypeError):
                raise bad(f"files[{i}] needs path, size and sha256") from None
            if not (isinstance(path, str) and isinstance(size, int) and isinstance(sha, str) and len(sha) == 64):
                raise bad(f"files[{i}] has a wrong type (path str, size int, sha256 64 hex chars)")
            try:
                clean = normalize_relpath(path, source)
            except StorageError:
                raise bad(f"files[{i}].path {path!r} escapes the prefix") from None
            if not clean or path.startswith("/"):
                raise bad(f"files[{i}].path {path!r} is not a relative file path")
            entries.append(FileEntry(clean, size, sha.lower()))
        for key in ("counts", "extra"):
            if not isinstance(d.get(key, {}), Mapping):
                raise bad(f"'{key}' must be an object")
        return cls(kind=str(d.get("kind", "")), prefix=str(d.get("prefix", "")), files=entries,
                   counts=dict(d.get("counts", {})), created=str(d.get("created", "")),
                   extra=dict(d.get("extra", {})), version=MANIFEST_VERSION)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "") -> Manifest:
        try:
            d = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise StorageError(f"invalid manifest: not JSON ({exc})", source) from None
        return cls.from_dict(d, source)


def _progress(total: int, desc: str, quiet: bool) -> Any:
    from ocr_core.progress import progress

    return progress(total=total, desc=desc, unit="file", disable=quiet)


def _local_files(root: Path) -> list[tuple[str, Path]]:
    """Regular files under ``root`` as sorted ``(rel, path)``; skips the root manifest and temp files."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel == MANIFEST_NAME or name.endswith(PART_SUFFIX) or not p.is_file():
                continue
            out.append((rel, p))
    return sorted(out)


def _run_all(items: list[Any], fn: Callable[[Any], None], workers: int, bar: Any) -> None:
    """Apply ``fn`` to every item (threads when ``workers > 1``); the first failure stops the rest."""
    lock = threading.Lock()

    def one(item: Any) -> None:
        fn(item)
        with lock:
            bar.update(1)

    if workers <= 1 or len(items) <= 1:
        for it in items:
            one(it)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocrflow-sync") as pool:
        futures = [pool.submit(one, it) for it in items]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for f in pending:
            f.cancel()
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]


def _store_for(uri: StorageURI, store: Store | None) -> Store:
    return store if store is not None else open_store(uri)


def read_manifest(prefix_uri: str | StorageURI, store: Store | None = None) -> Manifest:
    """Load ``<prefix>/manifest.json`` (``prefix_uri`` may also name the manifest itself).

    Raises:
        StorageError: The prefix is not published (no manifest) or the manifest is invalid.
    """
    prefix = parse_uri(prefix_uri)
    if prefix.name == MANIFEST_NAME:
        prefix = parse_uri(str(prefix)[: -len(MANIFEST_NAME) - 1])
    store = _store_for(prefix, store)
    muri = str(prefix.join(MANIFEST_NAME))
    try:
        data = store.get_bytes(muri)
    except StorageError as exc:
        if exc.code in ("NoSuchKey", "NotFound"):
            raise StorageError(f"not published: no {MANIFEST_NAME} under this prefix (an upload never "
                               "finished, or the URI is wrong)", str(prefix), exc.code) from None
        raise
    return Manifest.from_json(data, muri)


def is_published(prefix_uri: str | StorageURI, store: Store | None = None) -> bool:
    """True when ``<prefix>/manifest.json`` exists."""
    prefix = parse_uri(prefix_uri)
    return _store_for(prefix, store).exists(str(prefix.join(MANIFEST_NAME)))


def write_manifest(manifest: Manifest, prefix_uri: str | StorageURI | None = None,
                   store: Store | None = None) -> str:
    """Write ``manifest`` as ``<prefix>/manifest.json`` (default prefix: ``manifest.prefix``); returns its URI."""
    prefix = parse_uri(prefix_uri if prefix_uri is not None else manifest.prefix)
    store = _store_for(prefix, store)
    muri = str(prefix.join(MANIFEST_NAME))
    store.put_bytes(manifest.to_json().encode("utf-8"), muri, content_type="application/json")
    return muri


def sync_up(local_dir: str | os.PathLike[str], prefix_uri: str | StorageURI, kind: str = "dataset", *,
            extra: Mapping[str, Any] | None = None, counts: Mapping[str, Any] | None = None,
            store: Store | None = None, workers: int = 4, quiet: bool = False) -> Manifest:
    """Upload every file of ``local_dir`` under ``prefix_uri``, then publish ``manifest.json``.

    An existing manifest at the prefix is removed first, so while files change the prefix reads
    as "not published" instead of pointing at a mix of old and new bytes. Objects whose stored
    sha256 already matches are not uploaded again. Objects at the prefix that are not in
    ``local_dir`` are left alone (they are not in the manifest, so readers ignore them).

    Args:
        local_dir: Directory to publish (a top-level ``manifest.json`` in it is skipped).
        prefix_uri: ``s3://bucket/prefix`` or a local directory.
        kind: ``"dataset"``, ``"model"``, ...
        extra: Free-form JSON metadata (charset, config, source URI, ...).
        counts: Added to the default counts ``{"files": n, "bytes": total}``.
        store: Backend to use (default: :func:`open_store` for the prefix).
        workers: Parallel uploads.
        quiet: No progress output.

    Returns:
        The published :class:`Manifest`.
    """
    root = Path(local_dir)
    if not root.is_dir():
        raise StorageError("not a directory", str(root))
    prefix = parse_uri(prefix_uri)
    if prefix.is_s3 and not prefix.key:
        raise StorageError("publish under a prefix, not a bucket root", str(prefix))
    store = _store_for(prefix, store)
    files = _local_files(root)
    entries: dict[str, FileEntry] = {}
    skipped = 0
    lock = threading.Lock()

    store.delete(str(prefix.join(MANIFEST_NAME)))  # unpublish before touching any file

    def upload(item: tuple[str, Path]) -> None:
        nonlocal skipped
        rel, path = item
        size, sha = path.stat().st_size, sha256_file(path)
        uri = str(prefix.join(rel))
        try:
            remote = store.stat(uri)
            unchanged = remote.sha256 == sha and remote.size == size
        except StorageError as exc:
            if exc.code not in ("NoSuchKey", "NotFound"):
                raise
            unchanged = False
        if unchanged:
            with lock:
                skipped += 1
        else:
            store.put_file(path, uri, sha256=sha)
        with lock:
            entries[rel] = FileEntry(rel, size, sha)

    bar = _progress(len(files), f"upload {prefix}", quiet)
    try:
        _run_all(files, upload, workers, bar)
    finally:
        bar.close()
    file_list = [entries[rel] for rel, _ in files]
    all_counts: dict[str, Any] = {"files": len(file_list), "bytes": sum(e.size for e in file_list)}
    all_counts.update(counts or {})
    manifest = Manifest(kind=kind, prefix=str(prefix).rstrip("/"), files=file_list, counts=all_counts,
                        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        extra=dict(extra or {}))
    write_manifest(manifest, prefix, store)
    log.info("published %s: %d files, %d bytes (%d unchanged), digest %s", manifest.prefix,
             len(file_list), manifest.total_bytes, skipped, manifest.digest()[:12])
    return manifest


def _local_matches(path: Path, entry: FileEntry) -> bool:
    try:
        return path.is_file() and path.stat().st_size == entry.size and sha256_file(path) == entry.sha256
    except OSError:
        return False


def sync_down(prefix_uri: str | StorageURI, local_dir: str | os.PathLike[str], cache: bool = True, *,
              store: Store | None = None, workers: int = 4, quiet: bool = False) -> Manifest:
    """Download a published prefix into ``local_dir``, verifying every file's sha256.

    Safe to re-run after an interruption: each file is written to a temp file, checked, then
    renamed; with ``cache`` files already present with the right size and sha256 are kept.
    The manifest is written to ``local_dir/manifest.json`` last.

    Raises:
        StorageError: The prefix has no manifest ("not published").
        IntegrityError: An object's bytes do not match its manifest entry (names the file).
    """
    prefix = parse_uri(prefix_uri)
    store = _store_for(prefix, store)
    manifest = read_manifest(prefix, store)
    root = Path(local_dir)
    root.mkdir(parents=True, exist_ok=True)
    hits = 0
    lock = threading.Lock()

    def fetch(entry: FileEntry) -> None:
        nonlocal hits
        dest = root.joinpath(*entry.path.split("/"))
        if cache and _local_matches(dest, entry):
            with lock:
                hits += 1
            return
        uri = str(prefix.join(entry.path))
        store.get_file(uri, dest, expected_sha256=entry.sha256)
        if dest.stat().st_size != entry.size:  # sha256 matched, so only a broken manifest gets here
            raise IntegrityError(f"size {dest.stat().st_size} != manifest size {entry.size}", uri)

    bar = _progress(len(manifest.files), f"download {prefix}", quiet)
    try:
        _run_all(manifest.files, fetch, workers, bar)
    finally:
        bar.close()
    tmp = root / f".{MANIFEST_NAME}.{os.getpid()}{PART_SUFFIX}"
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(tmp, root / MANIFEST_NAME)
    log.info("fetched %s -> %s: %d files (%d cached), digest %s", prefix, root, len(manifest.files), hits,
             manifest.digest()[:12])
    return manifest
