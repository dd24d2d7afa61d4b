"""NumPy oracles of every registered loss, written from SPEC.md section 1 (not from the code).

``ORACLES`` holds one entry per loss: its defaults (the SPEC's table, checked against both
backends) and its formula. A softmax-head loss gives its final B x C ``logits`` (the value is
their cross-entropy, plus ``extra`` where the loss adds a term); a metric loss gives its
``value``. Joint names "<base>+<aux>" are derived: base + lambda_ x ``AUX_TERMS[aux]``.
``loss_value(name, x, labels, state, hp)`` evaluates the formula in float64;
``numeric_grad`` gives its central-difference gradient. A loss without an entry raises
``MissingOracle`` (tests/losses/test_loss_oracle.py then fails, saying to add one here).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SIN_EPS = 1e-7
ACOS_EPS = 1e-7
JOINT_DEFAULTS = {"lambda_": 0.01}


class MissingOracle(LookupError):
    pass


def _unit(v):
    return v / np.sqrt(np.maximum((v * v).sum(axis=1, keepdims=True), 1e-24))


def _ce(logits, y):
    m = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(axis=1)) + m[:, 0]
    return float(np.mean(lse - logits[np.arange(len(y)), y]))


def arc_target(cos, m, easy=False):
    sin = np.sqrt(np.maximum(1.0 - cos * cos, SIN_EPS))
    t = cos * math.cos(m) - sin * math.sin(m)
    if easy:
        return np.where(cos > 0, t, cos)
    return np.where(cos < math.cos(math.pi - m), cos - m * math.sin(m), t)


def sphereface_lambda(iteration: int) -> float:
    return max(5.0, 1000.0 / (1.0 + 0.12 * iteration))


def sphereface_psi(cos, m):
    theta = np.arccos(np.clip(cos, -1, 1))
    k = np.floor(m * theta / math.pi)
    return (-1.0) ** k * np.cos(m * theta) - 2 * k


def magface_margin(norm, hp):
    a = np.clip(norm, hp["lower_norm"], hp["upper_norm"])
    slope = (hp["upper_margin"] - hp["lower_margin"]) / (hp["upper_norm"] - hp["lower_norm"])
    return slope * (a - hp["lower_norm"]) + hp["lower_margin"]


def adaface_statistics(norm, hp, state):
    """EMA of batch mean/std (unbiased) of the clipped norms, including this batch."""
    safe = np.clip(norm, 0.001, 100.0)
    mean = safe.mean()
    std = math.sqrt(((safe - mean) ** 2).sum() / max(len(safe) - 1, 1))
    a = hp["t_alpha"]
    return (a * mean + (1 - a) * float(state["batch_mean"][0]),
            a * std + (1 - a) * float(state["batch_std"][0]))


def adaface_target(c, norm, hp, state):
    mean, std = adaface_statistics(norm, hp, state)
    z = np.clip((np.clip(norm, 0.001, 100.0) - mean) / (std + 1e-3) * hp["h"], -1, 1)
    theta = np.arccos(np.clip(c, -1 + 1e-3, 1 - 1e-3))
    theta_m = np.clip(theta + hp["margin"] * (1 - z), 1e-3, math.pi - 1e-3)
    return np.cos(theta_m) - hp["margin"] * (1 + z)


def subcenter_cosines(x, w, k):
    """max over the K sub-centres of each class; W's rows class-major (row j K + i)."""
    cos = _unit(x) @ _unit(w).T
    return cos.reshape(len(x), -1, k).max(axis=2)


def curricular_logits(cos, y, hp, t):
    """Huang et al. 2020: hard negatives (cos_j > cos(theta_y + m)) become cos_j (t + cos_j)."""
    rows = np.arange(len(y))
    c = np.clip(cos[rows, y], -1, 1)
    m = hp["margin"]
    threshold = c * math.cos(m) - np.sqrt(np.maximum(1.0 - c * c, SIN_EPS)) * math.sin(m)
    logits = np.where(cos > threshold[:, None], cos * (t + cos), cos)
    logits[rows, y] = arc_target(c, m)
    return hp["scale"] * logits


def curricular_t_update(t, x, y, w, alpha):
    """t <- alpha mean_i cos(x_i, W_{y_i}) + (1 - alpha) t (the batch's target cosines)."""
    c = np.clip((_unit(x) * _unit(w)[y]).sum(axis=1), -1, 1)
    return alpha * c.mean() + (1 - alpha) * t


def center_term(x, y, centers):
    return 0.5 * float(np.mean(((x - centers[y]) ** 2).sum(axis=1)))


def ring_term(x, radius):
    return 0.5 * float(np.mean((np.sqrt((x * x).sum(axis=1)) - float(radius[0])) ** 2))


