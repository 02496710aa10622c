"""Differentiable Binarization head (DBNet, https://arxiv.org/abs/1911.08947)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ocr_core.errors import ConfigError
from ocr_core.modeling import HEADS

__all__ = ["DBHead"]


class _MapBranch(nn.Module):
    """kxk conv + BN + ReLU, 2x deconv + BN + ReLU, 2x deconv to 1 channel + sigmoid."""

    def __init__(self, in_channels: int, kernel_list: list[int], fix_nan: bool = False) -> None:
        super().__init__()
        mid = in_channels // 4
        k0, k1, k2 = kernel_list
        self.conv1 = nn.Conv2d(in_channels, mid, k0, padding=k0 // 2, bias=False)
        self.conv_bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.ConvTranspose2d(mid, mid, k1, stride=2)
        self.conv_bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.ConvTranspose2d(mid, 1, k2, stride=2)
        self.fix_nan = fix_nan
        # Paddle's init: default N(0, sqrt(2/fan_in)) conv, KaimingUniform deconvs with
        # U(+-1/sqrt(C/4)) biases, BN gamma 1 and beta 1e-4.
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_in", nonlinearity="relu")
        bound = 1.0 / math.sqrt(mid)
        for deconv in (self.conv2, self.conv3):
            nn.init.kaiming_uniform_(deconv.weight, a=0, mode="fan_in", nonlinearity="relu")
            assert deconv.bias is not None  # built with bias=True
            nn.init.uniform_(deconv.bias, -bound, bound)
        for bn in (self.conv_bn1, self.conv_bn2):
            nn.init.ones_(bn.weight)
            nn.init.constant_(bn.bias, 1e-4)

    def _clean(self, x: torch.Tensor) -> torch.Tensor:
        if self.fix_nan and self.training:
            x = torch.where(torch.isnan(x), torch.zeros_like(x), x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._clean(F.relu(self.conv_bn1(self.conv1(x))))
        x = self._clean(F.relu(self.conv_bn2(self.conv2(x))))
        return torch.sigmoid(self.conv3(x))


@HEADS.register()
class DBHead(nn.Module):
    """DB head: a shrink (probability) branch and a threshold branch at full input resolution.

    Training returns ``{"maps": [B, 3, H, W]}`` = (shrink, threshold, approximate binary map
    ``1 / (1 + exp(-k (shrink - threshold)))``); eval returns ``{"maps": shrink}`` (1 channel).
    With ``export_mode`` set, forward returns the raw shrink tensor.

    Args:
        in_channels: Neck channels (wired).
        k: Amplification factor of the differentiable binarization.
        kernel_list: Kernel sizes of the conv and the two deconvs (default ``[3, 2, 2]``).
        fix_nan: Zero NaNs in the intermediate features during training.
    """

    # submodules that inference never runs (weight loading for eval/infer/export may leave them unset)
    training_only = ("thresh",)

    def __init__(self, in_channels: int, k: int = 50, kernel_list: list[int] | None = None,
                 fix_nan: bool = False) -> None:
        super().__init__()
        kernel_list = [3, 2, 2] if kernel_list is None else list(kernel_list)
        if len(kernel_list) != 3:
            raise ConfigError(f"kernel_list needs 3 sizes, got {kernel_list}", "kernel_list")
        self.k = k
        self.export_mode = False
        self.binarize = _MapBranch(in_channels, kernel_list, fix_nan)
        self.thresh = _MapBranch(in_channels, kernel_list, fix_nan)

    def step_function(self, shrink: torch.Tensor, thresh: torch.Tensor) -> torch.Tensor:
        """Approximate binarization ``1 / (1 + exp(-k (shrink - thresh)))`` (as a stable sigmoid)."""
        return torch.sigmoid(self.k * (shrink - thresh))

    def forward(self, x: torch.Tensor, targets: object = None) -> dict[str, torch.Tensor] | torch.Tensor:
        shrink = self.binarize(x)
        if self.export_mode:
            return shrink
        if not self.training:
            return {"maps": shrink}
        thresh = self.thresh(x)
        return {"maps": torch.cat([shrink, thresh, self.step_function(shrink, thresh)], dim=1)}
