"""DB (Differentiable Binarization) detection loss, PaddleOCR-compatible.

Numbers follow ``ppocr/losses/det_basic_loss.py`` and ``det_db_loss.py`` (SPEC §1.3):

* Dice and masked L1 are batch-global sums (one scalar for the whole batch, not per image).
* ``BalanceLoss`` with a *scalar* main loss (DiceLoss, MaskL1Loss) degenerates: PaddleOCR sorts
  ``negative * loss`` (every element is either ``loss`` or 0 for binary labels), keeps the top
  ``N`` and divides ``P*loss + N*loss`` by ``P + N + eps``. That is exactly
  ``loss * (P + N) / (P + N + eps)`` (and 0 when the batch has no positive pixel, because then
  ``N = 0``). We compute that closed form with tensor ops only: no sort and no host sync.
* With a per-pixel main loss (BCELoss, CrossEntropy, Euclidean) we do real OHEM: all positive
  pixels plus the ``N = min(#neg, ratio * P)`` hardest negatives, picked with ``topk`` (which
  needs ``N`` on the host: one sync per call).

Everything is computed in float32 so AMP autocast cannot overflow the batch sums.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ocr_core.losses import LOSSES

MainLossType = Literal["CrossEntropy", "DiceLoss", "Euclidean", "BCELoss", "MaskL1Loss"]
_SCALAR_LOSSES = ("DiceLoss", "MaskL1Loss")
_PIXEL_LOSSES = ("CrossEntropy", "Euclidean", "BCELoss")


class DiceLoss(nn.Module):
    """``1 - 2*sum(p*g*m) / (sum(p*m) + sum(g*m) + eps)`` over the whole batch."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: Tensor, gt: Tensor, mask: Tensor, weights: Tensor | None = None) -> Tensor:
        pred, gt, mask = pred.float(), gt.float(), mask.float()
        if weights is not None:
            mask = weights.float() * mask
        intersection = (pred * gt * mask).sum()
        union = (pred * mask).sum() + (gt * mask).sum() + self.eps
        return 1.0 - 2.0 * intersection / union


