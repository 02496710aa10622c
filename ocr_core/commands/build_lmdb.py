"""``ocrflow build-lmdb``: write a recognition LMDB from rec label files."""

from __future__ import annotations

import argparse

HELP = "Build a recognition LMDB (deep-text-recognition-benchmark layout)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label-file", nargs="+", required=True, help="rec label files (path<TAB>text)")
    parser.add_argument("--data-dir", default="", help="root the image paths are relative to")
    parser.add_argument("--out", required=True, help="the LMDB directory to create")
    parser.add_argument("--delimiter", default="\t", help="between image path and label (default: tab)")
    parser.add_argument("--no-check", action="store_true", help="do not decode images before writing them")
    parser.add_argument("--map-size-mb", type=int, default=64, help="initial map size; doubles when full")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    from ocr_core.data.lmdb_build import build_lmdb

    stats = build_lmdb(args.label_file, args.data_dir, args.out, delimiter=args.delimiter,
                       check=not args.no_check, map_size=args.map_size_mb << 20, overwrite=args.overwrite)
    for issue in stats.issues[:50]:
        print(f"skipped: {issue}")
    if len(stats.issues) > 50:
        print(f"... {len(stats.issues) - 50} more skipped")
    print(f"wrote {stats.samples} sample(s) to {stats.out_dir} ({stats.skipped} skipped, "
          f"map size {stats.map_size >> 20} MiB)")
    return 0
