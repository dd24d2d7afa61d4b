"""Margin losses (PyTorch): ``build_loss(name, num_classes=..., embedding_size=..., **hp)``.

Every module of this package is imported (``common.registry.import_submodules``: no list to
keep) and registers its loss(es) with ``@register_loss``; then the joint objectives
"<base>+<aux>" are generated for every ``joinable`` loss and registered auxiliary term.
"""

from common.contract import register_joints
from common.registry import import_submodules

from .base import AUX_TERMS, LOSSES, JointLoss, build_loss, list_losses, load_loss_state, loss_state

import_submodules(__name__)
JOINT_NAMES = register_joints(LOSSES, AUX_TERMS, JointLoss, globals())

__all__ = ["build_loss", "list_losses", "load_loss_state", "loss_state"]
