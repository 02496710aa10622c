"""Recognition distillation losses (PaddleOCR ``ppocr/losses/distillation_loss.py``, rec part).

Used by ``ch_PP-OCRv3_rec_distillation.yml`` (UDML) inside ``CombinedLoss``:

* ``DistillationCTCLoss`` / ``DistillationSARLoss``: each role's own supervised loss, keyed
  ``{name}_{role}_{idx}`` (``loss_ctc_Student_0``, ``loss_sar_Teacher_1``), as PaddleOCR.
* ``DistillationDistanceLoss``: L1 / L2 (MSE) / smooth-L1 between two roles' features
  (``backbone_out``), keyed ``{name}_l2_{a}_{b}_{idx}`` (PaddleOCR appends ``_l2`` to the name
  whatever the mode).

The DML term (``DistillationDMLLoss``) lives in ``distillation_loss.py``. Every loss adds
``loss`` = the sum of its terms. With ``multi_head`` the CTC loss reads ``out["ctc"]`` with the
batch ``[image, label_ctc, length, valid_ratio]`` and the SAR loss ``out["sar"]`` with
``[image, label_sar, length, valid_ratio]`` (the MultiLoss split).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Union

import torch.nn.functional as F
from torch import Tensor, nn

from ocr_core.errors import ConfigError
from ocr_core.losses import LOSSES
from ocr_core.losses.distillation_loss import _normalize_pairs, _select, _sum_loss
from ocr_core.losses.rec_ctc_loss import CTCLoss
from ocr_core.losses.rec_sar_loss import SARLoss

__all__ = ["DistillationCTCLoss", "DistillationDistanceLoss", "DistillationSARLoss"]


def _model_names(names: list[str] | None) -> list[str]:
    if not names:
        raise ConfigError("needs at least one model name", "model_name_list")
    return [str(n) for n in names]


def _head_output(out: Any, head: str, role: str) -> Any:
    if not isinstance(out, dict) or head not in out:
        keys = sorted(out) if isinstance(out, dict) else type(out).__name__
        raise KeyError(f"multi_head: the {role} output has no {head!r} entry (got {keys}); "
                       "is the model a MultiHead in training mode?")
    return out[head]


class _EachRole:
    """Mixin: the parent loss on every role in ``model_name_list``, keyed ``{name}_{role}_{idx}``.

    A subclass names the MultiHead output it reads (``head``) and the batch entry that holds the
    other head's label (``other_label``), dropped from the batch with ``multi_head``.
    """

    head: str
    other_label: int

    def _init_roles(self, model_name_list: list[str] | None, key: str | None, multi_head: bool,
                    name: str) -> None:
        self.model_name_list = _model_names(model_name_list)
        self.key = key
        self.multi_head = multi_head
        self.name = name

    def forward(self, predicts: Any, batch: Sequence[Tensor]) -> dict[str, Tensor]:
        """``predicts``: role -> that model's output; ``batch`` as the parent loss takes it."""
        loss_dict: dict[str, Tensor] = {}
        batch = list(batch)
        if self.multi_head:
            batch = batch[:self.other_label] + batch[self.other_label + 1:]
        for idx, role in enumerate(self.model_name_list):
            out = _select(predicts[role], self.key)
            if self.multi_head:
                out = _head_output(out, self.head, role)
            loss_dict[f"{self.name}_{role}_{idx}"] = super().forward(out, batch)["loss"]  # type: ignore[misc]
        return _sum_loss(loss_dict)


@LOSSES.register()
class DistillationCTCLoss(_EachRole, CTCLoss):
    """CTC loss of every model in ``model_name_list``.

    Args:
        model_name_list: Roles to supervise (``[Student, Teacher]``).
        key: Entry of each role's output to read (``head_out``); None = the output itself.
        multi_head: The output is a MultiHead dict: use its ``ctc`` logits and drop
            ``label_sar`` from the batch.
        name: Key prefix.
        use_focal_loss: As :class:`CTCLoss`.
    """

    head, other_label = "ctc", 2

    def __init__(self, model_name_list: list[str] | None = None, key: str | None = None,
                 multi_head: bool = False, name: str = "loss_ctc", use_focal_loss: bool = False) -> None:
        super().__init__(use_focal_loss=use_focal_loss)
        self._init_roles(model_name_list, key, multi_head, name)


@LOSSES.register()
class DistillationSARLoss(_EachRole, SARLoss):
    """SAR (GTC) cross-entropy of every model in ``model_name_list``.

    Args:
        model_name_list: Roles to supervise.
        key: Entry of each role's output to read (``head_out``).
        multi_head: Use the MultiHead ``sar`` logits and the batch ``[image, label_sar, ...]``.
        name: Key prefix.
        ignore_index: The SAR ``<PAD>`` index; the engine wires ``n_ctc_classes + 1`` as
            PaddleOCR's ``train.py`` does (None: the last class, see :class:`SARLoss`).
    """

    head, other_label = "sar", 1

    def __init__(self, model_name_list: list[str] | None = None, key: str | None = None,
                 multi_head: bool = False, name: str = "loss_sar", ignore_index: int | None = None) -> None:
        super().__init__(ignore_index=ignore_index)
        self._init_roles(model_name_list, key, multi_head, name)


_DISTANCES = {"l1": F.l1_loss, "l2": F.mse_loss, "smooth_l1": F.smooth_l1_loss}


@LOSSES.register()
class DistillationDistanceLoss(nn.Module):
    """Feature distance between pairs of models (mean reduction); gradients reach both models.

    Args:
        mode: ``l1``, ``l2`` (MSE) or ``smooth_l1``.
        model_name_pairs: ``[a, b]`` or ``[[a, b], ...]``.
        key: Entry of each role's output (``backbone_out``).
        name: Key prefix; ``_l2`` is appended as PaddleOCR does.
    """

    def __init__(self, mode: Literal["l1", "l2", "smooth_l1"] = "l2",
                 model_name_pairs: Union[list[str], list[list[str]]] | None = None,
                 key: str | None = None, name: str = "loss_distance") -> None:
        super().__init__()
        if mode not in _DISTANCES:
            raise ConfigError(f"mode must be one of {sorted(_DISTANCES)}, got {mode!r}", "mode")
        self.mode = mode
        self.model_name_pairs = _normalize_pairs(model_name_pairs, "model_name_pairs")
        self.key = key
        self.name = f"{name}_l2"

    def forward(self, predicts: dict, batch: list[Tensor]) -> dict[str, Tensor]:
        fn = _DISTANCES[self.mode]
        loss_dict: dict[str, Tensor] = {}
        for idx, (a, b) in enumerate(self.model_name_pairs):
            out1 = _select(predicts[a], self.key)
            out2 = _select(predicts[b], self.key)
            loss_dict[f"{self.name}_{a}_{b}_{idx}"] = fn(out1.float(), out2.float())
        return _sum_loss(loss_dict)
