"""MobileNetV1Enhance: the PP-OCRv3 (SVTR_LCNet) recognition backbone.

Layout follows PaddleOCR ``rec_mv1_enhance.py`` layer for layer (a 3x3 stem, 13 depthwise
separable blocks, the last five with 5x5 depthwise kernels and the last two with SE), so
official weights can be loaded in forward-execution order of the conv/BN layers.

At ``scale=0.5`` with ``last_conv_stride=[1, 2]``, ``last_pool_type="avg"`` and
``last_pool_kernel_size=[2, 2]`` (en/ch_PP-OCRv3_rec.yml) a ``48x320`` image gives
``[B, 512, 1, 40]``. The SE gate is Paddle's *default* ``hardsigmoid`` (slope 1/6, offset 0.5),
which is exactly PyTorch's ``F.hardsigmoid`` (unlike the det MobileNetV3, slope 0.2).
BatchNorm parameters carry ``weight_decay_override = 0.0`` (Paddle's ``L2Decay(0.0)``).
"""

from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from ocr_core.errors import ConfigError
from ocr_core.modeling import BACKBONES

__all__ = ["MobileNetV1Enhance"]

_Size = Union[int, tuple[int, int]]


def _pair(v: Union[int, list[int], tuple[int, ...]]) -> _Size:
    return tuple(v) if isinstance(v, (list, tuple)) else v  # type: ignore[return-value]


class ConvBNHardswish(nn.Module):
    """Conv (no bias) -> BatchNorm -> hardswish, Paddle's ``ConvBNLayer(act='hard_swish')``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: _Size,
                 padding: int, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.bn.weight_decay_override = 0.0  # type: ignore[assignment]  # Paddle: L2Decay(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardswish(self.bn(self.conv(x)))


class SEModule(nn.Module):
    """Squeeze-excitation with Paddle's default hardsigmoid gate (slope 1/6)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels // reduction, 1)
        self.conv2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.hardsigmoid(self.conv2(F.relu(self.conv1(s))))
        return x * s


class DepthwiseSeparable(nn.Module):
    """Depthwise conv (+BN+hardswish), optional SE, pointwise conv (+BN+hardswish).

    Channel arguments are the unscaled MobileNetV1 widths; ``scale`` is applied here, as in
    PaddleOCR (``int(width * scale)``).
    """

    def __init__(self, in_channels: int, filters1: int, filters2: int, groups: int, stride: _Size,
                 scale: float, dw_size: int = 3, padding: int = 1, use_se: bool = False) -> None:
        super().__init__()
        mid = int(filters1 * scale)
        self.depthwise_conv = ConvBNHardswish(in_channels, mid, dw_size, stride, padding,
                                              groups=int(groups * scale))
        self.se = SEModule(mid) if use_se else None
        self.pointwise_conv = ConvBNHardswish(mid, int(filters2 * scale), 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise_conv(x)
        if self.se is not None:
            x = self.se(x)
        return self.pointwise_conv(x)


@BACKBONES.register()
class MobileNetV1Enhance(nn.Module):
    """PP-LCNet-style MobileNetV1 for text recognition (``Architecture.Backbone``).

    Args:
        in_channels: Image channels.
        scale: Width multiplier.
        last_conv_stride: Stride of the last depthwise conv (``[1, 2]`` in PP-OCRv3).
        last_pool_type: ``"avg"`` (kernel = stride = ``last_pool_kernel_size``) or ``"max"``
            (always 2x2, stride 2, as in PaddleOCR).
        last_pool_kernel_size: Kernel of the average pool; default ``[3, 2]``.
    """

    def __init__(self, in_channels: int = 3, scale: float = 0.5,
                 last_conv_stride: Union[int, list[int]] = 1, last_pool_type: str = "max",
                 last_pool_kernel_size: list[int] | None = None) -> None:
        super().__init__()
        if last_pool_type not in ("avg", "max"):
            raise ConfigError(f"last_pool_type must be 'avg' or 'max', got {last_pool_type!r}",
                              "last_pool_type")
        if last_pool_kernel_size is None:
            last_pool_kernel_size = [3, 2]
        s = scale
        self.scale = scale
        self.conv1 = ConvBNHardswish(in_channels, int(32 * s), 3, 2, 1)
        # (in width, filters1, filters2, groups, stride, dw kernel, padding, SE), unscaled
        spec: list[tuple[int, int, int, int, _Size, int, int, bool]] = [
            (32, 32, 64, 32, 1, 3, 1, False),
            (64, 64, 128, 64, 1, 3, 1, False),
            (128, 128, 128, 128, 1, 3, 1, False),
            (128, 128, 256, 128, (2, 1), 3, 1, False),
            (256, 256, 256, 256, 1, 3, 1, False),
            (256, 256, 512, 256, (2, 1), 3, 1, False),
        ]
        spec += [(512, 512, 512, 512, 1, 5, 2, False)] * 5
        spec += [
            (512, 512, 1024, 512, (2, 1), 5, 2, True),
            (1024, 1024, 1024, 1024, _pair(last_conv_stride), 5, 2, True),
        ]
        self.block_list = nn.Sequential(*[
            DepthwiseSeparable(int(cin * s), f1, f2, g, st, s, dw_size=k, padding=p, use_se=se)
            for cin, f1, f2, g, st, k, p, se in spec
        ])
        if last_pool_type == "avg":
            ks = _pair(last_pool_kernel_size)
            self.pool: nn.Module = nn.AvgPool2d(kernel_size=ks, stride=ks, padding=0)
        else:
            self.pool = nn.MaxPool2d(kernel_size=2, stride=2, padding=0)
        self.out_channels = int(1024 * s)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # Paddle: KaimingNormal for ConvBN convs; its Conv2D default (SE) is the same.
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.block_list(self.conv1(x)))
