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


def build_loss(cfg: dict):  # noqa: ANN201
    """Build the loss named in a ``Loss`` section."""
    return LOSSES.build(cfg, "Loss")


__all__ = ["LOSSES", "build_loss"]
