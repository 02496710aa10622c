"""DB feature-pyramid necks: DBFPN, RSEFPN (PP-OCRv3 student), LKPAN (PP-OCRv3 teacher).

All take the four backbone maps (strides 4/8/16/32) and return ``out_channels`` channels at
stride 4: the concat of four ``out_channels // 4`` maps upsampled (nearest) from each level.
Convs are bias-free with Paddle's KaimingUniform init (``bound = sqrt(6 / fan_in)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ocr_core.errors import ConfigError
from ocr_core.modeling import NECKS
from ocr_core.modeling.backbones.det_mobilenet_v3 import SEModule

__all__ = ["DBFPN", "LKPAN", "RSEFPN", "DSConv", "IntraCLBlock", "RSELayer"]


def _conv(in_ch: int, out_ch: int, k: int, stride: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, k, stride, k // 2, bias=False)
    nn.init.kaiming_uniform_(conv.weight, a=0, mode="fan_in", nonlinearity="relu")
    return conv


def _up(x: torch.Tensor, factor: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="nearest")


def _top_down(in2: torch.Tensor, in3: torch.Tensor, in4: torch.Tensor, in5: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out4 = in4 + _up(in5, 2)  # 1/16
    out3 = in3 + _up(out4, 2)  # 1/8
    out2 = in2 + _up(out3, 2)  # 1/4
    return out4, out3, out2


def _fuse(p2: torch.Tensor, p3: torch.Tensor, p4: torch.Tensor, p5: torch.Tensor) -> torch.Tensor:
    return torch.cat([_up(p5, 8), _up(p4, 4), _up(p3, 2), p2], dim=1)


def _check_levels(in_channels: list[int], out_channels: int) -> None:
    if len(in_channels) != 4:
        raise ConfigError(f"the neck needs 4 backbone feature maps, got in_channels={in_channels}",
                          "in_channels")
    if out_channels % 4:
        raise ConfigError(f"out_channels must be divisible by 4, got {out_channels}", "out_channels")


class IntraCLBlock(nn.Module):
    """Intra-level collaborative block (square + vertical + horizontal convs at 7/5/3, residual)."""

    def __init__(self, in_channels: int = 96, reduce_factor: int = 4) -> None:
        super().__init__()
        c = in_channels // reduce_factor
        self.conv1x1_reduce_channel = nn.Conv2d(in_channels, c, 1)
        self.conv1x1_return_channel = nn.Conv2d(c, in_channels, 1)
        self.square = nn.ModuleList(nn.Conv2d(c, c, k, padding=k // 2) for k in (7, 5, 3))
        self.vertical = nn.ModuleList(nn.Conv2d(c, c, (k, 1), padding=(k // 2, 0)) for k in (7, 5, 3))
        self.horizontal = nn.ModuleList(nn.Conv2d(c, c, (1, k), padding=(0, k // 2)) for k in (7, 5, 3))
        self.bn = nn.BatchNorm2d(in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1x1_reduce_channel(x)
        for sq, ve, ho in zip(self.square, self.vertical, self.horizontal):
            y = sq(y) + ve(y) + ho(y)
        return x + F.relu(self.bn(self.conv1x1_return_channel(y)))


def _intracl_blocks(channels: int) -> nn.ModuleList:
    return nn.ModuleList(IntraCLBlock(channels, reduce_factor=2) for _ in range(4))


class DSConv(nn.Module):
    """Depthwise kxk + BN, 1x1 (x4) + BN + ReLU, 1x1 to ``out_ch``; 1x1 residual if channels change."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, in_ch, kernel_size, stride, kernel_size // 2, groups=in_ch, bias=False)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv2 = nn.Conv2d(in_ch, in_ch * 4, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(in_ch * 4)
        self.conv3 = nn.Conv2d(in_ch * 4, out_ch, 1, bias=False)
        self.conv_end = nn.Conv2d(in_ch, out_ch, 1, bias=False) if in_ch != out_ch else None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(inputs))
        x = self.conv3(F.relu(self.bn2(self.conv2(x))))
        return x + self.conv_end(inputs) if self.conv_end is not None else x


