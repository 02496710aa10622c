"""``ocrflow infer -c CONFIG -o Global.pretrained_model=CKPT --image PATH_OR_DIR``.

Det writes ``predicts.json`` and ``det_res_<name>.png`` with the boxes drawn; rec prints
``('text', score)`` per image (PaddleOCR's ``tools/infer_det.py`` / ``infer_rec.py``).
"""

from __future__ import annotations

import argparse

from ocr_core.commands._common import add_config_arguments, config_from_args

HELP = "Run a checkpoint on an image or folder; write JSON results and visualizations."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--image", help="image file or folder (default: Global.infer_img)")
    parser.add_argument("--out", help="output folder (default: Global.save_res_path or <save_model_dir>/infer)")


def run(args: argparse.Namespace) -> int:
    from ocr_core.engine.infer import infer_config

    infer_config(config_from_args(args), args.image, args.out)
    return 0
