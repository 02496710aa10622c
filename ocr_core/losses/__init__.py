"""Losses registered by name. A loss maps ``(predicts, batch) -> {"loss": scalar, term: scalar}``."""

from ocr_core.registry import Registry

LOSSES = Registry(
    "loss",
    [
        "ocr_core.losses.det_db_loss",
        "ocr_core.losses.distillation_loss",
        "ocr_core.losses.combined_loss",
        "ocr_core.losses.rec_ctc_loss",
        "ocr_core.losses.rec_sar_loss",
        "ocr_core.losses.rec_multi_loss",
        "ocr_core.losses.rec_distillation_loss",
        "ocr_core.losses.det_east_loss",
    ],
)

__all__ = ["LOSSES"]
