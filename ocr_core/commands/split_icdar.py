"""``ocrflow split-icdar``: a seeded train/test split of an ICDAR det set into the pipeline's raw layout."""

from __future__ import annotations

import argparse
import os

HELP = "Split ICDAR images + gt into the pipeline's raw layout (seeded, reproducible)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, help="directory of the images")
    parser.add_argument("--gt", required=True, help="directory of gt_<image stem>.txt files")
    parser.add_argument("--out", required=True, help="raw dataset root (must be empty unless --overwrite)")
    parser.add_argument("--test-count", type=int, default=200, help="images in the test split")
    parser.add_argument("--seed", type=int, default=0,
                        help="test = sorted(names)[numpy.random.default_rng(seed).permutation(N)[:test_count]]")
    parser.add_argument("--no-crop", dest="crop", action="store_false", help="do not write rec/ word crops")
    parser.add_argument("--min-size", type=int, default=4, help="skip words whose crop side is below this")
    parser.add_argument("--keep-gt-start", action="store_true",
                        help="crops: trust each quad's first gt point as its top-left")
    parser.add_argument("--jpeg-quality", type=int, default=None, help="re-encode images as .jpg at this quality")
    parser.add_argument("--link", action="store_true", help="hardlink the images instead of copying them")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace det/, rec/ and split.json of a non-empty --out (inputs are never touched)")


def run(args: argparse.Namespace) -> int:
    from ocr_core.commands.crop_words import skipped_text
    from ocr_core.data.crop_words import SKIP_REASONS, split_icdar

    info = split_icdar(args.images, args.gt, args.out, test_count=args.test_count, seed=args.seed,
                       crop=args.crop, jpeg_quality=args.jpeg_quality, link=args.link,
                       overwrite=args.overwrite, min_size=args.min_size, keep_gt_start=args.keep_gt_start)
    counts = info["counts"]
    for split in ("train", "test"):
        line = f"{split}: {counts[f'{split}_images']} images"
        if info["crop"]:
            st = info["crop"][split]
            skipped = skipped_text({r: st[r] for r in SKIP_REASONS if st[r]})
            line += f", {st['words']} word crops (skipped: {skipped})"
        print(line)
    print(f"split (seed {args.seed}) -> {os.path.join(args.out, 'split.json')}")
    return 0

