"""CTC loss with PaddleOCR's reduction (``ppocr/losses/rec_ctc_loss.py``).

Per-sample CTC negative log-likelihood (blank 0, every sample uses all ``T`` steps), optionally
focal-weighted by ``(1 - exp(-loss))**2``, then the plain batch mean: no division by the label
length. Paddle's warp-ctc applies the softmax itself, so the logits go through ``log_softmax``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ocr_core.losses import LOSSES

__all__ = ["CTCLoss", "ctc_logits"]


def ctc_logits(predicts: Any) -> torch.Tensor:
    """The CTC logits in ``predicts``: a tensor, a dict with ``"ctc"``, or a list/tuple (last item)."""
    if isinstance(predicts, dict):
        if "ctc" not in predicts:
            raise KeyError(f"CTCLoss needs predicts['ctc'], got keys {sorted(predicts)}")
        predicts = predicts["ctc"]
    elif isinstance(predicts, (list, tuple)):
        predicts = predicts[-1]
    return predicts


@LOSSES.register()
class CTCLoss(nn.Module):
    """CTC loss over ``[B, T, C]`` logits.

    Args:
        use_focal_loss: Weight each sample's loss by ``(1 - exp(-loss))**2``.

    ``batch`` is ``[image, label [B, S] zero-padded, length [B], ...]``. Returns ``{"loss": mean}``.
    Samples whose label cannot be aligned in ``T`` steps get loss 0 and no gradient, as Paddle's
    warp-ctc does (``zero_infinity``).
    """

    def __init__(self, use_focal_loss: bool = False) -> None:
        super().__init__()
        self.use_focal_loss = use_focal_loss

    def forward(self, predicts: Any, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = ctc_logits(predicts)
        b, t, _ = logits.shape
        log_probs = logits.float().log_softmax(dim=2).transpose(0, 1)  # [T, B, C]
        labels = torch.as_tensor(batch[1], device=logits.device).long()
        lengths = torch.as_tensor(batch[2], device=logits.device).long().reshape(-1)
        input_lengths = torch.full((b,), t, dtype=torch.long, device=logits.device)
        loss = F.ctc_loss(log_probs, labels, input_lengths, lengths, blank=0, reduction="none",
                          zero_infinity=True)
        if self.use_focal_loss:
            loss = loss * (1.0 - torch.exp(-loss)) ** 2
        return {"loss": loss.mean()}
