"""``ocrflow extract --role Student --in CKPT --out CKPT [-c CONFIG -o ...] [--no-eval]``.

Writes one role of a distillation checkpoint as a plain checkpoint (see
``ocr_core.engine.extract``), then re-evaluates it on the Eval set of ``-c`` (default: the
config stored in the checkpoint, to which ``-o`` applies without ``-c``) and prints the metric next to the one recorded in training.
"""

from __future__ import annotations

import argparse
import json

from ocr_core.commands._common import add_config_arguments, config_from_args

HELP = "Extract one role (Student/Student2/Teacher) from a distillation checkpoint."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", required=True, help="sub-model to extract, as named in Architecture.Models "
                                                      "(Student, Student2, Teacher)")
    parser.add_argument("--in", dest="src", required=True, help="distillation checkpoint (.pt suffix optional)")
    parser.add_argument("--out", required=True, help="plain checkpoint to write (.pt appended if missing)")
    add_config_arguments(parser, required=False)
    parser.add_argument("--no-eval", action="store_true", help="skip re-evaluating the extracted model")
    parser.add_argument("--json", dest="json_out", help="also write the recorded/evaluated metrics to this file")


def run(args: argparse.Namespace) -> int:
    from ocr_core.engine.extract import extract_role

    cfg = config_from_args(args) if args.config else None
    result = extract_role(args.src, args.role, args.out, config=cfg, evaluate=not args.no_eval,
                          overrides=None if args.config else args.opt)
    print(result.summary())
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            json.dump({"path": str(result.path), "role": result.role, "roles": result.roles,
                       "source_sha256": result.source_sha256, "recorded": result.recorded,
                       "evaluated": result.evaluated}, fh, indent=2)
    return 0
