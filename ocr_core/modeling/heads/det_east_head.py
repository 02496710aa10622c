"""EAST (Zhou et al. 2017): the U-Net style ``EASTFPN`` neck and the ``EASTHead``.

Ported from PaddleOCR's ``ppocr/modeling/necks/east_fpn.py`` and ``heads/det_east_head.py``;
layer names are Paddle's (``h1_conv``, ``g0_deconv``, ``det_conv1``, ``score_conv`` ...) so
``.pdparams`` files map by name. The neck lives here because it only serves this head.

Outputs are at stride 4: ``f_score`` [B,1,H/4,W/4] in (0, 1) and ``f_geo`` [B,8,H/4,W/4], the
offsets (pixel - vertex) from each pixel to the 4 quad vertices, squashed into (-800, 800).
Export mode returns ``cat([f_score, f_geo], 1)`` ([B,9,H/4,W/4]); :class:`EASTPostProcess`
accepts both forms.
"""

from __future__ import annotations

import torch
from torch import nn

from ocr_core.modeling import HEADS, NECKS


class _ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, act: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class _DeConvBN(nn.Module):
    """2x upsampling: ConvTranspose k4 s2 p1 (no bias) + BN + ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.deconv(x)))


@NECKS.register()
class EASTFPN(nn.Module):
    """U-Net merge of the 4 backbone features (c2..c5) into one stride-4 map.

    Args:
        in_channels: Backbone channels (wired).
        model_name: ``large`` (128 channels) or ``small`` (64).
    """

    def __init__(self, in_channels: list[int], model_name: str = "small") -> None:
        super().__init__()
        if model_name not in ("large", "small"):
            raise ValueError(f"EASTFPN model_name must be 'large' or 'small', got {model_name!r}")
        c = 128 if model_name == "large" else 64
        self.out_channels = c
        rev = list(in_channels)[::-1]  # c5, c4, c3, c2
        self.h1_conv = _ConvBN(c + rev[1], c, 3, True)
        self.h2_conv = _ConvBN(c + rev[2], c, 3, True)
        self.h3_conv = _ConvBN(c + rev[3], c, 3, True)
        self.g0_deconv = _DeConvBN(rev[0], c)
        self.g1_deconv = _DeConvBN(c, c)
        self.g2_deconv = _DeConvBN(c, c)
        self.g3_conv = _ConvBN(c, c, 3, True)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        f = list(feats)[::-1]
        g = self.g0_deconv(f[0])
        h = self.h1_conv(torch.cat([g, f[1]], dim=1))
        g = self.g1_deconv(h)
        h = self.h2_conv(torch.cat([g, f[2]], dim=1))
        g = self.g2_deconv(h)
        h = self.h3_conv(torch.cat([g, f[3]], dim=1))
        return self.g3_conv(h)


@HEADS.register()
class EASTHead(nn.Module):
    """Score and quad-geometry maps.

    Args:
        in_channels: Neck channels (wired).
        model_name: ``large`` (128/64 hidden channels) or ``small`` (64/32).
    """

    def __init__(self, in_channels: int, model_name: str = "small") -> None:
        super().__init__()
        if model_name not in ("large", "small"):
            raise ValueError(f"EASTHead model_name must be 'large' or 'small', got {model_name!r}")
        c1, c2 = (128, 64) if model_name == "large" else (64, 32)
        self.export_mode = False
        self.det_conv1 = _ConvBN(in_channels, c1, 3, True)
        self.det_conv2 = _ConvBN(c1, c2, 3, True)
        self.score_conv = _ConvBN(c2, 1, 1, False)
        self.geo_conv = _ConvBN(c2, 8, 1, False)

    def forward(self, x: torch.Tensor, targets: object = None) -> dict[str, torch.Tensor] | torch.Tensor:
        f = self.det_conv2(self.det_conv1(x))
        f_score = torch.sigmoid(self.score_conv(f))
        f_geo = (torch.sigmoid(self.geo_conv(f)) - 0.5) * 2 * 800
        if self.export_mode:
            return torch.cat([f_score, f_geo], dim=1)
        return {"f_score": f_score, "f_geo": f_geo}
