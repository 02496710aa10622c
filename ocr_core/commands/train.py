"""``ocrflow train -c CONFIG -o Section.key=value ...`` (PaddleOCR's ``tools/train.py``).

Run it under ``torchrun`` for DDP; the distributed setup is read from torchrun's environment.
Exit codes: 0; 2 for a config or data error; 143 after SIGTERM, once ``latest.pt`` is saved
(``Global.checkpoints=<save_model_dir>/latest.pt`` or ``--resume`` resumes it, mid-epoch included).

A ``save_model_dir`` that already holds checkpoints is not trained over silently: ``--resume``
continues from its ``latest.pt``, ``--overwrite`` replaces them, otherwise the run refuses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ocr_core.commands._common import add_config_arguments, config_from_args
from ocr_core.errors import ConfigError, Preempted

HELP = "Train a model from a PaddleOCR-style config."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--summary-json", help="write the final state and metrics to this JSON file")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue from <save_model_dir>/latest.pt when it exists (else start fresh)")
    mode.add_argument("--overwrite", action="store_true",
                      help="train into a save_model_dir that already holds checkpoints, replacing them")


def check_save_dir(cfg: dict[str, Any], resume: bool = False, overwrite: bool = False) -> None:
    """Refuse to train over a previous run's checkpoints unless resuming or told to overwrite.

    Only ``*.pt`` files count: no rank writes one before every rank has passed this check (the
    process group forms first), so torchrun's ranks agree; a log or config left by a run that
    stopped early does not block a new one.

    ``resume`` sets ``Global.checkpoints`` to ``<save_model_dir>/latest.pt`` when that file exists. A
    worker that torchrun restarted after a failure of its group (``TORCHELASTIC_RESTART_COUNT`` > 0,
    e.g. the survivors of a lost node once their collectives fail) resumes the same way, since its
    command line is the first attempt's. Restarts for a membership change are not counted: when a
    node joins (a scale-up, a replacement, another node's agent re-rendezvousing after a failure)
    torchrun restarts healthy workers with the count unchanged (0 in a job that never failed), and
    a replacement pod's torchrun starts at 0. So a job that may restart passes ``--resume`` (the
    ``ocrflow launch`` PyTorchJobs do; the pipeline's training worker sets ``Global.checkpoints``
    itself); without it such a restart is refused here, which torchrun counts as a failure: the
    next attempt resumes (count > 0), at the cost of one of ``--max-restarts``.

    Raises:
        ConfigError: naming ``Global.save_model_dir`` and the checkpoints found.
    """
    from ocr_core.config import parse_global

    g = parse_global(cfg)
    glob = cfg.setdefault("Global", {})
    if "\x00" in str(g.save_model_dir):
        raise ConfigError(f"{g.save_model_dir!r} contains a NUL byte", "Global.save_model_dir",
                          file=glob.get("_config_file"))
    save_dir = Path(g.save_model_dir)
    if g.checkpoints:
        return  # resuming on purpose
    latest = save_dir / "latest.pt"
    if resume or int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0) > 0:
        if latest.is_file():
            glob["checkpoints"] = str(latest)
        return
    found = sorted(p.name for p in save_dir.glob("*.pt")) if save_dir.is_dir() else []
    if found and not overwrite:
        shown = ", ".join(found[:3]) + (f" (+{len(found) - 3} more)" if len(found) > 3 else "")
        raise ConfigError(f"{save_dir} already holds checkpoints ({shown}); pass --resume to continue from "
                          "latest.pt, --overwrite to replace them, or choose another save_model_dir",
                          "Global.save_model_dir", file=glob.get("_config_file"))


def run(args: argparse.Namespace) -> int:
    from ocr_core.engine.run import train

    cfg = config_from_args(args)
    check_save_dir(cfg, resume=args.resume, overwrite=args.overwrite)
    try:
        result = train(cfg)
    except Preempted as exc:  # SIGTERM: latest.pt is saved; a retry resumes from it
        print(f"ocrflow train: preempted: {exc}", file=sys.stderr)
        return Preempted.EXIT_CODE
    if args.summary_json:
        with open(args.summary_json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2, default=str)
    return 0
