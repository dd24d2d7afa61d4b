"""IResNet; see ``pytorch_impl/backbones/iresnet.py`` (mirror, same attribute names)."""

from __future__ import annotations

from functools import partial

from mxnet.gluon import nn

from .layers import BatchNorm1d, BatchNorm2d, PReLU
from .registry import check_bn_mom, check_sizes, register_backbone

IRESNET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
EPS = 1e-5


def conv3x3(in_planes: int, planes: int, stride: int = 1) -> nn.Conv2D:
    return nn.Conv2D(planes, 3, stride, 1, use_bias=False, in_channels=in_planes)


class IBasicBlock(nn.HybridBlock):
    def __init__(self, inplanes: int, planes: int, stride: int, bn_mom: float):
        super().__init__()
        self.bn1 = BatchNorm2d(inplanes, eps=EPS, bn_mom=bn_mom)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = BatchNorm2d(planes, eps=EPS, bn_mom=bn_mom)
        self.prelu = PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = BatchNorm2d(planes, eps=EPS, bn_mom=bn_mom)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.HybridSequential()
            self.downsample.add(nn.Conv2D(planes, 1, stride, use_bias=False, in_channels=inplanes),
                                BatchNorm2d(planes, eps=EPS, bn_mom=bn_mom))

    def hybrid_forward(self, F, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.HybridBlock):
    def __init__(self, embedding_size: int = 512, image_size: int = 112, depth: int = 50,
                 dropout: float = 0.0, bn_mom: float = 0.9):
        super().__init__()
        side = check_sizes(embedding_size, image_size, 16)
        if depth not in IRESNET_LAYERS:
            raise ValueError(f"depth must be one of {sorted(IRESNET_LAYERS)}, got {depth!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        check_bn_mom(bn_mom)
        self.raw_input = False
        self.conv1 = nn.Conv2D(64, 3, 1, 1, use_bias=False, in_channels=3)
        self.bn1 = BatchNorm2d(64, eps=EPS, bn_mom=bn_mom)
        self.prelu = PReLU(64)
        inplanes = 64
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), IRESNET_LAYERS[depth])):
            layer = nn.HybridSequential()
            for j in range(count):
                layer.add(IBasicBlock(inplanes if j == 0 else planes, planes, 2 if j == 0 else 1,
                                      bn_mom))
            setattr(self, f"layer{i + 1}", layer)
            inplanes = planes
        self.bn2 = BatchNorm2d(512, eps=EPS, bn_mom=bn_mom)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Dense(embedding_size, in_units=512 * side * side)
        self.features = BatchNorm1d(embedding_size, eps=EPS, bn_mom=bn_mom, fix_gamma=True)

    def hybrid_forward(self, F, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.dropout(self.bn2(x))))


for _depth in IRESNET_LAYERS:
    register_backbone(f"iresnet{_depth}")(partial(IResNet, depth=_depth))