def _pair_dist_sq(x):
    xn = _unit(x)
    return ((xn[:, None, :] - xn[None, :, :]) ** 2).sum(axis=2)


def triplet(x, y, margin):
    d = _pair_dist_sq(x)
    losses = []
    for i in range(len(y)):
        pos = [d[i, j] for j in range(len(y)) if y[j] == y[i] and j != i]
        neg = [d[i, j] for j in range(len(y)) if y[j] != y[i]]
        if pos and neg:
            losses.append(max(0.0, max(pos) - min(neg) + margin))
    return float(np.mean(losses)) if losses else 0.0


def contrastive(x, y, margin):
    d2 = _pair_dist_sq(x)
    terms = []
    for i in range(len(y)):
        for j in range(i + 1, len(y)):
            d = math.sqrt(max(d2[i, j], 1e-12))
            terms.append(d2[i, j] if y[i] == y[j] else max(0.0, margin - d) ** 2)
    return float(np.mean(terms)) if terms else 0.0


# ---- one entry per loss -----------------------------------------------------------------

def _cos(x, w):
    return _unit(x) @ _unit(w).T


def _target(cos, y, value):
    """cos with each row's target column replaced by ``value`` (B,)."""
    out = cos.copy()
    out[np.arange(len(y)), y] = value
    return out


def _cos_y(cos, y):
    return np.clip(cos[np.arange(len(y)), y], -1, 1)


def _norm(x):
    return np.sqrt((x * x).sum(axis=1))


def _margin_logits(target_fn):
    """Logits s cos_j with the target s target_fn(cos_y, x, hp, state, fixed_norms)."""
    def logits(x, w, y, hp, state, fixed_norms):
        cos = _cos(x, w)
        return hp["scale"] * _target(cos, y, target_fn(_cos_y(cos, y), x, hp, state, fixed_norms))
    return logits


def _sphereface_logits(x, w, y, hp, state, fixed_norms):
    cos = _cos(x, w)
    c = _cos_y(cos, y)
    lam = sphereface_lambda(int(np.asarray(state["iteration"]).reshape(-1)[0]))
    return _norm(x)[:, None] * _target(cos, y, (lam * c + sphereface_psi(c, hp["margin"]))
                                       / (1 + lam))


def _magface_target(c, x, hp, state, fixed_norms):
    m = magface_margin(_norm(x), hp)
    sin = np.sqrt(np.maximum(1.0 - c * c, SIN_EPS))
    return np.where(c < np.cos(math.pi - m), c - m * np.sin(m), c * np.cos(m) - sin * np.sin(m))


def _magface_extra(x, hp):
    a = np.clip(_norm(x), hp["lower_norm"], hp["upper_norm"])
    return hp["lambda_g"] * float(np.mean(1.0 / a + a / hp["upper_norm"] ** 2))


def _combined_target(c, x, hp, state, fixed_norms):
    if hp["m1"] == 1.0:
        return arc_target(c, hp["m2"]) - hp["m3"]
    theta = np.arccos(np.clip(c, -1 + ACOS_EPS, 1 - ACOS_EPS))
    return np.cos(hp["m1"] * theta + hp["m2"]) - hp["m3"]


def _subcenter_logits(x, w, y, hp, state, fixed_norms):
    cos = subcenter_cosines(x, w, hp["sub_centers"])
    return hp["scale"] * _target(cos, y, arc_target(_cos_y(cos, y), hp["margin"]))


def _curricular_logits(x, w, y, hp, state, fixed_norms):
    return curricular_logits(_cos(x, w), y, hp, float(np.asarray(state["t"]).reshape(-1)[0]))


@dataclass(frozen=True)
class Oracle:
    """The formula of one loss: ``logits`` (softmax heads; value = CE + ``extra``) or
    ``value`` (metric losses), and the SPEC's defaults."""

    defaults: dict
    logits: Callable | None = None  # (x, W, y, hp, state, fixed_norms) -> final B x C logits
    extra: Callable | None = None  # (x, hp) -> what the loss adds to the CE
    value: Callable | None = None  # (x, y, hp) -> the loss, for losses without class weights
    aux: str | None = None  # "center" / "ring": base softmax + lambda_ x that term


@dataclass(frozen=True)
class AuxOracle:
    defaults: dict
    term: Callable  # (x, y, state) -> the unweighted term


AUX_TERMS = {
    "center": AuxOracle({"alpha": 0.5},
                        lambda x, y, state: center_term(x, y, np.asarray(state["centers"],
                                                                         np.float64))),
    "ring": AuxOracle({"radius": 1.0},
                      lambda x, y, state: ring_term(x, np.asarray(state["radius"], np.float64))),
}

ORACLES = {
    "softmax": Oracle({}, logits=lambda x, w, y, hp, state, fn: x @ w.T),
    "l2softmax": Oracle({"scale": 30.0},
                        logits=lambda x, w, y, hp, state, fn: (hp["scale"] * _unit(x)) @ w.T),
    "normface": Oracle({"scale": 30.0}, logits=_margin_logits(lambda c, *_: c)),
    "sphereface": Oracle({"margin": 4}, logits=_sphereface_logits),
    "cosface": Oracle({"scale": 64.0, "margin": 0.35},
                      logits=_margin_logits(lambda c, x, hp, *_: c - hp["margin"])),
    "arcface": Oracle({"scale": 64.0, "margin": 0.5, "easy_margin": False},
                      logits=_margin_logits(lambda c, x, hp, *_: arc_target(
                          c, hp["margin"], hp["easy_margin"]))),
    "combined": Oracle({"scale": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2},
                       logits=_margin_logits(_combined_target)),
    "magface": Oracle({"scale": 64.0, "lower_norm": 10.0, "upper_norm": 110.0,
                       "lower_margin": 0.45, "upper_margin": 0.8, "lambda_g": 35.0},
                      logits=_margin_logits(_magface_target), extra=_magface_extra),
    "adaface": Oracle({"scale": 64.0, "margin": 0.4, "h": 0.333, "t_alpha": 0.01},
                      logits=_margin_logits(lambda c, x, hp, state, fn: adaface_target(
                          c, _norm(x) if fn is None else fn, hp, state))),
    "subcenter_arcface": Oracle({"scale": 64.0, "margin": 0.5, "sub_centers": 3},
                                logits=_subcenter_logits),
    "curricularface": Oracle({"scale": 64.0, "margin": 0.5, "t_alpha": 0.01},
                             logits=_curricular_logits),
    "center": Oracle({}, aux="center"),
    "ring": Oracle({}, aux="ring"),
    "triplet": Oracle({"margin": 0.3}, value=lambda x, y, hp: triplet(x, y, hp["margin"])),
    "contrastive": Oracle({"margin": 1.0},
                          value=lambda x, y, hp: contrastive(x, y, hp["margin"])),
}


def _parts(name: str) -> tuple[Oracle, str | None]:
    """(the oracle of the base loss, the auxiliary term or None) of a registered name."""
    base, _, aux = name.partition("+")
    if base not in ORACLES or (aux and aux not in AUX_TERMS):
        raise MissingOracle(f"loss {name!r} has no NumPy oracle: add an entry for "
                            f"{base if base not in ORACLES else aux!r} to "
                            f"{'ORACLES' if base not in ORACLES else 'AUX_TERMS'} in "
                            f"tests/oracles.py (its formula, from SPEC.md or the paper)")
    oracle = ORACLES[base]
    if oracle.aux:
        return ORACLES["softmax"], oracle.aux
    return oracle, aux or None


def defaults(name: str) -> dict:
    """The SPEC's defaults of ``name`` (a joint's: lambda_, the base's, the term's)."""
    oracle, aux = _parts(name)
    if aux is None:
        return dict(oracle.defaults)
    return {**JOINT_DEFAULTS, **oracle.defaults, **AUX_TERMS[aux].defaults}


def loss_value(name: str, x, y, state: dict, hp: dict | None = None, fixed_norms=None) -> float:
    """The loss of SPEC.md section 1 in float64; ``state`` holds weight/centers/radius/iteration.

    ``fixed_norms`` stands in for |x| where the formula detaches it (AdaFace), so central
    differences give the gradient of the formula as written.
    """
    oracle, aux = _parts(name)
    hp = {**defaults(name), **(hp or {})}
    x = np.asarray(x, dtype=np.float64)
    if oracle.value is not None:
        return oracle.value(x, y, hp)
    logits = oracle.logits(x, np.asarray(state["weight"], np.float64), y, hp, state, fixed_norms)
    value = _ce(logits, y)
    if oracle.extra is not None:
        value += oracle.extra(x, hp)
    if aux is not None:
        value += hp["lambda_"] * AUX_TERMS[aux].term(x, y, state)
    return value


def center_update(centers, x, y, alpha):
    """The alpha rule of Wen et al. (SPEC.md): only classes present in the batch move."""
    new = centers.copy()
    for j in np.unique(y):
        members = y == j
        new[j] = centers[j] - alpha * (centers[j] - x[members]).sum(axis=0) / (1 + members.sum())
    return new


def numeric_grad(f, arr: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f(arr) w.r.t. every entry of arr (float64)."""
    arr = np.array(arr, dtype=np.float64)
    grad = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f(arr)
        flat[i] = old - h
        down = f(arr)
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return grad
