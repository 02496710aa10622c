"""``ocrflow eval -c CONFIG -o Global.checkpoints=PATH`` (PaddleOCR's ``tools/eval.py``)."""

from __future__ import annotations

import argparse
import json

from ocr_core.commands._common import add_config_arguments, config_from_args

HELP = "Evaluate a checkpoint on the Eval dataset of a config."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--json", dest="json_out", help="also write the metrics to this JSON file")


def run(args: argparse.Namespace) -> int:
    from ocr_core.engine.run import evaluate_config

    metrics = evaluate_config(config_from_args(args))
    print(json.dumps(metrics, indent=2))
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            json.dump(metrics, fh, indent=2)
    return 0
