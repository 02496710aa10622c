"""``ocrflow build-shards``: write det/rec label files as tar shards + an index (for ShardDataSet)."""

from __future__ import annotations

import argparse

HELP = "Write det/rec samples as self-contained tar shards plus an index (for ShardDataSet)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("det", "rec"), required=True, help="the label format")
    parser.add_argument("--label-file", action="extend", nargs="+", required=True,
                        help="PaddleOCR label files (repeat the flag or list several)")
    parser.add_argument("--data-dir", default="", help="root the image paths are relative to")
    parser.add_argument("--out", required=True, help="a local directory or s3://bucket/prefix")
    parser.add_argument("--shard-size", default="256MB", help="target shard size (default 256MB; KiB/MiB/GiB too)")
    parser.add_argument("--delimiter", default="\t", help="between image path and label (default: tab)")
    parser.add_argument("--overwrite", action="store_true", help="replace a shard set already at --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ocr_core.data.shard_format import build_shards

    stats = build_shards(args.label_file, args.data_dir, args.out, args.mode, args.shard_size,
                         delimiter=args.delimiter, overwrite=args.overwrite, quiet=args.quiet)
    for issue in stats.issues[:50]:
        print(f"skipped: {issue}")
    if len(stats.issues) > 50:
        print(f"... {len(stats.issues) - 50} more skipped")
    by_reason = "  ".join(f"{k}:{v}" for k, v in sorted(stats.skipped.items()))
    print(f"wrote {stats.samples} sample(s) in {stats.shards} shard(s), {stats.bytes} bytes, to {stats.out} "
          f"({len(stats.issues)} skipped{': ' + by_reason if by_reason else ''})")
    return 0
