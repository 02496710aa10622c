"""Flags shared by the config-driven verbs (train, eval, infer, export, extract)."""

from __future__ import annotations

import argparse
from typing import Any

from ocr_core.config import load_config, validate_config


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``-c/--config`` (OpenOCR's ``--c`` too) and repeatable ``-o/--opt`` (``--o``) overrides."""
    parser.add_argument("-c", "--config", "--c", dest="config", required=required,
                        help="PaddleOCR-style YAML config")
    parser.add_argument("-o", "--opt", "--o", dest="opt", nargs="+", action="extend", default=[],
                        metavar="Section.key=value",
                        help="override config values, e.g. -o Global.epoch_num=10 Train.loader.batch_size_per_card=4")


def config_from_args(args: argparse.Namespace, validate: bool = True) -> dict[str, Any]:
    """Load ``args.config`` with ``args.opt`` overrides and validate it."""
    cfg = load_config(args.config, args.opt)
    if validate:
        validate_config(cfg)
    return cfg
