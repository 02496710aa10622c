"""MultiHead (PaddleOCR ``rec_multi_head.py``): a CTC branch (own neck + CTCHead) and a SAR branch.

Config (``Architecture.Head``)::

    name: MultiHead
    head_list:
      - CTCHead:
          Neck: {name: svtr, dims: 64, depth: 2, hidden_dims: 120, use_guide: true}
          Head: {fc_decay: 0.00001}
      - SARHead: {enc_dim: 512, max_text_length: 25}

``Neck.name`` is the ``SequenceEncoder`` ``encoder_type``. Class counts are wired by the model
builder like PaddleOCR's ``train.py``: ``out_channels_list = {"CTCLabelDecode": n,
"SARLabelDecode": n + 2}`` with ``n`` = CTC classes incl. the blank. Either pass that mapping or
``out_channels = n`` (the list is then derived); a config may also set ``out_channels_list``.

``forward(x, targets)`` takes the backbone map and, in training, ``targets = batch[1:]`` =
``[label_ctc, label_sar, length, valid_ratio]``; the SAR branch gets ``targets[1:]``.
Training returns ``{"ctc": logits, "ctc_neck": [B, T, D], "sar": logits}``; eval returns
``{"ctc": probs}`` only (the SAR branch is dropped at inference).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ocr_core.errors import ConfigError
from ocr_core.modeling import HEADS
from ocr_core.modeling.heads.rec_ctc_head import CTCHead
from ocr_core.modeling.heads.rec_sar_head import SARHead
from ocr_core.modeling.necks.rec_sequence_encoder import SequenceEncoder
from ocr_core.registry import check_kwargs

__all__ = ["MultiHead"]

_SUPPORTED = ("CTCHead", "SARHead")


@HEADS.register()
class MultiHead(nn.Module):
    """CTC + SAR (GTC) recognition head.

    Args:
        in_channels: Backbone channels (wired).
        out_channels_list: ``{"CTCLabelDecode": n, "SARLabelDecode": n + 2}`` (wired).
        head_list: ``[{"CTCHead": {"Neck": {...}, "Head": {...}}}, {"SARHead": {...}}]``.
        out_channels: Alternative to ``out_channels_list``: the CTC class count ``n``.
    """

    training_only = ("sar_head",)  # the SAR branch is dropped at inference

    def __init__(self, in_channels: int, out_channels_list: dict | None = None,
                 head_list: list | None = None, out_channels: int | None = None) -> None:
        super().__init__()
        if out_channels_list is None:
            if out_channels is None:
                raise ConfigError("MultiHead needs out_channels_list (or out_channels), normally wired "
                                  "by the model builder from the dictionary", "out_channels_list")
            out_channels_list = {"CTCLabelDecode": out_channels, "SARLabelDecode": out_channels + 2}
        if not head_list:
            raise ConfigError("MultiHead needs a head_list with a CTCHead and a SARHead", "head_list")
        self.in_channels = in_channels
        self.out_channels_list = dict(out_channels_list)
        self.ctc_encoder: SequenceEncoder | None = None
        self.ctc_head: CTCHead | None = None
        self.sar_head: SARHead | None = None
        for idx, entry in enumerate(head_list):
            where = f"head_list[{idx}]"
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ConfigError("each head_list entry is a mapping {HeadName: {...}}", where)
            name, args = next(iter(entry.items()))
            args = dict(args or {})
            where = f"{where}.{name}"
            if name == "CTCHead":
                self._build_ctc(args, where)
            elif name == "SARHead":
                check_kwargs(SARHead, args, where, skip={"in_channels", "out_channels"})
                self.sar_head = SARHead(in_channels=in_channels,
                                        out_channels=self._classes("SARLabelDecode"), **args)
            else:
                raise ConfigError(f"{name!r} is not supported in MultiHead; choose from {_SUPPORTED}",
                                  where)
        if self.ctc_head is None or self.sar_head is None:
            raise ConfigError("MultiHead needs both a CTCHead and a SARHead entry", "head_list")

    def _classes(self, key: str) -> int:
        if key not in self.out_channels_list:
            raise ConfigError(f"out_channels_list lacks {key!r}", "out_channels_list")
        return int(self.out_channels_list[key])

    def _build_ctc(self, args: dict[str, Any], where: str) -> None:
        unknown = set(args) - {"Neck", "Head"}
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)}; a CTCHead entry has Neck and Head", where)
        neck_args = dict(args.get("Neck") or {})
        if "name" not in neck_args:
            raise ConfigError("the CTC Neck needs a name (the SequenceEncoder encoder_type)", f"{where}.Neck")
        encoder_type = neck_args.pop("name")
        check_kwargs(SequenceEncoder, neck_args, f"{where}.Neck", skip={"in_channels", "encoder_type"})
        self.ctc_encoder = SequenceEncoder(in_channels=self.in_channels, encoder_type=encoder_type,
                                           **neck_args)
        head_args = dict(args.get("Head") or {})
        check_kwargs(CTCHead, head_args, f"{where}.Head", skip={"in_channels", "out_channels"})
        self.ctc_head = CTCHead(in_channels=self.ctc_encoder.out_channels,
                                out_channels=self._classes("CTCLabelDecode"), **head_args)

    def forward(self, x: torch.Tensor,
                targets: Sequence[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        assert self.ctc_encoder is not None and self.ctc_head is not None and self.sar_head is not None
        neck = self.ctc_encoder(x)
        ctc = self.ctc_head(neck)["ctc"]
        if not self.training:
            return {"ctc": ctc}
        if targets is None or len(targets) < 2:
            raise ValueError("MultiHead training needs targets = [label_ctc, label_sar, length, valid_ratio]")
        return {"ctc": ctc, "ctc_neck": neck, "sar": self.sar_head(x, list(targets[1:]))["sar"]}
