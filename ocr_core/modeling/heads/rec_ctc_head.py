"""CTC head (PaddleOCR ``rec_ctc_head.py``): a Linear (or two) from the sequence to class scores."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ocr_core.modeling import HEADS

__all__ = ["CTCHead"]


def _paddle_fc(in_features: int, out_features: int, decay: float) -> nn.Linear:
    """Linear with Uniform(+-1/sqrt(in)) init on weight and bias and a per-layer L2 factor."""
    fc = nn.Linear(in_features, out_features)
    bound = 1.0 / math.sqrt(in_features)
    nn.init.uniform_(fc.weight, -bound, bound)
    nn.init.uniform_(fc.bias, -bound, bound)
    fc.weight_decay_override = decay  # type: ignore[assignment]  # Paddle L2Decay(fc_decay), see engine.optim
    return fc


@HEADS.register()
class CTCHead(nn.Module):
    """Per-time-step classifier for CTC.

    Args:
        in_channels: Sequence feature width (wired from the neck).
        out_channels: Number of classes incl. the blank (wired from the dictionary).
        fc_decay: L2 factor for this head's weights and biases (``weight_decay_override``).
        mid_channels: If set, two Linears ``in -> mid -> out`` (no activation between, as Paddle).
        return_feats: In training, also return the features feeding the last Linear.

    Returns (``forward``):
        training: ``{"ctc": logits [B, T, C]}`` (+ ``"ctc_feats"`` with ``return_feats``);
        eval: ``{"ctc": softmax probabilities [B, T, C]}``.
    """

    def __init__(self, in_channels: int, out_channels: int = 6625, fc_decay: float = 0.0004,
                 mid_channels: int | None = None, return_feats: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.mid_channels = mid_channels
        self.fc_decay = fc_decay
        self.return_feats = return_feats
        if mid_channels is None:
            self.fc = _paddle_fc(in_channels, out_channels, fc_decay)
        else:
            self.fc1 = _paddle_fc(in_channels, mid_channels, fc_decay)
            self.fc2 = _paddle_fc(mid_channels, out_channels, fc_decay)

    def forward(self, x: torch.Tensor, targets: Any = None) -> dict[str, torch.Tensor]:
        if self.mid_channels is None:
            logits = self.fc(x)
        else:
            x = self.fc1(x)
            logits = self.fc2(x)
        if not self.training:
            return {"ctc": logits.softmax(dim=2)}
        out = {"ctc": logits}
        if self.return_feats:
            out["ctc_feats"] = x
        return out
