"""``ocrflow build-lmdb``: write a recognition LMDB from rec label files."""

from __future__ import annotations

import argparse
from collections import Counter

HELP = "Build a recognition LMDB (deep-text-recognition-benchmark layout)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label-file", nargs="+", required=True, help="rec label files (path<TAB>text)")
    parser.add_argument("--data-dir", default="", help="root the image paths are relative to")
    parser.add_argument("--out", required=True, help="the LMDB directory to create")
    parser.add_argument("--delimiter", default="\t", help="between image path and label (default: tab)")
    parser.add_argument("--no-check", action="store_true", help="do not decode images before writing them")
    parser.add_argument("--dict", dest="dict_path", default=None,
                        help="skip labels with characters outside this dictionary ('default' = 0-9a-z, "
                             "lowercased); without it every label is kept as written")
    parser.add_argument("--use-space-char", action="store_true", help="with --dict: the dictionary includes ' '")
    parser.add_argument("--max-text-length", type=int, default=None,
                        help="skip labels longer than this (the config's Global.max_text_length)")
    parser.add_argument("--map-size-mb", type=int, default=64, help="initial map size; doubles when full")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    from ocr_core.data.charset import charset_lowercases, read_charset
    from ocr_core.data.lmdb_build import build_lmdb
    from ocr_core.errors import ConfigError

    if args.max_text_length is not None and args.max_text_length < 1:
        raise ConfigError(f"must be >= 1, got {args.max_text_length}", "--max-text-length")
    if args.map_size_mb < 1:
        raise ConfigError(f"must be >= 1, got {args.map_size_mb}", "--map-size-mb")
    if not args.delimiter:
        raise ConfigError("must not be empty (the default is a tab)", "--delimiter")
    charset = None
    if args.dict_path:
        path = None if args.dict_path == "default" else args.dict_path
        chars = read_charset(path, args.use_space_char)
        # the built-in set lowercases labels before encoding: accept upper case letters as well
        charset = set(chars) | ({c.upper() for c in chars} if charset_lowercases(path) else set())
    stats = build_lmdb(args.label_file, args.data_dir, args.out, delimiter=args.delimiter,
                       check=not args.no_check, charset=charset, max_text_length=args.max_text_length,
                       map_size=args.map_size_mb << 20, overwrite=args.overwrite)
    for issue in stats.issues[:50]:
        print(f"skipped: {issue}")
    if len(stats.issues) > 50:
        print(f"... {len(stats.issues) - 50} more skipped")
    reasons = Counter(issue.code or "other" for issue in stats.issues)
    by_reason = f": {'  '.join(f'{k}:{v}' for k, v in sorted(reasons.items()))}" if reasons else ""
    print(f"wrote {stats.samples} sample(s) to {stats.out_dir} ({stats.skipped} skipped{by_reason}, "
          f"map size {stats.map_size >> 20} MiB)")
    if not args.dict_path:
        print("dictionary check skipped (no --dict): labels with characters the model cannot emit are kept")
    return 0
