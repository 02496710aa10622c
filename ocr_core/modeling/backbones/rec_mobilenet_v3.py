"""MobileNetV3 for text recognition (PaddleOCR ``rec_mobilenet_v3.py``), the CRNN baseline backbone.

The detection MobileNetV3's blocks (imported from ``det_mobilenet_v3``), but strides that
downsample only the height after the stem (``(s, 1)``), a final 1x1 conv and a 2x2 max pool, so
a ``32x100`` image gives ``[B, 480, 1, 25]`` at ``large``/``0.5``. PaddleOCR rec configs name it
``MobileNetV3`` under ``model_type: rec``; the name is taken by the det backbone, so this one is
registered as ``"rec:MobileNetV3"`` and the model builder looks up ``f"{model_type}:{name}"``
first.

The SE gate is Paddle's ``hardsigmoid(slope=0.2, offset=0.5)`` (shared with the det model).
"""

from __future__ import annotations

import torch
from torch import nn

from ocr_core.errors import ConfigError
from ocr_core.modeling import BACKBONES
from ocr_core.modeling.backbones.det_mobilenet_v3 import (
    SUPPORTED_SCALES,
    ConvBNAct,
    ResidualUnit,
    SEModule,
    Size,
    init_paddle_default,
    make_divisible,
)

__all__ = ["ConvBNAct", "RecMobileNetV3", "ResidualUnit", "SEModule", "make_divisible"]


@BACKBONES.register("rec:MobileNetV3")
class RecMobileNetV3(nn.Module):
    """Recognition MobileNetV3 (``Architecture.Backbone`` with ``model_type: rec``).

    Args:
        in_channels: Image channels.
        model_name: ``"large"`` or ``"small"``.
        scale: Width multiplier, one of 0.35, 0.5, 0.75, 1.0, 1.25.
        large_stride: Four height strides for ``large`` (default ``[1, 2, 2, 2]``).
        small_stride: Four height strides for ``small`` (default ``[2, 2, 2, 2]``).
        disable_se: Drop every SE module.
    """

    def __init__(self, in_channels: int = 3, model_name: str = "small", scale: float = 0.5,
                 large_stride: list[int] | None = None, small_stride: list[int] | None = None,
                 disable_se: bool = False) -> None:
        super().__init__()
        ls = [1, 2, 2, 2] if large_stride is None else list(large_stride)
        ss = [2, 2, 2, 2] if small_stride is None else list(small_stride)
        if len(ls) != 4:
            raise ConfigError(f"large_stride needs 4 values, got {ls}", "large_stride")
        if len(ss) != 4:
            raise ConfigError(f"small_stride needs 4 values, got {ss}", "small_stride")
        if scale not in SUPPORTED_SCALES:
            raise ConfigError(f"scale must be one of {SUPPORTED_SCALES}, got {scale}", "scale")
        # kernel, expansion, out channels, SE, activation, stride
        if model_name == "large":
            cfg: list[tuple[int, int, int, bool, str, Size]] = [
                (3, 16, 16, False, "relu", ls[0]),
                (3, 64, 24, False, "relu", (ls[1], 1)),
                (3, 72, 24, False, "relu", 1),
                (5, 72, 40, True, "relu", (ls[2], 1)),
                (5, 120, 40, True, "relu", 1),
                (5, 120, 40, True, "relu", 1),
                (3, 240, 80, False, "hardswish", 1),
                (3, 200, 80, False, "hardswish", 1),
                (3, 184, 80, False, "hardswish", 1),
                (3, 184, 80, False, "hardswish", 1),
                (3, 480, 112, True, "hardswish", 1),
                (3, 672, 112, True, "hardswish", 1),
                (5, 672, 160, True, "hardswish", (ls[3], 1)),
                (5, 960, 160, True, "hardswish", 1),
                (5, 960, 160, True, "hardswish", 1),
            ]
            cls_ch_squeeze = 960
        elif model_name == "small":
            cfg = [
                (3, 16, 16, True, "relu", (ss[0], 1)),
                (3, 72, 24, False, "relu", (ss[1], 1)),
                (3, 88, 24, False, "relu", 1),
                (5, 96, 40, True, "hardswish", (ss[2], 1)),
                (5, 240, 40, True, "hardswish", 1),
                (5, 240, 40, True, "hardswish", 1),
                (5, 120, 48, True, "hardswish", 1),
                (5, 144, 48, True, "hardswish", 1),
                (5, 288, 96, True, "hardswish", (ss[3], 1)),
                (5, 576, 96, True, "hardswish", 1),
                (5, 576, 96, True, "hardswish", 1),
            ]
            cls_ch_squeeze = 576
        else:
            raise ConfigError(f"model_name must be 'large' or 'small', got {model_name!r}", "model_name")

        inplanes = make_divisible(16 * scale)
        self.conv1 = ConvBNAct(in_channels, inplanes, 3, 2, act="hardswish")
        blocks = []
        for k, exp, c, se, act, s in cfg:
            out = make_divisible(scale * c)
            blocks.append(ResidualUnit(inplanes, make_divisible(scale * exp), out, k, s,
                                       se and not disable_se, act))
            inplanes = out
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = make_divisible(scale * cls_ch_squeeze)
        self.conv2 = ConvBNAct(inplanes, self.out_channels, 1, act="hardswish")
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2, padding=0)
        init_paddle_default(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv2(self.blocks(self.conv1(x))))
