"""``ocrflow synth det|rec --out DIR --num N --seed S [--domain receipt|sign|mixed|...]``."""

from __future__ import annotations

import argparse

from ocr_core.errors import DataError

HELP = "Render a synthetic det or rec dataset (deterministic by seed)."


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x480, got {text!r}") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError("size must be at least 32x32")
    return w, h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["det", "rec"], help="detection images + ICDAR gt, or word crops")
    parser.add_argument("--out", required=True, help="output directory (must be empty unless --overwrite)")
    parser.add_argument("--num", type=int, required=True, help="number of images / words")
    parser.add_argument("--seed", type=int, default=0, help="sample i depends only on (seed, i)")
    from ocr_core.data.synth_scenes import DOMAINS

    parser.add_argument("--domain", default="sign", choices=list(DOMAINS),
                        help="receipt (paper, small dark print), sign (colourful, large bold), mixed, ...")
    parser.add_argument("--size", type=_size, default=(640, 480), help="det image size WxH (default 640x480)")
    parser.add_argument("--workers", type=int, default=1, help="processes (output is identical for any value)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty directory")


def run(args: argparse.Namespace) -> int:
    from ocr_core.data.synth import synth_det, synth_rec

    if args.num < 1:
        raise DataError("--num must be >= 1")
    if args.kind == "det":
        s = synth_det(args.out, args.num, args.seed, args.domain, args.size, args.workers, args.overwrite)
        print(f"wrote {s['num']} {s['domain']} images with {s['boxes']} boxes ({s['dont_care']} '###') to {args.out}")
    else:
        s = synth_rec(args.out, args.num, args.seed, args.domain, args.workers, args.overwrite)
        print(f"wrote {s['num']} {s['domain']} word crops (max length {s['max_len']}) to {args.out}/rec_gt.txt")
    return 0
