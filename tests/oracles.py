"""NumPy oracles of every registered loss, written from SPEC.md section 1 (not from the code).

``loss_value(name, x, labels, state, hp)`` evaluates the formula in float64;
``numeric_grad`` gives its central-difference gradient; ``DEFAULTS`` is the SPEC's table of
defaults, checked against both backends. Joint names "<base>+<aux>" are base + lambda_ x aux.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULTS = {
    "softmax": {},
    "l2softmax": {"scale": 30.0},
    "normface": {"scale": 30.0},
    "sphereface": {"margin": 4},
    "cosface": {"scale": 64.0, "margin": 0.35},
    "arcface": {"scale": 64.0, "margin": 0.5, "easy_margin": False},
    "combined": {"scale": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2},
    "center": {"lambda_": 0.01, "alpha": 0.5},
    "ring": {"lambda_": 0.01, "radius": 1.0},
    "triplet": {"margin": 0.3},
    "contrastive": {"margin": 1.0},
    "magface": {"scale": 64.0, "lower_norm": 10.0, "upper_norm": 110.0, "lower_margin": 0.45,
                "upper_margin": 0.8, "lambda_g": 35.0},
    "adaface": {"scale": 64.0, "margin": 0.4, "h": 0.333, "t_alpha": 0.01},
    "subcenter_arcface": {"scale": 64.0, "margin": 0.5, "sub_centers": 3},
    "curricularface": {"scale": 64.0, "margin": 0.5, "t_alpha": 0.01},
}
AUX_DEFAULTS = {"center": {"alpha": 0.5}, "ring": {"radius": 1.0}}
SIN_EPS = 1e-7
ACOS_EPS = 1e-7


def defaults(name: str) -> dict:
    if "+" in name:
        base, aux = name.split("+")
        return {"lambda_": 0.01, **DEFAULTS[base], **AUX_DEFAULTS[aux]}
    return dict(DEFAULTS[name])


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


def softmax_family_logits(name, x, w, y, hp, state, fixed_norms=None):
    """Final B x C logits of a softmax-family loss (``fixed_norms``: AdaFace's detached |x|)."""
    rows = np.arange(len(y))
    if name == "curricularface":
        cos = _unit(x) @ _unit(w).T
        return curricular_logits(cos, y, hp, float(np.asarray(state["t"]).reshape(-1)[0]))
    if name == "subcenter_arcface":
        cos = subcenter_cosines(x, w, hp["sub_centers"])
        logits = hp["scale"] * cos
        logits[rows, y] = hp["scale"] * arc_target(np.clip(cos[rows, y], -1, 1), hp["margin"])
        return logits
    if name == "softmax":
        return x @ w.T
    if name == "l2softmax":
        return (hp["scale"] * _unit(x)) @ w.T
    if name == "sphereface":
        norm = np.sqrt((x * x).sum(axis=1))
        cos = _unit(x) @ _unit(w).T
        logits = norm[:, None] * cos
        c = np.clip(cos[rows, y], -1, 1)
        lam = sphereface_lambda(int(np.asarray(state["iteration"]).reshape(-1)[0]))
        logits[rows, y] = norm * (lam * c + sphereface_psi(c, hp["margin"])) / (1 + lam)
        return logits
    s = hp["scale"]
    cos = _unit(x) @ _unit(w).T
    c = np.clip(cos[rows, y], -1, 1)
    if name == "normface":
        t = c
    elif name == "cosface":
        t = c - hp["margin"]
    elif name == "arcface":
        t = arc_target(c, hp["margin"], hp["easy_margin"])
    elif name == "magface":
        m = magface_margin(np.sqrt((x * x).sum(axis=1)), hp)
        sin = np.sqrt(np.maximum(1.0 - c * c, SIN_EPS))
        t = np.where(c < np.cos(math.pi - m), c - m * np.sin(m), c * np.cos(m) - sin * np.sin(m))
    elif name == "adaface":
        norm = np.sqrt((x * x).sum(axis=1)) if fixed_norms is None else fixed_norms
        t = adaface_target(c, norm, hp, state)
    elif name == "combined":
        if hp["m1"] == 1.0:
            t = arc_target(c, hp["m2"]) - hp["m3"]
        else:
            theta = np.arccos(np.clip(c, -1 + ACOS_EPS, 1 - ACOS_EPS))
            t = np.cos(hp["m1"] * theta + hp["m2"]) - hp["m3"]
    else:
        raise KeyError(name)
    logits = s * cos
    logits[rows, y] = s * t
    return logits


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


def loss_value(name: str, x, y, state: dict, hp: dict | None = None, fixed_norms=None) -> float:
    """The loss of SPEC.md section 1 in float64; ``state`` holds weight/centers/radius/iteration.

    ``fixed_norms`` stands in for |x| where the formula detaches it (AdaFace), so central
    differences give the gradient of the formula as written.
    """
    hp = {**defaults(name), **(hp or {})}
    x = np.asarray(x, dtype=np.float64)
    if name in ("triplet", "contrastive"):
        return (triplet if name == "triplet" else contrastive)(x, y, hp["margin"])
    base, aux = (name.split("+") if "+" in name else
                 ("softmax", name) if name in ("center", "ring") else (name, None))
    value = _ce(softmax_family_logits(base, x, np.asarray(state["weight"], np.float64), y,
                                      hp, state, fixed_norms), y)
    if base == "magface":
        a = np.clip(np.sqrt((x * x).sum(axis=1)), hp["lower_norm"], hp["upper_norm"])
        value += hp["lambda_g"] * float(np.mean(1.0 / a + a / hp["upper_norm"] ** 2))
    if aux == "center":
        value += hp["lambda_"] * center_term(x, y, np.asarray(state["centers"], np.float64))
    elif aux == "ring":
        value += hp["lambda_"] * ring_term(x, np.asarray(state["radius"], np.float64))
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
