"""Recognition necks: ``SequenceEncoder`` turning a ``[B, C, 1, W]`` map into a ``[B, W, D]`` sequence.

Follows PaddleOCR ``ppocr/modeling/necks/rnn.py``:

* ``reshape``: ``Im2Seq`` only (``D = C``).
* ``fc``: a Linear to ``hidden_size`` (L2 1e-5 on its weights, like PaddleOCR).
* ``rnn``: a 2-layer bidirectional LSTM, ``D = 2 * hidden_size``.
* ``svtr``: ``EncoderWithSVTR`` (the PP-OCRv3 neck), then ``Im2Seq``; ``D = dims``.

With ``use_guide`` the SVTR encoder detaches its input, so the CTC branch trains only the neck
and head, while the backbone learns from the SAR (GTC) branch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ocr_core.errors import ConfigError
from ocr_core.modeling import NECKS

__all__ = ["EncoderWithSVTR", "Im2Seq", "SequenceEncoder", "SVTRBlock"]


class Im2Seq(nn.Module):
    """``[B, C, 1, W] -> [B, W, C]``."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] != 1:
            raise ValueError(f"Im2Seq needs a feature map of height 1, got shape {tuple(x.shape)}")
        return x.squeeze(2).transpose(1, 2)


class EncoderWithRNN(nn.Module):
    """2-layer bidirectional LSTM over the width axis."""

    def __init__(self, in_channels: int, hidden_size: int) -> None:
        super().__init__()
        self.out_channels = hidden_size * 2
        self.lstm = nn.LSTM(in_channels, hidden_size, num_layers=2, bidirectional=True, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


class EncoderWithFC(nn.Module):
    """A Linear projection with PaddleOCR's Uniform(+-1/sqrt(in)) init and L2 1e-5."""

    def __init__(self, in_channels: int, hidden_size: int) -> None:
        super().__init__()
        self.out_channels = hidden_size
        self.fc = nn.Linear(in_channels, hidden_size)
        bound = 1.0 / math.sqrt(in_channels)
        nn.init.uniform_(self.fc.weight, -bound, bound)
        nn.init.uniform_(self.fc.bias, -bound, bound)
        self.fc.weight_decay_override = 1e-5  # type: ignore[assignment]  # Paddle: L2Decay(1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class ConvBNSwish(nn.Module):
    """Conv (no bias, Kaiming-uniform) -> BatchNorm -> Swish: SVTR's ``ConvBNLayer``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: list[int]) -> None:
        super().__init__()
        kh, kw = kernel_size
        self.conv = nn.Conv2d(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2), bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        nn.init.kaiming_uniform_(self.conv.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.norm(self.conv(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability ``p``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        return x / keep * torch.floor(keep + mask)


class GlobalAttention(nn.Module):
    """Multi-head self-attention over all positions (SVTR ``Attention`` with mixer ``Global``)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, qk_scale: float | None,
                 attn_drop: float, proj_drop: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = self.attn_drop((q @ k.transpose(-2, -1)).softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """fc1 -> Swish -> dropout -> fc2 -> dropout."""

    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.silu(self.fc1(x)))))


