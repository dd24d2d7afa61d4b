"""Backbone registry: ``build_backbone(name, embedding_size=512, image_size=112, **kw)``.

``list_backbones()`` gives the names. One file per backbone, each registered with
``@register_backbone``; importing this package imports every module it holds
(``common.registry.import_submodules``: no list to keep). Every model has
``raw_input``: True when the graph normalises inside and takes raw RGB 0..255 (InsightFace's
MobileFaceNet), False when it takes ``common.images.normalize`` output ((x/255 - 0.5)/0.5).
"""

from common.registry import import_submodules

from .registry import build_backbone, list_backbones, register_backbone

import_submodules(__name__)

__all__ = ["build_backbone", "list_backbones", "register_backbone"]
