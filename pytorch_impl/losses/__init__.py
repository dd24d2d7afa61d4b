"""Margin losses (PyTorch): ``build_loss(name, num_classes=..., embedding_size=..., **hp)``.

One import line per loss; each module registers itself (base.register_loss).
"""

from . import (
    adaface,  # noqa: F401
    arcface,  # noqa: F401
    center,  # noqa: F401
    combined,  # noqa: F401
    contrastive,  # noqa: F401
    cosface,  # noqa: F401
    curricularface,  # noqa: F401
    l2softmax,  # noqa: F401
    magface,  # noqa: F401
    normface,  # noqa: F401
    ring,  # noqa: F401
    softmax,  # noqa: F401
    sphereface,  # noqa: F401
    subcenter_arcface,  # noqa: F401
    triplet,  # noqa: F401
)

# isort: split
from . import joint  # noqa: F401  (generates "<base>+<aux>" from the losses above)
from .base import build_loss, list_losses, load_loss_state, loss_state

__all__ = ["build_loss", "list_losses", "load_loss_state", "loss_state"]
