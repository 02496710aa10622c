"""ResNet_vd backbone for text detection (PaddleOCR ``det_resnet_vd.py`` layout).

"vd" = a three-conv 3x3 stem and downsampling shortcuts that average-pool (2x2, stride 2,
ceil mode) before their 1x1 projection, so no input pixel is skipped. The stride of each stage
sits on the 3x3 conv. Deformable convs (``dcn_stage``) are not supported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ocr_core.errors import ConfigError
from ocr_core.modeling import BACKBONES
from ocr_core.modeling.backbones.det_mobilenet_v3 import init_paddle_default

__all__ = ["ResNet_vd"]

_DEPTHS = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
    200: [3, 12, 48, 3],
}


class ConvBN(nn.Module):
    """Optional 2x2 avg-pool (vd shortcut), bias-free conv, BatchNorm, optional ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1,
                 relu: bool = False, vd_pool: bool = False) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if vd_pool else None
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = self.pool(x)
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


def _shortcut(in_ch: int, out_ch: int, project: bool, if_first: bool) -> ConvBN | None:
    # The very first block (stride 1) projects with a plain 1x1; later stages pool first.
    return ConvBN(in_ch, out_ch, 1, vd_pool=not if_first) if project else None


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (x4) with a vd shortcut."""

    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int, project: bool, if_first: bool) -> None:
        super().__init__()
        self.conv0 = ConvBN(in_ch, ch, 1, relu=True)
        self.conv1 = ConvBN(ch, ch, 3, stride=stride, relu=True)
        self.conv2 = ConvBN(ch, ch * 4, 1)
        self.short = _shortcut(in_ch, ch * 4, project, if_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(self.conv0(x)))
        short = x if self.short is None else self.short(x)
        return F.relu(short + y)


class BasicBlock(nn.Module):
    """3x3 (stride) -> 3x3 with a vd shortcut."""

    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int, project: bool, if_first: bool) -> None:
        super().__init__()
        self.conv0 = ConvBN(in_ch, ch, 3, stride=stride, relu=True)
        self.conv1 = ConvBN(ch, ch, 3)
        self.short = _shortcut(in_ch, ch, project, if_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.conv0(x))
        short = x if self.short is None else self.short(x)
        return F.relu(short + y)


@BACKBONES.register()
class ResNet_vd(nn.Module):  # noqa: N801 - the PaddleOCR config name
    """ResNet_vd detection backbone; returns the stage outputs listed in ``out_indices``.

    Args:
        in_channels: Input image channels.
        layers: Depth, one of 18, 34, 50, 101, 152, 200.
        dcn_stage: Per-stage deformable-conv flags; only all-False is supported.
        out_indices: Stages (0..3) whose outputs are returned; default all four.
        disable_se: Accepted and ignored, as in PaddleOCR (``det_res18_db_v2.0.yml`` sets it).
    """

    def __init__(self, in_channels: int = 3, layers: int = 50, dcn_stage: list[bool] | None = None,
                 out_indices: list[int] | None = None, disable_se: bool = False) -> None:
        super().__init__()
        if layers not in _DEPTHS:
            raise ConfigError(f"layers must be one of {sorted(_DEPTHS)}, got {layers!r}", "layers")
        if dcn_stage is not None and any(dcn_stage):
            raise ConfigError("deformable convolutions (dcn_stage) are not supported", "dcn_stage")
        self.out_indices = list(out_indices) if out_indices is not None else [0, 1, 2, 3]
        if not self.out_indices or any(i not in (0, 1, 2, 3) for i in self.out_indices):
            raise ConfigError(f"out_indices must be a non-empty subset of [0, 1, 2, 3], got {out_indices!r}",
                              "out_indices")
        self.layers = layers
        block_cls = BottleneckBlock if layers >= 50 else BasicBlock
        widths = [64, 128, 256, 512]

        self.conv1_1 = ConvBN(in_channels, 32, 3, stride=2, relu=True)
        self.conv1_2 = ConvBN(32, 32, 3, relu=True)
        self.conv1_3 = ConvBN(32, 64, 3, relu=True)
        self.pool = nn.MaxPool2d(3, 2, 1)

        stages = []
        self.out_channels: list[int] = []
        in_ch = 64
        for s, (depth, ch) in enumerate(zip(_DEPTHS[layers], widths)):
            blocks = []
            for i in range(depth):
                blocks.append(block_cls(in_ch, ch, stride=2 if i == 0 and s != 0 else 1,
                                        project=i == 0, if_first=s == 0 and i == 0))
                in_ch = ch * block_cls.expansion
            stages.append(nn.Sequential(*blocks))
            if s in self.out_indices:
                self.out_channels.append(in_ch)
        self.stages = nn.ModuleList(stages)
        init_paddle_default(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.pool(self.conv1_3(self.conv1_2(self.conv1_1(x))))
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return outs
