"""``ocrflow crop-words``: word crops + an ICDAR rec ``gt.txt`` from ICDAR detection ground truth."""

from __future__ import annotations

import argparse

HELP = "Crop the words of ICDAR detection gt into word images + an ICDAR rec gt.txt."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt-dir", required=True, help="directory of gt_<image>.txt files")
    parser.add_argument("--image-dir", required=True, help="directory of the images")
    parser.add_argument("--out", required=True, help="output directory (must be empty unless --overwrite)")
    parser.add_argument("--min-size", type=int, default=4, help="skip words whose crop side is below this")
    parser.add_argument("--ext", choices=("png", "jpg"), default="png", help="crop image format")
    parser.add_argument("--keep-gt-start", action="store_true",
                        help="trust each quad's first gt point as its top-left (keeps steep words' reading direction)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty directory")


def skipped_text(skipped: dict[str, int]) -> str:
    """``{"dont_care": 3, "too_small": 1}`` -> ``"3 dont_care, 1 too_small"`` (``"none"`` when empty)."""
    return ", ".join(f"{n} {reason}" for reason, n in skipped.items()) or "none"


def run(args: argparse.Namespace) -> int:
    from ocr_core.data.crop_words import crop_words

    st = crop_words(args.gt_dir, args.image_dir, args.out, min_size=args.min_size, ext=args.ext,
                    overwrite=args.overwrite, keep_gt_start=args.keep_gt_start)
    print(f"{st.words} word crops from {st.images} images -> {args.out} (skipped: {skipped_text(st.skipped())})")
    if st.missing_images:
        print(f"warning: {len(st.missing_images)} image(s) not found in {args.image_dir}: "
              + ", ".join(st.missing_images[:5]))
    return 0
