"""InsightFace arcface_torch ``backbone.pth`` (IResNet state_dict) -> our torch IResNet.

arcface_torch (recognition/arcface_torch/backbones/iresnet.py) saves ``backbone.state_dict()``;
our ``iresnet18/34/50/100`` have the same module tree, so the keys match one for one. A
checkpoint saved from DistributedDataParallel carries a ``module.`` prefix, stripped here.
Missing, unexpected or mis-shaped entries raise the ValueError of
``pytorch_impl.transfer.import_params`` listing them. (MXNet checkpoints go through
gluon_impl/insightface.py and then the torch<->gluon transfer.)
"""

from __future__ import annotations

import os

import torch

from .backbones import build_backbone
from .transfer import SKIPPED_SUFFIX, import_params


def load_arcface_torch(path: str, name: str = "iresnet50", embedding_size: int = 512,
                       image_size: int = 112):
    """Build backbone ``name`` and load an arcface_torch ``backbone.pth`` into it (eval mode)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"arcface_torch checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict, got {type(state).__name__}")
    params = {k.removeprefix("module."): v.numpy() for k, v in state.items()
              if not k.endswith(SKIPPED_SUFFIX)}
    model = build_backbone(name, embedding_size=embedding_size, image_size=image_size)
    import_params(model, params)
    return model.eval()
