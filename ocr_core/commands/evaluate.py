"""``ocrflow eval -c CONFIG -o Global.checkpoints=PATH`` (PaddleOCR's ``tools/eval.py``).

``-o Global.save_res_path=FILE`` also writes the metrics (JSON) to FILE. A ``save_res_path`` that
comes from the config file itself is left alone: in PaddleOCR's configs it names the inference
results file (``predicts_db.txt``) that ``ocrflow infer`` writes, and eval must not overwrite it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ocr_core.commands._common import add_config_arguments, config_from_args

HELP = "Evaluate a checkpoint on the Eval dataset of a config."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--json", dest="json_out", help="also write the metrics to this JSON file")


def _write(path: str | Path, metrics: dict) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8") as fh:
        json.dump(metrics, fh, indent=2)


def run(args: argparse.Namespace) -> int:
    from ocr_core.engine.run import evaluate_config

    cfg = config_from_args(args)
    metrics = evaluate_config(cfg)
    print(json.dumps(metrics, indent=2))
    if args.json_out:
        _write(args.json_out, metrics)
    res_path = (cfg.get("Global") or {}).get("save_res_path")
    if res_path and any(str(o).startswith("Global.save_res_path=") for o in args.opt or []):
        _write(res_path, metrics)
    return 0
