"""Framework-neutral parameters: ``export_params(model)`` / ``import_params(model, params)``.

Canonical names are the PyTorch ``state_dict`` keys without ``num_batches_tracked``
(buffers such as BN running statistics included); values are numpy arrays. The gluon
backend (gluon_impl/transfer.py) produces the same names from its mirrored block tree,
so torch -> numpy -> gluon starts both backends from identical weights.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SKIPPED_SUFFIX = "num_batches_tracked"


def _canonical_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict(keep_vars=True).items()
            if not k.endswith(SKIPPED_SUFFIX)}


def export_params(model: nn.Module) -> dict[str, np.ndarray]:
    """{canonical name: float copy as numpy array} of every parameter and persistent buffer."""
    return {k: v.detach().cpu().numpy().copy() for k, v in _canonical_state(model).items()}


def check_names(expected: dict[str, tuple], params: dict[str, np.ndarray], what: str) -> None:
    """Raise ValueError listing missing, unexpected and shape-mismatched names."""
    missing = sorted(set(expected) - set(params))
    unexpected = sorted(set(params) - set(expected))
    mismatched = sorted(
        f"{k}: model {tuple(expected[k])} vs given {tuple(np.shape(params[k]))}"
        for k in set(expected) & set(params) if tuple(expected[k]) != tuple(np.shape(params[k]))
    )
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {', '.join(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch {len(mismatched)}: {'; '.join(mismatched)}")
    if problems:
        raise ValueError(f"cannot import parameters into {what}: " + " | ".join(problems))


def import_params(model: nn.Module, params: dict[str, np.ndarray]) -> None:
    """Copy ``params`` (canonical names) into ``model`` in place; all names must match exactly."""
    state = _canonical_state(model)
    check_names({k: tuple(v.shape) for k, v in state.items()}, params, type(model).__name__)
    with torch.no_grad():
        for k, v in state.items():
            v.copy_(torch.as_tensor(np.asarray(params[k]), dtype=v.dtype))
