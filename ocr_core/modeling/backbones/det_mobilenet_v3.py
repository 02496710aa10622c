"""MobileNetV3 backbone for text detection (PaddleOCR ``det_mobilenet_v3.py`` layout).

Returns four feature maps at strides 4/8/16/32. At ``scale=0.5`` (large) their channels are
``[16, 24, 56, 480]``. The SE gate is Paddle's ``hardsigmoid(slope=0.2, offset=0.5)``, not
PyTorch's ``F.hardsigmoid`` (slope 1/6), so imported Paddle weights behave identically.
"""

from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from ocr_core.errors import ConfigError
from ocr_core.modeling import BACKBONES

__all__ = ["ConvBNAct", "MobileNetV3", "ResidualUnit", "SEModule", "make_divisible", "paddle_hardsigmoid"]

Size = Union[int, tuple[int, int]]  # a conv stride; the rec MobileNetV3 downsamples the height only

# (kernel, expansion, out channels, use SE, activation, stride)
_LARGE = [
    (3, 16, 16, False, "relu", 1),
    (3, 64, 24, False, "relu", 2),
    (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2),
    (5, 120, 40, True, "relu", 1),
    (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hardswish", 2),
    (3, 200, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 480, 112, True, "hardswish", 1),
    (3, 672, 112, True, "hardswish", 1),
    (5, 672, 160, True, "hardswish", 2),
    (5, 960, 160, True, "hardswish", 1),
    (5, 960, 160, True, "hardswish", 1),
]
_SMALL = [
    (3, 16, 16, True, "relu", 2),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hardswish", 2),
    (5, 240, 40, True, "hardswish", 1),
    (5, 240, 40, True, "hardswish", 1),
    (5, 120, 48, True, "hardswish", 1),
    (5, 144, 48, True, "hardswish", 1),
    (5, 288, 96, True, "hardswish", 2),
    (5, 576, 96, True, "hardswish", 1),
    (5, 576, 96, True, "hardswish", 1),
]
_CONFIGS = {"large": (_LARGE, 960, 2), "small": (_SMALL, 576, 0)}  # cfg, last conv, split start
SUPPORTED_SCALES = (0.35, 0.5, 0.75, 1.0, 1.25)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (at least ``min_value``), never
    dropping more than 10% below ``v``."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def paddle_hardsigmoid(x: torch.Tensor) -> torch.Tensor:
    """Paddle's default ``hardsigmoid``: ``clamp(0.2 * x + 0.5, 0, 1)``."""
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


def init_paddle_default(module: nn.Module) -> None:
    """Mimic Paddle's default init: conv weights ~ N(0, sqrt(2 / fan_in)), biases 0, BN (1, 0)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ConvBNAct(nn.Module):
    """Bias-free conv + BatchNorm + optional activation (``relu`` / ``hardswish`` / None)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: Size = 1, groups: int = 1,
                 act: str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        if act not in (None, "relu", "hardswish"):
            raise ValueError(f"unsupported activation {act!r}")
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        if self.act == "relu":
            x = F.relu(x)
        elif self.act == "hardswish":
            x = F.hardswish(x)
        return x


SE_GATES = ("paddle", "torch")


class SEModule(nn.Module):
    """Squeeze-excitation: avg pool, 1x1 (C -> C/r) + ReLU, 1x1 (C/r -> C), hard-sigmoid gate.

    ``gate="paddle"`` (default) is Paddle's ``clamp(0.2x + 0.5, 0, 1)``; ``gate="torch"`` is
    PyTorch's ``F.hardsigmoid`` (``relu6(x + 3) / 6``), the gate OpenOCR's PyTorch necks use.
    """

    def __init__(self, channels: int, reduction: int = 4, gate: str = "paddle") -> None:
        super().__init__()
        if gate not in SE_GATES:
            raise ConfigError(f"unknown SE gate {gate!r}; known: {', '.join(SE_GATES)}", "se_gate")
        self.conv1 = nn.Conv2d(channels, channels // reduction, 1)
        self.conv2 = nn.Conv2d(channels // reduction, channels, 1)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = self.conv2(F.relu(self.conv1(s)))
        return x * (paddle_hardsigmoid(s) if self.gate == "paddle" else F.hardsigmoid(s))


class ResidualUnit(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk (stride), optional SE, 1x1 linear."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, kernel_size: int, stride: Size,
                 use_se: bool, act: str) -> None:
        super().__init__()
        # As Paddle: a tuple stride (the rec model's), even (1, 1), never takes the shortcut.
        self.use_shortcut = stride == 1 and in_ch == out_ch
        self.expand_conv = ConvBNAct(in_ch, mid_ch, 1, act=act)
        self.bottleneck_conv = ConvBNAct(mid_ch, mid_ch, kernel_size, stride, groups=mid_ch, act=act)
        self.mid_se = SEModule(mid_ch) if use_se else None
        self.linear_conv = ConvBNAct(mid_ch, out_ch, 1, act=None)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.bottleneck_conv(self.expand_conv(inputs))
        if self.mid_se is not None:
            x = self.mid_se(x)
        x = self.linear_conv(x)
        return inputs + x if self.use_shortcut else x


@BACKBONES.register()
class MobileNetV3(nn.Module):
    """MobileNetV3 detection backbone.

    Args:
        in_channels: Input image channels.
        model_name: ``"large"`` or ``"small"``.
        scale: Width multiplier, one of 0.35, 0.5, 0.75, 1.0, 1.25.
        disable_se: Drop every SE block (the PP-OCRv3 student does).
    """

    def __init__(self, in_channels: int = 3, model_name: str = "large", scale: float = 0.5,
                 disable_se: bool = False) -> None:
        super().__init__()
        if model_name not in _CONFIGS:
            raise ConfigError(f"model_name must be one of {sorted(_CONFIGS)}, got {model_name!r}",
                              "model_name")
        if scale not in SUPPORTED_SCALES:
            raise ConfigError(f"scale must be one of {list(SUPPORTED_SCALES)}, got {scale!r}", "scale")
        cfg, last_ch, start_idx = _CONFIGS[model_name]
        self.disable_se = disable_se

        inplanes = make_divisible(16 * scale)
        self.conv = ConvBNAct(in_channels, inplanes, 3, stride=2, act="hardswish")

        stages: list[nn.Sequential] = []
        self.out_channels: list[int] = []
        blocks: list[nn.Module] = []
        for i, (k, exp, c, se, act, s) in enumerate(cfg):
            # A new stage starts at every stride-2 block after ``start_idx``.
            if s == 2 and i > start_idx:
                self.out_channels.append(inplanes)
                stages.append(nn.Sequential(*blocks))
                blocks = []
            out_ch = make_divisible(scale * c)
            blocks.append(ResidualUnit(inplanes, make_divisible(scale * exp), out_ch, k, s,
                                       se and not disable_se, act))
            inplanes = out_ch
        last = make_divisible(scale * last_ch)
        blocks.append(ConvBNAct(inplanes, last, 1, act="hardswish"))
        stages.append(nn.Sequential(*blocks))
        self.out_channels.append(last)
        self.stages = nn.ModuleList(stages)
        init_paddle_default(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.conv(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs
