"""The hyper-parameter search space of every registered loss, for ``python -m bench tune``.

Framework-free and shared by both backends: a point of a space is ``{"lr": ..,
"weight_decay": .., <the loss's constructor keys>: ..}``, the loss part passed to either
backend's ``build_loss(name, **settings)`` as it is. Every loss is searched over the same
training knobs (``TRAINING``: learning rate and weight decay, log-uniform) and over its own
hyper-parameters (``LOSS_SPACES``), with ranges taken from the papers' own sweeps and always
inside the manifest's valid values (tests/common/test_search_space.py checks both, for every
registered loss). A joint objective ``<base>+center`` / ``<base>+ring`` searches its base's
space plus the auxiliary term's weight ``lambda_``; the term's own settings (the centre update
rate, the ring's initial radius, which is learned) stay at their defaults, as in the papers'
joint experiments.

Ranges (the papers' values in brackets):

- ``scale`` 4-64, log (NormFace 10-30, ArcFace/CosFace 30-64; the AdaCos fixed scale
  sqrt(2) ln(C-1) is 4.5 for the 24 training identities left of AT&T after the validation
  split and 10 for LFW View 1's 1,184, so the lower end reaches the small sets' scale);
- additive angular margins (ArcFace 0.1-0.7 [0.5], CurricularFace [0.5], Sub-center
  ArcFace [0.5]), CosFace's cosine margin 0.1-0.6 [0.35], SphereFace's integer m 1-4 [4],
  InsightFace's combined m1 0.9-1.1, m2 0-0.5, m3 0-0.35 [1.0, 0.3, 0.2 or 0.9, 0.4, 0.15];
- AdaFace m 0.2-0.6 [0.4] and h 0.1-0.7 [0.33, ablated 0.22-0.66]; MagFace's margin ends
  0.2-0.5 and 0.55-0.9 [0.45, 0.8] (disjoint, so upper > lower always holds) and lambda_g
  10-60 log [35]; sub-centres K 1-5 [3];
- centre-loss weight lambda 1e-3 - 1e-1 log [0.003-0.01, ablated 0-0.1] and update rate
  alpha 0.05-1 [0.5]; ring-loss weight lambda 1e-3 - 1e-1 log [0.01];
- contrastive margin 0.25-2 (on normalised embeddings, distances lie in [0, 2]); triplet margin
  0.05-1 log [FaceNet 0.2].

Settings fixed on the command line (``--loss-args``) are left out of the search (``space(name,
fixed)``). A space entry is a ``Float``, ``Int`` or ``Categorical``: ``suggest(trial, name)``
asks an Optuna trial for it, ``sample(rng)`` draws one with ``random.Random`` (tests, no Optuna
needed).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from common import manifest


@dataclass(frozen=True)
class Float:
    """A real in [lo, hi], uniform or (``log``) log-uniform."""

    lo: float
    hi: float
    log: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.lo < self.hi):
            raise ValueError(f"Float: need finite lo < hi, got [{self.lo}, {self.hi}]")
        if self.log and self.lo <= 0:
            raise ValueError(f"Float: a log range needs lo > 0, got {self.lo}")

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.lo, self.hi, log=self.log)

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))
        return rng.uniform(self.lo, self.hi)

    def ends(self) -> tuple:
        return (self.lo, self.hi)

    def contains(self, value) -> bool:
        return isinstance(value, float) and self.lo <= value <= self.hi

    def describe(self) -> str:
        return f"{'log-uniform' if self.log else 'uniform'} [{self.lo:g}, {self.hi:g}]"


@dataclass(frozen=True)
class Int:
    """An integer in [lo, hi]."""

    lo: int
    hi: int
    log: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.lo, int) and isinstance(self.hi, int) and self.lo < self.hi):
            raise ValueError(f"Int: need integers lo < hi, got [{self.lo}, {self.hi}]")
        if self.log and self.lo <= 0:
            raise ValueError(f"Int: a log range needs lo > 0, got {self.lo}")

    def suggest(self, trial, name: str) -> int:
        return trial.suggest_int(name, self.lo, self.hi, log=self.log)

    def sample(self, rng: random.Random) -> int:
        return rng.randint(self.lo, self.hi)

    def ends(self) -> tuple:
        return (self.lo, self.hi)

    def contains(self, value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and \
            self.lo <= value <= self.hi

    def describe(self) -> str:
        return f"integer{' (log)' if self.log else ''} [{self.lo}, {self.hi}]"


@dataclass(frozen=True)
class Categorical:
    """One of ``choices`` (None, bool, int, float or str, as Optuna stores them)."""

    choices: tuple

    def __post_init__(self) -> None:
        if len(self.choices) < 2 or len(set(self.choices)) != len(self.choices):
            raise ValueError(f"Categorical: need >= 2 distinct choices, got {self.choices!r}")

    def suggest(self, trial, name: str):
        return trial.suggest_categorical(name, list(self.choices))

    def sample(self, rng: random.Random):
        return rng.choice(self.choices)

    def ends(self) -> tuple:
        return tuple(self.choices)

    def contains(self, value) -> bool:
        return any(value == c and type(value) is type(c) for c in self.choices)

    def describe(self) -> str:
        return "one of " + ", ".join(map(repr, self.choices))


# the training knobs every loss is searched over, with the same ranges
TRAINING = {"lr": Float(0.01, 0.5, log=True), "weight_decay": Float(1e-5, 5e-3, log=True)}

SCALE = Float(4.0, 64.0, log=True)
ANGULAR_MARGIN = Float(0.1, 0.7)
AUX_WEIGHT = Float(1e-3, 1e-1, log=True)  # lambda_ of the centre and ring terms

# each single loss's own hyper-parameters (its constructor keys in common/manifest.json); a key
# left out stays at its class default (ArcFace's easy_margin, the t_alpha momenta of
# CurricularFace and AdaFace, MagFace's norm bounds, the ring's initial radius)
LOSS_SPACES = {
    "softmax": {},
    "l2softmax": {"scale": SCALE},
    "normface": {"scale": SCALE},
    "arcface": {"scale": SCALE, "margin": ANGULAR_MARGIN},
    "cosface": {"scale": SCALE, "margin": Float(0.1, 0.6)},
    "sphereface": {"margin": Int(1, 4)},
    "combined": {"scale": SCALE, "m1": Float(0.9, 1.1), "m2": Float(0.0, 0.5),
                 "m3": Float(0.0, 0.35)},
    "curricularface": {"scale": SCALE, "margin": ANGULAR_MARGIN},
    "subcenter_arcface": {"scale": SCALE, "margin": ANGULAR_MARGIN, "sub_centers": Int(1, 5)},
    "adaface": {"scale": SCALE, "margin": Float(0.2, 0.6), "h": Float(0.1, 0.7)},
    "magface": {"scale": SCALE, "lower_margin": Float(0.2, 0.5),
                "upper_margin": Float(0.55, 0.9), "lambda_g": Float(10.0, 60.0, log=True)},
    "center": {"lambda_": AUX_WEIGHT, "alpha": Float(0.05, 1.0)},
    "ring": {"lambda_": AUX_WEIGHT},
    "contrastive": {"margin": Float(0.25, 2.0)},
    "triplet": {"margin": Float(0.05, 1.0, log=True)},
}
JOINT_WEIGHT = "lambda_"  # the key of a joint objective's auxiliary-term weight


def loss_space(name: str) -> dict:
    """The loss's own searched hyper-parameters: {constructor key: Float | Int | Categorical}.

    A joint ``<base>+<aux>`` gets its base's space plus ``lambda_`` (when the manifest exposes
    it). A registered loss without an entry raises ``ValueError`` (a new loss needs one here).
    """
    keys = manifest.loss_hyperparameters(name)  # an unknown loss raises, listing the known
    if name in LOSS_SPACES:
        out = dict(LOSS_SPACES[name])
    else:
        base, sep, _ = name.partition("+")
        if not sep or base not in LOSS_SPACES:
            raise ValueError(f"no search space for loss {name!r}: add it to LOSS_SPACES in "
                             "common/search_space.py")
        out = dict(LOSS_SPACES[base])
        if JOINT_WEIGHT in keys:
            out[JOINT_WEIGHT] = AUX_WEIGHT
    stray = sorted(set(out) - set(keys))
    if stray:
        raise ValueError(f"search space of {name!r} names {', '.join(stray)}, which are not "
                         f"its hyper-parameters ({', '.join(keys) or 'none'})")
    return out


def space(name: str, fixed: dict | None = None) -> dict:
    """The whole searched space of loss ``name``: ``TRAINING`` then the loss's own keys, less
    those fixed by ``--loss-args`` (``fixed``: {key: value})."""
    fixed = fixed or {}
    own = {k: v for k, v in loss_space(name).items() if k not in fixed}
    return {**TRAINING, **own}


def split(point: dict) -> tuple[dict, dict]:
    """A point -> (training knobs {lr, weight_decay}, the loss's settings)."""
    return ({k: v for k, v in point.items() if k in TRAINING},
            {k: v for k, v in point.items() if k not in TRAINING})


def suggest(trial, name: str, fixed: dict | None = None) -> dict:
    """Ask an Optuna trial for a point of ``space(name, fixed)``."""
    return {key: dist.suggest(trial, key) for key, dist in space(name, fixed).items()}


def sample(name: str, rng: random.Random, fixed: dict | None = None) -> dict:
    """A point of ``space(name, fixed)`` drawn with ``rng`` (no Optuna needed)."""
    return {key: dist.sample(rng) for key, dist in space(name, fixed).items()}


def describe(name: str, fixed: dict | None = None) -> dict:
    """{key: text} of the space, e.g. {"lr": "log-uniform [0.01, 0.5]", ...}."""
    return {key: dist.describe() for key, dist in space(name, fixed).items()}