@NECKS.register()
class DBFPN(nn.Module):
    """Plain FPN of DBNet: 1x1 laterals, top-down sums, 3x3 smoothing to ``out_channels // 4``.

    Args:
        in_channels: Channels of the four backbone maps (wired).
        out_channels: Output channels (a multiple of 4).
        use_asf: DBNet++ adaptive scale fusion; not supported.
    """

    def __init__(self, in_channels: list[int], out_channels: int, use_asf: bool = False) -> None:
        super().__init__()
        _check_levels(in_channels, out_channels)
        if use_asf:
            raise ConfigError("use_asf (DBNet++ adaptive scale fusion) is not supported", "use_asf")
        self.out_channels = out_channels
        self.in_convs = nn.ModuleList(_conv(c, out_channels, 1) for c in in_channels)
        self.p_convs = nn.ModuleList(_conv(out_channels, out_channels // 4, 3) for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        in2, in3, in4, in5 = (conv(f) for conv, f in zip(self.in_convs, feats))
        out4, out3, out2 = _top_down(in2, in3, in4, in5)
        p2, p3, p4, p5 = (conv(f) for conv, f in zip(self.p_convs, (out2, out3, out4, in5)))
        return _fuse(p2, p3, p4, p5)


class RSELayer(nn.Module):
    """kxk conv followed by an SE block, residual (``x + SE(x)``) when ``shortcut``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, shortcut: bool = True,
                 se_gate: str = "paddle") -> None:
        super().__init__()
        self.in_conv = _conv(in_ch, out_ch, kernel_size)
        self.se_block = SEModule(out_ch, gate=se_gate)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_conv(x)
        return x + self.se_block(x) if self.shortcut else self.se_block(x)


@NECKS.register()
class RSEFPN(nn.Module):
    """DBFPN with every conv replaced by an :class:`RSELayer` (PP-OCRv3 student neck).

    Args:
        in_channels: Channels of the four backbone maps (wired).
        out_channels: Output channels (a multiple of 4).
        shortcut: Residual SE layers.
        intracl: Add an :class:`IntraCLBlock` per level before fusion.
        se_gate: ``paddle`` (PaddleOCR's hardsigmoid, slope 0.2) or ``torch`` (slope 1/6, as
            OpenOCR's PyTorch RSEFPN; OpenOCR-style configs get it by default).
    """

    def __init__(self, in_channels: list[int], out_channels: int, shortcut: bool = True,
                 intracl: bool = False, se_gate: str = "paddle") -> None:
        super().__init__()
        _check_levels(in_channels, out_channels)
        self.out_channels = out_channels
        self.ins_conv = nn.ModuleList(RSELayer(c, out_channels, 1, shortcut, se_gate) for c in in_channels)
        self.inp_conv = nn.ModuleList(RSELayer(out_channels, out_channels // 4, 3, shortcut, se_gate)
                                      for _ in in_channels)
        self.incl = _intracl_blocks(out_channels // 4) if intracl else None

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        in2, in3, in4, in5 = (conv(f) for conv, f in zip(self.ins_conv, feats))
        out4, out3, out2 = _top_down(in2, in3, in4, in5)
        ps = [conv(f) for conv, f in zip(self.inp_conv, (out2, out3, out4, in5))]
        if self.incl is not None:
            ps = [blk(p) for blk, p in zip(self.incl, ps)]
        return _fuse(*ps)


@NECKS.register()
class LKPAN(nn.Module):
    """Large-kernel PAN (PP-OCRv3 teacher neck): FPN top-down, 9x9 convs, bottom-up PAN path.

    Args:
        in_channels: Channels of the four backbone maps (wired).
        out_channels: Output channels (a multiple of 4).
        mode: ``"large"`` (9x9 convs) or ``"lite"`` (9x9 :class:`DSConv` blocks).
        intracl: Add an :class:`IntraCLBlock` per level before fusion.
    """

    def __init__(self, in_channels: list[int], out_channels: int, mode: str = "large",
                 intracl: bool = False) -> None:
        super().__init__()
        _check_levels(in_channels, out_channels)
        if mode.lower() == "large":
            def p_layer(i: int, o: int) -> nn.Module:
                return _conv(i, o, 9)
        elif mode.lower() == "lite":
            def p_layer(i: int, o: int) -> nn.Module:
                return DSConv(i, o, 9)
        else:
            raise ConfigError(f"mode must be 'large' or 'lite', got {mode!r}", "mode")
        q = out_channels // 4
        self.out_channels = out_channels
        self.ins_conv = nn.ModuleList(_conv(c, out_channels, 1) for c in in_channels)
        self.inp_conv = nn.ModuleList(p_layer(out_channels, q) for _ in in_channels)
        self.pan_head_conv = nn.ModuleList(_conv(q, q, 3, stride=2) for _ in in_channels[1:])
        self.pan_lat_conv = nn.ModuleList(p_layer(q, q) for _ in in_channels)
        self.incl = _intracl_blocks(q) if intracl else None

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        in2, in3, in4, in5 = (conv(f) for conv, f in zip(self.ins_conv, feats))
        out4, out3, out2 = _top_down(in2, in3, in4, in5)
        f2, f3, f4, f5 = (conv(f) for conv, f in zip(self.inp_conv, (out2, out3, out4, in5)))
        pan3 = f3 + self.pan_head_conv[0](f2)
        pan4 = f4 + self.pan_head_conv[1](pan3)
        pan5 = f5 + self.pan_head_conv[2](pan4)
        ps = [conv(f) for conv, f in zip(self.pan_lat_conv, (f2, pan3, pan4, pan5))]
        if self.incl is not None:
            ps = [blk(p) for blk, p in zip(self.incl, ps)]
        return _fuse(*ps)
