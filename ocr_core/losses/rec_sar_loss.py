"""SAR cross-entropy (PaddleOCR ``ppocr/losses/rec_sar_loss.py``).

The decoder output at step ``i`` predicts label token ``i + 1``: the loss compares
``pred[:, :-1]`` with ``label[:, 1:]`` (dropping the ``<BOS>``), mean over non-pad tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ocr_core.losses import LOSSES

__all__ = ["SARLoss"]


@LOSSES.register()
class SARLoss(nn.Module):
    """Cross-entropy over the teacher-forced SAR logits.

    Args:
        ignore_index: The ``<PAD>`` index. PaddleOCR's ``train.py`` patches it to
            ``n_ctc_classes + 1``; when ``None`` it is taken from the logits: the SAR head
            predicts every class but the pad, whose index is the last one, so it equals
            ``pred.shape[-1]``.

    ``predicts`` is the ``[B, L, C]`` tensor or a dict with ``"sar"``; ``batch[1]`` the ``[B, L]``
    label. Returns ``{"loss": mean}``.
    """

    def __init__(self, ignore_index: int | None = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, predicts: Any, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        if isinstance(predicts, dict):
            predicts = predicts["sar"]
        pred = predicts[:, :-1, :]
        label = torch.as_tensor(batch[1], device=pred.device).long()[:, 1:]
        if label.shape != pred.shape[:2]:
            raise ValueError(f"SAR label {tuple(label.shape)} does not match predictions {tuple(pred.shape)}")
        ignore = pred.shape[-1] if self.ignore_index is None else self.ignore_index
        loss = F.cross_entropy(pred.reshape(-1, pred.shape[-1]).float(), label.reshape(-1),
                               ignore_index=ignore, reduction="mean")
        return {"loss": loss}
