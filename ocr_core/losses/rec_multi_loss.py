"""MultiLoss (PaddleOCR ``ppocr/losses/rec_multi_loss.py``): CTC + SAR for ``MultiHead`` models.

Batch layout: ``[image, label_ctc, label_sar, length, valid_ratio]``. The CTC loss sees
``[image, label_ctc, length, valid_ratio]``, the SAR loss ``[image, label_sar, length,
valid_ratio]``. Returns ``{"CTCLoss": w1 * ctc, "SARLoss": w2 * sar, "loss": sum}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ocr_core.errors import ConfigError
from ocr_core.losses import LOSSES
from ocr_core.losses.rec_ctc_loss import CTCLoss
from ocr_core.losses.rec_sar_loss import SARLoss
from ocr_core.registry import check_kwargs

__all__ = ["MultiLoss"]

_LOSSES: dict[str, type[nn.Module]] = {"CTCLoss": CTCLoss, "SARLoss": SARLoss}


@LOSSES.register()
class MultiLoss(nn.Module):
    """Weighted sum of the CTC and GTC (SAR) losses.

    Args:
        loss_config_list: ``[{"CTCLoss": {...} or None}, {"SARLoss": {...} or None}]``.
        weight_1: Weight of the CTC loss. weight_2: weight of the SAR loss.
        gtc_loss: The guided-training branch; only ``"sar"`` is supported.
        ignore_index: SAR pad index if the builder patches it at the ``Loss`` level (as PaddleOCR's
            ``train.py`` does); an ``ignore_index`` inside the SARLoss entry wins.
    """

    def __init__(self, loss_config_list: list, weight_1: float = 1.0, weight_2: float = 1.0,
                 gtc_loss: str = "sar", ignore_index: int | None = None) -> None:
        super().__init__()
        if gtc_loss != "sar":
            raise ConfigError(f"gtc_loss {gtc_loss!r} is not supported (sar)", "gtc_loss")
        self.weight_1 = weight_1
        self.weight_2 = weight_2
        self.loss_funcs = nn.ModuleDict()
        for idx, entry in enumerate(loss_config_list):
            where = f"loss_config_list[{idx}]"
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ConfigError("each entry is a mapping {LossName: {...}}", where)
            name, params = next(iter(entry.items()))
            if name not in _LOSSES:
                raise ConfigError(f"{name!r} is not supported in MultiLoss; choose from {list(_LOSSES)}",
                                  where)
            params = dict(params or {})
            if name == "SARLoss" and ignore_index is not None:
                params.setdefault("ignore_index", ignore_index)
            check_kwargs(_LOSSES[name], params, f"{where}.{name}")
            self.loss_funcs[name] = _LOSSES[name](**params)
        if not len(self.loss_funcs):
            raise ConfigError("MultiLoss needs at least one loss", "loss_config_list")

    def forward(self, predicts: dict[str, Any], batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        batch = list(batch)
        out: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for name, fn in self.loss_funcs.items():
            if name == "CTCLoss":
                loss = fn(predicts["ctc"], batch[:2] + batch[3:])["loss"] * self.weight_1
            else:
                loss = fn(predicts["sar"], batch[:1] + batch[2:])["loss"] * self.weight_2
            out[name] = loss
            total = loss if total is None else total + loss
        assert total is not None
        out["loss"] = total
        return out