class MaskL1Loss(nn.Module):
    """``sum(|p - g| * m) / (sum(m) + eps)`` over the whole batch."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
        pred, gt, mask = pred.float(), gt.float(), mask.float()
        return ((pred - gt).abs() * mask).sum() / (mask.sum() + self.eps)


def _bce_map(pred: Tensor, gt: Tensor) -> Tensor:
    # Written out (instead of F.binary_cross_entropy) so it is allowed under autocast; logs are
    # clamped at -100 like torch's and Paddle's BCE.
    log_p = torch.log(pred).clamp_min(-100.0)
    log_1mp = torch.log(1.0 - pred).clamp_min(-100.0)
    return -(gt * log_p + (1.0 - gt) * log_1mp)


class BalanceLoss(nn.Module):
    """Positive/negative balanced loss (OHEM with ``negative_ratio`` negatives per positive).

    Args:
        balance_loss: Apply the balancing; if False return the plain main loss (per-pixel
            losses are then averaged over the mask so the result is still a scalar).
        main_loss_type: ``DiceLoss`` (PaddleOCR's only used value), ``MaskL1Loss``,
            ``BCELoss``, ``CrossEntropy`` (binary cross-entropy on the probability map, same as
            BCELoss) or ``Euclidean`` (per-pixel squared error). PaddleOCR's CrossEntropy and
            Euclidean branches raise a TypeError (they pass ``mask=`` to paddle's built-in
            losses), so there is no behaviour to match for them.
        negative_ratio: Max negatives kept per positive pixel.
        eps: Denominator epsilon.
    """

    def __init__(
        self,
        balance_loss: bool = True,
        main_loss_type: MainLossType = "DiceLoss",
        negative_ratio: float = 3,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if main_loss_type not in _SCALAR_LOSSES + _PIXEL_LOSSES:
            raise ValueError(
                f"main_loss_type must be one of {list(_SCALAR_LOSSES + _PIXEL_LOSSES)}, "
                f"got {main_loss_type!r}"
            )
        self.balance_loss = balance_loss
        self.main_loss_type = main_loss_type
        self.negative_ratio = negative_ratio
        self.eps = eps
        self.dice = DiceLoss(eps)
        self.l1 = MaskL1Loss(eps)

    def _pixel_loss(self, pred: Tensor, gt: Tensor) -> Tensor:
        if self.main_loss_type == "Euclidean":
            return (pred - gt) ** 2
        return _bce_map(pred, gt)

    def forward(self, pred: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
        pred, gt, mask = pred.float(), gt.float(), mask.float()
        positive = gt * mask
        negative = (1.0 - gt) * mask

        if self.main_loss_type in _SCALAR_LOSSES:
            loss = self.dice(pred, gt, mask) if self.main_loss_type == "DiceLoss" else self.l1(pred, gt, mask)
            if not self.balance_loss:
                return loss
            # PaddleOCR: P = int(sum pos), N = int(min(sum neg, ratio * P)); floor == int() here
            # because both sums are >= 0. Closed form of the sort-based OHEM (module docstring).
            p = torch.floor(positive.sum())
            n = torch.floor(torch.minimum(negative.sum(), p * self.negative_ratio))
            return loss * (p + n) / (p + n + self.eps)

        loss_map = self._pixel_loss(pred, gt)
        if not self.balance_loss:
            return (loss_map * mask).sum() / (mask.sum() + self.eps)
        pos_sum, neg_sum = torch.stack([positive.sum(), negative.sum()]).tolist()  # one host sync
        p_count = int(pos_sum)
        n_count = int(min(neg_sum, p_count * self.negative_ratio))
        positive_loss = (positive * loss_map).sum()
        if n_count > 0:
            hardest = torch.topk((negative * loss_map).reshape(-1), n_count).values
            return (positive_loss + hardest.sum()) / (p_count + n_count + self.eps)
        return positive_loss / (p_count + self.eps)


@LOSSES.register()
class DBLoss(nn.Module):
    """DB loss: ``alpha * Balance(shrink) + beta * MaskL1(threshold) + Dice(binary)``.

    ``predicts["maps"]`` is ``[B, 3, H, W]`` (shrink, threshold, binary);
    ``batch[1:5]`` = threshold_map, threshold_mask, shrink_map, shrink_mask.
    Returns scalar tensors ``loss``, ``loss_shrink_maps``, ``loss_threshold_maps``,
    ``loss_binary_maps`` and ``loss_cbn`` (always 0; PaddleOCR uses it only with PFHeadLocal,
    and returns it with shape [1]).
    """

    def __init__(
        self,
        balance_loss: bool = True,
        main_loss_type: MainLossType = "DiceLoss",
        alpha: float = 5,
        beta: float = 10,
        ohem_ratio: float = 3,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.alpha = alpha
        self.beta = beta
        self.bce_loss = BalanceLoss(balance_loss, main_loss_type, negative_ratio=ohem_ratio, eps=eps)
        self.l1_loss = MaskL1Loss(eps)
        self.dice_loss = DiceLoss(eps)

    def forward(self, predicts: dict[str, Tensor], batch: list[Tensor]) -> dict[str, Tensor]:
        maps = predicts["maps"]
        threshold_map, threshold_mask, shrink_map, shrink_mask = batch[1:5]
        loss_shrink = self.alpha * self.bce_loss(maps[:, 0], shrink_map, shrink_mask)
        loss_threshold = self.beta * self.l1_loss(maps[:, 1], threshold_map, threshold_mask)
        loss_binary = self.dice_loss(maps[:, 2], shrink_map, shrink_mask)
        loss_cbn = loss_shrink.new_zeros(())
        return {
            "loss": loss_shrink + loss_threshold + loss_binary + loss_cbn,
            "loss_shrink_maps": loss_shrink,
            "loss_threshold_maps": loss_threshold,
            "loss_binary_maps": loss_binary,
            "loss_cbn": loss_cbn,
        }


__all__ = ["BalanceLoss", "DBLoss", "DiceLoss", "MaskL1Loss"]
