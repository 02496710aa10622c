"""OpenOCR's ``RepSVTR_det`` backbone (RepViT blocks; OpenOCR ``opendet/modeling/backbones/repvit.py``).

Module names follow OpenOCR (``features.N.token_mixer.0.c`` ...) so OpenOCR state dicts load by
name. The structural re-parameterisation (:func:`reparameterize`, OpenOCR's ``fuse``) turns each
``Conv2D_BN`` into one biased conv and each ``RepVGGDW`` (3x3 dw conv + 1x1 dw conv + identity, then
BN) into one 3x3 depthwise conv; export applies it so the ONNX graph is the deploy graph.
Outputs: features after blocks 2, 5, 10, 13 (strides 4, 8, 16, 32), channels [48, 96, 192, 384].
"""

from __future__ import annotations

import torch
from torch import nn

from ocr_core.modeling import BACKBONES

# k, t, c, use_se, use_hs, stride (OpenOCR's RepSVTR_det table)
DET_CFGS = [
    [3, 2, 48, 1, 0, 1], [3, 2, 48, 0, 0, 1], [3, 2, 96, 0, 0, 2], [3, 2, 96, 1, 0, 1],
    [3, 2, 96, 0, 0, 1], [3, 2, 192, 0, 1, 2], [3, 2, 192, 1, 1, 1], [3, 2, 192, 0, 1, 1],
    [3, 2, 192, 1, 1, 1], [3, 2, 192, 0, 1, 1], [3, 2, 384, 0, 1, 2], [3, 2, 384, 1, 1, 1],
    [3, 2, 384, 0, 1, 1],
]


def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


class SEModule(nn.Module):
    """Squeeze-excite with ReLU and a plain sigmoid gate (timm style, as OpenOCR)."""

    def __init__(self, channels: int, rd_ratio: float = 1.0 / 16) -> None:
        super().__init__()
        rd = _make_divisible(channels * rd_ratio, 8, round_limit=0.0)
        self.fc1 = nn.Conv2d(channels, rd, 1, bias=True)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(rd, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))


class Conv2D_BN(nn.Sequential):  # noqa: N801 - OpenOCR's name
    c: nn.Conv2d
    bn: nn.BatchNorm2d

    def __init__(self, a: int, b: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1,
                 bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, 1, groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0)


def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    assert bn.running_var is not None and bn.running_mean is not None  # our BNs track running stats
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _pair(v: tuple[int, ...]) -> tuple[int, int]:
    """A ``Conv2d`` size attribute as the 2-tuple it is (torch types it for any conv dimension)."""
    h, w = v
    return h, w


@torch.no_grad()
def fuse_conv_bn(conv_bn: Conv2D_BN) -> nn.Conv2d:
    """``BN(conv(x))`` as one conv with a bias (eval-mode BN statistics)."""
    c, bn = conv_bn.c, conv_bn.bn
    scale, shift = _bn_scale_shift(bn)
    padding = c.padding if isinstance(c.padding, str) else _pair(c.padding)
    fused = nn.Conv2d(c.in_channels, c.out_channels, _pair(c.kernel_size), _pair(c.stride), padding,
                      _pair(c.dilation), c.groups, bias=True, device=c.weight.device)
    fused.weight.copy_(c.weight * scale[:, None, None, None])
    assert fused.bias is not None  # built with bias=True
    fused.bias.copy_(shift)
    return fused


@torch.no_grad()
def fuse_repvgg_dw(block: RepVGGDW) -> nn.Conv2d:
    """``BN(dw3x3(x) + dw1x1(x) + x)`` as one 3x3 depthwise conv: the 1x1 kernel and the identity
    sit at the centre of the 3x3 kernel; the outer BN then scales and shifts the sum."""
    conv = fuse_conv_bn(block.conv)
    centre = torch.zeros_like(conv.weight)
    centre[:, :, 1, 1] = block.conv1.weight[:, :, 0, 0] + 1.0
    weight = conv.weight + centre
    assert conv.bias is not None and block.conv1.bias is not None  # both convs have biases
    bias = conv.bias + block.conv1.bias
    scale, shift = _bn_scale_shift(block.bn)
    conv.weight.copy_(weight * scale[:, None, None, None])
    conv.bias.copy_(bias * scale + shift)
    return conv


