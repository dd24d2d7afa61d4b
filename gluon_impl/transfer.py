"""Framework-neutral parameters; see ``pytorch_impl/transfer.py`` for the contract.

Gluon's structured parameter names (attribute path + leaf, as ``save_parameters`` writes
them) equal the torch ``state_dict`` keys because the blocks mirror the torch modules
attribute for attribute; only the leaf names differ and are translated here:
BatchNorm/LayerNorm gamma, beta -> weight, bias; PReLU alpha -> weight.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet.gluon import Block

LEAF_TO_TORCH = {"gamma": "weight", "beta": "bias", "alpha": "weight"}


def canonical_name(gluon_name: str) -> str:
    """'body.0.bn.gamma' -> 'body.0.bn.weight'."""
    head, _, leaf = gluon_name.rpartition(".")
    leaf = LEAF_TO_TORCH.get(leaf, leaf)
    return f"{head}.{leaf}" if head else leaf


def canonical_params(model: Block) -> dict:
    """{canonical name: gluon Parameter}; two parameters with one canonical name is an error."""
    out = {}
    # _collect_params_with_prefix is what save_parameters uses: attribute-path names.
    for name, param in model._collect_params_with_prefix().items():
        key = canonical_name(name)
        if key in out:
            raise ValueError(f"two parameters of {type(model).__name__} map to {key!r}")
        out[key] = param
    return out


def _data(param, key: str) -> mx.nd.NDArray:
    try:
        return param.data()
    except (RuntimeError, mx.MXNetError) as exc:
        raise ValueError(f"parameter {key!r} is not initialised; call initialize() first") from exc


def export_params(model: Block) -> dict[str, np.ndarray]:
    """{canonical name: numpy array} of every parameter (running statistics included)."""
    return {k: _data(p, k).asnumpy().copy() for k, p in canonical_params(model).items()}


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


def import_params(model: Block, params: dict[str, np.ndarray]) -> None:
    """Copy ``params`` (canonical names) into ``model`` in place; all names must match exactly."""
    state = canonical_params(model)
    check_names({k: tuple(p.shape) for k, p in state.items()}, params, type(model).__name__)
    for k, p in state.items():
        _data(p, k)
        p.set_data(mx.nd.array(np.asarray(params[k]), dtype=p.dtype))
