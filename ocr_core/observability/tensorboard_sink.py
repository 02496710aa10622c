"""``Global.use_visualdl`` (OpenOCR: ``use_tensorboard``): TensorBoard event files.

PaddleOCR writes VisualDL logs to ``<save_model_dir>/vdl/``; we write TensorBoard events to the
same folder (rank 0 only): every training step's loss terms and learning rate under ``TRAIN/``,
every evaluation's metrics under ``EVAL/``, as PaddleOCR names its VisualDL tags. View with
``tensorboard --logdir <save_model_dir>/vdl``. Needs the ``tensorboard`` package
(``pip install 'ocrflow[tensorboard]'``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ocr_core.errors import ConfigError

# step-log entries that are bookkeeping, not curves
_SKIP = {"epoch", "global_step", "samples", "data_seconds", "step_seconds", "data_time", "step_time"}


class TensorBoardSink:
    """Writes scalars with ``torch.utils.tensorboard.SummaryWriter``.

    Args:
        log_dir: The event folder (``<save_model_dir>/vdl``).
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("use_visualdl writes TensorBoard events and needs the tensorboard package: "
                              "pip install 'ocrflow[tensorboard]' (or set Global.use_visualdl=false)",
                              "Global.use_visualdl") from None
        self.log_dir = Path(log_dir)
        self.writer: Any = SummaryWriter(log_dir=str(self.log_dir))

    def on_step(self, logs: dict[str, Any], global_step: int) -> None:
        """Loss terms, training metrics and ``lr`` of one optimizer step."""
        for key, value in logs.items():
            if key in _SKIP or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
                continue
            self.writer.add_scalar(f"TRAIN/{key}", float(value), global_step)

    def on_eval(self, metrics: dict[str, Any], global_step: int) -> None:
        """The numeric metrics of one evaluation."""
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"EVAL/{key}", float(value), global_step)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file (idempotent)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def open_sink(use_visualdl: bool, save_dir: str | Path, is_main: bool) -> TensorBoardSink | None:
    """A sink for rank 0 when ``use_visualdl`` is on, else None."""
    if not use_visualdl or not is_main:
        return None
    return TensorBoardSink(Path(save_dir) / "vdl")


__all__ = ["TensorBoardSink", "open_sink"]