def reparameterize(model: nn.Module) -> int:
    """Replace, in place, every ``RepVGGDW`` and ``Conv2D_BN`` below ``model`` by its fused conv.

    Only valid in eval mode (BN running statistics). Returns the number of modules replaced.
    """
    replaced: set[int] = set()
    for parent in list(model.modules()):
        if id(parent) in replaced:  # already folded into its parent's conv
            continue
        for name, child in list(parent.named_children()):
            if isinstance(child, (RepVGGDW, Conv2D_BN)):
                setattr(parent, name, fuse_repvgg_dw(child) if isinstance(child, RepVGGDW) else fuse_conv_bn(child))
                replaced.add(id(child))
    return len(replaced)


class Residual(nn.Module):
    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)


class RepVGGDW(nn.Module):
    def __init__(self, ed: int) -> None:
        super().__init__()
        self.conv = Conv2D_BN(ed, ed, 3, 1, 1, groups=ed)
        self.conv1 = nn.Conv2d(ed, ed, 1, 1, 0, groups=ed)
        self.bn = nn.BatchNorm2d(ed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn((self.conv(x) + self.conv1(x)) + x)


class RepViTBlock(nn.Module):
    def __init__(self, inp: int, hidden: int, oup: int, k: int, stride: int, use_se: bool) -> None:
        super().__init__()
        if stride != 1:
            self.token_mixer = nn.Sequential(
                Conv2D_BN(inp, inp, k, stride, (k - 1) // 2, groups=inp),
                SEModule(inp, 0.25) if use_se else nn.Identity(),
                Conv2D_BN(inp, oup, 1, 1, 0))
            mid = 2 * oup
        else:
            if inp != oup:
                raise ValueError("a stride-1 RepViT block needs inp == oup")
            self.token_mixer = nn.Sequential(RepVGGDW(inp), SEModule(inp, 0.25) if use_se else nn.Identity())
            mid = hidden
        self.channel_mixer = Residual(nn.Sequential(
            Conv2D_BN(oup, mid, 1, 1, 0), nn.GELU(), Conv2D_BN(mid, oup, 1, 1, 0, bn_weight_init=0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mixer(self.token_mixer(x))


@BACKBONES.register()
class RepSVTR_det(nn.Module):  # noqa: N801 - OpenOCR's config name
    """RepViT detection backbone.

    Args:
        in_channels: Input channels.
        out_indices: ``features`` indices returned (OpenOCR default ``[2, 5, 10, 13]``).
    """

    def __init__(self, in_channels: int = 3, out_indices: list[int] | None = None) -> None:
        super().__init__()
        self.out_indices = list(out_indices) if out_indices is not None else [2, 5, 10, 13]
        c0 = DET_CFGS[0][2]
        layers: list[nn.Module] = [nn.Sequential(Conv2D_BN(in_channels, c0 // 2, 3, 2, 1), nn.GELU(),
                                                 Conv2D_BN(c0 // 2, c0, 3, 2, 1))]
        cin = c0
        for k, t, c, use_se, _use_hs, s in DET_CFGS:
            cout = _make_divisible(c, 8)
            layers.append(RepViTBlock(cin, _make_divisible(cin * t, 8), cout, k, s, bool(use_se)))
            cin = cout
        self.features = nn.ModuleList(layers)
        self.out_channels = [DET_CFGS[i - 1][2] for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, f in enumerate(self.features):
            x = f(x)
            if i in self.out_indices:
                outs.append(x)
        return outs
