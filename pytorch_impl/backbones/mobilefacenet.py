"""MobileFaceNet as InsightFace's ``fmobilefacenet`` symbol, layer for layer.

Chen et al., "MobileFaceNets", CCBR 2018; InsightFace ``recognition/symbol/fmobilefacenet.py``
with ``symbol_utils.get_fc1(..., 'GDC')``. Default ``blocks=(1, 4, 6, 2)`` is the "y1"
configuration of the published model-y1-test2 (its training log: network='y1').

Graph (stride 16 overall; "Conv" = conv-BN-PReLU, "Linear" = conv-BN):
  input_norm: (x - 127.5) * 0.0078125 inside the graph; the input is then raw RGB 0..255
  (``raw_input`` is True) -- note 1/128, not common.images.normalize's 1/127.5
  conv_1 3x3/2 64 | conv_2_dw 3x3 dw 64 (or res_2 with blocks[0] > 1)
  dconv_23 (64->128 sep, 3x3/2 dw, proj 64) | res_3 x blocks[1]
  dconv_34 (->256, /2, proj 128) | res_4 x blocks[2] | dconv_45 (->512, /2, proj 128)
  res_5 x blocks[3] (groups 256) | conv_6sep 1x1 512
  GDC head: conv_6dw7_7 (Linear, 512-group kernel = image_size/16) -> pre_fc1 (FC + bias)
  -> fc1 (BN, fixed gamma, eps 2e-5)
Conv BNs use MXNet's default eps 1e-3 (fmobilefacenet passes none), bn_mom 0.9.
Module names follow the MXNet names (``res_3.0.conv_sep.bn`` is ``res_3_block0_conv_sep_batchnorm``)
so gluon_impl/insightface.py maps the published parameters by name.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import BatchNorm1d, ConvBlock
from .registry import check_bn_mom, check_sizes, register_backbone

CONV_EPS = 1e-3  # MXNet BatchNorm's default, which fmobilefacenet relies on
FC1_EPS = 2e-5


class DResidual(nn.Module):
    """conv_sep 1x1 -> conv_dw kxk (groups = channels) -> conv_proj 1x1 (no activation)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, stride: int,
                 bn_mom: float):
        super().__init__()
        kw = dict(eps=CONV_EPS, bn_mom=bn_mom)
        self.conv_sep = ConvBlock(in_channels, groups, 1, **kw)
        self.conv_dw = ConvBlock(groups, groups, 3, stride, 1, groups=groups, **kw)
        self.conv_proj = ConvBlock(groups, out_channels, 1, act=False, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_proj(self.conv_dw(self.conv_sep(x)))


class Residual(nn.Module):
    """``num_block`` stride-1 DResidual units, each added to its input."""

    def __init__(self, channels: int, groups: int, num_block: int, bn_mom: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            DResidual(channels, channels, groups, 1, bn_mom) for _ in range(num_block)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x) + x
        return x


@register_backbone("mobilefacenet")
class MobileFaceNet(nn.Module):
    def __init__(self, embedding_size: int = 512, image_size: int = 112,
                 blocks: tuple[int, int, int, int] = (1, 4, 6, 2), input_norm: bool = True,
                 bn_mom: float = 0.9):
        super().__init__()
        side = check_sizes(embedding_size, image_size, 16)
        blocks = tuple(blocks)
        if len(blocks) != 4 or any(not isinstance(b, int) or b < 1 for b in blocks):
            raise ValueError(f"blocks must be 4 positive integers, got {blocks!r}")
        check_bn_mom(bn_mom)
        self.input_norm = input_norm
        self.raw_input = input_norm
        kw = dict(eps=CONV_EPS, bn_mom=bn_mom)
        self.conv_1 = ConvBlock(3, 64, 3, 2, 1, **kw)
        if blocks[0] == 1:
            self.conv_2_dw = ConvBlock(64, 64, 3, 1, 1, groups=64, **kw)
        else:
            self.res_2 = Residual(64, 64, blocks[0], bn_mom)
        self.dconv_23 = DResidual(64, 64, 128, 2, bn_mom)
        self.res_3 = Residual(64, 128, blocks[1], bn_mom)
        self.dconv_34 = DResidual(64, 128, 256, 2, bn_mom)
        self.res_4 = Residual(128, 256, blocks[2], bn_mom)
        self.dconv_45 = DResidual(128, 128, 512, 2, bn_mom)
        self.res_5 = Residual(128, 256, blocks[3], bn_mom)
        self.conv_6sep = ConvBlock(128, 512, 1, **kw)
        self.conv_6dw7_7 = ConvBlock(512, 512, side, groups=512, act=False, **kw)
        self.pre_fc1 = nn.Linear(512, embedding_size)
        self.fc1 = BatchNorm1d(embedding_size, eps=FC1_EPS, bn_mom=bn_mom, fix_gamma=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_norm:
            x = (x - 127.5) * 0.0078125
        x = self.conv_1(x)
        x = self.conv_2_dw(x) if hasattr(self, "conv_2_dw") else self.res_2(x)
        x = self.res_3(self.dconv_23(x))
        x = self.res_4(self.dconv_34(x))
        x = self.res_5(self.dconv_45(x))
        x = self.conv_6dw7_7(self.conv_6sep(x))
        return self.fc1(self.pre_fc1(torch.flatten(x, 1)))
