"""Distillation losses for DB detection (DML / CML) and the map/logit DML loss.

Key names follow PaddleOCR's ``ppocr/losses/distillation_loss.py`` exactly
(``db_Student_loss_shrink_maps``, ``dila_dbloss_Student_Teacher``, ``dml_thrink_maps_0``,
``dml_ctc_0``) so logs and dashboards line up. Differences, all deliberate:

* ``DistillationDBLoss`` / ``DistillationDilaDBLoss`` honour their ``balance_loss``, ``alpha``,
  ``beta``, ... arguments; PaddleOCR ignores them and uses DBLoss defaults. Every shipped config
  passes the defaults, so the numbers are the same.
* The CML teacher target (``shrink > 0.3`` then a 2x2 dilation) is built in torch on the
  teacher's device with no gradient, instead of a numpy/cv2 round trip; it equals
  ``cv2.dilate(mask, np.ones((2, 2)))`` (tested).
* The map DML term is reduced to a scalar (mean over pixels, then over the batch). PaddleOCR
  returns a [B] vector, which makes CombinedLoss's total a [B] vector whose backward equals the
  backward of its sum, i.e. B times our objective. Adam is invariant to that constant factor (up
  to its eps and the coupled L2 term); see ``combined_loss.py``.
"""

from __future__ import annotations

from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ocr_core.errors import ConfigError
from ocr_core.losses import LOSSES
from ocr_core.losses.det_db_loss import DBLoss, MainLossType

_MAP_CHANNELS = {"thrink_maps": 0, "threshold_maps": 1, "binary_maps": 2}


