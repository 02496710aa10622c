"""``ocrflow train -c CONFIG -o Section.key=value ...`` (PaddleOCR's ``tools/train.py``).

Run it under ``torchrun`` for DDP; the distributed setup is read from torchrun's environment.
Exit codes: 0; 2 for a config or data error; 143 after SIGTERM, once ``latest.pt`` is saved
(``Global.checkpoints=<save_model_dir>/latest.pt`` resumes it, mid-epoch included).
"""

from __future__ import annotations

import argparse
import json
import sys

from ocr_core.commands._common import add_config_arguments, config_from_args
from ocr_core.errors import Preempted

HELP = "Train a model from a PaddleOCR-style config."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--summary-json", help="write the final state and metrics to this JSON file")


def run(args: argparse.Namespace) -> int:
    from ocr_core.engine.run import train

    cfg = config_from_args(args)
    try:
        result = train(cfg)
    except Preempted as exc:  # SIGTERM: latest.pt is saved; a retry resumes from it
        print(f"ocrflow train: preempted: {exc}", file=sys.stderr)
        return Preempted.EXIT_CODE
    if args.summary_json:
        with open(args.summary_json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2, default=str)
    return 0
