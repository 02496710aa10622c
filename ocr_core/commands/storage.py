"""``ocrflow storage``: serve an embedded S3 server, upload/download manifests, list objects.

S3 settings come from the environment (``OCRFLOW_S3_ENDPOINT``, ``AWS_ACCESS_KEY_ID``, ...; see
``ocr_core.storage.client.S3Config.from_env``); ``storage serve`` prints them for a shell.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
from typing import Any

HELP = "Object storage helpers: serve an embedded S3 server, upload, download."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = sub.add_parser("serve", help="run an embedded S3 server (SeaweedFS) on 127.0.0.1 until Ctrl-C")
    p.add_argument("--data-dir", default=None, help="object data (default: ~/.cache/ocrflow/s3/default)")
    p.add_argument("--port", type=int, default=None, help="S3 port (default: a free one)")
    p.add_argument("--bucket", default="ocrflow", help="bucket to create (default: ocrflow)")

    p = sub.add_parser("upload", help="publish a directory under a URI prefix (manifest.json written last)")
    p.add_argument("local_dir")
    p.add_argument("uri", help="s3://bucket/prefix or a local directory")
    p.add_argument("--kind", default="dataset", help="manifest kind: dataset, model, ... (default: dataset)")
    p.add_argument("--extra", action="append", default=[], metavar="KEY=VALUE",
                   help="add to the manifest's extra metadata (repeatable)")
    p.add_argument("--workers", type=int, default=4, help="parallel uploads (default: 4)")

    p = sub.add_parser("download", help="fetch a published prefix, verifying every sha256")
    p.add_argument("uri")
    p.add_argument("local_dir")
    p.add_argument("--no-cache", action="store_true", help="download files even if present and valid")
    p.add_argument("--workers", type=int, default=4, help="parallel downloads (default: 4)")

    p = sub.add_parser("ls", help="list objects under a URI prefix")
    p.add_argument("uri")
    p.add_argument("-r", "--recursive", action="store_true", help="list everything below, not one level")
    p.add_argument("--manifest", action="store_true", help="print the prefix's manifest.json instead")


def _parse_extra(items: list[str]) -> dict[str, Any]:
    from ocr_core.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--extra expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _serve(args: argparse.Namespace) -> int:
    from ocr_core.storage.embedded import EmbeddedS3, default_data_dir

    server = EmbeddedS3(args.data_dir or default_data_dir("default"), port=args.port, bucket=args.bucket)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        server.start()
        print(f"S3 endpoint {server.endpoint}  bucket s3://{args.bucket}  data {server.data_dir}")
        print("# credentials for this session (enforced by the server):")
        for key, value in server.env.items():
            print(f"export {key}={shlex.quote(value)}")
        print("# Ctrl-C stops the server", flush=True)
        while server.running:
            time.sleep(0.5)
        print(f"ocrflow storage: the server exited unexpectedly; log {server.log_path}:\n{server.log_tail()}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping ...", file=sys.stderr, flush=True)
        return 0
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)


def _ls(args: argparse.Namespace) -> int:
    from ocr_core.storage.client import open_store
    from ocr_core.storage.manifest import read_manifest

    if args.manifest:
        print(read_manifest(args.uri).to_json(), end="")
        return 0
    objs = open_store(args.uri).list(args.uri, recursive=args.recursive)
    for o in objs:
        when = o.last_modified.strftime("%Y-%m-%d %H:%M:%S") if o.last_modified else ""
        print(f"{'DIR':>12}  {'':19}  {o.uri}" if o.is_dir else f"{o.size:>12}  {when:19}  {o.uri}")
    return 0


def _check_entry_paths(uri: str) -> None:
    """Refuse a manifest whose file paths no file system takes (a NUL byte), naming the entry,
    before anything is downloaded (``open()`` would raise a bare ValueError half way through)."""
    from ocr_core.storage.manifest import MANIFEST_NAME, read_manifest
    from ocr_core.storage.uri import StorageError, join_uri

    for i, entry in enumerate(read_manifest(uri).files):
        if "\x00" in entry.path:
            raise StorageError(f"invalid manifest: files[{i}].path {entry.path!r} contains a NUL byte",
                               join_uri(uri, MANIFEST_NAME))


def run(args: argparse.Namespace) -> int:
    from ocr_core.storage.manifest import sync_down, sync_up

    if args.action == "serve":
        return _serve(args)
    if args.action == "ls":
        return _ls(args)
    if args.action == "upload":
        m = sync_up(args.local_dir, args.uri, kind=args.kind, extra=_parse_extra(args.extra),
                    workers=args.workers)
        print(f"published {m.prefix}: {len(m.files)} files, {m.total_bytes} bytes, digest {m.digest()}")
        return 0
    _check_entry_paths(args.uri)
    m = sync_down(args.uri, args.local_dir, cache=not args.no_cache, workers=args.workers)
    print(f"downloaded {m.prefix} -> {args.local_dir}: {len(m.files)} files, {m.total_bytes} bytes, "
          f"digest {m.digest()}")
    return 0
