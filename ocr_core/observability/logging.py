"""The ``ocrflow`` logger: console on every rank that asks, ``train.log`` on rank 0."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_FMT = "[%(asctime)s] %(levelname)s %(message)s"


def setup_logger(log_file: str | Path | None = None, rank: int = 0, level: int = logging.INFO) -> logging.Logger:
    """Configure and return the ``ocrflow`` logger (idempotent; re-targets the log file)."""
    logger = logging.getLogger("ocrflow")
    logger.setLevel(level if rank == 0 else logging.WARNING)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter(_FMT if rank == 0 else f"[rank {rank}] " + _FMT, "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(console)
    if log_file is not None and rank == 0:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(logging.Formatter(_FMT, "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(fh)
    return logger
