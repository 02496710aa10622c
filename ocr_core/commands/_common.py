"""Flags shared by the config-driven verbs (train, eval, infer, export, extract)."""

from __future__ import annotations

import argparse
from typing import Any

from ocr_core.config import load_config, validate_config
from ocr_core.errors import ConfigError


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``-c/--config`` (OpenOCR's ``--c`` too) and repeatable ``-o/--opt`` (``--o``) overrides."""
    parser.add_argument("-c", "--config", "--c", dest="config", required=required,
                        help="PaddleOCR-style YAML config")
    parser.add_argument("-o", "--opt", "--o", dest="opt", nargs="+", action="extend", default=[],
                        metavar="Section.key=value",
                        help="override config values, e.g. -o Global.epoch_num=10 Train.loader.batch_size_per_card=4")
    # `python -m torch.distributed.launch` (OpenOCR's and PaddleOCR's guides) appends --local-rank=N
    # (older torch: --local_rank N); the rank comes from the LOCAL_RANK it also sets
    parser.add_argument("--local-rank", "--local_rank", dest="local_rank", type=int, default=None,
                        help=argparse.SUPPRESS)


def _check_section_overrides(opts: list[str]) -> None:
    """A whole-section override (``-o Global=3``) must give a mapping: every verb indexes sections."""
    from ocr_core.config.loader import parse_override

    for item in opts:
        try:
            keys, value = parse_override(item)
        except ConfigError as exc:
            raise exc.with_file(f"-o {item}") from None
        if len(keys) == 1 and value is not None and not isinstance(value, dict):
            raise ConfigError(f"a section must be a mapping, got {type(value).__name__} {value!r} "
                              f"(set one key: {keys[0]}.key=value)", keys[0], file=f"-o {item}")


def config_from_args(args: argparse.Namespace, validate: bool = True) -> dict[str, Any]:
    """Load ``args.config`` with ``args.opt`` overrides and validate it.

    Raises:
        ConfigError: also for an empty config file (no section but ``Global``) and a whole-section
            override that is not a mapping.
    """
    if getattr(args, "local_rank", None) is not None:
        import os

        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    _check_section_overrides(list(args.opt or []))
    cfg = load_config(args.config, args.opt)
    if args.config is not None and not any(key != "Global" for key in cfg):
        raise ConfigError("the config has no sections besides Global (is the file empty?); "
                          "expected Architecture, Train, Eval, ...", file=str(args.config))
    if validate:
        validate_config(cfg)
    return cfg
