"""EAST loss (PaddleOCR ``ppocr/losses/det_east_loss.py``): dice on the score map plus a
smooth-L1 on the 8 geometry channels, weighted by the short-edge normaliser (geo channel 8).

Kept as Paddle computes it: the quadratic branch is ``d**2`` (no 1/2) where ``|d| < score``
(i.e. ``|d| < 1`` inside text), the linear branch ``|d| - 0.5``; the dice term is scaled by 0.01.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ocr_core.losses import LOSSES
from ocr_core.losses.det_db_loss import DiceLoss


@LOSSES.register()
class EASTLoss(nn.Module):
    """``batch = [image, score_map [B,1,h,w], geo_map [B,9,h,w], training_mask [B,1,h,w]]``."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.dice_loss = DiceLoss(eps=eps)

    def forward(self, predicts: dict[str, Tensor], batch: list[Tensor]) -> dict[str, Tensor]:
        l_score, l_geo, l_mask = (t.float() for t in batch[1:4])
        f_score, f_geo = predicts["f_score"].float(), predicts["f_geo"].float()
        dice = self.dice_loss(f_score, l_score, l_mask)
        channels = 8
        norm = l_geo[:, channels:channels + 1]
        diff = (l_geo[:, :channels] - f_geo).abs()
        sign = (diff < l_score).float()
        in_loss = diff * diff * sign + (diff - 0.5) * (1.0 - sign)
        smooth_l1 = (norm / channels * in_loss * l_score).sum(dim=1, keepdim=True)
        smooth_l1_loss = torch.mean(smooth_l1 * l_score)
        dice = dice * 0.01
        return {"loss": dice + smooth_l1_loss, "dice_loss": dice, "smooth_l1_loss": smooth_l1_loss}
