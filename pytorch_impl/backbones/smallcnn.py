"""SmallCNN: a fast face-recognition-style CNN for the default (small-image, CPU) runs.

Four stride-2 3x3 conv -> BN -> PReLU stages (width, 2w, 4w, 8w channels), then the
IResNet "E" output head (Deng et al., ArcFace, CVPR 2019): BN -> flatten -> dropout ->
FC -> BN with fixed gamma. image_size must be a multiple of 16 (e.g. 32, 48, 64, 112).
BN eps 2e-5 and bn_mom 0.9 (MXNet convention) as InsightFace uses them.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import BatchNorm1d, BatchNorm2d, ConvBlock
from .registry import check_bn_mom, check_sizes, register_backbone


@register_backbone("smallcnn")
class SmallCNN(nn.Module):
    def __init__(self, embedding_size: int = 512, image_size: int = 112, width: int = 16,
                 dropout: float = 0.0, eps: float = 2e-5, bn_mom: float = 0.9):
        super().__init__()
        side = check_sizes(embedding_size, image_size, 16)
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        check_bn_mom(bn_mom)
        self.raw_input = False
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        self.body = nn.Sequential(*[
            ConvBlock(chans[i], chans[i + 1], 3, 2, 1, eps=eps, bn_mom=bn_mom) for i in range(4)
        ])
        self.bn = BatchNorm2d(chans[-1], eps=eps, bn_mom=bn_mom)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(chans[-1] * side * side, embedding_size)
        self.features = BatchNorm1d(embedding_size, eps=eps, bn_mom=bn_mom, fix_gamma=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.body(x))
        return self.features(self.fc(self.dropout(torch.flatten(x, 1))))
