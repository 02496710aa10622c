"""``ocrflow convert-labels``: ICDAR2015 ground truth <-> PaddleOCR label files (lossless)."""

from __future__ import annotations

import argparse
import os

from ocr_core.errors import DataError

HELP = "Convert ICDAR2015 ground truth to PaddleOCR label files and back."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("det", "rec"), required=True)
    parser.add_argument("--gt-dir", "--gt", dest="gt_dir",
                        help="det: directory of gt_*.txt files; rec: gt.txt (or its directory)")
    parser.add_argument("--image-dir", help="where the images are (det: used to find each image's extension)")
    parser.add_argument("--image-prefix", default=None,
                        help="path written before each image name (default: --image-dir relative to the --out "
                             "file's folder, which is then the data dir; --image-dir as given when outside it)")
    parser.add_argument("--out", required=True,
                        help="output label file; with --reverse: the gt directory (det) or gt.txt file (rec)")
    parser.add_argument("--reverse", action="store_true", help="PaddleOCR labels (--label-file) -> ICDAR gt")
    parser.add_argument("--label-file", help="input label file for --reverse")
    parser.add_argument("--no-bom", action="store_true", help="--reverse: write without a UTF-8 BOM")
    parser.add_argument("--lf", action="store_true", help="--reverse: write LF instead of CRLF line ends")


def default_prefix(image_dir: str | None, out: str) -> str:
    """``image_dir`` relative to the output label file's folder when it lies inside it, so that folder
    is the ``--data-dir`` / ``data_dir`` the label paths resolve against (PaddleOCR's convention);
    otherwise ``image_dir`` as given."""
    if not image_dir:
        return ""
    base = os.path.dirname(os.path.abspath(out))
    img = os.path.abspath(image_dir)
    if img == base:
        return ""
    if img.startswith(base.rstrip(os.sep) + os.sep):
        return os.path.relpath(img, base)
    return image_dir


def run(args: argparse.Namespace) -> int:
    from ocr_core.data import icdar

    if os.path.isdir(args.out) and not (args.reverse and args.mode == "det"):
        raise DataError(f"{args.out}: --out is a directory (expected a label file to write)")
    if args.reverse:
        if not args.label_file:
            raise DataError("--reverse needs --label-file")
        if args.mode == "det":
            stats = icdar.det_labels_to_icdar(args.label_file, args.out, bom=not args.no_bom, crlf=not args.lf)
            print(f"wrote {stats.files} gt file(s) with {stats.boxes} boxes to {args.out}")
        else:
            stats = icdar.rec_labels_to_icdar(args.label_file, args.out, bom=not args.no_bom, crlf=not args.lf)
            print(f"wrote {stats.lines} line(s) to {args.out}")
        return 0
    if not args.gt_dir:
        raise DataError("--gt-dir is required (or use --reverse with --label-file)")
    prefix = args.image_prefix if args.image_prefix is not None else default_prefix(args.image_dir, args.out)
    if args.mode == "det":
        stats = icdar.convert_det_gt_dir(args.gt_dir, args.image_dir, args.out, prefix)
        print(f"{stats.files} image(s), {stats.boxes} boxes ({stats.dont_care} don't care) -> {args.out}")
        if stats.missing_images:
            shown = ", ".join(stats.missing_images[:5])
            print(f"warning: {len(stats.missing_images)} image(s) not found in {args.image_dir!r} "
                  f"(assumed .jpg): {shown}")
    else:
        stats = icdar.convert_rec_gt(args.gt_dir, args.out, prefix)
        print(f"{stats.lines} word(s) ({stats.dont_care} don't care) -> {args.out}")
    if args.image_prefix is None and args.image_dir and prefix != args.image_dir:
        print(f"image paths are relative to {os.path.dirname(args.out) or '.'} (the --data-dir / data_dir to use)")
    return 0