def _sum_loss(loss_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Add ``loss`` = sum of all terms unless present (PaddleOCR's ``_sum_loss``)."""
    if "loss" not in loss_dict:
        loss_dict["loss"] = torch.stack([v.reshape(()) for v in loss_dict.values()]).sum()
    return loss_dict


def _normalize_pairs(pairs: list | None, where: str) -> list[list[str]]:
    """Accept ``[a, b]`` or ``[[a, b], ...]`` (PaddleOCR's ``_check_model_name_pairs``)."""
    if not pairs:
        raise ConfigError("needs at least one pair of model names", where)
    if isinstance(pairs[0], str):
        pairs = [pairs]
    out = []
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ConfigError(f"each pair must be [model_a, model_b], got {pair!r}", where)
        out.append([str(pair[0]), str(pair[1])])
    return out


def _select(out: Any, key: str | None) -> Any:
    if key is not None and isinstance(out, dict):
        return out[key]
    return out


@torch.no_grad()
def dilated_teacher_target(teacher_shrink: Tensor, thresh: float = 0.3) -> Tensor:
    """``cv2.dilate((teacher_shrink > thresh).astype(uint8), np.ones((2, 2)))`` per image, in torch.

    For an even kernel OpenCV's default anchor is (1, 1), so output (y, x) is the max over
    input rows y-1..y and columns x-1..x (outside pixels do not count). Padding one zero row on
    top and one zero column on the left, then a 2x2 stride-1 max-pool, gives exactly that.

    Args:
        teacher_shrink: ``[B, H, W]`` teacher shrink probabilities (any float dtype).
        thresh: Binarization threshold (PaddleOCR hard-codes 0.3).

    Returns:
        ``[B, H, W]`` float32 tensor of 0/1, detached from the teacher graph.
    """
    binary = (teacher_shrink.detach() > thresh).float().unsqueeze(1)
    padded = F.pad(binary, (1, 0, 1, 0))
    return F.max_pool2d(padded, kernel_size=2, stride=1).squeeze(1)


@LOSSES.register()
class DistillationDBLoss(DBLoss):
    """DBLoss on each model's output, keys ``{name}_{model}_{term}``, plus their sum ``loss``."""

    def __init__(
        self,
        model_name_list: list[str] | None = None,
        balance_loss: bool = True,
        main_loss_type: MainLossType = "DiceLoss",
        alpha: float = 5,
        beta: float = 10,
        ohem_ratio: float = 3,
        eps: float = 1e-6,
        key: str | None = None,
        name: str = "db",
    ) -> None:
        super().__init__(balance_loss, main_loss_type, alpha, beta, ohem_ratio, eps)
        if not model_name_list:
            raise ConfigError("needs at least one model name", "model_name_list")
        self.model_name_list = list(model_name_list)
        self.key = key
        self.name = name

    def forward(self, predicts: dict, batch: list[Tensor]) -> dict[str, Tensor]:
        loss_dict: dict[str, Tensor] = {}
        for model_name in self.model_name_list:
            out = _select(predicts[model_name], self.key)
            if not isinstance(out, dict):
                out = {"maps": out}
            for term, value in super().forward(out, batch).items():
                if term != "loss":
                    loss_dict[f"{self.name}_{model_name}_{term}"] = value
        return _sum_loss(loss_dict)


@LOSSES.register()
class DistillationDilaDBLoss(DBLoss):
    """CML student-from-teacher loss on the dilated, binarized teacher shrink map.

    Per (student, teacher) pair: ``alpha * Balance(stu_shrink, T, shrink_mask) +
    Dice(stu_binary, T, shrink_mask)`` with ``T = dilate(teacher_shrink > 0.3)``, keyed
    ``{name}_{student}_{teacher}``. Only channel 0 of the teacher is read, so an eval-mode
    teacher returning ``[B, 1, H, W]`` works; no gradient reaches the teacher.
    """

    def __init__(
        self,
        model_name_pairs: Union[list[str], list[list[str]]] | None = None,
        key: str | None = None,
        balance_loss: bool = True,
        main_loss_type: MainLossType = "DiceLoss",
        alpha: float = 5,
        beta: float = 10,
        ohem_ratio: float = 3,
        eps: float = 1e-6,
        name: str = "dila_dbloss",
    ) -> None:
        super().__init__(balance_loss, main_loss_type, alpha, beta, ohem_ratio, eps)
        self.model_name_pairs = _normalize_pairs(model_name_pairs, "model_name_pairs")
        self.key = key
        self.name = name

    def forward(self, predicts: dict, batch: list[Tensor]) -> dict[str, Tensor]:
        shrink_mask = batch[4]
        loss_dict: dict[str, Tensor] = {}
        for stu_name, tch_name in self.model_name_pairs:
            stu = _select(predicts[stu_name], self.key if self.key is not None else "maps")
            tch = _select(predicts[tch_name], self.key if self.key is not None else "maps")
            target = dilated_teacher_target(tch[:, 0])
            loss = self.alpha * self.bce_loss(stu[:, 0], target, shrink_mask)
            loss = loss + self.dice_loss(stu[:, 2], target, shrink_mask)
            loss_dict[f"{self.name}_{stu_name}_{tch_name}"] = loss
        return _sum_loss(loss_dict)


def _kl_js_maps(p1: Tensor, p2: Tensor, eps: float = 1e-5) -> Tensor:
    """PaddleOCR ``KLJSLoss(mode="kl")``: pixelwise symmetric "probability-only" KL.

    ``0.5 * [p2 log((p2+e)/(p1+e)+e) + p1 log((p1+e)/(p2+e)+e)]``, mean over every non-batch
    axis (Paddle: axes [1, 2] of a 3-D input), then mean over the batch (Paddle keeps [B]).
    """
    p1, p2 = p1.float(), p2.float()
    loss = p2 * torch.log((p2 + eps) / (p1 + eps) + eps) + p1 * torch.log((p1 + eps) / (p2 + eps) + eps)
    loss = 0.5 * loss
    return loss.reshape(loss.shape[0], -1).mean(dim=1).mean()


def _kldiv_batchmean(log_x: Tensor, target: Tensor) -> Tensor:
    """PaddleOCR ``DMLLoss._kldiv``: ``sum(target * (log(target + 1e-10) - log_x)) / batch``."""
    return (target * (torch.log(target + 1e-10) - log_x)).sum() / target.shape[0]


@LOSSES.register()
class DistillationDMLLoss(nn.Module):
    """Deep mutual learning loss between pairs of models (PaddleOCR ``DistillationDMLLoss``).

    Detection (``maps_name`` set, e.g. ``"thrink_maps"`` = channel 0): symmetric pixelwise KL
    per map, keyed ``{name}_{maps_name}_{idx}``. Recognition (``maps_name`` None): optional
    ``act`` (softmax/sigmoid, then +1e-10), ``out[dis_head]`` when ``multi_head``; with
    ``use_log`` the symmetric batch-mean KL divergence, otherwise the pixelwise KL above;
    keyed ``{name}_{idx}``. Both models receive gradients (mutual learning).
    """

    def __init__(
        self,
        model_name_pairs: Union[list[str], list[list[str]]] | None = None,
        act: str | None = None,
        use_log: bool = False,
        key: str | None = None,
        multi_head: bool = False,
        dis_head: str = "ctc",
        maps_name: Union[str, list[str]] | None = None,
        name: str = "dml",
    ) -> None:
        super().__init__()
        if act not in (None, "softmax", "sigmoid"):
            raise ConfigError(f"act must be softmax, sigmoid or null, got {act!r}", "act")
        self.model_name_pairs = _normalize_pairs(model_name_pairs, "model_name_pairs")
        self.act = act
        self.use_log = use_log
        self.key = key
        self.multi_head = multi_head
        self.dis_head = dis_head
        # PaddleOCR wraps a list into [list] (so a list never matches); we take it as the list.
        self.maps_name = [maps_name] if isinstance(maps_name, str) else maps_name
        if self.maps_name is not None:
            unknown = [m for m in self.maps_name if m not in _MAP_CHANNELS]
            if unknown:
                raise ConfigError(f"unknown maps {unknown}; choose from {list(_MAP_CHANNELS)}", "maps_name")
        self.name = name

    def _dml(self, out1: Tensor, out2: Tensor) -> Tensor:
        if self.act == "softmax":
            out1, out2 = F.softmax(out1.float(), dim=-1) + 1e-10, F.softmax(out2.float(), dim=-1) + 1e-10
        elif self.act == "sigmoid":
            out1, out2 = torch.sigmoid(out1.float()) + 1e-10, torch.sigmoid(out2.float()) + 1e-10
        if self.use_log:
            log1, log2 = torch.log(out1.float()), torch.log(out2.float())
            return (_kldiv_batchmean(log1, out2.float()) + _kldiv_batchmean(log2, out1.float())) / 2.0
        return _kl_js_maps(out1, out2)

    def forward(self, predicts: dict, batch: list[Tensor]) -> dict[str, Tensor]:
        loss_dict: dict[str, Tensor] = {}
        for idx, (name1, name2) in enumerate(self.model_name_pairs):
            out1 = _select(predicts[name1], self.key)
            out2 = _select(predicts[name2], self.key)
            if self.maps_name is None:
                if self.multi_head:
                    out1, out2 = out1[self.dis_head], out2[self.dis_head]
                loss_dict[f"{self.name}_{idx}"] = self._dml(out1, out2)
            else:
                for map_name in self.maps_name:
                    ch = _MAP_CHANNELS[map_name]
                    loss_dict[f"{self.name}_{map_name}_{idx}"] = self._dml(out1[:, ch], out2[:, ch])
        return _sum_loss(loss_dict)


__all__ = [
    "DistillationDBLoss",
    "DistillationDMLLoss",
    "DistillationDilaDBLoss",
    "dilated_teacher_target",
]
