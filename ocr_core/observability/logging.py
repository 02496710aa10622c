"""The ``ocrflow`` logger: console on every rank that asks, ``train.log`` on rank 0."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_FMT = "[%(asctime)s] %(levelname)s %(message)s"


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a record is emitted, not the one it was created with:
    a handler bound to a stream that was since replaced and closed (in-process ``main()`` calls under a
    capturing test runner, a notebook's redirected output) would print a logging traceback instead."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        del value  # StreamHandler.__init__/setStream assign it; the stream is read at emit time


def setup_logger(log_file: str | Path | None = None, rank: int = 0, level: int = logging.INFO) -> logging.Logger:
    """Configure and return the ``ocrflow`` logger (idempotent; re-targets the log file)."""
    logger = logging.getLogger("ocrflow")
    logger.setLevel(level if rank == 0 else logging.WARNING)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    console = _StdoutHandler()
    console.setFormatter(logging.Formatter(_FMT if rank == 0 else f"[rank {rank}] " + _FMT, "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(console)
    if log_file is not None and rank == 0:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(logging.Formatter(_FMT, "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(fh)
    return logger


class _Held(logging.Handler):
    """Keeps the records logged before a run's log file may be created (:func:`hold_records`)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def hold_records() -> None:
    """Keep the ``ocrflow`` logger's records (the console still shows them) until :func:`open_held_log`
    writes them into the log file, or :func:`drop_held_records` discards them (a refused run leaves no file)."""
    logging.getLogger("ocrflow").addHandler(_Held())


def drop_held_records() -> list[logging.LogRecord] | None:
    """Stop holding; the records held (``None``: nothing was held, the log file is open or never was)."""
    logger = logging.getLogger("ocrflow")
    held = [h for h in logger.handlers if isinstance(h, _Held)]
    for h in held:
        logger.removeHandler(h)
    return [r for h in held for r in h.records] if held else None


def open_held_log(log_file: str | Path, rank: int = 0) -> None:
    """Create ``log_file`` (rank 0) starting with the held records; a no-op when nothing is held."""
    records = drop_held_records()
    if records is None:
        return
    logger = setup_logger(log_file, rank)
    for fh in (h for h in logger.handlers if isinstance(h, logging.FileHandler)):
        for record in records:
            fh.handle(record)


def close_log_files() -> None:
    """Detach and close the ``ocrflow`` logger's log files (and any held records); the console stays.

    A run's ``train.log``/``eval.log`` belongs to that run: called when a CLI verb returns (``main()``
    may run again in the same process) and when an evaluation in a temporary directory ends, so a
    later record is never written into, or re-opened at, a file of a finished run."""
    logger = logging.getLogger("ocrflow")
    for h in list(logger.handlers):
        if isinstance(h, (logging.FileHandler, _Held)):
            logger.removeHandler(h)
            h.close()