class SVTRBlock(nn.Module):
    """Pre-LN transformer block (Paddle's ``prenorm=False``): ``x + attn(norm1(x))``, ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool,
                 qk_scale: float | None, drop: float, attn_drop: float, drop_path: float,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.mixer = GlobalAttention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.mixer(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class EncoderWithSVTR(nn.Module):
    """PP-OCRv3's SVTR neck on a ``[B, C, H, W]`` map; returns ``[B, dims, H, W]``.

    conv1 (kxk, C -> C/8), conv2 (1x1 -> hidden_dims), ``depth`` global-attention blocks, LayerNorm
    (eps 1e-6), conv3 (1x1 -> C), concat with the input (2C), conv4 (kxk -> C/8), conv1x1 (-> dims).
    """

    def __init__(self, in_channels: int, dims: int = 64, depth: int = 2, hidden_dims: int = 120,
                 use_guide: bool = False, num_heads: int = 8, qkv_bias: bool = True,
                 mlp_ratio: float = 2.0, drop_rate: float = 0.1, attn_drop_rate: float = 0.1,
                 drop_path: float = 0.0, kernel_size: list[int] | None = None,
                 qk_scale: float | None = None) -> None:
        super().__init__()
        ks = [3, 3] if kernel_size is None else list(kernel_size)
        self.use_guide = use_guide
        self.conv1 = ConvBNSwish(in_channels, in_channels // 8, ks)
        self.conv2 = ConvBNSwish(in_channels // 8, hidden_dims, [1, 1])
        self.svtr_block = nn.ModuleList([
            SVTRBlock(hidden_dims, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate,
                      attn_drop_rate, drop_path, eps=1e-5)
            for _ in range(depth)
        ])
        self.norm = nn.LayerNorm(hidden_dims, eps=1e-6)
        self.conv3 = ConvBNSwish(hidden_dims, in_channels, [1, 1])
        self.conv4 = ConvBNSwish(2 * in_channels, in_channels // 8, ks)
        self.conv1x1 = ConvBNSwish(in_channels // 8, dims, [1, 1])
        self.out_channels = dims
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # use_guide: Paddle clones the input with stop_gradient=True.
        h = x.detach() if self.use_guide else x
        z = self.conv2(self.conv1(h))
        b, c, hh, ww = z.shape
        z = z.flatten(2).transpose(1, 2)
        for blk in self.svtr_block:
            z = blk(z)
        z = self.norm(z)
        z = z.transpose(1, 2).reshape(b, c, hh, ww)
        z = self.conv3(z)
        return self.conv1x1(self.conv4(torch.cat((h, z), dim=1)))


_ENCODER_TYPES = ("reshape", "fc", "rnn", "svtr")


@NECKS.register()
class SequenceEncoder(nn.Module):
    """Recognition neck (``Architecture.Neck`` or the ``Neck`` of a MultiHead CTC branch).

    Args:
        in_channels: Backbone channels (wired by the model builder).
        encoder_type: ``reshape``, ``fc``, ``rnn`` or ``svtr``.
        hidden_size: Width of the ``fc`` output / the LSTM hidden state (``rnn`` -> 2x out).
        dims, depth, hidden_dims, use_guide, num_heads, qkv_bias, mlp_ratio, drop_rate,
        attn_drop_rate, drop_path, kernel_size, qk_scale: ``svtr`` options (see EncoderWithSVTR).
    """

    def __init__(self, in_channels: int, encoder_type: str, hidden_size: int = 48, dims: int = 64,
                 depth: int = 2, hidden_dims: int = 120, use_guide: bool = False, num_heads: int = 8,
                 qkv_bias: bool = True, mlp_ratio: float = 2.0, drop_rate: float = 0.1,
                 attn_drop_rate: float = 0.1, drop_path: float = 0.0,
                 kernel_size: list[int] | None = None, qk_scale: float | None = None) -> None:
        super().__init__()
        if encoder_type not in _ENCODER_TYPES:
            raise ConfigError(f"unknown encoder_type {encoder_type!r}; choose one of: "
                              f"{', '.join(_ENCODER_TYPES)}", "encoder_type")
        self.encoder_type = encoder_type
        self.encoder_reshape = Im2Seq(in_channels)
        self.encoder: nn.Module | None = None
        if encoder_type == "fc":
            self.encoder = EncoderWithFC(in_channels, hidden_size)
        elif encoder_type == "rnn":
            self.encoder = EncoderWithRNN(in_channels, hidden_size)
        elif encoder_type == "svtr":
            self.encoder = EncoderWithSVTR(
                in_channels, dims=dims, depth=depth, hidden_dims=hidden_dims, use_guide=use_guide,
                num_heads=num_heads, qkv_bias=qkv_bias, mlp_ratio=mlp_ratio, drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate, drop_path=drop_path, kernel_size=kernel_size,
                qk_scale=qk_scale)
        self.out_channels: int = in_channels if self.encoder is None else self.encoder.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoder is None:
            return self.encoder_reshape(x)
        if self.encoder_type == "svtr":  # the SVTR encoder works on the 2D map, then flattens
            return self.encoder_reshape(self.encoder(x))
        return self.encoder(self.encoder_reshape(x))
