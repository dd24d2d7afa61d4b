"""Building blocks shared by the backbones: BatchNorm with MXNet semantics, conv-BN(-PReLU).

BatchNorm conventions (the gluon file has the same classes):
- ``bn_mom`` is MXNet's decay of the running average: running = bn_mom * running +
  (1 - bn_mom) * batch. torch's ``momentum`` is ``1 - bn_mom`` (torch 0.1 == gluon 0.9).
- MXNet updates the running variance with the *biased* batch variance (sum/n), torch with
  the *unbiased* one (sum/(n-1)), n = N*H*W. ``BatchNorm2d``/``BatchNorm1d`` here undo
  torch's factor n/(n-1) after each training forward (a C-sized fix-up from the old and new
  running_var, no second pass over the activations), so running statistics stay equal to
  gluon's after any number of training steps.
- ``fix_gamma=True`` is MXNet's fixed-gamma BatchNorm: gamma is treated as 1 whatever its
  stored value (InsightFace's embedding BN ``fc1``/``features``). The ``weight`` entry is
  kept (frozen) so state_dict keys stay those of arcface_torch and of the gluon mirror.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..sync_batchnorm import global_batch_norm, is_distributed


class _MXBatchNorm:
    """Mixin holding the forward with MXNet's running-variance rule and fixed gamma."""

    def _setup(self, bn_mom: float, fix_gamma: bool) -> None:
        self.fix_gamma = fix_gamma
        # a process group: train with the global batch's statistics (set by
        # sync_batchnorm.convert_sync_batchnorm for data-parallel training)
        self.sync_group = None
        if fix_gamma:
            nn.init.ones_(self.weight)
            self.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        weight = None if self.fix_gamma else self.weight
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, weight, self.bias,
                                False, 0.0, self.eps)
        if self.sync_group is not None and is_distributed(self.sync_group):
            out, mean, var, _ = global_batch_norm(x, weight, self.bias, self.eps,
                                                  self.sync_group)
            keep = 1.0 - self.momentum
            with torch.no_grad():  # MXNet's rule: the biased variance
                self.running_mean.mul_(keep).add_(mean, alpha=self.momentum)
                self.running_var.mul_(keep).add_(var, alpha=self.momentum)
                self.num_batches_tracked.add_(1)
            return out
        # batch_norm updates a scratch copy: autograd keeps the running_var it was given.
        scratch = self.running_var.clone()
        out = F.batch_norm(x, self.running_mean, scratch, weight, self.bias,
                           True, self.momentum, self.eps)
        n = x.numel() // x.shape[1]
        keep = 1.0 - self.momentum
        with torch.no_grad():
            # torch added momentum * var * n/(n-1); MXNet adds momentum * var.
            old = self.running_var
            self.running_var.copy_((scratch - keep * old) * ((n - 1) / n) + keep * old)
            self.num_batches_tracked.add_(1)
        return out


class BatchNorm2d(_MXBatchNorm, nn.BatchNorm2d):
    """BatchNorm over N x C x H x W with MXNet semantics (see module docstring)."""

    def __init__(self, channels: int, eps: float = 2e-5, bn_mom: float = 0.9,
                 fix_gamma: bool = False):
        nn.BatchNorm2d.__init__(self, channels, eps=eps, momentum=1.0 - bn_mom)
        self._setup(bn_mom, fix_gamma)


class BatchNorm1d(_MXBatchNorm, nn.BatchNorm1d):
    """BatchNorm over N x C with MXNet semantics (see module docstring)."""

    def __init__(self, channels: int, eps: float = 2e-5, bn_mom: float = 0.9,
                 fix_gamma: bool = False):
        nn.BatchNorm1d.__init__(self, channels, eps=eps, momentum=1.0 - bn_mom)
        self._setup(bn_mom, fix_gamma)


class ConvBlock(nn.Module):
    """conv (no bias) -> BN -> PReLU (per channel); InsightFace's ``Conv`` unit.

    ``act=False`` gives InsightFace's ``Linear`` unit (conv -> BN).
    """

    def __init__(self, in_channels: int, channels: int, kernel: int = 1, stride: int = 1,
                 pad: int = 0, groups: int = 1, eps: float = 2e-5, bn_mom: float = 0.9,
                 act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, kernel, stride, pad, groups=groups,
                              bias=False)
        self.bn = BatchNorm2d(channels, eps=eps, bn_mom=bn_mom)
        self.prelu = nn.PReLU(channels, init=0.25) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)
