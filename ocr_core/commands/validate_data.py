"""``ocrflow validate-data``: check det/rec label files and images; print statistics."""

from __future__ import annotations

import argparse
import os

HELP = "Check det/rec label files and images; print statistics."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("det", "rec"), required=True)
    parser.add_argument("--label-file", nargs="+", required=True, help="one or more label files")
    parser.add_argument("--data-dir", default="", help="root the image paths are relative to")
    parser.add_argument("--dict", dest="dict_path", default=None,
                        help="rec: character dictionary to check labels against ('default' = 0-9a-z, lowercased)")
    parser.add_argument("--use-space-char", action="store_true", help="rec: the dictionary includes ' '")
    parser.add_argument("--max-text-length", type=int, default=25, help="rec: longest allowed label")
    parser.add_argument("--delimiter", default="\t", help="between image path and label (default: tab)")
    parser.add_argument("--no-images", action="store_true", help="skip reading and decoding images")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any error is found")
    parser.add_argument("--max-errors", type=int, default=200, help="errors to print (all go to --json)")
    parser.add_argument("--json", dest="json_out", default=None, help="write the full report as JSON")


def run(args: argparse.Namespace) -> int:
    from ocr_core.data.charset import charset_lowercases, read_charset
    from ocr_core.data.validate import validate_labels
    from ocr_core.errors import ConfigError, DataError

    if not args.delimiter:
        raise ConfigError("must not be empty (the default is a tab)", "--delimiter")
    if args.data_dir and not os.path.isdir(args.data_dir):
        why = "is not a directory" if os.path.exists(args.data_dir) else "does not exist"
        raise DataError(f"{args.data_dir}: --data-dir {why}")
    charset = None
    lower = False
    if args.dict_path and args.mode == "rec":
        path = None if args.dict_path == "default" else args.dict_path
        charset = read_charset(path, args.use_space_char)
        lower = charset_lowercases(path)
    report = validate_labels(args.label_file, args.data_dir, args.mode, charset=charset,
                             max_text_length=args.max_text_length if args.mode == "rec" else None,
                             check_images=not args.no_images, delimiter=args.delimiter, lower=lower)
    print(report.to_text(max_errors=args.max_errors))
    if args.mode == "rec" and charset is None:
        print("dictionary check skipped (no --dict)")
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w", encoding="utf-8") as fh:
            fh.write(report.to_json() + "\n")
    n = len(report.errors)
    warned = f", {len(report.warnings)} warning(s)" if report.warnings else ""
    print(f"{n} error(s) in {report.stats.bad_lines} line(s); {report.good_lines} good line(s){warned}")
    return 1 if args.strict and n else 0
