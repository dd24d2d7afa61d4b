"""Backbone registry: ``@register_backbone(name)``, ``build_backbone``, ``list_backbones``.

The registry drives the tests and the harness (timm's pattern): a new backbone needs no
test edit, and an unknown name raises a ``ValueError`` that lists the known ones. It is
``common.registry.Registry``, the class the losses use too, so both backends share the rules
and the error texts.
"""

from __future__ import annotations

import mxnet as mx

from common.registry import Registry

BACKBONES = Registry("backbone")
register_backbone = BACKBONES.register  # a class or factory; registering a name twice: error
list_backbones = BACKBONES.names


def build_backbone(name: str, embedding_size: int = 512, image_size: int = 112, **kw):
    """Build backbone ``name``: input N x 3 x image_size x image_size, output N x embedding_size.

    Unlike torch, a gluon model needs ``initialize``; it is done here (conv/FC weights:
    MXNet Xavier gaussian, magnitude 2, as InsightFace's MXNet training) so that
    ``transfer.export_params``/``import_params`` work on the result at once.
    """
    model = BACKBONES.get(name)(embedding_size=embedding_size, image_size=image_size, **kw)
    model.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2))
    return model


def check_sizes(embedding_size: int, image_size: int, stride: int) -> int:
    """Validate the common arguments; return the last feature map's side, image_size/stride."""
    if not isinstance(embedding_size, int) or embedding_size < 1:
        raise ValueError(f"embedding_size must be a positive integer, got {embedding_size!r}")
    if not isinstance(image_size, int) or image_size < stride or image_size % stride:
        raise ValueError(
            f"image_size must be a positive multiple of {stride}, got {image_size!r}"
        )
    return image_size // stride


def check_bn_mom(bn_mom: float) -> None:
    """bn_mom is MXNet's convention (decay of the running average), in [0, 1)."""
    if not 0.0 <= bn_mom < 1.0:
        raise ValueError(
            f"bn_mom must be in [0, 1) (MXNet convention, 0.9 = torch 0.1), got {bn_mom!r}"
        )
