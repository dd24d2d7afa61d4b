"""Run one loss in either backend on NumPy inputs: value and gradients as NumPy.

Shared by the tests/losses/test_loss_*.py files; both runners copy the same canonical state
(``loss_state`` names) into a freshly built loss, so the two backends see identical numbers.
"""

from __future__ import annotations

import math

import numpy as np

LEARNED = ("weight", "radius")  # canonical state the optimiser trains (gradients compared)


def torch_loss(name, num_classes, embedding_size, state, hp, dtype):
    import torch

    from pytorch_impl import losses as TL

    loss = TL.build_loss(name, num_classes=num_classes, embedding_size=embedding_size, **hp)
    loss = loss.to(getattr(torch, dtype))
    if state is not None:
        TL.load_loss_state(loss, state)
    return loss


def gluon_loss(name, num_classes, embedding_size, state, hp, dtype, hybridize=False):
    from gluon_impl import losses as GL

    loss = GL.build_loss(name, num_classes=num_classes, embedding_size=embedding_size, **hp)
    if dtype != "float32":
        loss.cast(dtype)
    if state is not None:
        GL.load_loss_state(loss, state)
    if hybridize:
        loss.hybridize()
    return loss


def torch_eval(loss, x, y, dtype):
    import torch

    xt = torch.tensor(np.asarray(x, dtype=dtype), requires_grad=True)
    loss.zero_grad()
    value = loss(xt, torch.tensor(np.asarray(y), dtype=torch.int64))
    value.backward()
    grads = {"x": xt.grad.numpy().copy()}
    for key, tensor in loss.state_items().items():
        if key in LEARNED:
            grads[key] = tensor.grad.numpy().copy()
    return float(value.detach()), grads


def gluon_eval(loss, x, y, dtype):
    from mxnet import autograd, nd

    xg = nd.array(np.asarray(x, dtype=dtype), dtype=dtype)
    xg.attach_grad()
    with autograd.record():
        value = loss(xg, nd.array(np.asarray(y), dtype=dtype))
    value.backward()
    grads = {"x": xg.grad.asnumpy()}
    for key, param in loss.state_items().items():
        if key in LEARNED:
            grads[key] = param.grad().asnumpy()
    return float(value.asnumpy().reshape(-1)[0]), grads


def random_state(name, num_classes, embedding_size, rng, dtype="float64"):
    """Canonical state with random weights/centres (unit-scale, so cosines are spread)."""
    from pytorch_impl import losses as TL

    template = TL.loss_state(TL.build_loss(name, num_classes=num_classes,
                                           embedding_size=embedding_size))
    state = {}
    for key, value in template.items():
        if key == "iteration":
            state[key] = np.array([rng.integers(0, 50)], dtype=np.int64)
        elif key in ("radius", "batch_mean", "batch_std"):
            state[key] = np.array([rng.uniform(0.5, 3.0)], dtype=dtype)
        else:
            state[key] = rng.normal(size=value.shape).astype(dtype)
    return state


def labels_for(kind, batch, num_classes, rng):
    if kind == "one_class":
        return np.full(batch, rng.integers(num_classes))
    if kind == "duplicates":
        return rng.integers(0, min(2, num_classes), size=batch)
    return rng.integers(0, num_classes, size=batch)


def target_angle_inputs(theta, weight, labels, rng, norm=3.0):
    """Embeddings whose angle to their target class weight is exactly ``theta`` (per row)."""
    w = weight[labels] / np.linalg.norm(weight[labels], axis=1, keepdims=True)
    noise = rng.normal(size=w.shape)
    perp = noise - (noise * w).sum(axis=1, keepdims=True) * w
    perp /= np.linalg.norm(perp, axis=1, keepdims=True)
    theta = np.broadcast_to(np.asarray(theta, dtype=np.float64), (len(labels),))
    return norm * (np.cos(theta)[:, None] * w + np.sin(theta)[:, None] * perp)


EDGE_ANGLES = {
    "theta_near_0": lambda m: 1e-4,
    "cos_plus_1": lambda m: 0.0,
    "cos_minus_1": lambda m: math.pi,
    "near_pi_minus_m": lambda m: math.pi - m - 1e-3,
    "beyond_pi_minus_m": lambda m: math.pi - m + 0.2,
}
