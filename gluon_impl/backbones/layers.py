"""Building blocks shared by the backbones; mirror of ``pytorch_impl/backbones/layers.py``.

See that file's docstring for the BatchNorm conventions. Here MXNet's own BatchNorm
already has them: running statistics updated with the biased variance (during backward),
``momentum`` = ``bn_mom``, fixed gamma = ``scale=False``. Attribute names equal the torch
module names so parameters line up by structure (see gluon_impl/transfer.py).
"""

from __future__ import annotations

from mxnet import init
from mxnet.gluon import nn


class BatchNorm2d(nn.BatchNorm):
    """BatchNorm over axis 1 with MXNet semantics; same arguments as the torch class."""

    def __init__(self, channels: int, eps: float = 2e-5, bn_mom: float = 0.9,
                 fix_gamma: bool = False):
        super().__init__(axis=1, momentum=bn_mom, epsilon=eps, scale=not fix_gamma,
                         in_channels=channels)
        self.fix_gamma = fix_gamma


class BatchNorm1d(BatchNorm2d):
    """BatchNorm over N x C (axis 1): the same op in MXNet; named for the torch mirror."""


class PReLU(nn.HybridBlock):
    """Per-channel PReLU on N x C x H x W: relu(x) + alpha * min(x, 0); alpha starts at 0.25.

    Not ``gluon.nn.PReLU``: in MXNet 1.9.1 its op (LeakyReLU act_type='prelu') returns a
    wrong alpha gradient for some layers once hybridised (measured: 0.75 relative error on
    SmallCNN's last block against torch; tests/backends/test_backbones.py checks the gradients). The
    parameter keeps the name ``alpha`` so transfer and the InsightFace import see no change.
    """

    def __init__(self, channels: int, alpha: float = 0.25):
        super().__init__()
        self.channels = channels
        self.alpha = self.params.get("alpha", shape=(channels,), init=init.Constant(alpha))

    def hybrid_forward(self, F, x, alpha):
        # alpha * min(x, 0) as a depthwise 1x1 convolution: written with broadcast_mul, its
        # backward (a reduction over N, H, W) took half of MobileFaceNet's CPU step; this form
        # is 5x faster per layer and, like torch, gives the gradient alpha at x == 0
        w = F.reshape(alpha, shape=(-1, 1, 1, 1))
        return F.relu(x) + F.Convolution(F.minimum(x, 0), w, kernel=(1, 1),
                                         num_filter=self.channels, num_group=self.channels,
                                         no_bias=True)


class ConvBlock(nn.HybridBlock):
    """conv (no bias) -> BN -> PReLU (per channel); InsightFace's ``Conv`` unit.

    ``act=False`` gives InsightFace's ``Linear`` unit (conv -> BN).
    """

    def __init__(self, in_channels: int, channels: int, kernel: int = 1, stride: int = 1,
                 pad: int = 0, groups: int = 1, eps: float = 2e-5, bn_mom: float = 0.9,
                 act: bool = True):
        super().__init__()
        self.conv = nn.Conv2D(channels, kernel, stride, pad, groups=groups, use_bias=False,
                              in_channels=in_channels)
        self.bn = BatchNorm2d(channels, eps=eps, bn_mom=bn_mom)
        self.prelu = PReLU(channels) if act else None

    def hybrid_forward(self, F, x):
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)
